"""HTTP hardening of the app itself: 405 answers name the allowed methods, admin answers are
never cached, and admin calls are authenticated before their body is parsed.

What only a real server can show (timeouts, connection limits, the nosniff header that
uvicorn adds, disconnects) is in tests/process/test_server_limits.py.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.routes import admin
from tests.api.helpers import ADMIN, assert_error_shape, create

ADMIN_API = [route for route in admin.router.routes if isinstance(route, APIRoute)]
NEW_CONFIG = {"text_match": 0.3, "distance": 1.9, "price_diff": 0.1, "region": 3}


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
