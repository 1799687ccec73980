"""Small HTTP helpers shared by the API tests (the fixtures themselves live in conftest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ADMIN, similar_items


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    """Create an experiment (the similar-items example with ``overrides``); its JSON."""
    response = client.post("/v1/experiments", json=similar_items(**overrides), headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def inspect(client: TestClient, name: str = "similar-items") -> dict[str, Any]:
    response = client.get(f"/v1/experiments/{name}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assign(client: TestClient, unit: str, name: str = "similar-items") -> dict[str, Any]:
    response = client.get(f"/v1/experiments/{name}/assignment", params={"unit": unit})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def tick(client: TestClient, name: str = "similar-items") -> dict[str, Any]:
    response = client.post(f"/v1/experiments/{name}/tick", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post_events(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def event(ticket: str, event_id: str, type_: str = "contact", count: int = 1) -> dict[str, Any]:
    return {"ticket": ticket, "type": type_, "count": count, "event_id": event_id}


def tickets_by_arm(
    client: TestClient, name: str = "similar-items", *, units: Iterable[str] | None = None
) -> dict[int, str]:
    """One ticket per served arm (target arms and the reference), from assignments.

    Stops as soon as every active arm and the reference have a ticket.
    """
    experiment = inspect(client, name)
    wanted = {arm["id"] for arm in experiment["arms"] if arm["status"] == "active"}
    found: dict[int, str] = {}
    for unit in units if units is not None else (f"unit-{i}" for i in range(2000)):
        answer = assign(client, unit, name)
        found.setdefault(answer["arm_id"], answer["ticket"])
        if wanted <= set(found):
            break
    assert wanted <= set(found), f"no ticket for arms {wanted - set(found)}"
    return found


def expected_group(salt: str, reference_share: float, unit: str) -> str:
    """The documented group rule, written independently of api.serving: the first 8 bytes of
    SHA-256(salt UTF-8, NUL, unit UTF-8) as a fraction of 2**64, below the share -> reference."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + unit.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2.0**64
    return "reference" if fraction < reference_share else "target"


def assert_error_shape(
    body: Any, kind: str | None = None, field: str | None = None, *, named: bool = True
) -> None:
    """Every 4xx body: {"error": kind, "detail": non-empty text[, "field": name]}; with
    ``named`` the detail itself names the field too."""
    assert isinstance(body, dict), body
    assert set(body) <= {"error", "detail", "field"}, body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if kind is not None:
        assert body["error"] == kind, body
    if field is not None:
        assert body.get("field") == field, body
        if named:
            assert field in body["detail"], body


__all__ = ["ADMIN"]
