"""The synchronous client: get_config in the caller's thread, events and snapshots in two
background threads."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType

import httpx

from ranktune_client._cache import ReferenceCache
from ranktune_client._delivery import BatchDelivery
from ranktune_client._models import TIMEOUT, UNREACHABLE, Assignment, Config, Stats
from ranktune_client._protocol import (
    EVENTS_PATH,
    JSON_HEADERS,
    QueuedEvent,
    assignment_or_reason,
    assignment_params,
    assignment_path,
    check_experiment,
    check_segment,
    check_unit,
    events_body,
    parse_reference,
    snapshot_path,
)
from ranktune_client._shared import Settings, Shared

logger = logging.getLogger("ranktune_client")


class Client:
    """A ranktune client for threaded code (WSGI apps, scripts); safe to share between
    threads. Use it as a context manager, or call :meth:`close`, so that queued events are
    delivered.

    ``get_config`` never raises for transport problems, timeouts, 5xx or an unknown
    experiment: it falls back (see :class:`~ranktune_client.Assignment`). ``track`` never
    blocks: events go to a bounded queue that a background thread sends in batches,
    retrying transient failures with backoff.

    Settings: ``timeout`` bounds get_config's request (connecting, sending and reading
    each); ``background_timeout`` bounds each background request; ``max_queue`` events
    wait at most (more are dropped, counted and logged); ``max_batch`` events per request;
    ``max_backoff`` caps the wait between retries; ``snapshot_refresh`` is how often the
    cached reference configurations are refreshed; ``defaults`` maps experiments to the
    configuration to serve when ranktune is unreachable and nothing is cached yet;
    ``experiments`` are fetched into the cache at once; ``headers`` go with every request;
    ``verify`` is httpx's (an ``ssl.SSLContext`` for a private CA, or False); ``client_key``
    (a client token) is sent as ``Authorization: Bearer`` on every request, for servers with
    RANKTUNE_CLIENT_KEY_REQUIRED (without it, or with a wrong one, get_config raises
    :class:`~ranktune_client.Unauthorized` or :class:`~ranktune_client.Forbidden`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 0.5,
        background_timeout: float = 10.0,
        max_queue: int = 10_000,
        max_batch: int = 1000,
        max_backoff: float = 30.0,
        snapshot_refresh: float = 60.0,
        defaults: Mapping[str, Config] | None = None,
        experiments: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        client_key: str | None = None,
    ) -> None:
        settings = Settings(
            base_url=base_url,
            timeout=timeout,
            background_timeout=background_timeout,
            max_queue=max_queue,
            max_batch=max_batch,
            max_backoff=max_backoff,
            snapshot_refresh=snapshot_refresh,
            defaults=dict(defaults or {}),
            headers=dict(headers or {}),
            verify=verify,
            client_key=client_key,
        )
        names = [check_experiment(name) for name in experiments]
        self._shared = Shared(settings)
        self._http = httpx.Client(**self._shared.http_options(settings.request_timeout()))
        self._outbox = _Outbox(max_queue)
        self._abandon = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._worker = threading.Thread(
            target=self._send_events, name="ranktune-client-events", daemon=True
        )
        self._refresher = _Refresher(self._shared)
        self._worker.start()
        self._refresher.start()
        for name in names:
            self._refresher.want(name)

    # -- the request path ----------------------------------------------------------------
    def get_config(
        self,
        experiment: str,
        unit: str,
        segment: str | None = None,
        *,
        default: Config | None = None,
    ) -> Assignment:
        """The configuration for ``unit`` (in ``segment``, for a segmented experiment;
        None: the default segment), or a fallback: never raises for transport
        problems, timeouts, 5xx or an unknown experiment. Raises
        :class:`~ranktune_client.RequestRefused` (typed by status) for other 4xx, and
        :class:`~ranktune_client.InvalidInput` for input the server would refuse."""
        check_experiment(experiment)
        check_unit(unit)
        check_segment(segment)
        if self._closed:
            return self._shared.fallback(experiment, unit, UNREACHABLE, default)
        self._refresher.want(experiment)
        try:
            response = self._http.get(
                assignment_path(experiment), params=assignment_params(unit, segment)
            )
        except httpx.TimeoutException:
            return self._shared.fallback(experiment, unit, TIMEOUT, default)
        except (httpx.HTTPError, RuntimeError):  # RuntimeError: closed by a concurrent close()
            return self._shared.fallback(experiment, unit, UNREACHABLE, default)
        outcome = assignment_or_reason(experiment, unit, response.status_code, response.content)
        if isinstance(outcome, str):
            return self._shared.fallback(experiment, unit, outcome, default)
        return self._shared.served(outcome)

    def track(
        self, assignment: Assignment, event_type: str, count: int = 1, event_id: str | None = None
    ) -> bool:
        """Queue an event (``count`` of ``event_type``) on ``assignment``'s ticket; never
        blocks. ``event_id`` (unique per event) is generated when not given; retries reuse
        it. False when nothing was queued: a fallback assignment has no ticket
        (``events_untracked``), or the queue is full or the client closed
        (``events_dropped``)."""
        event = self._shared.event(assignment, event_type, count, event_id)
        return event is not None and self._offer(event)

    def track_exposure(self, assignment: Assignment) -> bool:
        """Report that ``assignment``'s configuration was shown. Sent only when the
        experiment counts client exposures (``exposure_source: client``); when the server
        counts them itself, nothing is sent (``exposures_skipped``). Reporting the same
        assignment twice counts once."""
        event = self._shared.exposure(assignment)
        return event is not None and self._offer(event)

    def stats(self) -> Stats:
        return self._shared.counters.stats(
            queued=self._outbox.unfinished, batch_limit=self._shared.limit.size
        )

    def reference_config(self, experiment: str) -> Config | None:
        """The cached reference configuration of ``experiment``, which get_config falls
        back to; None until the snapshot was fetched (or if the experiment does not exist)."""
        reference = self._shared.cache.get(experiment)
        return reference.config if reference is not None else None

    # -- delivery and shutdown -----------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is delivered (or refused); False if some are still
        waiting after ``timeout`` seconds (they stay queued)."""
        return self._outbox.wait_settled(time.monotonic() + timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop the background
        threads; events still undelivered then are given up (``events_abandoned``) and
        tracking afterwards drops them. True if everything queued was delivered."""
        with self._close_lock:
            if self._closed:
                return self._outbox.unfinished == 0
            self._closed = True
        deadline = time.monotonic() + timeout
        self._outbox.close()
        # Leave the worker a moment to count what it gives up before the deadline.
        settled = self._outbox.wait_settled(deadline - min(0.1, timeout / 4))
        self._abandon.set()
        self._refresher.stop()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        # The refresher has nothing to deliver: not worth waiting long for if it is in the
        # middle of a request to a hanging server (it ends after that request).
        self._refresher.join(min(0.5, max(0.0, deadline - time.monotonic())))
        self._http.close()
        if not settled:
            logger.warning(
                "ranktune client closed with %d events undelivered", self._outbox.unfinished
            )
        return settled

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _offer(self, event: QueuedEvent) -> bool:
        return self._shared.queued(self._outbox.put(event), closed=self._outbox.closed)

    # -- the event thread ----------------------------------------------------------------
    def _send_events(self) -> None:
        options = self._shared.http_options(self._shared.settings.background_timeout)
        with httpx.Client(**options) as http:
            while batch := self._outbox.take(self._shared.limit.size):
                try:
                    self._deliver(http, batch)
                finally:
                    self._outbox.done(len(batch))

    def _deliver(self, http: httpx.Client, batch: list[QueuedEvent]) -> None:
        shared = self._shared
        delivery = BatchDelivery(
            batch,
            cache=shared.cache,
            counters=shared.counters,
            backoff=shared.backoff,
            limit=shared.limit,
        )
        try:
            while (part := delivery.next_part()) is not None:
                if self._abandon.is_set():
                    delivery.abandon()
                    return
                missing = delivery.missing_sources(part)
                if missing:
                    known = all(fetch_reference(http, shared.cache, name) for name in missing)
                    delay = 0.0 if known else delivery.failed()
                else:
                    delay = self._send(http, delivery, part)
                if delay > 0:
                    self._abandon.wait(delay)
        except Exception:  # a bug here must not stop the thread and leave flush() waiting
            logger.exception("ranktune client: delivering events failed")
            delivery.abandon()

    @staticmethod
    def _send(http: httpx.Client, delivery: BatchDelivery, part: list[QueuedEvent]) -> float:
        try:
            response = http.post(EVENTS_PATH, content=events_body(part), headers=JSON_HEADERS)
        except httpx.HTTPError:
            return delivery.failed()
        return delivery.answered(part, response.status_code, response.headers, response.content)


def fetch_reference(http: httpx.Client, cache: ReferenceCache, experiment: str) -> bool:
    """Fetch ``experiment``'s snapshot into the cache; False if it must be tried again."""
    try:
        response = http.get(snapshot_path(experiment))
    except httpx.HTTPError:
        cache.failed(experiment, time.monotonic())
        return False
    if response.status_code == 404:
        cache.not_found(experiment, time.monotonic())
        return True
    reference = parse_reference(response.content) if response.status_code == 200 else None
    if reference is None:
        cache.failed(experiment, time.monotonic())
        return False
    cache.stored(experiment, reference, time.monotonic())
    return True


class _Refresher(threading.Thread):
    """Keeps the cached reference configurations fresh; fetches a new experiment at once."""

    def __init__(self, shared: Shared) -> None:
        super().__init__(name="ranktune-client-snapshots", daemon=True)
        self._shared = shared
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def want(self, experiment: str) -> None:
        if self._shared.cache.want(experiment):
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        cache = self._shared.cache
        options = self._shared.http_options(self._shared.settings.background_timeout)
        with httpx.Client(**options) as http:
            while not self._stopping.is_set():
                for name in cache.due(time.monotonic()):
                    if self._stopping.is_set():
                        return
                    fetch_reference(http, cache, name)
                self._wake.wait(cache.wait_s(time.monotonic()))
                self._wake.clear()


class _Outbox:
    """The bounded queue between the callers' threads and the event thread. It counts
    what is unfinished (queued, or taken and not yet settled), so that flush() knows when
    everything is done."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[QueuedEvent] = deque()
        self._condition = threading.Condition()
        self._unfinished = 0
        self.closed = False

    @property
    def unfinished(self) -> int:
        with self._condition:
            return self._unfinished

    def put(self, event: QueuedEvent) -> bool:
        with self._condition:
            if self.closed or len(self._items) >= self._capacity:
                return False
            self._items.append(event)
            self._unfinished += 1
            self._condition.notify_all()
            return True

    def take(self, limit: int) -> list[QueuedEvent]:
        """Up to ``limit`` events, waiting for the first; [] once closed and empty."""
        with self._condition:
            while not self._items and not self.closed:
                self._condition.wait()
            return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def done(self, count: int) -> None:
        with self._condition:
            self._unfinished -= count
            self._condition.notify_all()

    def wait_settled(self, deadline: float) -> bool:
        with self._condition:
            while self._unfinished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()
