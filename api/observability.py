"""Observing a replica: request ids and HTTP metrics per request, Prometheus metrics at scrape.

:class:`RequestObservation` is the outermost middleware. For every HTTP request it takes the
caller's ``X-Request-ID`` (when it is 1 to 128 characters of letters, digits and ``._:-``;
otherwise it makes one), puts it in :data:`api.logs.request_id` for the log lines of the
request, echoes it in the answer's ``X-Request-ID`` header, and adds the request's status and
latency to :class:`api.telemetry.Telemetry` under its route template (the path as declared,
``/v1/experiments/{name}/assignment``: the label values are bounded by the routes, and every
path that matches no route is ``unmatched``). It also adds ``Cache-Control: no-store`` to
every answer to a request its ``no_store`` predicate names (the admin paths, api/app.py): one
layer that adds the headers of every answer rather than one layer each, as every ASGI layer
costs each assignment (docs/benchmarks.md).

:class:`RanktuneCollector` turns the replica's plain counters into Prometheus metric families
when ``/metrics`` is scraped; each app has its own ``CollectorRegistry`` (:func:`registry_for`),
so that several apps in one process (the tests) do not share metrics. docs/operations.md
lists the metrics.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import request_id
from api.runtime import Runtime
from api.telemetry import Histogram, Telemetry

__all__ = ["REQUEST_ID_HEADER", "RanktuneCollector", "RequestObservation", "registry_for"]

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
# The methods that get a label value of their own; anything else a client sends is "other".
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}").fullmatch
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()
_NO_STORE = (b"cache-control", b"no-store")


class RequestObservation:
    """Request id and HTTP metrics of every request (the module docstring says how)."""

    def __init__(
        self,
        app: ASGIApp,
        telemetry: Telemetry,
        routes: Callable[[], list[BaseRoute]],
        no_store: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.routes = routes
        self.no_store = no_store
        # Generated ids: a random prefix per process and a counter, 16 hex digits (unique
        # across replicas and restarts in practice; os.urandom per request cost 1 us).
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        for name, value in scope["headers"]:
            if name == _HEADER_NAME:
                rid = value.decode("latin-1")
                break
        if rid is None or not _VALID_REQUEST_ID(rid):
            rid = f"{self._id_prefix}{next(self._id_counter) & 0xFFFFFFFF:08x}"
        token = request_id.set(rid)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (_HEADER_NAME, rid.encode())]
                if self.no_store(scope):  # asked now: the router has named the route
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            route = scope.get("route")
            template = route.path if route is not None else self._template(scope)
            method = scope["method"]
            self.telemetry.observe_http(
                template,
                method if method in METHODS else "other",
                status,
                time.perf_counter() - started,
            )

    def _template(self, scope: Scope) -> str:
        """The route template of a request the router did not route (answered before it, or
        a 404 or 405): the first route that matches the path, else ``unmatched``."""
        partial = None
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", UNMATCHED))
            if match == Match.PARTIAL and partial is None:
                partial = str(getattr(route, "path", UNMATCHED))
        return partial or UNMATCHED


def registry_for(telemetry: Telemetry, runtime: Callable[[], Runtime | None]) -> CollectorRegistry:
    """A registry of this app's own: ranktune's metrics and the process's (CPU, memory,
    open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RanktuneCollector(telemetry, runtime))
    ProcessCollector(registry=registry)
    return registry


def _histogram(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels)


def _add(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets, total = histogram.cumulative()
    family.add_metric(labels, buckets, total)


class RanktuneCollector(Collector):
    """The replica's metrics, read from its counters at scrape time."""

    def __init__(self, telemetry: Telemetry, runtime: Callable[[], Runtime | None]) -> None:
        self.telemetry = telemetry  # the app's: HTTP requests
        self.runtime = runtime  # the running runtime, if any: everything else

    def collect(self) -> Iterator[Metric]:
        yield from self._http()
        runtime = self.runtime()
        if runtime is not None:
            yield from self._runtime(runtime)

    def _http(self) -> Iterator[Metric]:
        http = self.telemetry.http.copy()
        requests = CounterMetricFamily(
            "ranktune_http_requests",
            "HTTP requests answered, by route template, method and status code",
            labels=["route", "method", "status"],
        )
        latency = _histogram(
            "ranktune_http_request_duration_seconds",
            "time from a request's arrival to the end of its answer",
            ["route", "method", "status"],
        )
        rejected: dict[str, int] = {}
        for (route, method, status), histogram in sorted(http.items()):
            labels = [route, method, str(status)]
            buckets, total = histogram.cumulative()
            count = buckets[-1][1]
            requests.add_metric(labels, count)
            latency.add_metric(labels, buckets, total)
            if route == "/v1/events" and method == "POST" and 400 <= status < 500:
                rejected[str(status)] = rejected.get(str(status), 0) + count
        rejected_family = CounterMetricFamily(
            "ranktune_event_requests_rejected",
            "POST /v1/events requests refused whole (nothing stored), by status code",
            labels=["status"],
        )
        for status_label, count in sorted(rejected.items()):
            rejected_family.add_metric([status_label], count)
        yield requests
        yield latency
        yield rejected_family

    def _runtime(self, runtime: Runtime) -> Iterator[Metric]:
        now = time.monotonic()
        telemetry = runtime.telemetry
        snapshots = runtime.serving.snapshots()
        names = {snapshot.id: snapshot.name for snapshot in snapshots}

        def name(experiment_id: int) -> str:
            return names.get(experiment_id, f"id:{experiment_id}")

        assignments = CounterMetricFamily(
            "ranktune_assignments",
            "configurations served, by experiment, arm and group (target, reference, or "
            "inactive while the experiment is not running)",
            labels=["experiment", "arm", "group"],
        )
        for (experiment_id, arm_id, group), count in sorted(
            runtime.serving.assigned.copy().items()
        ):
            assignments.add_metric([name(experiment_id), str(arm_id), group], count)
        yield assignments

        events = CounterMetricFamily(
            "ranktune_events",
            "reported events of accepted requests: stored as new (accepted) or retries of "
            "stored ones (duplicate)",
            labels=["outcome"],
        )
        events.add_metric(["accepted"], telemetry.events_accepted)
        events.add_metric(["duplicate"], telemetry.events_duplicate)
        yield events

        with telemetry.lock:
            uncredited_counts = telemetry.events_uncredited.copy()
            ticks = telemetry.ticks.copy()
            steps = telemetry.genetic_steps.copy()
            tick_seconds = telemetry.tick_seconds.cumulative()
            commit_seconds = telemetry.commit_seconds.cumulative()
        uncredited = CounterMetricFamily(
            "ranktune_events_uncredited",
            "stored events that will not be (fully) credited, by experiment and reason "
            "(api/limits.py: inactive, previous_phase, arm_retired, over_ticket_limit)",
            labels=["experiment", "reason"],
        )
        for (experiment_id, reason), count in sorted(uncredited_counts.items()):
            uncredited.add_metric([name(experiment_id), reason], count)
        yield uncredited

        tick_family = CounterMetricFamily(
            "ranktune_ticks",
            "ticks this replica recorded, by experiment and outcome (applied, or carried: "
            "recorded without updating the posteriors)",
            labels=["experiment", "outcome"],
        )
        for (experiment_id, applied), count in sorted(ticks.items()):
            outcome = "applied" if applied else "carried"
            tick_family.add_metric([name(experiment_id), outcome], count)
        yield tick_family
        tick_duration = _histogram(
            "ranktune_tick_duration_seconds", "time to compute and record a tick", []
        )
        tick_duration.add_metric([], *tick_seconds)
        yield tick_duration

        genetic = CounterMetricFamily(
            "ranktune_genetic_steps",
            "genetic steps this replica applied, by experiment",
            labels=["experiment"],
        )
        for experiment_id, count in sorted(steps.items()):
            genetic.add_metric([name(experiment_id)], count)
        yield genetic

        yield GaugeMetricFamily(
            "ranktune_event_writer_queue_depth",
            "event requests waiting for the event writer",
            value=runtime.writer.queued(),
        )
        commit = _histogram(
            "ranktune_event_writer_commit_duration_seconds",
            "time to store one group of event requests (one transaction, retries included)",
            [],
        )
        commit.add_metric([], *commit_seconds)
        yield commit

        yield GaugeMetricFamily(
            "ranktune_exposure_flush_lag_seconds",
            "seconds since server-counted exposures were last written (or found none to write)",
            value=max(0.0, now - runtime.flushed_at),
        )

        age = GaugeMetricFamily(
            "ranktune_snapshot_age_seconds",
            "seconds since this replica loaded each experiment's serving snapshot (it reloads "
            "one only when the experiment changed)",
            labels=["experiment"],
        )
        wall = time.time()
        for snapshot in sorted(snapshots, key=lambda snap: snap.name):
            age.add_metric([snapshot.name], max(0.0, wall - snapshot.loaded_at.timestamp()))
        yield age
        refreshed = runtime.serving.refreshed_at
        yield GaugeMetricFamily(
            "ranktune_snapshot_refresh_age_seconds",
            "seconds since the snapshots were last checked against the database without error",
            value=max(0.0, now - refreshed) if refreshed is not None else float("inf"),
        )

        webhooks = CounterMetricFamily(
            "ranktune_webhook_deliveries",
            "webhook delivery attempts recorded by this replica, by outcome (delivered, "
            "retrying, failed, cancelled, claim_lost)",
            labels=["outcome"],
        )
        for outcome, count in sorted(runtime.deliverer.outcomes.copy().items()):
            webhooks.add_metric([outcome], count)
        yield webhooks
