"""Admin API (docs/spec.md): authentication, experiments, status changes, arms, stats, audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

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
from tests.conftest import SIMILAR_ITEMS

NEW_CONFIG = {"text_match": 0.3, "distance": 1.9, "price_diff": 0.1, "region": 3}
ARM_FIELDS = {"id", "config", "origin", "status", "alpha", "beta", "exposures", "target_events"}

ADMIN_CALLS = [
    ("GET", "/v1/experiments", None),
    ("POST", "/v1/experiments", SIMILAR_ITEMS),
    ("GET", "/v1/experiments/similar-items", None),
    ("POST", "/v1/experiments/similar-items/pause", None),
    ("POST", "/v1/experiments/similar-items/arms", {"config": NEW_CONFIG}),
    ("DELETE", "/v1/experiments/similar-items/arms/2", None),
    ("POST", "/v1/experiments/similar-items/tick", None),
    ("GET", "/v1/experiments/similar-items/ticks", None),
    ("GET", "/v1/experiments/similar-items/stats", None),
    ("GET", "/v1/audit", None),
]


def call(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.request(method, path, json=body, headers=headers)


# -- authentication ------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_calls_need_the_bearer_token(
    sqlite_client: TestClient, method: str, path: str, body: Any
) -> None:
    create(sqlite_client)
    before = inspect(sqlite_client)

    missing = call(sqlite_client, method, path, body, {})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error_shape(missing.json(), "Unauthorized", "Authorization")

    for wrong in (
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ):
        refused = call(sqlite_client, method, path, body, wrong)
        assert refused.status_code in (401, 403), wrong
        assert_error_shape(refused.json(), field="Authorization")
    wrong_token = call(sqlite_client, method, path, body, {"Authorization": "Bearer nope"})
    assert wrong_token.status_code == 403
    assert_error_shape(wrong_token.json(), "Forbidden", "Authorization")

    # Nothing changed behind the refusals.
    assert inspect(sqlite_client) == before


# -- experiments ---------------------------------------------------------------------------
def test_create_list_and_inspect(client: TestClient) -> None:
    created = create(client, mode="window", update_interval_s=30, exposure_source="client")
    assert created["name"] == "similar-items"
    assert created["status"] == "running"
    assert created["mode"] == "window"
    assert created["update_interval_s"] == 30
    assert created["target_event"] == "contact"
    assert created["exposure_source"] == "client"
    assert created["reference_share"] == 0.2
    assert created["reference_config"] == SIMILAR_ITEMS["reference_config"]
    arms = created["arms"]
    assert all(set(arm) >= ARM_FIELDS for arm in arms)
    assert [arm["config"] for arm in arms] == [
        SIMILAR_ITEMS["reference_config"],
        *SIMILAR_ITEMS["arms"],
    ]
    assert arms[0]["id"] == created["reference_arm_id"] and arms[0]["origin"] == "reference"
    assert all((arm["alpha"], arm["beta"]) == (1.0, 1.0) for arm in arms)
    assert created["window_arm_id"] in {arm["id"] for arm in arms[1:]}

    create(client, name="second", target_event="purchase", arms=[])
    listed = client.get("/v1/experiments", headers=ADMIN)
    assert listed.status_code == 200
    summary = {row["name"]: row for row in listed.json()}
    assert set(summary) == {"similar-items", "second"}
    assert summary["similar-items"]["active_arms"] == 3
    assert summary["second"]["active_arms"] == 0

    assert inspect(client) == created
    assert inspect(client, "second")["target_event"] == "purchase"
    missing = client.get("/v1/experiments/nope", headers=ADMIN)
    assert missing.status_code == 404
    assert_error_shape(missing.json(), "NotFound", "name", named=False)


def test_experiment_defaults_follow_the_spec(sqlite_client: TestClient) -> None:
    body = {k: SIMILAR_ITEMS[k] for k in ("name", "parameters", "reference_config")}
    response = sqlite_client.post("/v1/experiments", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["mode"] == "request"
    assert created["target_event"] == "contact"
    assert created["exposure_source"] == "server"
    assert created["update_interval_s"] == 10.0
    assert (created["prior_alpha"], created["prior_beta"]) == (1.0, 1.0)


def test_duplicate_experiment_name_is_409(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    again = sqlite_client.post("/v1/experiments", json=SIMILAR_ITEMS, headers=ADMIN)
    assert again.status_code == 409
    assert_error_shape(again.json(), "Conflict", "name", named=False)


# -- status changes ------------------------------------------------------------------------
def status_change(client: TestClient, action: str) -> Any:
    return client.post(f"/v1/experiments/similar-items/{action}", headers=ADMIN)


def test_valid_status_transitions(client: TestClient) -> None:
    create(client)
    for action, status in [("pause", "paused"), ("resume", "running"), ("pause", "paused")]:
        response = status_change(client, action)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    # Asking for the state it is already in changes nothing and is not an error.
    assert status_change(client, "pause").json()["status"] == "paused"
    assert status_change(client, "stop").json()["status"] == "stopped"
    assert status_change(client, "stop").json()["status"] == "stopped"
    assert inspect(client)["status"] == "stopped"


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_stopped_experiment_cannot_be_paused_or_resumed(
    sqlite_client: TestClient, action: str
) -> None:
    create(sqlite_client)
    status_change(sqlite_client, "stop")
    response = status_change(sqlite_client, action)
    assert response.status_code == 409
    assert_error_shape(response.json(), "Conflict", "status", named=False)
    assert "stopped" in response.json()["detail"]
    assert inspect(sqlite_client)["status"] == "stopped"


def test_status_change_of_unknown_experiment_is_404(sqlite_client: TestClient) -> None:
    response = sqlite_client.post("/v1/experiments/ghost/pause", headers=ADMIN)
    assert response.status_code == 404
    assert_error_shape(response.json(), "NotFound")


# -- arms ----------------------------------------------------------------------------------
def test_added_arm_gets_an_id_and_is_served(client: TestClient) -> None:
    create(client)
    response = client.post(
        "/v1/experiments/similar-items/arms", json={"config": NEW_CONFIG}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    arm = response.json()
    assert set(arm) >= ARM_FIELDS
    assert arm["config"] == NEW_CONFIG
    assert arm["origin"] == "manual" and arm["status"] == "active"
    assert (arm["alpha"], arm["beta"]) == (1.0, 1.0)
    assert arm["id"] in {a["id"] for a in inspect(client)["arms"]}
    # Four arms at the prior: the new one is drawn for ~1/4 of target requests.
    served = {assign(client, f"user-{unit}")["arm_id"] for unit in range(120)}
    assert arm["id"] in served


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**NEW_CONFIG, "colour": 1.0}, "config.colour"),
        ({k: v for k, v in NEW_CONFIG.items() if k != "distance"}, "config.distance"),
        ({**NEW_CONFIG, "text_match": 2.5}, "config.text_match"),
        ({**NEW_CONFIG, "text_match": -0.1}, "config.text_match"),
        ({**NEW_CONFIG, "region": 4}, "config.region"),
        ({**NEW_CONFIG, "region": 1.5}, "config.region"),
        ({**NEW_CONFIG, "price_diff": "high"}, "config.price_diff"),
        ({**NEW_CONFIG, "price_diff": None}, "config.price_diff"),
        ({**NEW_CONFIG, "region": True}, "config.region"),
        ({**NEW_CONFIG, "text_match": "1.5"}, "config.text_match"),
    ],
)
def test_invalid_arm_config_is_422_naming_the_field(
    sqlite_client: TestClient, config: dict[str, Any], field: str
) -> None:
    create(sqlite_client)
    response = sqlite_client.post(
        "/v1/experiments/similar-items/arms", json={"config": config}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)
    assert len(inspect(sqlite_client)["arms"]) == 4


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_arm_value_is_422_naming_the_field(
    sqlite_client: TestClient, literal: str
) -> None:
    create(sqlite_client)
    # Python's JSON parser accepts these literals, so they reach validation.
    values = f'"text_match": {literal}, "distance": 1.0, "price_diff": 1.0, "region": 1'
    body = '{"config": {' + values + "}}"
    response = sqlite_client.post(
        "/v1/experiments/similar-items/arms",
        content=body,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", "config.text_match")


def test_duplicate_of_an_active_arm_is_409(client: TestClient) -> None:
    created = create(client)
    for config, arm in (
        (SIMILAR_ITEMS["arms"][1], created["arms"][2]),
        (SIMILAR_ITEMS["reference_config"], created["arms"][0]),
    ):
        # Same values, written with other number forms (1 vs 1.0), are still the same arm.
        spelled = {
            key: (float(value) if isinstance(value, int) else value)
            for key, value in config.items()
        }
        response = client.post(
            "/v1/experiments/similar-items/arms", json={"config": spelled}, headers=ADMIN
        )
        assert response.status_code == 409, response.text
        assert_error_shape(response.json(), "Conflict", "config")
        assert str(arm["id"]) in response.json()["detail"]
    assert len(inspect(client)["arms"]) == 4


def test_retired_arm_keeps_posterior_and_history_and_is_no_longer_served(
    client: TestClient,
) -> None:
    created = create(client, exposure_source="client")
    tickets = tickets_by_arm(client)
    reference_id = created["reference_arm_id"]
    victim = created["arms"][1]["id"]
    post_events(
        client,
        [
            event(tickets[reference_id], "r-exp", "exposure", 20),
            event(tickets[reference_id], "r-c", "contact", 4),
            event(tickets[victim], "v-exp", "exposure", 10),
            event(tickets[victim], "v-c", "contact", 3),
        ],
    )
    applied = tick(client)
    before = next(arm for arm in inspect(client)["arms"] if arm["id"] == victim)
    assert (before["alpha"], before["beta"]) == (1.0 + 3, 1.0 + 4 * 10 / 20)

    response = client.delete(f"/v1/experiments/similar-items/arms/{victim}", headers=ADMIN)
    assert response.status_code == 200, response.text
    retired = response.json()
    assert retired["status"] == "retired" and retired["retired_at"] is not None
    assert (retired["alpha"], retired["beta"]) == (before["alpha"], before["beta"])
    assert retired["exposures"] == 10 and retired["target_events"] == 3

    after = next(arm for arm in inspect(client)["arms"] if arm["id"] == victim)
    assert after == retired
    history = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert history[0]["number"] == applied["number"]
    assert victim in {row["arm_id"] for row in history[0]["arms"]}

    served = {assign(client, f"user-{unit}")["arm_id"] for unit in range(150)}
    assert victim not in served
    assert len(served - {reference_id}) == 2
    snapshot = client.get("/v1/experiments/similar-items/snapshot").json()
    assert victim not in {arm["arm_id"] for arm in snapshot["arms"]}
    # Retiring it again is harmless; a retired arm's config may be added back as a new arm.
    assert (
        client.delete(f"/v1/experiments/similar-items/arms/{victim}", headers=ADMIN).status_code
        == 200
    )
    back = client.post(
        "/v1/experiments/similar-items/arms", json={"config": retired["config"]}, headers=ADMIN
    )
    assert back.status_code == 201 and back.json()["id"] != victim


def test_reference_unknown_and_last_arm_cannot_be_retired(sqlite_client: TestClient) -> None:
    created = create(sqlite_client)
    reference = sqlite_client.delete(
        f"/v1/experiments/similar-items/arms/{created['reference_arm_id']}", headers=ADMIN
    )
    assert reference.status_code == 409
    assert_error_shape(reference.json(), "Conflict", "arm_id", named=False)

    unknown = sqlite_client.delete("/v1/experiments/similar-items/arms/999", headers=ADMIN)
    assert unknown.status_code == 404
    assert_error_shape(unknown.json(), "NotFound", "arm_id", named=False)

    ids = [arm["id"] for arm in created["arms"][1:]]
    for arm_id in ids[:-1]:
        assert (
            sqlite_client.delete(
                f"/v1/experiments/similar-items/arms/{arm_id}", headers=ADMIN
            ).status_code
            == 200
        )
    last = sqlite_client.delete(f"/v1/experiments/similar-items/arms/{ids[-1]}", headers=ADMIN)
    assert last.status_code == 409
    assert_error_shape(last.json(), "Conflict", "arm_id", named=False)
    statuses = {arm["origin"] + ":" + arm["status"] for arm in inspect(sqlite_client)["arms"]}
    assert statuses == {"reference:active", "expert:retired", "expert:active"}


def test_arm_of_another_experiment_is_404(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    other = create(sqlite_client, name="other")
    foreign_arm = other["arms"][1]["id"]
    response = sqlite_client.delete(
        f"/v1/experiments/similar-items/arms/{foreign_arm}", headers=ADMIN
    )
    assert response.status_code == 404
    assert inspect(sqlite_client, "other")["arms"][1]["status"] == "active"


# -- stats, ticks, audit -------------------------------------------------------------------
def test_per_arm_stats(client: TestClient) -> None:
    created = create(client, exposure_source="client")
    tickets = tickets_by_arm(client)
    reference_id = created["reference_arm_id"]
    good, poor, idle = (arm["id"] for arm in created["arms"][1:])
    post_events(
        client,
        [
            event(tickets[reference_id], "r-exp", "exposure", 1000),
            event(tickets[reference_id], "r-c", "contact", 50),
            event(tickets[good], "g-exp", "exposure", 1000),
            event(tickets[good], "g-c", "contact", 100),
            event(tickets[poor], "p-exp", "exposure", 1000),
            event(tickets[poor], "p-c", "contact", 25),
        ],
    )
    tick(client)
    response = client.get("/v1/experiments/similar-items/stats", params={"seed": 7}, headers=ADMIN)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["reference_rate"] == pytest.approx(0.05)
    by_id = {row["arm_id"]: row for row in stats["arms"]}
    assert set(by_id) == {reference_id, good, poor, idle}

    assert (by_id[good]["exposures"], by_id[good]["target_events"]) == (1000, 100)
    assert by_id[good]["rate"] == pytest.approx(0.1)
    assert by_id[poor]["rate"] == pytest.approx(0.025)
    assert by_id[idle]["rate"] is None
    # Lift over the reference: about +100% and -50%, with 95% intervals around them.
    assert by_id[good]["lift"] == pytest.approx(1.0, abs=0.25)
    assert by_id[good]["lift_ci_low"] > 0.3 and by_id[good]["lift_ci_high"] > by_id[good]["lift"]
    assert by_id[poor]["lift"] == pytest.approx(-0.5, abs=0.2)
    assert by_id[poor]["lift_ci_high"] < 0
    assert by_id[poor]["lift_ci_low"] < by_id[poor]["lift"] < by_id[poor]["lift_ci_high"]
    assert by_id[good]["prob_beat_reference"] > 0.99 > 0.01 > by_id[poor]["prob_beat_reference"]
    # P(best) over the active arms sums to one. Beta(101, 51) against the untried Beta(1, 1)
    # (the poor arm, Beta(26, 51), almost never wins): P(best) ~ E[theta_good] = 101/152.
    prob_best = [by_id[arm]["prob_best"] for arm in (good, poor, idle)]
    assert sum(prob_best) == pytest.approx(1.0)
    assert by_id[good]["prob_best"] == pytest.approx(101 / 152, abs=0.02)
    assert by_id[poor]["prob_best"] < 0.01
    # Seeded: the same seed gives the same answer.
    again = client.get("/v1/experiments/similar-items/stats", params={"seed": 7}, headers=ADMIN)
    assert again.json() == stats


def test_tick_history_lists_every_tick_in_order_and_pages(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    numbers = [tick(sqlite_client)["number"] for _ in range(5)]
    assert numbers == [1, 2, 3, 4, 5]
    history = sqlite_client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert [row["number"] for row in history] == numbers
    page = sqlite_client.get(
        "/v1/experiments/similar-items/ticks", params={"after": 2, "limit": 2}, headers=ADMIN
    ).json()
    assert [row["number"] for row in page] == [3, 4]
    assert inspect(sqlite_client)["tick_count"] == 5


def test_every_admin_action_lands_in_the_audit_log(client: TestClient) -> None:
    created = create(client)
    other = create(client, name="other")
    victim = created["arms"][1]["id"]
    for action in ("pause", "resume"):
        status_change(client, action)
    added = client.post(
        "/v1/experiments/similar-items/arms", json={"config": NEW_CONFIG}, headers=ADMIN
    ).json()
    client.delete(f"/v1/experiments/similar-items/arms/{victim}", headers=ADMIN)
    tick(client)
    status_change(client, "stop")

    response = client.get("/v1/audit", params={"experiment": "similar-items"}, headers=ADMIN)
    assert response.status_code == 200
    entries = response.json()
    actions = [entry["action"] for entry in reversed(entries)]  # newest first
    assert actions == [
        "experiment.create",
        "experiment.pause",
        "experiment.resume",
        "arm.add",
        "arm.retire",
        "experiment.tick",
        "experiment.stop",
    ]
    assert all(entry["experiment_id"] == created["id"] for entry in entries)
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["arm.add"]["details"]["arm_id"] == added["id"]
    assert by_action["arm.retire"]["details"]["arm_id"] == victim
    assert by_action["experiment.pause"]["details"] == {"from": "running", "to": "paused"}
    assert by_action["experiment.create"]["details"]["name"] == "similar-items"

    everything = client.get("/v1/audit", headers=ADMIN).json()
    assert {entry["experiment_id"] for entry in everything} == {created["id"], other["id"]}
    assert len(client.get("/v1/audit", params={"limit": 2}, headers=ADMIN).json()) == 2
    # Refused actions change nothing and are not logged.
    status_change(client, "resume")
    assert (
        len(client.get("/v1/audit", params={"experiment": "similar-items"}, headers=ADMIN).json())
        == 7
    )
