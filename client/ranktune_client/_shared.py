"""What Client and AsyncClient share besides I/O: their settings, counters and reference
cache, and how calls become assignments and queued events."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx

from ranktune_client._cache import ReferenceCache
from ranktune_client._delivery import Backoff, BatchLimit, DropWarner
from ranktune_client._errors import invalid
from ranktune_client._models import Assignment, Config, Counters
from ranktune_client._protocol import (
    EXPOSURE,
    MAX_BATCH_EVENTS,
    QueuedEvent,
    check_event,
    exposure_event_id,
    new_event_id,
)

logger = logging.getLogger("ranktune_client")

# The worker's first retry waits 0.05-0.1 s, doubling per failure up to max_backoff.
BACKOFF_BASE_S = 0.1


@dataclass(frozen=True)
class Settings:
    """A client's configuration (the keyword arguments of Client and AsyncClient)."""

    base_url: str
    timeout: float = 0.5
    background_timeout: float = 10.0
    max_queue: int = 10_000
    max_batch: int = MAX_BATCH_EVENTS
    max_backoff: float = 30.0
    snapshot_refresh: float = 60.0
    defaults: Mapping[str, Config] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: ssl.SSLContext | bool = True
    # Sent as ``Authorization: Bearer <client_key>``; kept out of repr() and logs.
    client_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("timeout", "background_timeout", "max_backoff", "snapshot_refresh"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue: expected at least 1, got {self.max_queue}")
        if not 1 <= self.max_batch <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch: expected 1 to {MAX_BATCH_EVENTS}, got {self.max_batch}")
        if self.client_key is not None:
            if not self.client_key or not all("!" <= char <= "~" for char in self.client_key):
                raise ValueError(
                    "client_key: expected the token of `ranktune tokens create --role client` "
                    "(printable ASCII without spaces)"
                )
            if any(name.lower() == "authorization" for name in self.headers):
                raise ValueError(
                    "client_key: headers already has Authorization; expected one or the other"
                )

    def request_timeout(self) -> httpx.Timeout:
        """get_config's bound, on connecting, sending and reading alike."""
        return httpx.Timeout(self.timeout)


class Shared:
    """The state both clients keep beside their I/O, and the rules of their calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.cache = ReferenceCache(settings.snapshot_refresh)
        self.backoff = Backoff(BACKOFF_BASE_S, settings.max_backoff)
        self.limit = BatchLimit(settings.max_batch)
        self.drop_warner = DropWarner()
        # One TLS context for the client's three connection pools: building one loads the
        # CA bundle, about 20 ms each.
        verify = settings.verify
        self._verify = httpx.create_ssl_context() if verify is True else verify
        self._warned_without_config: set[str] = set()

    def http_options(self, timeout: httpx.Timeout | float) -> dict[str, Any]:
        """The arguments of the client's httpx clients (sync and async alike)."""
        settings = self.settings
        headers = dict(settings.headers)
        if settings.client_key is not None:
            headers["Authorization"] = f"Bearer {settings.client_key}"
        return {
            "base_url": settings.base_url,
            "timeout": timeout,
            "headers": headers,
            "verify": self._verify,
        }

    def served(self, assignment: Assignment) -> Assignment:
        self.counters.add("assignments")
        return assignment

    def fallback(
        self, experiment: str, unit: str, reason: str, default: Config | None
    ) -> Assignment:
        """The cached reference configuration, else the caller's default (this call's, then
        the client's ``defaults``), else an empty configuration (logged once)."""
        self.counters.fallback(reason)
        reference = self.cache.get(experiment)
        config: Config | None = reference.config if reference is not None else default
        if config is None:
            config = self.settings.defaults.get(experiment)
        if config is None:
            config = MappingProxyType({})
            if experiment not in self._warned_without_config:
                self._warned_without_config.add(experiment)
                logger.warning(
                    "get_config fell back (%s) with no configuration known for experiment %r: "
                    "it serves an empty configuration; pass default= or defaults=",
                    reason,
                    experiment,
                )
        return Assignment(
            experiment=experiment,
            unit=unit,
            config=config,
            group=None,
            arm_id=None,
            ticket=None,
            active=False,
            fallback=True,
            fallback_reason=reason,
        )

    def event(
        self, assignment: Assignment, event_type: str, count: int, event_id: str | None
    ) -> QueuedEvent | None:
        """The event to queue (None: the assignment was a fallback; counted)."""
        _check_assignment(assignment)
        check_event(event_type, count, event_id)
        if assignment.ticket is None:
            self.counters.add("events_untracked")
            return None
        return QueuedEvent(
            assignment.ticket,
            event_type,
            count,
            event_id or new_event_id(),
            assignment.experiment,
        )

    def exposure(self, assignment: Assignment) -> QueuedEvent | None:
        """The exposure event to queue, or None: a fallback, or an experiment whose
        exposures the server counts (known from the cached snapshot; when not cached yet,
        the worker decides before sending)."""
        _check_assignment(assignment)
        if assignment.ticket is None:
            self.counters.add("events_untracked")
            return None
        reference = self.cache.get(assignment.experiment)
        if reference is not None and reference.exposure_source != "client":
            self.counters.add("exposures_skipped")
            return None
        return QueuedEvent(
            assignment.ticket,
            EXPOSURE,
            1,
            exposure_event_id(assignment.ticket),
            assignment.experiment,
            exposure=True,
        )

    def queued(self, accepted: bool, *, closed: bool) -> bool:
        """Count one offer to the queue; warn (rate-limited) when it was dropped."""
        if accepted:
            self.counters.add("events_queued")
            return True
        self.counters.add("events_dropped")
        dropped = self.counters.get("events_dropped")
        if closed:
            self.drop_warner.dropped(f"the client is closed ({dropped} dropped so far)")
        else:
            self.drop_warner.dropped(
                f"the event queue is full ({self.settings.max_queue} events; {dropped} "
                "dropped so far): the server is slow or unreachable, or max_queue is too small"
            )
        return False


def _check_assignment(assignment: object) -> None:
    if not isinstance(assignment, Assignment):
        raise invalid("assignment", "an Assignment returned by get_config")
