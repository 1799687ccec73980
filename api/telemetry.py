"""What a replica counts about its own work, in plain Python ints and dicts.

The code that does the work adds to these counters (an assignment adds one to a dict entry,
nothing more); ``api.observability`` turns them into Prometheus metrics only when ``/metrics``
is scraped. Assignments are counted by ``api.serving.ServingState`` itself (``assigned``),
the exposure flush and snapshot refreshes by the runtime. That keeps the hot path at a dict
update instead of a ``prometheus_client`` ``labels()`` lookup and lock per request
(docs/benchmarks.md has the figures).

Counters updated on the event loop (HTTP requests, event requests) need no
lock: one thread updates them. Those updated from worker threads (ticks, genetic steps, the
event writer's threads) take :attr:`Telemetry.lock`. The scrape reads copies
(``dict.copy`` is atomic under the GIL).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["DURATION_BUCKETS_S", "Histogram", "Telemetry"]

# Upper bounds in seconds of the latency histograms (Prometheus' "le", inclusive): from
# 100 us (an assignment) to 10 s (a slow tick or commit).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Histogram:
    """Observations per bucket (not cumulative; the last entry is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """(le, cumulative count) pairs ending with +Inf, and the sum, as a scrape shows them."""
        counts = list(self.counts)
        buckets: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, self.total


class Telemetry:
    """The replica's counters. See the module docstring for who updates what."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (route template, method, status code) -> latency histogram.
        self.http: dict[tuple[str, str, int], Histogram] = {}
        # POST /v1/events: events stored as new, and retries of stored ones.
        self.events_accepted = 0
        self.events_duplicate = 0
        # (experiment id, reason) -> stored events not (fully) credited (api.limits reasons);
        # the event writer adds to it after each commit.
        self.events_uncredited: dict[tuple[int, str], int] = {}
        # The event writer's group commits.
        self.commit_seconds = Histogram()
        # (experiment id, applied) -> recorded ticks; tick durations.
        self.ticks: dict[tuple[int, bool], int] = {}
        self.tick_seconds = Histogram()
        # experiment id -> applied genetic steps.
        self.genetic_steps: dict[int, int] = {}

    # -- the event loop's (no lock) ---------------------------------------------------------
    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        histogram = self.http.get(key)
        if histogram is None:
            histogram = self.http[key] = Histogram()
        histogram.observe(seconds)

    # -- worker threads' (locked) -----------------------------------------------------------
    def record_tick(self, experiment_id: int, applied: bool, seconds: float) -> None:
        key = (experiment_id, applied)
        with self.lock:
            self.ticks[key] = self.ticks.get(key, 0) + 1
            self.tick_seconds.observe(seconds)

    def record_genetic_step(self, experiment_id: int) -> None:
        with self.lock:
            self.genetic_steps[experiment_id] = self.genetic_steps.get(experiment_id, 0) + 1

    def record_commit(self, seconds: float, uncredited: dict[tuple[int, str], int]) -> None:
        with self.lock:
            self.commit_seconds.observe(seconds)
            for key, count in uncredited.items():
                self.events_uncredited[key] = self.events_uncredited.get(key, 0) + count
