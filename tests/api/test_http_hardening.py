"""HTTP hardening of the app itself: 405 answers name the allowed methods, admin answers are
never cached, and admin calls are authenticated before their body is parsed.

What only a real server can show (timeouts, connection limits, the nosniff header that
uvicorn adds, disconnects) is in tests/process/test_server_limits.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.routes import admin
from api.services import experiments as service
from tests.api.helpers import ADMIN, assert_error_shape, assign, create
from tests.conftest import SIMILAR_ITEMS

ADMIN_API = [route for route in admin.router.routes if isinstance(route, APIRoute)]
NEW_CONFIG = {"text_match": 0.3, "distance": 1.9, "price_diff": 0.1, "region": 3}
EXPERT_CONFIG = {"text_match": 0.4, "distance": 1.8, "price_diff": 0.2, "region": 2}
METRIC = {"event": "view", "role": "secondary", "direction": "increase"}


# -- 405 -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/events", {"POST"}),
        ("DELETE", "/v1/experiments", {"GET", "POST"}),
        ("PATCH", "/v1/experiments/similar-items/arms/2", {"DELETE"}),
        ("POST", "/v1/experiments/similar-items/assignment", {"GET"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_405_names_the_allowed_methods_in_the_error_shape(
    sqlite_client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    answer = sqlite_client.request(method, path, headers=ADMIN)
    assert answer.status_code == 405, answer.text
    assert_error_shape(answer.json(), "MethodNotAllowed")
    assert {name.strip() for name in answer.headers["allow"].split(",")} == allowed


# -- Cache-Control: no-store on admin answers ----------------------------------------------
# Every route of api/routes/admin.py, with the answer it gives here.
ADMIN_ROUTES: list[tuple[str, str, Any, int]] = [
    ("POST", "/v1/experiments", {**SIMILAR_ITEMS, "name": "other"}, 201),
    ("GET", "/v1/experiments", None, 200),
    ("GET", "/v1/experiments/similar-items", None, 200),
    ("POST", "/v1/experiments/similar-items/pause", None, 200),
    ("POST", "/v1/experiments/similar-items/resume", None, 200),
    ("POST", "/v1/experiments/other/stop", None, 200),
    ("POST", "/v1/experiments/similar-items/arms", {"config": NEW_CONFIG}, 201),
    ("DELETE", "/v1/experiments/similar-items/arms/4", None, 200),
    ("POST", "/v1/experiments/similar-items/tick", None, 200),
    ("GET", "/v1/experiments/similar-items/ticks", None, 200),
    ("GET", "/v1/experiments/similar-items/ticks/export", None, 200),
    ("POST", "/v1/experiments/similar-items/evaluate", {"candidate": {"kind": "uniform"}}, 200),
    ("POST", "/v1/experiments/similar-items/evolve?dry_run=true", None, 200),
    ("POST", "/v1/experiments/similar-items/expert-configs", {"config": EXPERT_CONFIG}, 201),
    ("GET", "/v1/experiments/similar-items/expert-configs", None, 200),
    ("DELETE", "/v1/experiments/similar-items/expert-configs/1", None, 200),
    ("GET", "/v1/experiments/similar-items/generations", None, 200),
    ("GET", "/v1/experiments/similar-items/arms/1/lineage", None, 200),
    ("GET", "/v1/experiments/similar-items/stats?draws=100", None, 200),
    ("GET", "/v1/experiments/similar-items/plots/posteriors.svg", None, 200),
    ("POST", "/v1/experiments/similar-items/metrics", METRIC, 201),
    ("GET", "/v1/experiments/similar-items/metrics", None, 200),
    ("GET", "/v1/experiments/similar-items/report", None, 200),
    ("DELETE", "/v1/experiments/similar-items/metrics/view", None, 200),  # keeps snapshot 1
    ("GET", "/v1/experiments/similar-items/report/snapshots", None, 200),
    ("GET", "/v1/experiments/similar-items/report/snapshots/1", None, 200),
    ("POST", "/v1/experiments/other/archive", None, 200),
    ("PATCH", "/v1/experiments/similar-items", {"update_interval_s": 5}, 200),
    ("POST", "/v1/experiments/similar-items/promote", {"arm_id": 2}, 200),
    ("GET", "/v1/experiments/similar-items/phases", None, 200),
    ("GET", "/v1/audit", None, 200),
]


def test_every_admin_route_answers_no_store(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    untested = {(route.path, method) for route in ADMIN_API for method in route.methods}
    for method, path, body, status in ADMIN_ROUTES:
        answer = sqlite_client.request(method, path, json=body, headers=ADMIN)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.headers.get("cache-control") == "no-store", (method, path)
        untested -= {
            (route.path, method)
            for route in ADMIN_API
            if route.path_regex.match(path.split("?")[0])
        }
    assert not untested, f"admin routes this test misses: {untested}"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("GET", "/v1/experiments", {}, None, 401),
        ("GET", "/v1/audit", {"Authorization": "Bearer wrong"}, None, 403),
        ("GET", "/v1/experiments/nothing-here", ADMIN, None, 404),
        ("GET", "/v1/experiments/similar-items/ticks?limit=0", ADMIN, None, 422),
        ("POST", "/v1/experiments", ADMIN, {"name": "x"}, 422),
        ("PUT", "/v1/experiments", ADMIN, None, 405),
        ("GET", "/v1/no-such-admin-call", ADMIN, None, 404),
    ],
)
def test_admin_error_answers_are_no_store(
    sqlite_client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    status: int,
) -> None:
    create(sqlite_client)
    answer = sqlite_client.request(method, path, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers.get("cache-control") == "no-store"


def test_admin_body_too_large_is_no_store(sqlite_client: TestClient) -> None:
    big = b'{"name": "' + b"x" * 2_100_000 + b'"}'
    answer = sqlite_client.post(
        "/v1/experiments", content=big, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers.get("cache-control") == "no-store"


def test_an_unexpected_error_is_no_store(
    sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "experiment_summaries", broken)
    # The same app, its runtime already started by sqlite_client (no second lifespan).
    answering = TestClient(sqlite_client.app, raise_server_exceptions=False)
    answer = answering.get("/v1/experiments", headers=ADMIN)
    assert answer.status_code == 500
    assert answer.headers.get("cache-control") == "no-store"
    assert_error_shape(answer.json(), "InternalError")


def test_client_answers_are_left_to_the_default(sqlite_client: TestClient) -> None:
    """The client API and the probe are not admin data: no blanket no-store there."""
    create(sqlite_client)
    ticket = assign(sqlite_client, "u-1")["ticket"]
    answers = [
        sqlite_client.get("/v1/experiments/similar-items/assignment", params={"unit": "u-2"}),
        sqlite_client.get("/v1/experiments/nothing/assignment", params={"unit": "u-2"}),
        sqlite_client.get("/v1/experiments/similar-items/snapshot"),
        sqlite_client.post(
            "/v1/events",
            json={"events": [{"ticket": ticket, "type": "contact", "count": 1, "event_id": "e"}]},
        ),
        sqlite_client.get("/health"),
    ]
    assert [answer.status_code for answer in answers] == [200, 404, 200, 200, 200]
    assert all("cache-control" not in answer.headers for answer in answers)


# -- authentication before the body is parsed ----------------------------------------------
BODY_ROUTES = [
    "/v1/experiments",
    "/v1/experiments/similar-items/arms",
    "/v1/experiments/similar-items/expert-configs",
]
BAD_BODIES = [b"{", b"not json", b"[]", b'{"config": 1}', b""]


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize(
    "content", BAD_BODIES, ids=["truncated", "text", "array", "shape", "empty"]
)
def test_admin_body_is_parsed_only_after_authentication(
    sqlite_client: TestClient, path: str, content: bytes
) -> None:
    create(sqlite_client)
    json_type = {"Content-Type": "application/json"}

    missing = sqlite_client.post(path, content=content, headers=json_type)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error_shape(missing.json(), "Unauthorized", "Authorization")

    for wrong in ("Bearer not-the-token", "Basic Zm9vOmJhcg=="):
        refused = sqlite_client.post(
            path, content=content, headers={**json_type, "Authorization": wrong}
        )
        assert refused.status_code == (403 if wrong.startswith("Bearer") else 401), refused.text
        assert_error_shape(refused.json(), field="Authorization")

    parsed = sqlite_client.post(path, content=content, headers={**json_type, **ADMIN})
    assert parsed.status_code == 422, parsed.text
    assert_error_shape(parsed.json(), "ValidationError")


def test_admin_routes_still_document_the_bearer_scheme(sqlite_client: TestClient) -> None:
    schema = sqlite_client.get("/openapi.json").json()
    create_op = schema["paths"]["/v1/experiments"]["post"]
    assert create_op["security"] == [{"HTTPBearer": []}]
    assert "requestBody" in create_op
    assert "security" not in schema["paths"]["/v1/events"]["post"]
