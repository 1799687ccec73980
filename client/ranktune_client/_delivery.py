"""Delivering a batch of events: what to send next and what each answer means.

The synchronous worker (a thread) and the asynchronous one (a task) run the same loop
around :class:`BatchDelivery`; they only do the sending and the waiting:

    while (part := delivery.next_part()) is not None:
        for experiment in delivery.missing_sources(part): fetch its snapshot into the cache
        send part -> delay = delivery.answered(...) or delivery.failed(...); wait delay

Rules: a 200 settles the part. Connection errors, timeouts, 408, 429 and 5xx are
transient: the same events (same event ids, so the server stores each once) are sent again
after an exponential backoff with jitter, at least Retry-After when the server gives one.
A 413 halves the batch (and the worker's batch size). A 409 or another 4xx that names one
event (``events[3].ticket``) refuses the request whole, storing nothing of it: that event
is dropped and logged (a 409 is a bug in the caller: an event_id reused with another
payload; never retried), and the rest are sent again. A 4xx that names no event drops the
part.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping

from ranktune_client._cache import ReferenceCache
from ranktune_client._errors import refusal
from ranktune_client._models import Counters
from ranktune_client._protocol import (
    CLIENT_EXPOSURES,
    QueuedEvent,
    event_index,
    retry_after_s,
)

logger = logging.getLogger("ranktune_client")


class Backoff:
    """Exponential backoff with jitter over a worker's consecutive failures: the n-th
    waits between half and all of ``base * 2**n`` (at most ``cap``), so that clients that
    failed together do not come back together; a success starts again from ``base``."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def failure(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 60))
        self.failures += 1
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, retry_after + self._rng.uniform(0, self.base))
        return delay

    def success(self) -> None:
        self.failures = 0


class BatchLimit:
    """The most events per request: the server's default limit, halved by each 413."""

    def __init__(self, size: int) -> None:
        self.size = size


class BatchDelivery:
    """One batch on its way to the server. The parts still to send are a stack: the top is
    sent next; a 413 replaces it by its halves, a refused event by the others."""

    def __init__(
        self,
        events: list[QueuedEvent],
        *,
        cache: ReferenceCache,
        counters: Counters,
        backoff: Backoff,
        limit: BatchLimit,
    ) -> None:
        self._parts = [events]
        self._cache = cache
        self._counters = counters
        self._backoff = backoff
        self._limit = limit

    def next_part(self) -> list[QueuedEvent] | None:
        """The events to send next (None: the batch is settled). Exposures of experiments
        that count exposures on the server are left out here (``exposures_skipped``)."""
        while self._parts:
            part = self._settle_exposures(self._parts[-1])
            if part:
                self._parts[-1] = part
                return part
            self._parts.pop()
        return None

    def missing_sources(self, part: list[QueuedEvent]) -> list[str]:
        """Experiments of exposures in ``part`` whose exposure source is not cached yet:
        fetch their snapshots (``ReferenceCache.stored``/``not_found``) before sending."""
        return sorted(
            {
                event.experiment
                for event in part
                if event.exposure
                and self._cache.get(event.experiment) is None
                and not self._cache.absent(event.experiment)
            }
        )

    def answered(
        self, part: list[QueuedEvent], status: int, headers: Mapping[str, str], body: bytes
    ) -> float:
        """Take the server's answer to ``part``; the seconds to wait before sending again."""
        if status == 200:
            self._delivered(part, body)
            return 0.0
        if status in (408, 429) or status >= 500:
            return self.failed(retry_after_s(headers))
        self._backoff.success()  # the server answers: whatever is wrong is not transient
        if status == 413 and len(part) > 1:
            half = len(part) // 2
            self._limit.size = max(1, min(self._limit.size, half))
            self._parts[-1:] = [part[half:], part[:half]]
            return 0.0
        error = refusal(status, body)
        counter = "events_conflicted" if status == 409 else "events_rejected"
        index = event_index(error.field, len(part))
        if index is None:
            logger.error(
                "ranktune refused %d events (HTTP %d, not retried): %s",
                len(part),
                status,
                error.detail,
            )
            self._counters.add(counter, len(part))
            self._parts.pop()
            return 0.0
        event = part[index]
        if status == 409:
            logger.error(
                "ranktune refused event %s (%s): its event_id was used before with another "
                "ticket, type or count; a bug in the caller, not retried: %s",
                event.event_id,
                event.type,
                error.detail,
            )
        else:
            logger.warning(
                "ranktune refused event %s (%s, HTTP %d, not retried): %s",
                event.event_id,
                event.type,
                status,
                error.detail,
            )
        self._counters.add(counter)
        self._parts[-1] = part[:index] + part[index + 1 :]
        return 0.0

    def failed(self, retry_after: float | None = None) -> float:
        """A transient failure (no answer, or 408/429/5xx): the seconds to wait before
        sending the same part again."""
        self._counters.add("retries")
        return self._backoff.failure(retry_after)

    def abandon(self) -> int:
        """Give up on what is left (close() ran out of time); how many events that was."""
        left = sum(len(part) for part in self._parts)
        self._parts.clear()
        self._counters.add("events_abandoned", left)
        return left

    def _delivered(self, part: list[QueuedEvent], body: bytes) -> None:
        self._backoff.success()
        accepted, duplicates = _accepted(body, len(part))
        self._counters.add("events_accepted", accepted)
        self._counters.add("events_duplicate", duplicates)
        self._parts.pop()

    def _settle_exposures(self, part: list[QueuedEvent]) -> list[QueuedEvent]:
        keep: list[QueuedEvent] = []
        for event in part:
            if event.exposure:
                reference = self._cache.get(event.experiment)
                if reference is None and self._cache.absent(event.experiment):
                    logger.warning(
                        "exposure %s dropped: experiment %r does not exist",
                        event.event_id,
                        event.experiment,
                    )
                    self._counters.add("events_rejected")
                    continue
                if reference is not None and reference.exposure_source != CLIENT_EXPOSURES:
                    self._counters.add("exposures_skipped")
                    continue
            keep.append(event)
        return keep


def _accepted(body: bytes, sent: int) -> tuple[int, int]:
    """(accepted, duplicates) of a 200 answer; all accepted if it cannot be read."""
    try:
        answer = json.loads(body)
        accepted, duplicates = answer["accepted"], answer["duplicates"]
    except (ValueError, KeyError, TypeError):
        return sent, 0
    if not isinstance(accepted, int) or not isinstance(duplicates, int):
        return sent, 0
    return accepted, duplicates


class DropWarner:
    """Logs a warning when an event is dropped: at the first drop, then at most every
    ``every_s`` seconds with the total, so a full queue does not flood the logs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def dropped(self, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._every_s:
                return
            self._last = now
        logger.warning("ranktune event dropped: %s", why)
