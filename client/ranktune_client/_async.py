"""The asynchronous client: get_config awaited in the caller's task, events and snapshots
in two background tasks on the same event loop."""

from __future__ import annotations

import asyncio
import logging
import ssl
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


class AsyncClient:
    """A ranktune client for asyncio code (ASGI apps). It takes the same settings as
    :class:`~ranktune_client.Client` and behaves the same, with one difference:
    ``timeout`` bounds get_config's whole call, not each phase. Use it from one event loop
    (``track`` from that loop's thread), as ``async with``, or call :meth:`aclose`."""

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
        self._initial = [check_experiment(name) for name in experiments]
        self._shared = Shared(settings)
        self._http = httpx.AsyncClient(**self._shared.http_options(settings.request_timeout()))
        self._background = httpx.AsyncClient(
            **self._shared.http_options(settings.background_timeout)
        )
        self._outbox = _Outbox(max_queue)
        self._wake_refresher = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- the request path ----------------------------------------------------------------
    async def get_config(
        self,
        experiment: str,
        unit: str,
        segment: str | None = None,
        *,
        default: Config | None = None,
    ) -> Assignment:
        """As :meth:`Client.get_config`; returns within ``timeout`` seconds."""
        check_experiment(experiment)
        check_unit(unit)
        check_segment(segment)
        if self._closed:
            return self._shared.fallback(experiment, unit, UNREACHABLE, default)
        self._start()
        self._want(experiment)
        try:
            async with asyncio.timeout(self._shared.settings.timeout):
                response = await self._http.get(
                    assignment_path(experiment), params=assignment_params(unit, segment)
                )
        except (TimeoutError, httpx.TimeoutException):
            return self._shared.fallback(experiment, unit, TIMEOUT, default)
        except (httpx.HTTPError, RuntimeError):  # RuntimeError: closed by a concurrent aclose()
            return self._shared.fallback(experiment, unit, UNREACHABLE, default)
        outcome = assignment_or_reason(experiment, unit, response.status_code, response.content)
        if isinstance(outcome, str):
            return self._shared.fallback(experiment, unit, outcome, default)
        return self._shared.served(outcome)

    def track(
        self, assignment: Assignment, event_type: str, count: int = 1, event_id: str | None = None
    ) -> bool:
        """As :meth:`Client.track` (not a coroutine: it only queues)."""
        event = self._shared.event(assignment, event_type, count, event_id)
        return event is not None and self._offer(event)

    def track_exposure(self, assignment: Assignment) -> bool:
        """As :meth:`Client.track_exposure`."""
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
    async def flush(self, timeout: float = 10.0) -> bool:
        """As :meth:`Client.flush`."""
        try:
            async with asyncio.timeout(timeout):
                await self._outbox.settled()
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float = 10.0) -> bool:
        """As :meth:`Client.close`: deliver what is queued within ``timeout`` seconds, then
        cancel the background tasks (what they had not delivered is ``events_abandoned``)."""
        if self._closed:
            return self._outbox.unfinished == 0
        self._closed = True
        self._outbox.close()
        settled = await self.flush(timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
        await self._background.aclose()
        if not settled:
            logger.warning(
                "ranktune client closed with %d events undelivered",
                self._shared.counters.get("events_abandoned"),
            )
        return settled

    async def __aenter__(self) -> AsyncClient:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start(self) -> None:
        """Start the background tasks on the running loop (at the first use)."""
        if self._tasks or self._closed:
            return
        self._tasks = [
            asyncio.create_task(self._send_events(), name="ranktune-client-events"),
            asyncio.create_task(self._refresh(), name="ranktune-client-snapshots"),
        ]
        for name in self._initial:
            self._want(name)

    def _want(self, experiment: str) -> None:
        if self._shared.cache.want(experiment):
            self._wake_refresher.set()

    def _offer(self, event: QueuedEvent) -> bool:
        if not self._closed:
            self._start()
        return self._shared.queued(self._outbox.put(event), closed=self._outbox.closed)

    # -- the background tasks ------------------------------------------------------------
    async def _send_events(self) -> None:
        try:
            while batch := await self._outbox.take(self._shared.limit.size):
                try:
                    await self._deliver(batch)
                finally:
                    self._outbox.done(len(batch))
        except asyncio.CancelledError:
            left = self._outbox.drain()
            self._shared.counters.add("events_abandoned", len(left))
            self._outbox.done(len(left))
            raise

    async def _deliver(self, batch: list[QueuedEvent]) -> None:
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
                missing = delivery.missing_sources(part)
                if missing:
                    known = True
                    for name in missing:
                        known = await fetch_reference(self._background, shared.cache, name)
                        if not known:
                            break
                    delay = 0.0 if known else delivery.failed()
                else:
                    delay = await self._send(delivery, part)
                if delay > 0:
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            delivery.abandon()
            raise
        except Exception:  # a bug here must not end the task and leave flush() waiting
            logger.exception("ranktune client: delivering events failed")
            delivery.abandon()

    async def _send(self, delivery: BatchDelivery, part: list[QueuedEvent]) -> float:
        try:
            response = await self._background.post(
                EVENTS_PATH, content=events_body(part), headers=JSON_HEADERS
            )
        except httpx.HTTPError:
            return delivery.failed()
        return delivery.answered(part, response.status_code, response.headers, response.content)

    async def _refresh(self) -> None:
        cache = self._shared.cache
        while True:
            for name in cache.due(time.monotonic()):
                await fetch_reference(self._background, cache, name)
            try:
                async with asyncio.timeout(cache.wait_s(time.monotonic())):
                    await self._wake_refresher.wait()
            except TimeoutError:
                pass
            self._wake_refresher.clear()


async def fetch_reference(http: httpx.AsyncClient, cache: ReferenceCache, experiment: str) -> bool:
    """As :func:`ranktune_client._sync.fetch_reference`, awaited."""
    try:
        response = await http.get(snapshot_path(experiment))
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


class _Outbox:
    """The bounded queue between track() and the event task (one event loop, no locks);
    it counts what is unfinished, as the synchronous client's does."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[QueuedEvent] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.unfinished = 0
        self.closed = False

    def put(self, event: QueuedEvent) -> bool:
        if self.closed or len(self._items) >= self._capacity:
            return False
        self._items.append(event)
        self.unfinished += 1
        self._ready.set()
        self._idle.clear()
        return True

    async def take(self, limit: int) -> list[QueuedEvent]:
        """Up to ``limit`` events, waiting for the first; [] once closed and empty."""
        while not self._items and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def drain(self) -> list[QueuedEvent]:
        items = list(self._items)
        self._items.clear()
        return items

    def done(self, count: int) -> None:
        self.unfinished -= count
        if self.unfinished == 0:
            self._idle.set()

    async def settled(self) -> None:
        await self._idle.wait()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
