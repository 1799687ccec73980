"""What each answer means to the SDK, without a ranktune server: get_config against a stub
HTTP server that answers what the test says (statuses ranktune's client routes do not give
today, such as 401, included), and the event delivery's bookkeeping (sans I/O) answer by
answer."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ranktune_client import (
    SERVER_ERROR,
    UNKNOWN_EXPERIMENT,
    AsyncClient,
    Client,
    Forbidden,
    InvalidInput,
    RequestRefused,
    Unauthorized,
    UnsupportedMediaType,
)
from ranktune_client._cache import ReferenceCache
from ranktune_client._delivery import Backoff, BatchDelivery, BatchLimit
from ranktune_client._models import Counters
from ranktune_client._protocol import (
    MAX_RETRY_AFTER_S,
    QueuedEvent,
    Reference,
    events_body,
    exposure_event_id,
    new_event_id,
    retry_after_s,
)

DEFAULT = {"text_match": 1.0}


class Stub(ThreadingHTTPServer):
    """Answers every request with ``answer``: (status, body)."""

    answer: tuple[int, bytes] = (200, b"{}")
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    server: Stub

    def do_GET(self) -> None:
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def url(stub: Stub) -> str:
    return f"http://127.0.0.1:{stub.server_address[1]}"


def error(kind: str, detail: str, field: str) -> bytes:
    return json.dumps({"error": kind, "detail": detail, "field": field}).encode()


REFUSALS = [
    (401, error("Unauthorized", "Authorization: expected a key", "Authorization"), Unauthorized),
    (403, error("Forbidden", "Authorization: wrong key", "Authorization"), Forbidden),
    (422, error("ValidationError", "unit: expected at most 256 characters", "unit"), InvalidInput),
    (
        415,
        error("UnsupportedMediaType", "Content-Type: expected JSON", "Content-Type"),
        UnsupportedMediaType,
    ),
]


@pytest.mark.parametrize(("status", "body", "kind"), REFUSALS)
def test_explicit_refusals_raise_their_typed_error(
    stub: Stub, status: int, body: bytes, kind: type[RequestRefused]
) -> None:
    stub.answer = (status, body)
    answer = json.loads(body)
    with Client(url(stub)) as client, pytest.raises(kind) as refused:
        client.get_config("similar-items", "user-1", default=DEFAULT)
    assert (refused.value.status, refused.value.error) == (status, answer["error"])
    assert (refused.value.detail, refused.value.field) == (answer["detail"], answer["field"])
    assert not refused.value.local


def test_a_4xx_from_something_else_than_ranktune_raises_with_its_body(stub: Stub) -> None:
    stub.answer = (400, b"bad request from a proxy")
    with Client(url(stub)) as client, pytest.raises(RequestRefused) as refused:
        client.get_config("similar-items", "user-1")
    assert type(refused.value) is RequestRefused
    assert (refused.value.status, refused.value.detail) == (400, "bad request from a proxy")


FALLBACKS = [
    (404, error("NotFound", "experiment 'x' does not exist", "name"), UNKNOWN_EXPERIMENT),
    (500, b"Internal Server Error", SERVER_ERROR),
    (503, error("ServiceUnavailable", "busy", "connections"), SERVER_ERROR),
    (429, b"slow down", SERVER_ERROR),
    (408, b"", SERVER_ERROR),
    (200, b"<html>a captive portal</html>", SERVER_ERROR),
    (200, b'{"group": "target", "arm_id": 1, "config": {"a": 1}}', SERVER_ERROR),  # no ticket
    (200, b'{"group": "x", "arm_id": 1, "config": {"a": 1}, "ticket": "t"}', SERVER_ERROR),
    (200, b'{"group": "target", "arm_id": 1, "config": {"a": "1"}, "ticket": "t"}', SERVER_ERROR),
]


@pytest.mark.parametrize(("status", "body", "reason"), FALLBACKS)
def test_other_answers_fall_back(stub: Stub, status: int, body: bytes, reason: str) -> None:
    stub.answer = (status, body)
    with Client(url(stub)) as client:
        answer = client.get_config("similar-items", "user-1", default=DEFAULT)
        stats = client.stats()
    assert answer.fallback and answer.fallback_reason == reason and answer.config == DEFAULT
    assert stats.fallback_reasons[reason] == stats.fallbacks == 1 and stats.assignments == 0


@pytest.mark.parametrize(("status", "body", "kind"), REFUSALS[:2])
def test_the_async_client_raises_the_same_errors(
    stub: Stub, status: int, body: bytes, kind: type[RequestRefused]
) -> None:
    stub.answer = (status, body)

    async def ask() -> None:
        async with AsyncClient(url(stub)) as client:
            await client.get_config("similar-items", "user-1")

    with pytest.raises(kind):
        asyncio.run(ask())


@pytest.mark.parametrize(("status", "body", "reason"), FALLBACKS[:3])
def test_the_async_client_falls_back_the_same(
    stub: Stub, status: int, body: bytes, reason: str
) -> None:
    stub.answer = (status, body)

    async def ask() -> str | None:
        async with AsyncClient(url(stub)) as client:
            return (await client.get_config("similar-items", "u", default=DEFAULT)).fallback_reason

    assert asyncio.run(ask()) == reason


# -- event delivery, answer by answer --------------------------------------------------
def events(count: int, experiment: str = "similar-items") -> list[QueuedEvent]:
    return [QueuedEvent(f"ticket-{i}", "contact", 1, f"id-{i}", experiment) for i in range(count)]


class Delivery:
    """A BatchDelivery with its collaborators, for reading what it did."""

    def __init__(self, batch: list[QueuedEvent], limit: int = 1000) -> None:
        self.counters = Counters()
        self.cache = ReferenceCache(refresh_s=60.0)
        self.limit = BatchLimit(limit)
        self.backoff = Backoff(0.1, 30.0, random.Random(3))
        self.delivery = BatchDelivery(
            batch,
            cache=self.cache,
            counters=self.counters,
            backoff=self.backoff,
            limit=self.limit,
        )

    def count(self, name: str) -> int:
        return self.counters.get(name)


def accepted(accepted: int, duplicates: int = 0) -> bytes:
    return json.dumps({"accepted": accepted, "duplicates": duplicates}).encode()


def test_a_413_halves_the_part_and_the_batch_size() -> None:
    batch = events(5)
    d = Delivery(batch)
    part = d.delivery.next_part()
    assert part == batch
    assert d.delivery.answered(part, 413, {}, error("PayloadTooLarge", "events", "events")) == 0
    assert d.limit.size == 2
    first = d.delivery.next_part()
    assert first == batch[:2]
    d.delivery.answered(first, 200, {}, accepted(2))
    second = d.delivery.next_part()
    assert second == batch[2:]
    d.delivery.answered(second, 200, {}, accepted(2, 1))
    assert d.delivery.next_part() is None
    assert (d.count("events_accepted"), d.count("events_duplicate")) == (4, 1)
    assert d.count("events_rejected") == 0


def test_a_409_drops_the_event_it_names_and_sends_the_others_again() -> None:
    batch = events(4)
    d = Delivery(batch)
    part = d.delivery.next_part()
    assert part is not None
    body = error("Conflict", "events[1].event_id: 'id-1' was already stored", "events[1].event_id")
    assert d.delivery.answered(part, 409, {}, body) == 0
    again = d.delivery.next_part()
    assert again == [batch[0], batch[2], batch[3]]
    d.delivery.answered(again, 200, {}, accepted(3))
    assert d.delivery.next_part() is None
    assert (d.count("events_conflicted"), d.count("events_accepted"), d.count("retries")) == (
        1,
        3,
        0,
    )


def test_a_4xx_naming_no_event_drops_the_part() -> None:
    d = Delivery(events(3))
    part = d.delivery.next_part()
    assert part is not None
    d.delivery.answered(
        part, 401, {}, error("Unauthorized", "Authorization: missing", "Authorization")
    )
    assert d.delivery.next_part() is None
    assert d.count("events_rejected") == 3


def test_transient_answers_keep_the_part_and_back_off() -> None:
    batch = events(2)
    d = Delivery(batch)
    expected = Backoff(0.1, 30.0, random.Random(3))
    part = d.delivery.next_part()
    assert part is not None
    assert d.delivery.answered(part, 503, {}, b"") == expected.failure()
    assert d.delivery.failed() == expected.failure()  # a connection error
    assert d.delivery.answered(part, 429, {"retry-after": "7"}, b"") == expected.failure(7.0)
    assert d.delivery.next_part() == batch  # the same events, the same ids
    d.delivery.answered(part, 200, {}, accepted(2))
    assert d.count("retries") == 3 and d.backoff.failures == 0


def test_exposures_wait_for_the_experiments_exposure_source() -> None:
    exposure = [
        QueuedEvent("t1", "exposure", 1, exposure_event_id("t1"), "client-counted", True),
        QueuedEvent("t2", "exposure", 1, exposure_event_id("t2"), "server-counted", True),
        QueuedEvent("t3", "exposure", 1, exposure_event_id("t3"), "deleted", True),
    ]
    batch = [*exposure, *events(1)]
    d = Delivery(batch)
    part = d.delivery.next_part()
    assert part is not None
    assert d.delivery.missing_sources(part) == ["client-counted", "deleted", "server-counted"]
    d.cache.stored("client-counted", Reference({"a": 1}, 1, "client"), now=0.0)
    d.cache.stored("server-counted", Reference({"a": 1}, 1, "server"), now=0.0)
    d.cache.not_found("deleted", now=0.0)
    part = d.delivery.next_part()
    assert part == [exposure[0], batch[3]]
    assert d.delivery.missing_sources(part) == []
    assert (d.count("exposures_skipped"), d.count("events_rejected")) == (1, 1)


def test_abandon_counts_what_is_left() -> None:
    d = Delivery(events(5))
    part = d.delivery.next_part()
    assert part is not None
    d.delivery.answered(part, 413, {}, b"")
    assert d.delivery.abandon() == 5
    assert d.delivery.next_part() is None and d.count("events_abandoned") == 5


# -- the pieces ------------------------------------------------------------------------
def test_backoff_doubles_with_jitter_up_to_its_cap_and_honours_retry_after() -> None:
    backoff = Backoff(0.1, 1.0, random.Random(11))
    delays = [backoff.failure() for _ in range(6)]
    rng = random.Random(11)
    expected = [c / 2 + rng.uniform(0, c / 2) for c in (0.1, 0.2, 0.4, 0.8, 1.0, 1.0)]
    assert delays == expected
    # Retry-After: at least that long, plus up to ``base`` of jitter.
    again = Backoff(0.1, 1.0, random.Random(5))
    reference = random.Random(5)
    ceiling = 0.1
    exponential = ceiling / 2 + reference.uniform(0, ceiling / 2)
    assert again.failure(retry_after=5.0) == max(exponential, 5.0 + reference.uniform(0, 0.1))
    again.success()
    assert again.failures == 0


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=10), usegmt=True)
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": later}, now=now.timestamp()) == 10.0
    assert retry_after_s({"retry-after": "86400"}) == MAX_RETRY_AFTER_S
    assert retry_after_s({"retry-after": "-5"}) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_event_ids_are_unique_and_exposure_ids_stable() -> None:
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert exposure_event_id("ticket-a") == exposure_event_id("ticket-a")
    assert exposure_event_id("ticket-a") != exposure_event_id("ticket-b")
    body = json.loads(events_body(events(2)))
    assert body == {
        "events": [
            {"ticket": "ticket-0", "type": "contact", "count": 1, "event_id": "id-0"},
            {"ticket": "ticket-1", "type": "contact", "count": 1, "event_id": "id-1"},
        ]
    }
