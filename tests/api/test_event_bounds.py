"""What a client can credit is bounded by what the server served (api.limits, api.services.events).

Each ticket credits at most ``max_events_per_exposure`` events of each type (default 1); the
rest is stored, acknowledged, counted once and quarantined: the tick reports it and the arm
keeps a total. Tickets expire after the experiment's attribution window, cannot come from
the future, and have one spelling. Events for retired arms, or arriving while the
experiment is paused or stopped, are stored but never credited.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from api.app import create_app
from api.models import Event, TicketCredit
from api.pending import PendingRow
from api.tickets import TicketSigner, key_before
from tests.api.helpers import (
    ADMIN,
    assert_error_shape,
    assign,
    create,
    event,
    inspect,
    post_events,
    tick,
    tickets_by_arm,
)
from tests.conftest import ClientFactory, settings_for, similar_items
from tests.pending import insert_pending, pending_totals

# The defaults (one event of each type per ticket), not the tests' generous fixture.
DEFAULT_LIMITS: dict[str, Any] = {"max_events_per_exposure": None}


def signer_of(client: TestClient) -> TicketSigner:
    signer: TicketSigner = client.app.state.runtime.signer  # type: ignore[attr-defined]
    return signer


def arm_of(client: TestClient, arm_id: int) -> dict[str, Any]:
    return next(arm for arm in inspect(client)["arms"] if arm["id"] == arm_id)


def stored(database_url: str, column: Any, **where: Any) -> list[Any]:
    """One column of the stored events (in storage order) that match ``where``."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(column).order_by(Event.id)
            for name, value in where.items():
                query = query.where(getattr(Event, name) == value)
            return list(connection.scalars(query))
    finally:
        engine.dispose()


def pending_rows(database_url: str, event_type: str | None = None) -> int:
    """How many keys (of this type) have pending counts."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            keys = pending_totals(connection)
            return sum(1 for key in keys if event_type is None or key[3] == event_type)
    finally:
        engine.dispose()


# -- per-ticket limits ---------------------------------------------------------------------
def test_a_ticket_credits_one_contact_by_default_and_quarantines_the_rest(
    client: TestClient, database_url: str
) -> None:
    created = create(client, **DEFAULT_LIMITS)
    assert created["max_events_per_exposure"] == {"*": 1, "exposure": 1}
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    answer = post_events(
        client,
        [
            event(tickets[arm], "c1", count=3),
            event(tickets[arm], "c2"),
            event(tickets[created["reference_arm_id"]], "r1"),
        ],
    )
    assert answer == {"accepted": 3, "duplicates": 0}  # stored and acknowledged, all of it
    # The first event credits 1 of its 3, the second nothing: in request order.
    credited = dict(
        zip(
            stored(database_url, Event.event_id, type="contact"),
            stored(database_url, Event.credited, type="contact"),
            strict=True,
        )
    )
    assert credited == {"c1": 1, "c2": 0, "r1": 1}
    window = tick(client)
    assert window["applied"] is True
    assert window["target_events"] == 1 and window["reference_events"] == 1
    assert window["quarantined_events"] == 3
    assert window["uncredited"] == {"over_ticket_limit": {"contact": 3}}
    row = next(row for row in window["arms"] if row["arm_id"] == arm)
    assert (row["target_events"], row["quarantined_events"], row["alpha_increment"]) == (1, 3, 1)
    assert arm_of(client, arm)["quarantined_events"] == 3
    # A retry of the same events is a duplicate: it neither credits nor quarantines again.
    assert post_events(client, [event(tickets[arm], "c2")]) == {"accepted": 0, "duplicates": 1}


def test_the_limit_is_per_type_and_configurable(client: TestClient) -> None:
    created = create(client, max_events_per_exposure={"contact": 2, "*": 5})
    assert created["max_events_per_exposure"] == {"*": 5, "exposure": 1, "contact": 2}
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    post_events(
        client,
        [
            event(tickets[arm], "c", count=3),
            event(tickets[arm], "v", "view", count=7),
            event(tickets[created["reference_arm_id"]], "r"),
        ],
    )
    window = tick(client)
    assert window["target_events"] == 2
    assert window["uncredited"] == {"over_ticket_limit": {"contact": 1, "view": 2}}
    assert window["quarantined_events"] == 1  # only the target event counts as quarantined


def test_the_limit_holds_across_requests_and_replicas_racing(
    make_client: ClientFactory, database_url: str
) -> None:
    """Two replicas (two apps on one database) post contacts on one ticket at once: the
    ticket still credits exactly its limit (the upsert on ticket_credits is atomic)."""
    limit = 3
    with make_client() as first, make_client() as second:
        create(first, max_events_per_exposure={"contact": limit})
        second.app.state.runtime.serving.refresh(second.app.state.runtime.session_factory)  # type: ignore[attr-defined]
        ticket = assign(first, "user-1")["ticket"]
        barrier = threading.Barrier(2)
        errors: list[str] = []

        def post(client: TestClient, name: str) -> None:
            barrier.wait()
            for index in range(20):
                answer = client.post(
                    "/v1/events", json={"events": [event(ticket, f"{name}-{index}")]}
                )
                if answer.status_code != 200:
                    errors.append(answer.text)

        threads = [
            threading.Thread(target=post, args=(first, "a")),
            threading.Thread(target=post, args=(second, "b")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    credited = stored(database_url, Event.credited, type="contact")
    assert len(credited) == 40 and sum(credited) == limit


def test_server_counted_exposures_are_credited_whole(client: TestClient) -> None:
    created = create(client, **DEFAULT_LIMITS)
    for unit in range(200):
        assign(client, f"user-{unit}")
    window = tick(client)
    assert window["reference_exposures"] + window["target_exposures"] == 200
    assert window["uncredited"] == {} and window["quarantined_events"] == 0
    assert created["exposure_source"] == "server"


def test_client_exposures_credit_one_per_ticket(client: TestClient) -> None:
    created = create(client, exposure_source="client", **DEFAULT_LIMITS)
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    post_events(
        client,
        [
            event(tickets[arm], "e1", "exposure", count=5),
            event(tickets[created["reference_arm_id"]], "e2", "exposure"),
        ],
    )
    window = tick(client)
    assert window["target_exposures"] == 1 and window["reference_exposures"] == 1
    assert window["uncredited"] == {"over_ticket_limit": {"exposure": 4}}


def test_contacts_beyond_an_arms_exposures_are_quarantined_at_the_tick(client: TestClient) -> None:
    """Client-counted exposures: contacts reported for exposures that were never reported
    exceed the arm's exposures times the limit; the tick quarantines the excess."""
    created = create(client, exposure_source="client", max_events_per_exposure={"contact": 1})
    reference = created["reference_arm_id"]
    arm = created["arms"][1]["id"]
    served = {reference: [], arm: []}  # type: dict[int, list[str]]
    for unit in range(400):
        answer = assign(client, f"user-{unit}")
        if answer["arm_id"] in served:
            served[answer["arm_id"]].append(answer["ticket"])
    assert len(served[arm]) >= 6 and len(served[reference]) >= 2
    events = [event(served[reference][0], "r-exposure", "exposure")]
    events += [event(served[arm][0], "a-exposure", "exposure")]
    events += [event(served[arm][i], f"a-contact-{i}") for i in range(5)]
    post_events(client, events)
    window = tick(client)
    row = next(row for row in window["arms"] if row["arm_id"] == arm)
    # One exposure of the arm allows one contact; the other four are quarantined.
    assert (row["exposures"], row["target_events"], row["quarantined_events"]) == (1, 1, 4)
    assert window["uncredited"] == {"over_exposure_limit": {"contact": 4}}
    # Later exposures make room again (the bound is over the arm's history).
    post_events(
        client,
        [event(served[arm][i], f"late-exposure-{i}", "exposure") for i in range(1, 6)]
        + [event(served[reference][1], "r-exposure-2", "exposure")]
        + [event(served[arm][5], "late-contact")],
    )
    row = next(row for row in tick(client)["arms"] if row["arm_id"] == arm)
    assert (row["exposures"], row["target_events"], row["quarantined_events"]) == (5, 1, 0)


# -- tickets -------------------------------------------------------------------------------
def test_every_assignment_gets_its_own_ticket(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    tickets = [assign(sqlite_client, "same-user")["ticket"] for _ in range(50)]
    assert len(set(tickets)) == 50
    assert all(len(ticket) == 52 for ticket in tickets)


def test_expired_and_future_tickets_are_refused_with_422(client: TestClient) -> None:
    created = create(client, attribution_window_s=3600)
    arm = created["arms"][1]["id"]
    signer = signer_of(client)
    now = time.time()
    cases = {
        "expired": signer.issue(created["id"], arm, "target", now=now - 3700),
        "1970": signer.issue(created["id"], arm, "target", now=0),
        "future": signer.issue(created["id"], arm, "target", now=now + 3600),
        "2100": signer.issue(created["id"], arm, "target", now=4_102_444_800),
    }
    for name, ticket in cases.items():
        response = client.post("/v1/events", json={"events": [event(ticket, f"{name}-1")]})
        assert response.status_code == 422, (name, response.text)
        assert_error_shape(response.json(), "ValidationError", "events[0].ticket")
        expected = "expired" if name in ("expired", "1970") else "issued in the future"
        assert expected in response.json()["detail"], response.json()
    # Within the window (and within the allowed clock skew) it counts.
    fresh = signer.issue(created["id"], arm, "target", now=now - 3500)
    skewed = signer.issue(created["id"], arm, "target", now=now + 30)
    assert post_events(client, [event(fresh, "ok-1"), event(skewed, "ok-2")])["accepted"] == 2


def test_a_ticket_has_one_spelling(client: TestClient) -> None:
    create(client)
    ticket = assign(client, "user-1")["ticket"]
    assert post_events(client, [event(ticket, "once")]) == {"accepted": 1, "duplicates": 0}
    raw = base64.urlsafe_b64decode(ticket)
    variants = [
        ticket + "=",
        ticket + "==",
        base64.b64encode(raw).decode(),  # the standard alphabet: differs when +/ appear
        " " + ticket,
        ticket.lower(),
    ]
    for variant in {v for v in variants if v != ticket}:
        response = client.post("/v1/events", json={"events": [event(variant, "once")]})
        assert response.status_code == 422, (variant, response.text)
        assert_error_shape(response.json(), "ValidationError", "events[0].ticket")
    # The retry with the real ticket is a duplicate, not a conflict.
    assert post_events(client, [event(ticket, "once")]) == {"accepted": 0, "duplicates": 1}


def test_tickets_of_the_previous_format_are_refused(sqlite_client: TestClient) -> None:
    """Round one's tickets (29 bytes, no serial) cannot be bounded per ticket."""
    import hashlib
    import hmac
    import struct

    created = create(sqlite_client)
    key = signer_of(sqlite_client)._key
    payload = struct.pack(">IIBI", created["id"], created["arms"][1]["id"], 0, int(time.time()))
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    old = base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()
    response = sqlite_client.post("/v1/events", json={"events": [event(old, "old-1")]})
    assert response.status_code == 422
    assert "older version" in response.json()["detail"]


# -- retired arms, paused and stopped experiments ------------------------------------------
def test_events_for_a_retired_arm_are_stored_but_never_credited(
    client: TestClient, database_url: str
) -> None:
    created = create(client, exposure_source="client")
    tickets = tickets_by_arm(client)
    reference, victim = created["reference_arm_id"], created["arms"][2]["id"]
    post_events(
        client,
        [
            event(tickets[reference], "r-exposure", "exposure"),
            event(tickets[victim], "v-exposure", "exposure"),
            event(tickets[victim], "before", "contact"),
        ],
    )
    retired = client.delete(f"/v1/experiments/similar-items/arms/{victim}", headers=ADMIN)
    assert retired.status_code == 200
    # Arrived before the retirement: credited at the next tick.
    window = tick(client)
    assert next(row for row in window["arms"] if row["arm_id"] == victim)["target_events"] == 1
    frozen = arm_of(client, victim)
    # After it: stored and acknowledged, reported by the tick, the posterior stays final.
    after = post_events(
        client,
        [
            event(tickets[victim], "after", "contact", count=5),
            event(tickets[reference], "r2", "exposure"),
        ],
    )
    assert after == {"accepted": 2, "duplicates": 0}
    assert stored(database_url, Event.credited, event_id="after") == [0]
    window = tick(client)
    assert window["uncredited"] == {"arm_retired": {"contact": 5}}
    assert victim not in {row["arm_id"] for row in window["arms"]}
    assert (arm_of(client, victim)["alpha"], arm_of(client, victim)["beta"]) == (
        frozen["alpha"],
        frozen["beta"],
    )


def test_events_arriving_while_paused_are_stored_but_not_credited_after_resume(
    client: TestClient, database_url: str
) -> None:
    created = create(client)
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    assert client.post("/v1/experiments/similar-items/pause", headers=ADMIN).status_code == 200
    assert post_events(client, [event(tickets[arm], "paused-1", count=4)])["accepted"] == 1
    assert stored(database_url, Event.credited, event_id="paused-1") == [0]
    assert pending_rows(database_url, "contact") == 0  # nothing waits for a tick
    assert client.post("/v1/experiments/similar-items/resume", headers=ADMIN).status_code == 200
    window = tick(client)
    assert window["target_events"] == 0 and window["reference_events"] == 0
    assert arm_of(client, arm)["alpha"] == 1.0


def test_stop_closes_the_last_window_and_leaves_nothing_pending(
    client: TestClient, database_url: str
) -> None:
    created = create(client)
    tickets = tickets_by_arm(client)  # server exposures of both groups, pending
    arm = created["arms"][1]["id"]
    post_events(
        client,
        [event(tickets[arm], "c"), event(tickets[created["reference_arm_id"]], "r")],
    )
    assert pending_rows(database_url) > 0
    stopped = client.post("/v1/experiments/similar-items/stop", headers=ADMIN)
    assert stopped.status_code == 200
    assert stopped.json()["tick_count"] == 1
    assert pending_rows(database_url) == 0
    final = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()[-1]
    assert final["applied"] is True and final["target_events"] == 1
    audit = client.get("/v1/audit?experiment=similar-items&limit=1", headers=ADMIN).json()[0]
    assert audit["action"] == "experiment.stop"
    assert audit["details"]["final_tick"] == {"number": 1, "applied": True}
    # Events after the stop are stored, never pending.
    assert post_events(client, [event(tickets[arm], "late")])["accepted"] == 1
    assert pending_rows(database_url) == 0


def test_stop_without_reference_traffic_discards_and_audits_what_it_cannot_credit(
    client: TestClient, database_url: str
) -> None:
    created = create(client, exposure_source="client")
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    post_events(client, [event(tickets[arm], "x", "exposure"), event(tickets[arm], "c")])
    assert client.post("/v1/experiments/similar-items/stop", headers=ADMIN).status_code == 200
    assert pending_rows(database_url) == 0
    audit = client.get("/v1/audit?experiment=similar-items&limit=1", headers=ADMIN).json()[0]
    assert audit["details"]["final_tick"]["applied"] is False
    assert audit["details"]["discarded"] == {"target": {"contact": 1, "exposure": 1}}


def test_maintenance_forgets_expired_tickets_and_pending_counts_of_stopped_experiments(
    make_client: ClientFactory, database_url: str
) -> None:
    with make_client() as client:
        create(client, attribution_window_s=60)
        ticket = assign(client, "user-1")["ticket"]
        post_events(client, [event(ticket, "c")])
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        engine = create_engine(database_url)
        try:
            with engine.begin() as connection:
                assert connection.scalar(select(func.count()).select_from(TicketCredit)) == 1
                # As if the ticket had been issued long ago (keys start with the issue time).
                connection.execute(
                    TicketCredit.__table__.update().values(key=key_before(1) + b"old")
                )
            client.post("/v1/experiments/similar-items/stop", headers=ADMIN)
            with engine.begin() as connection:
                # A replica that had not seen the stop yet left counts behind.
                insert_pending(connection, 1, [PendingRow(1, "reference", "exposure", "", 0, 7)])
            runtime.run_maintenance()
            with engine.connect() as connection:
                assert connection.scalar(select(func.count()).select_from(TicketCredit)) == 0
                assert pending_totals(connection) == {}
        finally:
            engine.dispose()
        audit = client.get("/v1/audit?experiment=similar-items&limit=1", headers=ADMIN).json()
        assert audit[0]["action"] == "experiment.discard_pending"
        assert audit[0]["details"]["discarded"] == {"reference": {"exposure": 7}}


# -- the contract of the event route -------------------------------------------------------
@pytest.mark.parametrize("count", ["1", True, 1.0, "1e3", 1001, 0, -1])
def test_count_is_a_strict_integer_between_1_and_1000(
    sqlite_client: TestClient, count: Any
) -> None:
    create(sqlite_client)
    ticket = assign(sqlite_client, "user-1")["ticket"]
    # The count exactly as JSON text: a string, a boolean, a float, an exponent, or out of range.
    literals = {"1": '"1"', "1e3": "1e3"}
    if isinstance(count, bool):
        literal = "true"
    elif isinstance(count, float):
        literal = "1.0"
    else:
        literal = literals.get(count, str(count))
    body = (
        f'{{"events": [{{"ticket": "{ticket}", "type": "contact", "count": {literal}, '
        '"event_id": "e1"}]}'
    )
    response = sqlite_client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, (body, response.text)
    assert_error_shape(response.json(), "ValidationError", "events[0].count")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/json"],
)
def test_events_must_be_declared_as_json(
    sqlite_client: TestClient, sqlite_url: str, content_type: str | None
) -> None:
    create(sqlite_client)
    ticket = assign(sqlite_client, "user-1")["ticket"]
    body = f'{{"events": [{{"ticket": "{ticket}", "type": "contact", "event_id": "csrf"}}]}}'
    headers = {"Content-Type": content_type} if content_type else {}
    response = sqlite_client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert_error_shape(response.json(), "UnsupportedMediaType", "Content-Type")
    assert stored(sqlite_url, Event.event_id, event_id="csrf") == []
    # With a charset parameter it is JSON all the same.
    ok = sqlite_client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200, ok.text


def test_a_batch_over_the_limit_is_413_before_any_item_is_validated(
    sqlite_client: TestClient,
) -> None:
    many_objects = b'{"events":[' + b",".join([b"{}"] * 1001) + b"]}"
    many_numbers = b'{"events":[' + b",".join([b"1"] * 50_000) + b"]}"
    nested_arrays = b'{"events":[' + b",".join([b"[[[[[[]]]]]]"] * 2000) + b"]}"
    for body in (many_objects, many_numbers, nested_arrays):
        response = sqlite_client.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413, response.text
        assert_error_shape(response.json(), "PayloadTooLarge", "events")


def test_the_event_body_has_its_own_size_limit(sqlite_url: str) -> None:
    settings = settings_for(sqlite_url, max_events_body_bytes=10_000)
    with TestClient(create_app(settings)) as client:
        create(client)
        body = b'{"events":[' + b",".join([b"1"] * 6000) + b"]}"
        response = client.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert_error_shape(response.json(), "PayloadTooLarge", "body")
        # Admin bodies keep the general limit.
        big = similar_items(name="other", arms=[{**similar_items()["arms"][0]}])
        assert client.post("/v1/experiments", json=big, headers=ADMIN).status_code == 201


def test_the_payload_hash_is_blake2b_of_the_json_of_ticket_type_and_count(
    sqlite_client: TestClient, sqlite_url: str
) -> None:
    """What makes a retry a duplicate, computed here from its documented recipe."""
    import hashlib
    import json

    create(sqlite_client)
    ticket = assign(sqlite_client, "user-1")["ticket"]
    post_events(sqlite_client, [event(ticket, "h1", "contact", count=1)])
    text = json.dumps([ticket, "contact", 1], separators=(",", ":"))
    expected = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
    assert stored(sqlite_url, Event.payload_hash, event_id="h1") == [expected]
