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
from tests.api.helpers import ADMIN, assert_error_shape

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
