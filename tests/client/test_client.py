"""ranktune_client.Client against live ``ranktune serve`` processes: assignments and events
reach the server exactly once (across a server restart too), get_config falls back within
its timeout when the server is down or hangs, the queue is bounded, refusals are typed,
a 409 is not retried, and the background threads stop at close()."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ranktune_client import (
    TIMEOUT,
    UNKNOWN_EXPERIMENT,
    UNREACHABLE,
    Assignment,
    Client,
    InvalidInput,
)
from tests.client.conftest import (
    EXPERIMENT,
    Stored,
    client_threads,
    create_experiment,
    dead_url,
    stored_events,
    wait_until,
)
from tests.conftest import SIMILAR_ITEMS
from tests.process.conftest import ServerFactory, ServerProcess

REFERENCE = SIMILAR_ITEMS["reference_config"]
DEFAULT = {"text_match": 0.5, "distance": 0.5, "price_diff": 0.5, "region": 0}
# A ticket of the right shape that this server never issued (it refuses it with a 422).
FORGED = Assignment(EXPERIMENT, "u", REFERENCE, "target", 2, "A" * 52, True)


def test_assignments_and_events_reach_the_server_exactly_once(
    database_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(database_url)
    experiment = create_experiment(server)
    with Client(server.base_url, timeout=5.0) as client:
        answers = [client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(200)]
        assert all(client.track(answer, "contact") for answer in answers)
        assert client.flush(timeout=15)
        stats = client.stats()

    assert not any(answer.fallback for answer in answers)
    assert {answer.group for answer in answers} == {"target", "reference"}
    for answer in answers:
        assert answer.ticket is not None and answer.active
        if answer.group == "reference":
            assert answer.arm_id == experiment["reference_arm_id"]
            assert answer.config == REFERENCE
        else:
            assert answer.config in SIMILAR_ITEMS["arms"]
    assert stored_events(database_url, "contact") == Stored(200, 200, 200)
    assert (stats.assignments, stats.fallbacks) == (200, 0)
    assert (stats.events_queued, stats.events_accepted, stats.events_duplicate) == (200, 200, 0)
    assert (stats.queued, stats.retries, stats.events_dropped) == (0, 0, 0)
    assert client_threads() == []


def test_get_config_falls_back_to_the_cached_reference_when_the_server_is_down(
    live: ServerProcess,
) -> None:
    with Client(live.base_url, timeout=0.5, experiments=[EXPERIMENT]) as client:
        wait_until(lambda: client.reference_config(EXPERIMENT) is not None)
        assert client.reference_config(EXPERIMENT) == REFERENCE
        live.kill9()
        started = time.monotonic()
        answer = client.get_config(EXPERIMENT, "user-1", default=DEFAULT)
        elapsed = time.monotonic() - started
        assert not client.track(answer, "contact")  # no ticket: nothing could credit it
        assert not client.track_exposure(answer)
        stats = client.stats()

    assert elapsed < 0.5
    assert answer.fallback and answer.fallback_reason == UNREACHABLE
    assert answer.config == REFERENCE  # the server's reference wins over the caller's default
    assert (answer.group, answer.arm_id, answer.ticket, answer.active) == (None, None, None, False)
    assert stats.fallbacks == stats.fallback_reasons[UNREACHABLE] == 1
    assert (stats.events_untracked, stats.events_queued) == (2, 0)


def test_without_a_cached_reference_the_default_is_served_until_the_server_is_back(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    create_experiment(server)
    server.kill9()
    with Client(server.base_url, defaults={EXPERIMENT: DEFAULT}) as client:
        cold = client.get_config(EXPERIMENT, "user-1")
        given = client.get_config(EXPERIMENT, "user-1", default={"region": 2})
        unknown = client.get_config("another-experiment", "user-1")
        assert cold.fallback and cold.config == DEFAULT
        assert given.config == {"region": 2}  # this call's default before the client's
        assert unknown.fallback and unknown.config == {}
        # The failed snapshot fetch is retried in the background, with backoff.
        server = server_factory.restart(server)
        wait_until(lambda: client.reference_config(EXPERIMENT) == REFERENCE)
        missing = client.get_config("another-experiment", "user-1")
        server.kill9()
        warm = client.get_config(EXPERIMENT, "user-1")
        stats = client.stats()

    assert missing.fallback_reason == UNKNOWN_EXPERIMENT and missing.config == {}
    assert warm.fallback and warm.config == REFERENCE
    assert stats.fallback_reasons == {
        "timeout": 0,
        "unreachable": 4,
        "server_error": 0,
        "unknown_experiment": 1,
    }


def test_get_config_returns_within_its_timeout_when_the_server_hangs(live: ServerProcess) -> None:
    client = Client(live.base_url, timeout=0.5, experiments=[EXPERIMENT], snapshot_refresh=0.2)
    try:
        wait_until(lambda: client.reference_config(EXPERIMENT) is not None)
        assert not client.get_config(EXPERIMENT, "user-1").fallback
        live.pause()  # the kernel still accepts the connections; nothing answers
        try:
            started = time.monotonic()
            hung = client.get_config(EXPERIMENT, "user-2")
            elapsed = time.monotonic() - started
            time.sleep(0.3)  # the refresher's next fetch hangs too
            started = time.monotonic()
            closed = client.close(timeout=5.0)
            closing = time.monotonic() - started
        finally:
            live.resume()
    finally:
        client.close()

    assert hung.fallback and hung.fallback_reason == TIMEOUT and hung.config == REFERENCE
    # The server hangs for good: the timeout ended the call (with room for a loaded machine).
    assert 0.5 <= elapsed < 2.5
    # Nothing was queued: close() does not wait for the refresher's hanging request.
    assert closed and closing < 2.0


def test_events_survive_a_server_restart_lost_none_and_doubled_none(
    database_url: str, server_factory: ServerFactory
) -> None:
    """Events tracked before, during and after a SIGKILL are all stored once: a request
    whose answer the crash lost is sent again with the same event ids."""
    server = server_factory(database_url)
    create_experiment(server)
    with Client(server.base_url, timeout=5.0, max_backoff=0.5, background_timeout=2.0) as client:
        answers = [client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(600)]
        assert not any(answer.fallback for answer in answers)

        def track(chunk: list[Assignment]) -> None:
            for index, answer in enumerate(chunk):
                client.track(answer, "contact")
                if index % 20 == 0:
                    time.sleep(0.005)

        tracker = threading.Thread(target=track, args=(answers[:300],))
        tracker.start()
        wait_until(lambda: client.stats().events_accepted > 0)
        server.kill9()  # while events are flowing
        tracker.join()
        track(answers[300:])  # while the server is down: queued, retried
        server = server_factory.restart(server)
        assert client.flush(timeout=30)
        stats = client.stats()

    assert stored_events(database_url, "contact") == Stored(600, 600, 600)
    assert stats.events_accepted + stats.events_duplicate == 600
    assert stats.retries > 0
    assert (stats.events_dropped, stats.events_rejected, stats.events_abandoned) == (0, 0, 0)


def test_a_full_queue_drops_counts_and_warns_without_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ranktune_client"):
        client = Client(dead_url(), max_queue=10, max_backoff=0.2)
        assert client.track(FORGED, "contact")
        wait_until(lambda: client.stats().retries >= 1)  # the worker holds it, retrying
        started = time.monotonic()
        offered = [client.track(FORGED, "contact") for _ in range(30)]
        tracking = time.monotonic() - started
        full = client.stats()
        started = time.monotonic()
        delivered = client.close(timeout=0.5)
        closing = time.monotonic() - started

    assert offered == [True] * 10 + [False] * 20
    assert tracking < 1.0  # dropping, not blocking (the worker retries for good)
    assert (full.events_queued, full.events_dropped, full.queued) == (11, 20, 11)
    drops = [record for record in caplog.records if "queue is full" in record.getMessage()]
    assert len(drops) == 1  # one warning, not one per dropped event
    assert not delivered and closing < 1.5
    wait_until(lambda: client_threads() == [])  # the worker counts what it gave up, and ends
    closed = client.stats()
    assert (closed.events_abandoned, closed.queued) == (11, 0)
    assert not client.track(FORGED, "contact")  # after close: dropped too
    assert client.stats().events_dropped == 21


def test_many_threads_share_one_client(sqlite_url: str, server_factory: ServerFactory) -> None:
    server = server_factory(sqlite_url)
    create_experiment(server)

    def user(client: Client, thread: int) -> int:
        served = 0
        for unit in range(50):
            answer = client.get_config(EXPERIMENT, f"thread-{thread}-user-{unit}")
            served += not answer.fallback
            client.track(answer, "contact", event_id=f"t{thread}-u{unit}")
        return served

    with Client(server.base_url, timeout=5.0) as client:
        with ThreadPoolExecutor(16) as pool:
            served = sum(pool.map(lambda thread: user(client, thread), range(16)))
        assert client.flush(timeout=30)
        stats = client.stats()

    assert served == stats.assignments == 800
    assert (stats.events_queued, stats.events_accepted, stats.events_dropped) == (800, 800, 0)
    assert stored_events(sqlite_url, "contact") == Stored(800, 800, 800)


def test_a_batch_over_the_servers_limit_is_split(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url, RANKTUNE_MAX_BATCH_EVENTS="50")
    create_experiment(server)
    with Client(server.base_url, timeout=5.0) as client:
        answers = [client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(120)]
        server.pause()  # the first event's request waits; the other 119 queue behind it
        try:
            for answer in answers:
                client.track(answer, "contact")
        finally:
            server.resume()
        assert client.flush(timeout=15)
        stats = client.stats()

    assert stored_events(sqlite_url, "contact") == Stored(120, 120, 120)
    assert stats.events_accepted == 120 and stats.events_rejected == 0
    assert stats.batch_limit <= 50


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"event_type": "Contact"}, "event_type"),
        ({"event_type": "exposure"}, "event_type"),
        ({"event_type": "contact", "count": 0}, "count"),
        ({"event_type": "contact", "count": 1001}, "count"),
        ({"event_type": "contact", "count": True}, "count"),
        ({"event_type": "contact", "event_id": "has space"}, "event_id"),
        ({"event_type": "contact", "event_id": "x" * 129}, "event_id"),
    ],
)
def test_events_the_server_would_refuse_raise_in_the_caller(
    arguments: dict[str, Any], field: str
) -> None:
    with Client(dead_url()) as client, pytest.raises(InvalidInput) as refused:
        client.track(FORGED, **arguments)
    assert refused.value.field == field and refused.value.local
    assert refused.value.detail.startswith(f"{field}: ")


def test_input_the_server_would_refuse_raises_before_anything_is_sent() -> None:
    """Without a server: the SDK checks what the server's 422s check. (The statuses the
    server answers, 401 and 403 included, are mapped in test_answers.py.)"""
    with Client(dead_url()) as client:
        for unit in ("", "u" * 257, "\ud800"):
            with pytest.raises(InvalidInput) as refused:
                client.get_config(EXPERIMENT, unit)
            assert refused.value.field == "unit" and refused.value.status == 422
            assert refused.value.local
        with pytest.raises(InvalidInput) as refused:
            client.get_config("x" * 65, "user-1")
        assert refused.value.field == "experiment"
        with pytest.raises(InvalidInput) as refused:
            client.track({"ticket": "abc"}, "contact")  # type: ignore[arg-type]
        assert refused.value.field == "assignment"
        assert client.stats().fallbacks == 0


def test_an_event_the_server_refuses_is_dropped_alone(live: ServerProcess, sqlite_url: str) -> None:
    with Client(live.base_url, timeout=5.0) as client:
        answers = [client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(6)]
        live.pause()  # so that the forged event travels in one batch with real ones
        try:
            client.track(answers[0], "contact")
            for answer in answers[1:3]:
                client.track(answer, "contact")
            client.track(FORGED, "contact")
            for answer in answers[3:]:
                client.track(answer, "contact")
        finally:
            live.resume()
        assert client.flush(timeout=10)
        stats = client.stats()

    assert (stats.events_accepted, stats.events_rejected, stats.retries) == (6, 1, 0)
    assert stored_events(sqlite_url, "contact") == Stored(6, 6, 6)


def test_a_conflicting_event_id_is_logged_and_never_retried(
    live: ServerProcess, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Client(live.base_url, timeout=5.0) as client:
        first, second = (client.get_config(EXPERIMENT, f"user-{unit}") for unit in (1, 2))
        client.track(first, "contact", event_id="order-1")
        assert client.flush(timeout=10)
        with caplog.at_level(logging.ERROR, logger="ranktune_client"):
            live.pause()  # order-2 waits in flight; the conflict and order-3 queue together
            try:
                client.track(second, "contact", event_id="order-2")
                client.track(first, "contact", count=2, event_id="order-1")  # another payload
                client.track(second, "view", event_id="order-3")
            finally:
                live.resume()
            assert client.flush(timeout=10)
        stats = client.stats()

    assert (stats.events_conflicted, stats.events_accepted, stats.retries) == (1, 3, 0)
    assert stored_events(sqlite_url, "contact") == Stored(2, 2, 2)
    assert stored_events(sqlite_url, "view") == Stored(1, 1, 1)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "order-1" in errors[0] and "not retried" in errors[0]


def test_exposures_are_sent_only_where_clients_count_them(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    create_experiment(server)
    create_experiment(server, name="client-counted", exposure_source="client")
    with Client(server.base_url, timeout=5.0) as fetcher:
        server_side = [fetcher.get_config(EXPERIMENT, f"user-{unit}") for unit in range(20)]
        client_side = [fetcher.get_config("client-counted", f"user-{unit}") for unit in range(20)]
    with Client(server.base_url) as client:
        # This client has cached neither snapshot yet: its worker finds out before sending.
        cold = [client.track_exposure(answer) for answer in server_side[:10] + client_side[:10]]
        assert client.flush(timeout=10)
        assert client.reference_config("client-counted") is not None
        # Now track_exposure knows; client_side[:10] again are the same exposures.
        warm = [client.track_exposure(answer) for answer in server_side[10:] + client_side]
        assert client.flush(timeout=10)
        stats = client.stats()

    assert cold == [True] * 20
    assert warm == [False] * 10 + [True] * 20
    assert stored_events(sqlite_url, "exposure", "client-counted") == Stored(20, 20, 20)
    assert stored_events(sqlite_url, "exposure", EXPERIMENT) == Stored(0, 0, 0)
    assert stats.exposures_skipped == 20
    assert (stats.events_accepted, stats.events_duplicate) == (20, 10)
