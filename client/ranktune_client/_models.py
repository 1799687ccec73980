"""What the clients hand back: assignments and counters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Config: TypeAlias = Mapping[str, float | int]
Group: TypeAlias = Literal["target", "reference"]

# Why get_config fell back (Assignment.fallback_reason, Stats.fallback_reasons).
TIMEOUT = "timeout"  # no answer within the client's timeout
UNREACHABLE = "unreachable"  # connection refused or broken, DNS, TLS...
SERVER_ERROR = "server_error"  # 5xx, 429, 408, or an answer that is not an assignment
UNKNOWN_EXPERIMENT = "unknown_experiment"  # 404: no such experiment (yet, or any more)
FALLBACK_REASONS = (TIMEOUT, UNREACHABLE, SERVER_ERROR, UNKNOWN_EXPERIMENT)


@dataclass(frozen=True, slots=True)
class Assignment:
    """One configuration for one unit: what to rank with, and the ticket events attach to.

    A fallback (``fallback=True``) was not served by ranktune: ``config`` is the
    experiment's cached reference configuration, or the caller's default, and there is no
    group, arm or ticket, so events tracked on it are not sent (nothing could credit them).
    """

    experiment: str
    unit: str
    config: Config
    group: Group | None
    arm_id: int | None
    ticket: str | None
    active: bool
    fallback: bool = False
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """The client's counters since it was created (``Client.stats()``)."""

    assignments: int  # configurations served by ranktune
    fallbacks: int  # configurations get_config made up (see fallback_reasons)
    fallback_reasons: Mapping[str, int]
    events_queued: int  # taken by track() / track_exposure() into the queue
    events_accepted: int  # stored by the server
    events_duplicate: int  # already stored (a retry of a request whose answer was lost)
    events_dropped: int  # the queue was full, or the client closed
    events_rejected: int  # refused by the server with a 4xx (e.g. an expired ticket)
    events_conflicted: int  # 409: the event_id was used before with another payload
    events_abandoned: int  # still undelivered when close() ran out of time
    events_untracked: int  # tracked on a fallback assignment: no ticket to send them with
    exposures_skipped: int  # track_exposure() on an experiment the server counts itself
    retries: int  # requests sent again after a transient failure
    queued: int  # events waiting or in flight right now
    batch_limit: int  # the most events per request now: max_batch, halved by each 413


_COUNTERS = (
    "assignments",
    "events_queued",
    "events_accepted",
    "events_duplicate",
    "events_dropped",
    "events_rejected",
    "events_conflicted",
    "events_abandoned",
    "events_untracked",
    "exposures_skipped",
    "retries",
)


@dataclass
class Counters:
    """Thread-safe counters behind :class:`Stats` (callers' threads and the worker add)."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    fallbacks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FALLBACK_REASONS, 0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.values[name] += amount

    def fallback(self, reason: str) -> None:
        with self.lock:
            self.fallbacks[reason] += 1

    def get(self, name: str) -> int:
        with self.lock:
            return self.values[name]

    def stats(self, *, queued: int, batch_limit: int) -> Stats:
        with self.lock:
            values = dict(self.values)
            reasons = dict(self.fallbacks)
        return Stats(
            assignments=values["assignments"],
            fallbacks=sum(reasons.values()),
            fallback_reasons=reasons,
            events_queued=values["events_queued"],
            events_accepted=values["events_accepted"],
            events_duplicate=values["events_duplicate"],
            events_dropped=values["events_dropped"],
            events_rejected=values["events_rejected"],
            events_conflicted=values["events_conflicted"],
            events_abandoned=values["events_abandoned"],
            events_untracked=values["events_untracked"],
            exposures_skipped=values["exposures_skipped"],
            retries=values["retries"],
            queued=queued,
            batch_limit=batch_limit,
        )
