"""One error shape for every 4xx, naming the field and what was expected; never a 500.

Every request below is malformed in one way; the table says which status, kind and field
the answer must carry. The app runs once for the module (on SQLite): these requests must
not change anything, and the last test checks that they did not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import upgrade_database
from tests.api.helpers import ADMIN, assert_error_shape, assign, create, inspect
from tests.conftest import settings_for, similar_items

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'ranktune.db'}"
    upgrade_database(url)
    with TestClient(create_app(settings_for(url))) as client:
        create(client)
        yield client


@pytest.fixture(scope="module")
def ticket(app_client: TestClient) -> str:
    return str(assign(app_client, "user-1")["ticket"])


def good_event(ticket_: str, **changes: Any) -> dict[str, Any]:
    return {"ticket": ticket_, "type": "contact", "count": 1, "event_id": "e-1", **changes}


def params_of(low: float, high: float) -> list[dict[str, Any]]:
    return [{"name": "w", "type": "float", "low": low, "high": high}]


# (id, method, path, json body or None, status, kind, field)
EXPERIMENT_CASES = [
    ("name-pattern", {"name": "Has Spaces"}, "name"),
    ("name-missing", {"name": None}, "name"),
    ("empty-parameters", {"parameters": []}, "parameters"),
    (
        "bad-parameter-type",
        {"parameters": [{"name": "w", "type": "complex", "low": 0, "high": 1}]},
        "parameters[0].type",
    ),
    (
        "low-above-high",
        {"parameters": params_of(2, 1), "reference_config": {"w": 1}, "arms": []},
        "parameters[0].low",
    ),
    (
        "reference-missing-name",
        {"reference_config": {"text_match": 1.0}},
        "reference_config.distance",
    ),
    (
        "reference-unknown-name",
        {"reference_config": {**similar_items()["reference_config"], "x": 1}},
        "reference_config.x",
    ),
    (
        "reference-out-of-bounds",
        {"reference_config": {**similar_items()["reference_config"], "region": 9}},
        "reference_config.region",
    ),
    (
        "arm-out-of-bounds",
        {"arms": [{**similar_items()["arms"][0], "distance": 3.0}]},
        "arms[0].distance",
    ),
    ("duplicate-arms", {"arms": [similar_items()["arms"][0]] * 2}, "arms[1]"),
    ("arm-equals-reference", {"arms": [similar_items()["reference_config"]]}, "arms[0]"),
    ("share-above-one", {"reference_share": 1.5}, "reference_share"),
    ("share-zero", {"reference_share": 0}, "reference_share"),
    ("unknown-mode", {"mode": "batch"}, "mode"),
    ("target-event-exposure", {"target_event": "exposure"}, "target_event"),
    ("exposure-source", {"exposure_source": "both"}, "exposure_source"),
    ("decay-zero", {"decay": 0}, "decay"),
    ("interval-too-small", {"update_interval_s": 0.01}, "update_interval_s"),
    ("extra-field", {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(changes, field, id=case_id) for case_id, changes, field in EXPERIMENT_CASES],
)
def test_invalid_experiment_is_422_naming_the_field(
    app_client: TestClient, changes: dict[str, Any], field: str
) -> None:
    body = similar_items(**{"name": "another", **changes})
    response = app_client.post("/v1/experiments", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)


EVENT_CASES = [
    ("count-zero", {"count": 0}, "events[0].count"),
    ("count-huge", {"count": 10**12}, "events[0].count"),
    ("count-text", {"count": "many"}, "events[0].count"),
    ("event-id-space", {"event_id": "has space"}, "events[0].event_id"),
    ("event-id-long", {"event_id": "x" * 129}, "events[0].event_id"),
    ("type-upper", {"type": "Contact"}, "events[0].type"),
    ("ticket-empty", {"ticket": ""}, "events[0].ticket"),
    ("extra-field", {"user": "u1"}, "events[0].user"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(changes, field, id=case_id) for case_id, changes, field in EVENT_CASES],
)
def test_invalid_event_is_422_naming_the_field(
    app_client: TestClient, ticket: str, changes: dict[str, Any], field: str
) -> None:
    response = app_client.post("/v1/events", json={"events": [good_event(ticket, **changes)]})
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)


QUERY_AND_PATH_CASES = [
    ("GET", "/v1/experiments/similar-items/assignment?unit=" + "u" * 257, "unit"),
    ("GET", "/v1/experiments/similar-items/assignment?unit=", "unit"),
    ("GET", "/v1/experiments/similar-items/ticks?limit=0", "limit"),
    ("GET", "/v1/experiments/similar-items/ticks?after=-1", "after"),
    ("GET", "/v1/experiments/similar-items/stats?draws=5", "draws"),
    ("GET", "/v1/experiments/similar-items/stats?seed=abc", "seed"),
    ("GET", "/v1/audit?limit=100000", "limit"),
    ("GET", "/v1/experiments/Not_A_Slug", "name"),
    ("DELETE", "/v1/experiments/similar-items/arms/abc", "arm_id"),
    ("DELETE", "/v1/experiments/similar-items/arms/0", "arm_id"),
    ("DELETE", "/v1/experiments/similar-items/arms/99999999999", "arm_id"),
]


@pytest.mark.parametrize(("method", "url", "field"), QUERY_AND_PATH_CASES)
def test_invalid_query_or_path_parameter_is_422_naming_it(
    app_client: TestClient, method: str, url: str, field: str
) -> None:
    response = app_client.request(method, url, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json at all", b"", b'{"events": [}', b"\xff\xfe\x00garbage"],
    ids=["truncated", "text", "empty", "broken-array", "binary"],
)
def test_unparsable_json_body_is_422_on_the_body(app_client: TestClient, content: bytes) -> None:
    response = app_client.post("/v1/events", content=content, headers=JSON)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", "body")
    if content:
        assert "expected a JSON document" in response.json()["detail"]


@pytest.mark.parametrize(
    "body", [[], "events", 42, None, {"events": None}, {"events": [1, 2]}, {"events": {}}]
)
def test_wrong_json_shape_is_422_never_500(app_client: TestClient, body: Any) -> None:
    response = app_client.post("/v1/events", content=json.dumps(body), headers=JSON)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError")


def test_unknown_route_and_wrong_method_use_the_same_shape(app_client: TestClient) -> None:
    missing = app_client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert_error_shape(missing.json(), "NotFound")
    wrong = app_client.put("/v1/events", json={"events": []})
    assert wrong.status_code == 405
    assert_error_shape(wrong.json(), "MethodNotAllowed")


def test_wrong_content_type_is_4xx_not_500(app_client: TestClient, ticket: str) -> None:
    response = app_client.post(
        "/v1/events", content=b"events=1", headers={"Content-Type": "text/plain"}
    )
    assert 400 <= response.status_code < 500
    assert_error_shape(response.json())


def test_refused_requests_changed_nothing(app_client: TestClient) -> None:
    experiments = app_client.get("/v1/experiments", headers=ADMIN).json()
    assert [row["name"] for row in experiments] == ["similar-items"]
    assert len(inspect(app_client)["arms"]) == 4
    audit = app_client.get("/v1/audit", headers=ADMIN).json()
    assert [entry["action"] for entry in audit] == ["experiment.create"]
