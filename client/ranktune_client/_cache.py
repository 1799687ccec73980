"""The reference configurations the SDK falls back to, and when to refresh them.

Every experiment get_config is asked about (or the client is told of up front) is fetched
from the snapshot endpoint in the background and refreshed every ``refresh_s``; a failed
fetch keeps the value it had and is tried again sooner, with backoff. Thread-safe: the
callers' threads read it, the background thread or task writes it. No I/O here.
"""

from __future__ import annotations

import threading

from ranktune_client._protocol import Reference

# A failed fetch is tried again after this much, doubling per failure up to refresh_s.
_FIRST_RETRY_S = 0.5


class ReferenceCache:
    def __init__(self, refresh_s: float) -> None:
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._references: dict[str, Reference] = {}
        self._absent: set[str] = set()  # the server said 404 at the last fetch
        self._due: dict[str, float] = {}  # monotonic time of the next fetch, per experiment
        self._failures: dict[str, int] = {}

    def want(self, experiment: str) -> bool:
        """Keep ``experiment`` fetched from now on; True if it is new (fetch it now)."""
        with self._lock:
            if experiment in self._due:
                return False
            self._due[experiment] = float("-inf")
            return True

    def get(self, experiment: str) -> Reference | None:
        with self._lock:
            return self._references.get(experiment)

    def absent(self, experiment: str) -> bool:
        """The server said at the last fetch that the experiment does not exist."""
        with self._lock:
            return experiment in self._absent

    def due(self, now: float) -> list[str]:
        with self._lock:
            return [name for name, when in self._due.items() if when <= now]

    def wait_s(self, now: float) -> float | None:
        """Seconds until the next fetch is due (None: nothing to fetch, ever, so far)."""
        with self._lock:
            if not self._due:
                return None
            return max(0.0, min(self._due.values()) - now)

    def stored(self, experiment: str, reference: Reference, now: float) -> None:
        with self._lock:
            self._references[experiment] = reference
            self._absent.discard(experiment)
            self._settled(experiment, now)

    def not_found(self, experiment: str, now: float) -> None:
        """404: forget what was cached (the experiment was deleted, or never existed)."""
        with self._lock:
            self._references.pop(experiment, None)
            self._absent.add(experiment)
            self._settled(experiment, now)

    def failed(self, experiment: str, now: float) -> None:
        """No usable answer: keep the cached value, try again soon (backing off)."""
        with self._lock:
            failures = self._failures.get(experiment, 0)
            self._failures[experiment] = failures + 1
            delay = min(self._refresh_s, _FIRST_RETRY_S * 2 ** min(failures, 30))
            self._due[experiment] = now + delay

    def _settled(self, experiment: str, now: float) -> None:
        self._failures.pop(experiment, None)
        self._due[experiment] = now + self._refresh_s
