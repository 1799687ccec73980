"""ranktune_client.AsyncClient against live ``ranktune serve`` processes: the same
guarantees as the synchronous client, with tasks instead of threads, and get_config bounded
as a whole by its timeout."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ranktune_client import TIMEOUT, UNREACHABLE, Assignment, AsyncClient, InvalidInput
from tests.client.conftest import (
    EXPERIMENT,
    Stored,
    create_experiment,
    dead_url,
    stored_events,
)
from tests.conftest import SIMILAR_ITEMS
from tests.process.conftest import ServerFactory, ServerProcess

REFERENCE = SIMILAR_ITEMS["reference_config"]
FORGED = Assignment(EXPERIMENT, "u", REFERENCE, "target", 2, "A" * 52, True)


def client_tasks() -> list[str]:
    return [
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("ranktune-client") and not task.done()
    ]


def test_assignments_events_and_exposures_from_many_tasks(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    create_experiment(server)
    create_experiment(server, name="client-counted", exposure_source="client")

    async def user(client: AsyncClient, unit: int) -> Assignment:
        answer = await client.get_config(EXPERIMENT, f"user-{unit}")
        client.track(answer, "contact")
        shown = await client.get_config("client-counted", f"user-{unit}")
        client.track_exposure(shown)
        client.track_exposure(answer)  # the server counts these: never sent
        return answer

    async def run() -> tuple[list[Assignment], list[str]]:
        async with AsyncClient(server.base_url, timeout=5.0) as client:
            answers = await asyncio.gather(*(user(client, unit) for unit in range(100)))
            assert await client.flush(timeout=15)
            stats = client.stats()
        assert (stats.assignments, stats.fallbacks) == (200, 0)
        assert (stats.events_accepted, stats.exposures_skipped) == (200, 100)
        return answers, client_tasks()

    answers, tasks_left = asyncio.run(run())
    assert not any(answer.fallback for answer in answers)
    assert tasks_left == []
    assert stored_events(sqlite_url, "contact") == Stored(100, 100, 100)
    assert stored_events(sqlite_url, "exposure", "client-counted") == Stored(100, 100, 100)
    assert stored_events(sqlite_url, "exposure") == Stored(0, 0, 0)


def test_get_config_falls_back_within_its_timeout_when_the_server_is_down_or_hangs(
    live: ServerProcess,
) -> None:
    async def run() -> None:
        async with AsyncClient(live.base_url, timeout=0.5, experiments=[EXPERIMENT]) as client:
            deadline = time.monotonic() + 15
            while client.reference_config(EXPERIMENT) is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            live.pause()
            try:
                started = time.monotonic()
                hung = await asyncio.gather(
                    *(client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(50))
                )
                elapsed = time.monotonic() - started
            finally:
                live.resume()
            assert {(a.fallback, a.fallback_reason) for a in hung} == {(True, TIMEOUT)}
            assert all(answer.config == REFERENCE for answer in hung)
            assert 0.5 <= elapsed < 2.5  # 50 calls at once, each bounded as a whole
            live.kill9()
            down = await client.get_config(EXPERIMENT, "user-1")
            assert (down.fallback_reason, down.config) == (UNREACHABLE, REFERENCE)
            with pytest.raises(InvalidInput):
                await client.get_config(EXPERIMENT, "")
            stats = client.stats()
        assert stats.fallback_reasons[TIMEOUT] == 50 and stats.fallback_reasons[UNREACHABLE] == 1

    asyncio.run(run())


def test_events_survive_a_server_restart_lost_none_and_doubled_none(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    create_experiment(server)

    async def run() -> None:
        nonlocal server
        async with AsyncClient(
            server.base_url, timeout=5.0, max_backoff=0.5, background_timeout=2.0
        ) as client:
            answers = [await client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(400)]
            for answer in answers[:200]:
                client.track(answer, "contact")
            await asyncio.sleep(0)  # the worker takes the first batch
            server.kill9()
            for answer in answers[200:]:
                client.track(answer, "contact")
            server = await asyncio.to_thread(server_factory.restart, server)
            assert await client.flush(timeout=30)
            stats = client.stats()
        assert stats.events_accepted + stats.events_duplicate == 400
        assert stats.retries > 0 and stats.events_dropped == stats.events_rejected == 0

    asyncio.run(run())
    assert stored_events(sqlite_url, "contact") == Stored(400, 400, 400)


def test_a_full_queue_drops_and_aclose_cancels_its_tasks_within_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        client = AsyncClient(dead_url(), max_queue=10, max_backoff=0.2)
        assert client.track(FORGED, "contact")
        deadline = time.monotonic() + 15
        while client.stats().retries < 1:  # the worker holds that event, retrying
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        offered = [client.track(FORGED, "contact") for _ in range(30)]
        assert offered == [True] * 10 + [False] * 20
        full = client.stats()
        assert (full.events_queued, full.events_dropped, full.queued) == (11, 20, 11)
        started = time.monotonic()
        assert not await client.aclose(timeout=0.5)
        assert time.monotonic() - started < 1.5
        closed = client.stats()
        assert (closed.events_abandoned, closed.queued) == (11, 0)
        assert client_tasks() == []
        assert not client.track(FORGED, "contact")
        assert client.stats().events_dropped == 21

    with caplog.at_level(logging.WARNING, logger="ranktune_client"):
        asyncio.run(run())
    drops = [record for record in caplog.records if "queue is full" in record.getMessage()]
    assert len(drops) == 1


def test_a_conflict_is_not_retried_and_a_refused_event_is_dropped_alone(
    live: ServerProcess, sqlite_url: str
) -> None:
    async def run() -> None:
        async with AsyncClient(live.base_url, timeout=5.0) as client:
            first, second = [await client.get_config(EXPERIMENT, f"u{unit}") for unit in (1, 2)]
            client.track(first, "contact", event_id="order-1")
            assert await client.flush(timeout=10)
            client.track(second, "contact", event_id="order-2")
            client.track(first, "contact", count=2, event_id="order-1")  # another payload
            client.track(FORGED, "contact")
            client.track(second, "view", event_id="order-3")
            assert await client.flush(timeout=10)
            stats = client.stats()
        assert (stats.events_accepted, stats.events_conflicted, stats.events_rejected) == (3, 1, 1)
        assert stats.retries == 0

    asyncio.run(run())
    assert stored_events(sqlite_url, "contact") == Stored(2, 2, 2)
    assert stored_events(sqlite_url, "view") == Stored(1, 1, 1)
