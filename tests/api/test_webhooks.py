"""Webhooks: notifications POSTed to a real HTTP receiver, on SQLite and on PostgreSQL.

The receiver is ``http.server`` on an ephemeral port in a thread of the test; each path
answers a scripted series of statuses (then 200), and ``/slow`` answers only after the
deliverer's timeout. Deliveries are driven by ``WebhookDeliverer.run_once(now=...)`` with
a clock the test sets, so retries and backoff are checked without sleeping: a retried
delivery is not due before its ``next_attempt_at`` and is due at it. The signature is
recomputed here with ``hmac`` from the raw body the receiver got.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db import make_engine, make_session_factory
from api.deliverer import BATCH, WebhookDeliverer
from api.enums import NotificationKind
from api.models import Webhook, WebhookDelivery
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.notifications import notify
from tests.api.helpers import ADMIN, assert_error_shape, create
from tests.conftest import ClientFactory, settings_for

SECRET = "a-test-secret-of-32-characters!!"
# Small backoff (the clock is the test's anyway) and a timeout the slow path exceeds.
FAST = {"webhook_timeout_s": 0.3, "webhook_backoff_s": 1.0, "webhook_max_backoff_s": 10.0}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


class Receiver:
    """A real HTTP server: records every POST, answers each path's scripted statuses in
    order (then 200); ``/slow`` answers only when released (after the client gave up)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.received: list[Received] = []
        self.script: dict[str, list[int]] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    statuses = receiver.script.get(self.path, [])
                    status = statuses.pop(0) if statuses else 200
                if self.path == "/slow":
                    receiver.release.wait(10)
                elif delay_s:
                    time.sleep(delay_s)  # keeps two deliverers' sends overlapping
                answer = f"answer {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [request for request in self.received if request.path == path]


@contextmanager
def receiving(delay_s: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(delay_s)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


@pytest.fixture
def fast_client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client(**FAST) as client:
        yield client


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def add_webhook(client: TestClient, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def notify_now(
    client: TestClient, experiment: str | None, kind: NotificationKind, payload: dict[str, Any]
) -> int:
    """What the deciders do: notify() in a transaction of theirs; the notification's id."""
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        experiment_id = None
        if experiment is not None:
            experiment_id = client.get(f"/v1/experiments/{experiment}", headers=ADMIN).json()["id"]
        return notify(session, experiment_id, kind, payload).id


def log(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/webhooks/deliveries", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def drain(deliverer: WebhookDeliverer, now: datetime | None = None) -> int:
    """Run the deliverer until nothing is due at ``now``; deliveries claimed."""
    total = 0
    while claimed := deliverer.run_once(now):
        total += claimed
    return total


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- delivery ------------------------------------------------------------------------------
def test_a_notification_is_posted_once_signed_with_the_webhook_secret(
    client: TestClient, receiver: Receiver
) -> None:
    create(client, name="signed")
    hook = add_webhook(client, receiver.url("/hook"), experiment="signed", secret=SECRET)
    assert hook["secret"] == SECRET and hook["secret_hint"] == "...rs!!"
    payload = {"arm_id": 3, "lift": 0.12, "note": "é ✓"}
    notification_id = notify_now(client, "signed", NotificationKind.WINNER, payload)

    assert drain(runtime_of(client).deliverer) == 1
    (request,) = receiver.received
    (delivery,) = log(client)
    assert request.path == "/hook"
    assert request.headers["X-Ranktune-Signature"] == expected_signature(SECRET, request.body)
    assert request.headers["X-Ranktune-Delivery"] == str(delivery["id"])
    assert request.headers["X-Ranktune-Event"] == "winner"
    assert request.headers["Content-Type"] == "application/json"
    document = request.json()
    assert set(document) == {"id", "kind", "experiment", "created_at", "payload"}
    assert document["id"] == delivery["id"]
    assert (document["kind"], document["experiment"], document["payload"]) == (
        "winner",
        "signed",
        payload,
    )
    assert at(document["created_at"]) == at(delivery["created_at"])
    assert delivery["notification_id"] == notification_id
    assert delivery["status"] == "delivered"
    assert (delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (
        1,
        200,
        None,
    )
    assert delivery["next_attempt_at"] is None and delivery["finished_at"] is not None
    # Delivered once: later rounds send nothing.
    assert drain(runtime_of(client).deliverer, now_utc() + timedelta(days=1)) == 0
    assert len(receiver.received) == 1


def test_retries_on_5xx_and_429_with_backoff_then_delivers(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    receiver.script["/flaky"] = [500, 429]
    with make_client(**FAST) as client:
        add_webhook(client, receiver.url("/flaky"), secret=SECRET)
        notify_now(client, None, NotificationKind.SRM, {"p_value": 1e-5})
        deliverer = runtime_of(client).deliverer
        first = now_utc()

        assert deliverer.run_once(first) == 1
        (delivery,) = log(client)
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
            "pending",
            1,
            500,
        )
        assert delivery["last_error"] == "HTTP 500: answer 500"
        retry = at(delivery["next_attempt_at"])
        # 1st wait: between half the backoff (1 s) and all of it.
        assert 0.5 <= (retry - first).total_seconds() <= 1.0
        assert deliverer.run_once(retry - timedelta(milliseconds=1)) == 0  # not yet due

        assert deliverer.run_once(retry) == 1
        (delivery,) = log(client)
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
            "pending",
            2,
            429,
        )
        second_retry = at(delivery["next_attempt_at"])
        # 2nd wait: the backoff doubled, with the same jitter.
        assert 1.0 <= (second_retry - retry).total_seconds() <= 2.0

        assert deliverer.run_once(second_retry) == 1
        (delivery,) = log(client)
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
            "delivered",
            3,
            200,
        )
    # Every attempt sent the same delivery: same id, same bytes, a valid signature.
    requests = receiver.at("/flaky")
    assert len(requests) == 3
    assert {request.body for request in requests} == {requests[0].body}
    assert {request.headers["X-Ranktune-Delivery"] for request in requests} == {str(delivery["id"])}
    for request in requests:
        assert request.headers["X-Ranktune-Signature"] == expected_signature(SECRET, request.body)


def test_a_4xx_fails_the_delivery_for_good(fast_client: TestClient, receiver: Receiver) -> None:
    receiver.script["/gone"] = [410]
    add_webhook(fast_client, receiver.url("/gone"))
    notify_now(fast_client, None, NotificationKind.PHASE_CHANGED, {"phase": 2})

    assert drain(runtime_of(fast_client).deliverer) == 1
    (delivery,) = log(fast_client)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "failed",
        1,
        410,
    )
    assert delivery["last_error"] == "HTTP 410: answer 410"
    assert delivery["next_attempt_at"] is None
    assert drain(runtime_of(fast_client).deliverer, now_utc() + timedelta(days=1)) == 0
    assert len(receiver.at("/gone")) == 1


def test_400_fails_and_a_redirect_is_not_followed(
    fast_client: TestClient, receiver: Receiver
) -> None:
    receiver.script["/bad"] = [400]
    receiver.script["/moved"] = [307]
    add_webhook(fast_client, receiver.url("/bad"))
    add_webhook(fast_client, receiver.url("/moved"))
    notify_now(fast_client, None, NotificationKind.CIRCUIT_BREAKER, {})
    assert drain(runtime_of(fast_client).deliverer) == 2
    by_url = {row["webhook_id"]: row for row in log(fast_client)}
    outcomes = sorted((row["status"], row["last_status_code"]) for row in by_url.values())
    assert outcomes == [("failed", 307), ("failed", 400)]
    assert len(receiver.received) == 2


def test_a_timeout_and_a_refused_connection_are_retried(
    fast_client: TestClient, receiver: Receiver
) -> None:
    slow = add_webhook(fast_client, receiver.url("/slow"))
    # A port nothing listens on: bind one, close it.
    with receiving() as closed:
        nowhere = closed.url("/nowhere")
    refused = add_webhook(fast_client, nowhere)
    notify_now(fast_client, None, NotificationKind.GUARDRAIL_TRIPPED, {"metric": "bounce"})

    assert drain(runtime_of(fast_client).deliverer) == 2
    rows = {row["webhook_id"]: row for row in log(fast_client)}
    timed_out, unreachable = rows[slow["id"]], rows[refused["id"]]
    assert (timed_out["status"], timed_out["attempts"], timed_out["last_status_code"]) == (
        "pending",
        1,
        None,
    )
    assert timed_out["last_error"] == "timed out waiting for the answer (0.3 s)"
    assert (unreachable["status"], unreachable["attempts"]) == ("pending", 1)
    assert unreachable["last_error"].startswith("connection failed")
    assert len(receiver.at("/slow")) == 1


def test_out_of_attempts_is_failed(make_client: ClientFactory, receiver: Receiver) -> None:
    receiver.script["/down"] = [503, 503, 503]
    with make_client(**FAST, webhook_max_attempts=2) as client:
        add_webhook(client, receiver.url("/down"))
        notify_now(client, None, NotificationKind.SRM, {})
        deliverer = runtime_of(client).deliverer
        deliverer.run_once()
        (delivery,) = log(client)
        deliverer.run_once(at(delivery["next_attempt_at"]))
        (delivery,) = log(client)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "failed",
        2,
        503,
    )
    assert delivery["last_error"] == "HTTP 503: answer 503; gave up after 2 attempts"
    assert len(receiver.at("/down")) == 2


# -- which webhooks hear what --------------------------------------------------------------
def test_webhooks_match_by_experiment_and_kind(client: TestClient, receiver: Receiver) -> None:
    create(client, name="one")
    create(client, name="two")
    add_webhook(client, receiver.url("/one-all"), experiment="one")
    add_webhook(client, receiver.url("/two-winner"), experiment="two", events=["winner"])
    add_webhook(client, receiver.url("/global-srm-winner"), events=["srm", "winner", "srm"])
    add_webhook(client, receiver.url("/global-all"))
    deleted = add_webhook(client, receiver.url("/deleted"))
    assert client.delete(f"/v1/webhooks/{deleted['id']}", headers=ADMIN).status_code == 200
    sent = [
        ("one", NotificationKind.WINNER),
        ("one", NotificationKind.SRM),
        ("two", NotificationKind.WINNER),
        ("two", NotificationKind.GUARDRAIL_TRIPPED),
        (None, NotificationKind.PHASE_CHANGED),
    ]
    for experiment, kind in sent:
        notify_now(client, experiment, kind, {"n": 1})
    # Created after those notifications: it hears none of them.
    add_webhook(client, receiver.url("/late"))

    assert drain(runtime_of(client).deliverer) == 11
    heard = {(r.path, r.json()["experiment"], r.json()["kind"]) for r in receiver.received}
    assert heard == {
        ("/one-all", "one", "winner"),
        ("/one-all", "one", "srm"),
        ("/two-winner", "two", "winner"),
        ("/global-srm-winner", "one", "winner"),
        ("/global-srm-winner", "one", "srm"),
        ("/global-srm-winner", "two", "winner"),
        ("/global-all", "one", "winner"),
        ("/global-all", "one", "srm"),
        ("/global-all", "two", "winner"),
        ("/global-all", "two", "guardrail_tripped"),
        ("/global-all", None, "phase_changed"),
    }
    assert len(receiver.received) == len(heard)


def test_delete_cancels_what_is_pending_and_keeps_the_history(
    client: TestClient, receiver: Receiver
) -> None:
    create(client, name="audited")
    hook = add_webhook(client, receiver.url("/hook"), experiment="audited", secret=SECRET)
    notify_now(client, "audited", NotificationKind.WINNER, {})
    response = client.delete(f"/v1/webhooks/{hook['id']}", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False and response.json()["deactivated_at"]
    again = client.delete(f"/v1/webhooks/{hook['id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json() == response.json()

    assert drain(runtime_of(client).deliverer) == 0
    assert receiver.received == []
    (delivery,) = log(client, webhook=hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("cancelled", 0)
    (listed,) = client.get("/v1/webhooks", headers=ADMIN).json()
    assert listed["active"] is False and "secret" not in listed
    assert listed["secret_hint"] == "..." + SECRET[-4:]
    audit = client.get("/v1/audit", params={"experiment": "audited"}, headers=ADMIN).json()
    actions = {entry["action"]: entry["details"] for entry in audit}
    assert actions["webhook.create"]["webhook_id"] == hook["id"]
    assert actions["webhook.delete"] == {
        "webhook_id": hook["id"],
        "url": hook["url"],
        "cancelled": 1,
    }
    assert SECRET not in json.dumps(audit)


def test_a_webhook_deleted_while_its_delivery_is_queued_is_not_sent(
    fast_client: TestClient, receiver: Receiver
) -> None:
    """A notification that committed as the webhook was deleted: its delivery row names an
    inactive webhook, and the deliverer cancels it instead of sending it."""
    hook = add_webhook(fast_client, receiver.url("/hook"))
    runtime = runtime_of(fast_client)
    notify_now(fast_client, None, NotificationKind.SRM, {})
    with runtime.transaction() as session:  # deactivated without the cancelling step
        webhook = session.get(Webhook, hook["id"])
        assert webhook is not None
        webhook.active = False
    assert drain(runtime.deliverer) == 1
    (delivery,) = log(fast_client)
    assert (delivery["status"], delivery["last_error"]) == ("cancelled", "the webhook was deleted")
    assert receiver.received == []


def test_ping_reaches_only_the_tested_webhook(client: TestClient, receiver: Receiver) -> None:
    tested = add_webhook(client, receiver.url("/tested"), events=["winner"], secret=SECRET)
    add_webhook(client, receiver.url("/other"))
    response = client.post(f"/v1/webhooks/{tested['id']}/test", headers=ADMIN)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert (queued["status"], queued["kind"], queued["webhook_id"]) == (
        "pending",
        "ping",
        tested["id"],
    )

    assert drain(runtime_of(client).deliverer) == 1
    (request,) = receiver.received
    assert request.path == "/tested"
    assert request.headers["X-Ranktune-Event"] == "ping"
    assert request.headers["X-Ranktune-Signature"] == expected_signature(SECRET, request.body)
    assert request.json()["payload"]["webhook_id"] == tested["id"]
    assert log(client, webhook=tested["id"])[0]["status"] == "delivered"
    audit = client.get("/v1/audit", headers=ADMIN).json()
    assert {"webhook_id": tested["id"], "delivery_id": queued["id"]} in [
        entry["details"] for entry in audit if entry["action"] == "webhook.test"
    ]

    client.delete(f"/v1/webhooks/{tested['id']}", headers=ADMIN)
    deleted = client.post(f"/v1/webhooks/{tested['id']}/test", headers=ADMIN)
    assert deleted.status_code == 409
    assert_error_shape(deleted.json(), "Conflict", "webhook_id")


# -- logs ----------------------------------------------------------------------------------
def test_the_delivery_log_filters_and_pages(client: TestClient, receiver: Receiver) -> None:
    create(client, name="logged")
    receiver.script["/refuses"] = [403]
    accepts = add_webhook(client, receiver.url("/accepts"))
    refuses = add_webhook(client, receiver.url("/refuses"), experiment="logged")
    notify_now(client, "logged", NotificationKind.WINNER, {"arm_id": 1})
    notify_now(client, None, NotificationKind.SRM, {})
    drain(runtime_of(client).deliverer)

    everything = log(client)
    assert [row["id"] for row in everything] == sorted((r["id"] for r in everything), reverse=True)
    assert len(everything) == 3
    assert {row["webhook_id"] for row in log(client, webhook=refuses["id"])} == {refuses["id"]}
    assert len(log(client, webhook=accepts["id"])) == 2
    assert {(row["experiment"], row["kind"]) for row in log(client, experiment="logged")} == {
        ("logged", "winner")
    }
    (failed,) = log(client, status="failed")
    assert (failed["webhook_id"], failed["last_status_code"], failed["payload"]) == (
        refuses["id"],
        403,
        {"arm_id": 1},
    )
    assert len(log(client, status="delivered")) == 2
    first_page = log(client, limit=2)
    assert first_page == everything[:2]
    assert log(client, before=first_page[-1]["id"]) == everything[2:]

    for params, field in [
        ({"webhook": 999}, "webhook"),
        ({"experiment": "nope"}, "experiment"),
    ]:
        response = client.get("/v1/webhooks/deliveries", params=params, headers=ADMIN)
        assert response.status_code == 404, response.text
        assert_error_shape(response.json(), "NotFound", field)
    response = client.get("/v1/webhooks/deliveries", params={"status": "lost"}, headers=ADMIN)
    assert response.status_code == 422
    assert_error_shape(response.json(), "ValidationError", "status")


def test_the_outbox_lists_notifications_with_or_without_webhooks(client: TestClient) -> None:
    create(client, name="quiet")
    first = notify_now(client, "quiet", NotificationKind.GUARDRAIL_TRIPPED, {"metric": "m"})
    second = notify_now(client, None, NotificationKind.PHASE_CHANGED, {"phase": 2})

    def outbox(**params: Any) -> list[dict[str, Any]]:
        response = client.get("/v1/notifications", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    assert [(n["id"], n["experiment"], n["kind"]) for n in outbox()] == [
        (second, None, "phase_changed"),
        (first, "quiet", "guardrail_tripped"),
    ]
    assert [n["id"] for n in outbox(experiment="quiet")] == [first]
    assert [n["payload"] for n in outbox(kind="phase_changed")] == [{"phase": 2}]
    assert [n["id"] for n in outbox(limit=1)] == [second]
    assert log(client) == []  # no webhook: nothing to deliver
    response = client.get("/v1/notifications", params={"kind": "email"}, headers=ADMIN)
    assert response.status_code == 422
    assert_error_shape(response.json(), "ValidationError", "kind")


# -- validation ----------------------------------------------------------------------------
BAD_URLS = {
    "not-a-url": "not a url",
    "ftp": "ftp://example.com/hook",
    "javascript": "javascript:alert(1)",
    "no-host": "http:///hook",
    "credentials": "https://user:password@example.com/hook",
    "bad-port": "http://example.com:99999/hook",
    "space": "http://example.com/a hook",
    "non-ascii": "http://exämple.com/hook",
    "fragment": "http://example.com/hook#part",
    "too-long": "http://example.com/" + "a" * 2048,
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_a_bad_url_is_422_naming_url(sqlite_client: TestClient, url: str) -> None:
    response = sqlite_client.post("/v1/webhooks", json={"url": url}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", "url")
    assert sqlite_client.get("/v1/webhooks", headers=ADMIN).json() == []


BAD_FIELDS = {
    "unknown-experiment": ({"experiment": "missing"}, "experiment"),
    "bad-experiment-name": ({"experiment": "Not A Slug"}, "experiment"),
    "no-kinds": ({"events": []}, "events"),
    "unknown-kind": ({"events": ["winner", "email"]}, "events[1]"),
    "short-secret": ({"secret": "short"}, "secret"),
    "secret-with-space": ({"secret": "sixteen chars or more"}, "secret"),
    "unknown-field": ({"headers": {"X": "1"}}, "headers"),
}


@pytest.mark.parametrize(("fields", "field"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_fields_are_422_naming_them(
    sqlite_client: TestClient, fields: dict[str, Any], field: str
) -> None:
    body = {"url": "https://example.com/hook", **fields}
    response = sqlite_client.post("/v1/webhooks", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)


def test_unknown_webhooks_are_404_and_the_token_is_required(sqlite_client: TestClient) -> None:
    for method, path in [("DELETE", "/v1/webhooks/7"), ("POST", "/v1/webhooks/7/test")]:
        response = sqlite_client.request(method, path, headers=ADMIN)
        assert response.status_code == 404, response.text
        assert_error_shape(response.json(), "NotFound", "webhook_id")
    for method, path in [
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks/deliveries"),
        ("GET", "/v1/notifications"),
    ]:
        assert sqlite_client.request(method, path).status_code == 401


def test_a_generated_secret_is_shown_once(sqlite_client: TestClient) -> None:
    created = add_webhook(sqlite_client, "https://example.com/hook")
    secret = created["secret"]
    assert len(secret) >= 32 and created["secret_hint"] == "..." + secret[-4:]
    (listed,) = sqlite_client.get("/v1/webhooks", headers=ADMIN).json()
    assert secret not in json.dumps(listed)
    assert {key: value for key, value in created.items() if key != "secret"} == listed
    assert listed["experiment"] is None and listed["events"] is None


# -- the deliverer thread and replicas -----------------------------------------------------
def test_the_runtime_delivers_in_the_background(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    with make_client(scheduler_enabled=True, webhook_poll_s=0.05) as client:
        hook = add_webhook(client, receiver.url("/background"))
        client.post(f"/v1/webhooks/{hook['id']}/test", headers=ADMIN)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and log(client)[0]["status"] != "delivered":
            time.sleep(0.05)
        assert log(client)[0]["status"] == "delivered"
    assert len(receiver.at("/background")) == 1


def test_two_deliverers_on_one_database_send_each_delivery_once(database_url: str) -> None:
    """Two replicas' deliverers (each its own engine) drain the same deliveries at once:
    every delivery reaches its receiver exactly once, and both deliverers took a share."""
    notifications = 30
    # A generous timeout: this test is about claiming, and on a loaded machine a send could
    # time out before reaching the receiver (then it waits for its retry, beyond drain()).
    settings = settings_for(database_url, **{**FAST, "webhook_timeout_s": 10.0})
    engines = [make_engine(database_url) for _ in range(2)]
    with receiving(delay_s=0.02) as receiver:
        factories = [make_session_factory(engine) for engine in engines]
        with factories[0]() as session, session.begin():
            for path in ("/a", "/b"):
                url = receiver.url(path)
                session.add(Webhook(url=url, secret=SECRET, active=True, created_at=now_utc()))
            session.flush()
            for number in range(notifications):
                notify(session, None, NotificationKind.WINNER, {"number": number})
        deliverers = [
            WebhookDeliverer(
                factory,
                make_session_factory(engine, read_only=True),
                settings,
                replica=f"replica-{index}",
            )
            for index, (factory, engine) in enumerate(zip(factories, engines, strict=True))
        ]
        start = threading.Barrier(2)
        claimed = [0, 0]

        def work(index: int) -> None:
            start.wait()
            claimed[index] = drain(deliverers[index])

        threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [request.headers["X-Ranktune-Delivery"] for request in receiver.received]
    with factories[0]() as session:
        rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.status)).all()
    for engine in engines:
        engine.dispose()

    assert len(rows) == 2 * notifications
    assert sorted(ids) == sorted(str(delivery_id) for delivery_id, _ in rows)  # each once
    assert {status for _, status in rows} == {"delivered"}
    assert sum(claimed) == 2 * notifications
    assert min(claimed) >= BATCH, claimed  # both took part
