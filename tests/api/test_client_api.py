"""Client API (docs/spec.md): assignment and events, on SQLite and PostgreSQL where it matters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from api.models import Event
from api.serving import group_of
from api.tickets import TicketSigner
from tests.api.helpers import (
    ADMIN,
    assert_error_shape,
    assign,
    create,
    event,
    expected_group,
    inspect,
    post_events,
    tick,
    tickets_by_arm,
)
from tests.conftest import ClientFactory

NON_ASCII_UNITS = ["ユーザー-42", "Ünïcødé", "😀🎉", "a b&c=d/e?f#g", "Ωmega\u00a0space", "'\"<>"]


def stored_events(database_url: str, experiment_id: int) -> int:
    """Count event rows through a connection of our own, not the app's session."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(Event)
            query = query.where(Event.experiment_id == experiment_id, Event.event_id.is_not(None))
            return int(connection.scalar(query) or 0)
    finally:
        engine.dispose()


@pytest.fixture
def experiment(client: TestClient) -> Iterator[dict]:
    yield create(client)


# -- assignment ----------------------------------------------------------------------------
def test_assignment_has_the_contract_fields_and_serves_real_arms(
    sqlite_client: TestClient,
) -> None:
    client = sqlite_client
    experiment = create(client)
    arms = {arm["id"]: arm for arm in experiment["arms"]}
    reference_id = experiment["reference_arm_id"]
    seen_groups = set()
    for unit in range(60):
        body = assign(client, f"user-{unit}")
        assert {"group", "arm_id", "config", "ticket"} <= set(body)
        assert body["group"] in ("target", "reference")
        assert isinstance(body["ticket"], str) and body["ticket"]
        assert body["config"] == arms[body["arm_id"]]["config"]
        if body["group"] == "reference":
            assert body["arm_id"] == reference_id
            assert body["config"] == experiment["reference_config"]
        else:
            assert arms[body["arm_id"]]["origin"] == "expert"
        seen_groups.add(body["group"])
    assert seen_groups == {"target", "reference"}


def test_group_is_the_documented_hash_and_stable_for_any_unicode_unit(
    sqlite_client: TestClient,
) -> None:
    create(sqlite_client)
    salt = sqlite_client.app.state.runtime.serving.get("similar-items").salt
    units = NON_ASCII_UNITS + [f"user-{i}" for i in range(100)]
    for unit in units:
        groups = {assign(sqlite_client, unit)["group"] for _ in range(2)}
        assert groups == {expected_group(salt, 0.2, unit)}, unit


def test_reference_share_is_respected_through_http(sqlite_client: TestClient) -> None:
    create(sqlite_client, reference_share=0.2)
    groups = Counter(assign(sqlite_client, f"visitor-{i}")["group"] for i in range(1000))
    # Binomial sd at n=1000, p=0.2 is 0.0126; 0.055 is more than 4 sd.
    assert abs(groups["reference"] / 1000 - 0.2) < 0.055, groups


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_reference_share_of_the_server_hash_over_5000_units(share: float) -> None:
    # The HTTP tests above prove the server serves exactly this rule; 5,000 units through
    # HTTP would cost ~20 s on a shared runner for no extra coverage.
    groups = Counter(group_of("3f2a9c01d4e5b6a7", share, f"visitor-{i}") for i in range(5000))
    sd = (share * (1 - share) / 5000) ** 0.5
    assert abs(groups["reference"] / 5000 - share) < 4.5 * sd, groups


@pytest.mark.parametrize("action", ["pause", "stop"])
def test_paused_or_stopped_experiment_serves_the_reference_configuration(
    sqlite_client: TestClient, action: str
) -> None:
    client = sqlite_client
    experiment = create(client)
    response = client.post(f"/v1/experiments/similar-items/{action}", headers=ADMIN)
    assert response.status_code == 200, response.text
    answers = [assign(client, f"user-{unit}") for unit in range(40)]
    assert {answer["arm_id"] for answer in answers} == {experiment["reference_arm_id"]}
    assert all(answer["config"] == experiment["reference_config"] for answer in answers)
    assert all(answer["active"] is False for answer in answers)
    # Served while inactive: neither the server's exposure count nor events move posteriors.
    post_events(client, [event(answers[0]["ticket"], "while-inactive")])
    window = tick(client)
    assert window["reference_exposures"] == window["target_exposures"] == 0
    assert window["reference_events"] == window["target_events"] == 0


def test_resumed_experiment_serves_target_arms_again(sqlite_client: TestClient) -> None:
    client = sqlite_client
    experiment = create(client)
    client.post("/v1/experiments/similar-items/pause", headers=ADMIN)
    client.post("/v1/experiments/similar-items/resume", headers=ADMIN)
    served = {assign(client, f"user-{unit}")["arm_id"] for unit in range(60)}
    assert len(served - {experiment["reference_arm_id"]}) >= 2


@pytest.mark.parametrize("source", ["server", "client"])
def test_snapshot_names_the_reference_configuration_and_the_exposure_source(
    sqlite_client: TestClient, source: str
) -> None:
    """What the client SDK caches: its fallback configuration and whether it reports
    exposures."""
    experiment = create(
        sqlite_client,
        reference_config={"text_match": 0.5, "distance": 1.25, "price_diff": 2.0, "region": 3},
        exposure_source=source,
    )
    snapshot = sqlite_client.get("/v1/experiments/similar-items/snapshot").json()
    assert snapshot["exposure_source"] == source
    assert snapshot["reference"] == {
        "arm_id": experiment["reference_arm_id"],
        "config": {"text_match": 0.5, "distance": 1.25, "price_diff": 2.0, "region": 3},
    }
    assert isinstance(snapshot["reference"]["config"]["region"], int)


def test_unknown_experiment_is_404(sqlite_client: TestClient) -> None:
    response = sqlite_client.get("/v1/experiments/nope/assignment", params={"unit": "u"})
    assert response.status_code == 404
    assert_error_shape(response.json(), "NotFound", "name", named=False)


def test_assignment_without_unit_is_422_naming_unit(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    response = sqlite_client.get("/v1/experiments/similar-items/assignment")
    assert response.status_code == 422
    assert_error_shape(response.json(), "ValidationError", "unit")


# -- events --------------------------------------------------------------------------------
def test_events_are_committed_before_they_are_acknowledged(
    client: TestClient, database_url: str, experiment: dict
) -> None:
    ticket = assign(client, "user-1")["ticket"]
    answer = post_events(client, [event(ticket, f"e{i}") for i in range(25)])
    assert answer == {"accepted": 25, "duplicates": 0}
    # Read through a separate connection right after the answer: the rows are committed.
    assert stored_events(database_url, experiment["id"]) == 25


def test_retried_event_is_accepted_once_and_counted_once(
    client: TestClient, database_url: str, experiment: dict
) -> None:
    ticket = assign(client, "user-7")["ticket"]
    batch = [event(ticket, "retry-1", count=3), event(ticket, "retry-2")]
    assert post_events(client, batch) == {"accepted": 2, "duplicates": 0}
    assert post_events(client, batch) == {"accepted": 0, "duplicates": 2}
    # A duplicate inside one batch is also counted once.
    assert post_events(client, [event(ticket, "dup"), event(ticket, "dup")]) == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert stored_events(database_url, experiment["id"]) == 3
    window = tick(client)
    assert window["reference_events"] + window["target_events"] == 3 + 1 + 1


def test_same_event_id_with_another_payload_is_409_and_stores_nothing_of_the_request(
    client: TestClient, database_url: str, experiment: dict
) -> None:
    ticket = assign(client, "user-3")["ticket"]
    post_events(client, [event(ticket, "same-id", count=1)])
    conflicting = [event(ticket, "fresh-1"), event(ticket, "same-id", count=2)]
    response = client.post("/v1/events", json={"events": conflicting})
    assert response.status_code == 409
    assert_error_shape(response.json(), "Conflict", "events[1].event_id")
    assert stored_events(database_url, experiment["id"]) == 1
    # fresh-1 was not stored: sending it again is new, not a duplicate.
    assert post_events(client, [event(ticket, "fresh-1")]) == {"accepted": 1, "duplicates": 0}


def test_forged_and_foreign_tickets_are_refused_and_store_nothing(
    sqlite_client: TestClient, sqlite_url: str
) -> None:
    client, database_url = sqlite_client, sqlite_url
    experiment = create(client)
    genuine = assign(client, "user-5")
    foreign = TicketSigner("another-deployment-key").issue(
        experiment["id"], genuine["arm_id"], genuine["group"]
    )
    flipped = genuine["ticket"][:-2] + ("A" if genuine["ticket"][-2] != "A" else "B") + "A"
    for bad in (foreign, flipped, "not-a-ticket", "é" * 10):
        batch = [event(genuine["ticket"], "ok-1"), event(bad, "bad-1")]
        response = client.post("/v1/events", json={"events": batch})
        assert 400 <= response.status_code < 500, (bad, response.text)
        assert_error_shape(response.json(), field="events[1].ticket")
    assert stored_events(database_url, experiment["id"]) == 0


def test_more_than_max_batch_events_is_413(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    ticket = assign(sqlite_client, "user-1")["ticket"]
    events = [event(ticket, f"e{i}") for i in range(1001)]
    response = sqlite_client.post("/v1/events", json={"events": events})
    assert response.status_code == 413
    assert_error_shape(response.json(), "PayloadTooLarge", "events")
    assert post_events(sqlite_client, events[:1000]) == {"accepted": 1000, "duplicates": 0}


def test_body_over_max_body_bytes_is_413_with_and_without_content_length(
    make_client: ClientFactory,
) -> None:
    with make_client(max_body_bytes=4096) as client:
        create(client)
        ticket = assign(client, "user-1")["ticket"]
        payload = (
            '{"events": ['
            + ",".join(
                f'{{"ticket":"{ticket}","type":"contact","event_id":"e{i}"}}' for i in range(80)
            )
            + "]}"
        ).encode()
        assert len(payload) > 4096
        headers = {"Content-Type": "application/json"}
        declared = client.post("/v1/events", content=payload, headers=headers)
        assert declared.status_code == 413
        assert_error_shape(declared.json(), "PayloadTooLarge", "body")

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(payload), 512):
                yield payload[start : start + 512]

        streamed = client.post("/v1/events", content=chunks(), headers=headers)
        assert "content-length" not in {k.lower() for k in streamed.request.headers}
        assert streamed.status_code == 413
        assert_error_shape(streamed.json(), "PayloadTooLarge", "body")

        # A small chunked body still goes through.
        small = f'{{"events":[{{"ticket":"{ticket}","type":"contact","event_id":"s1"}}]}}'.encode()
        ok = client.post("/v1/events", content=iter([small[:20], small[20:]]), headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"accepted": 1, "duplicates": 0}


def test_exposure_events_are_refused_when_the_server_counts_exposures(
    client: TestClient, experiment: dict
) -> None:
    ticket = assign(client, "user-1")["ticket"]
    response = client.post(
        "/v1/events", json={"events": [event(ticket, "c1"), event(ticket, "x1", "exposure")]}
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "ValidationError", "events[1].type")


def test_client_exposure_source_counts_only_the_clients_exposure_events(
    client: TestClient,
) -> None:
    create(client, exposure_source="client")
    tickets = tickets_by_arm(client)  # dozens of assignments, none of them counted
    empty = tick(client)
    assert empty["reference_exposures"] == empty["target_exposures"] == 0

    experiment = inspect(client)
    reference_id = experiment["reference_arm_id"]
    target_id = next(arm_id for arm_id in tickets if arm_id != reference_id)
    post_events(
        client,
        [
            event(tickets[reference_id], "r-exp", "exposure", count=10),
            event(tickets[reference_id], "r-c", count=2),
            event(tickets[target_id], "t-exp", "exposure", count=5),
            event(tickets[target_id], "t-c", count=3),
        ],
    )
    for unit in range(50):  # more assignments: still not counted
        assign(client, f"late-{unit}")
    window = tick(client)
    assert window["applied"] is True
    assert window["reference_exposures"] == 10
    assert window["target_exposures"] == 5
    rows = {row["arm_id"]: row for row in window["arms"]}
    assert rows[target_id]["exposures"] == 5
    assert rows[target_id]["alpha_increment"] == 3
    assert rows[target_id]["beta_increment"] == pytest.approx(2 * 5 / 10)
