"""Stored tokens and roles (docs/security.md "Tokens and roles"): created, listed and revoked
through the admin API, stored as SHA-256 only, viewer and client roles, revocation across
replicas, the audit log's token, the optional client key, and CORS."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.api.helpers import ADMIN, assert_error_shape, create, event
from tests.conftest import SIMILAR_ITEMS, ClientFactory

NEW_CONFIG = {"text_match": 0.3, "distance": 1.9, "price_diff": 0.1, "region": 3}


def new_token(client: TestClient, role: str, name: str = "a token") -> dict[str, Any]:
    answer = client.post("/v1/tokens", json={"name": name, "role": role}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- create, list, revoke ----------------------------------------------------------------------
def test_a_token_is_shown_once_and_stored_as_its_sha256(
    make_client: ClientFactory, database_url: str
) -> None:
    with make_client() as client:
        created = new_token(client, "viewer", "grafana")
        secret = created["token"]
        assert secret.startswith("rt_") and len(secret) >= 3 + 43  # 32 random bytes
        assert created["prefix"] == secret[:9]
        assert created["role"] == "viewer" and created["name"] == "grafana"
        assert created["revoked_at"] is None and created["last_used_at"] is None

        listed = client.get("/v1/tokens", headers=ADMIN).json()
        assert [row["id"] for row in listed] == [created["id"]]
        assert "token" not in listed[0]
        assert secret not in client.get("/v1/tokens", headers=ADMIN).text

    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT token_hash, prefix FROM api_tokens")).all()
        dumped = str(connection.execute(text("SELECT * FROM api_tokens")).all())
    engine.dispose()
    assert rows == [(hashlib.sha256(secret.encode()).hexdigest(), secret[:9])]
    assert secret not in dumped


def test_revoking_stops_the_token_at_once_and_is_idempotent(make_client: ClientFactory) -> None:
    with make_client() as client:
        token = new_token(client, "admin")
        assert client.get("/v1/experiments", headers=bearer(token["token"])).status_code == 200
        revoked = client.delete(f"/v1/tokens/{token['id']}", headers=ADMIN)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        refused = client.get("/v1/experiments", headers=bearer(token["token"]))
        assert refused.status_code == 403
        assert_error_shape(refused.json(), "Forbidden", "Authorization")
        again = client.delete(f"/v1/tokens/{token['id']}", headers=ADMIN)
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        missing = client.delete("/v1/tokens/999", headers=ADMIN)
        assert missing.status_code == 404
        assert_error_shape(missing.json(), "NotFound", "id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "owner"}, "role"),
        ({"name": "", "role": "viewer"}, "name"),
        ({"name": "<script>", "role": "viewer"}, "name"),
        ({"role": "viewer"}, "name"),
        ({"name": "x", "role": "viewer", "token": "mine"}, "token"),
    ],
)
def test_an_invalid_token_request_is_422_naming_the_field(
    sqlite_client: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = sqlite_client.post("/v1/tokens", json=body, headers=ADMIN)
    assert answer.status_code == 422
    assert_error_shape(answer.json(), "ValidationError", field)


def test_revocation_reaches_another_replica_with_its_snapshot_refresh(
    make_client: ClientFactory,
) -> None:
    """Replica B refreshes only when told (its interval is an hour): it serves from its copy
    of the table until its refresh, then refuses (the bound is RANKTUNE_SNAPSHOT_REFRESH_S)."""
    with make_client() as a, make_client(snapshot_refresh_s=3600) as b:
        token = new_token(a, "viewer")
        headers = bearer(token["token"])
        assert b.get("/v1/experiments", headers=headers).status_code == 403  # not loaded yet
        b.app.state.runtime.refresh_snapshots()  # type: ignore[attr-defined]
        assert b.get("/v1/experiments", headers=headers).status_code == 200

        assert a.delete(f"/v1/tokens/{token['id']}", headers=ADMIN).status_code == 200
        assert a.get("/v1/experiments", headers=headers).status_code == 403
        assert b.get("/v1/experiments", headers=headers).status_code == 200  # B's old copy
        b.app.state.runtime.refresh_snapshots()  # type: ignore[attr-defined]
        assert b.get("/v1/experiments", headers=headers).status_code == 403


def test_last_use_is_written_now_and_then(make_client: ClientFactory) -> None:
    with make_client() as client:
        used, unused = new_token(client, "viewer", "used"), new_token(client, "viewer", "idle")
        assert client.get("/v1/experiments", headers=bearer(used["token"])).status_code == 200
        client.app.state.runtime.write_token_use()  # type: ignore[attr-defined]
        rows = {row["name"]: row for row in client.get("/v1/tokens", headers=ADMIN).json()}
    assert rows["used"]["last_used_at"] is not None
    assert rows["idle"]["last_used_at"] is None
    del unused


# -- roles ---------------------------------------------------------------------------------------
def test_a_viewer_reads_the_admin_api_and_changes_nothing(make_client: ClientFactory) -> None:
    with make_client() as client:
        create(client)
        viewer = bearer(new_token(client, "viewer")["token"])
        for path in (
            "/v1/experiments",
            "/v1/experiments/similar-items",
            "/v1/experiments/similar-items/ticks",
            "/v1/experiments/similar-items/report",
            "/v1/audit",
        ):
            assert client.get(path, headers=viewer).status_code == 200, path
        for method, path, body in (
            ("POST", "/v1/experiments", {**SIMILAR_ITEMS, "name": "other"}),
            ("POST", "/v1/experiments/similar-items/pause", None),
            ("POST", "/v1/experiments/similar-items/arms", {"config": NEW_CONFIG}),
            ("PATCH", "/v1/experiments/similar-items", {"update_interval_s": 5}),
            ("POST", "/v1/experiments/similar-items/tick", None),
        ):
            refused = client.request(method, path, json=body, headers=viewer)
            assert refused.status_code == 403, path
            assert_error_shape(refused.json(), "Forbidden", "Authorization")
            assert "viewer token only reads" in refused.json()["detail"]
        # Admin-only reads: webhooks (URLs, deliveries) and the tokens themselves.
        for path in ("/v1/webhooks", "/v1/webhooks/deliveries", "/v1/tokens"):
            refused = client.get(path, headers=viewer)
            assert refused.status_code == 403, path
            assert "for admins only" in refused.json()["detail"]
        assert (
            client.post(
                "/v1/tokens", json={"name": "x", "role": "admin"}, headers=viewer
            ).status_code
            == 403
        )
        experiment = client.get("/v1/experiments/similar-items", headers=ADMIN).json()
    assert experiment["status"] == "running" and len(experiment["arms"]) == 4


def test_a_client_token_cannot_use_the_admin_api(sqlite_client: TestClient) -> None:
    client_token = bearer(new_token(sqlite_client, "client")["token"])
    refused = sqlite_client.get("/v1/experiments", headers=client_token)
    assert refused.status_code == 403
    assert "client token only calls the client routes" in refused.json()["detail"]


def test_a_stored_admin_token_does_everything_and_the_audit_names_it(
    make_client: ClientFactory,
) -> None:
    with make_client() as client:
        token = new_token(client, "admin", "deploy-bot")
        admin = bearer(token["token"])
        assert client.post("/v1/experiments", json=SIMILAR_ITEMS, headers=admin).status_code == 201
        assert client.post("/v1/experiments/similar-items/pause", headers=ADMIN).status_code == 200
        entries = client.get("/v1/audit", headers=ADMIN).json()
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["token.create"]["token"] == "RANKTUNE_ADMIN_TOKEN"
    assert by_action["token.create"]["details"]["prefix"] == token["prefix"]
    assert by_action["experiment.create"]["token"] == f"deploy-bot ({token['prefix']})"
    assert by_action["experiment.pause"]["token"] == "RANKTUNE_ADMIN_TOKEN"


# -- the client key ------------------------------------------------------------------------------
def test_client_routes_are_open_by_default(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    answer = sqlite_client.get("/v1/experiments/similar-items/assignment", params={"unit": "u"})
    assert answer.status_code == 200


def test_a_required_client_key_guards_every_client_route(make_client: ClientFactory) -> None:
    with make_client(client_key_required=True) as client:
        create(client)
        key = bearer(new_token(client, "client", "web")["token"])
        viewer = bearer(new_token(client, "viewer")["token"])
        assignment = "/v1/experiments/similar-items/assignment"

        missing = client.get(assignment, params={"unit": "u"})
        assert missing.status_code == 401
        assert_error_shape(missing.json(), "Unauthorized", "Authorization")
        assert "client key" in missing.json()["detail"]
        wrong = client.get(assignment, params={"unit": "u"}, headers=bearer("rt_wrong"))
        assert wrong.status_code == 403
        assert_error_shape(wrong.json(), "Forbidden", "Authorization")
        refused = client.get(assignment, params={"unit": "u"}, headers=viewer)
        assert refused.status_code == 403 and "viewer token" in refused.json()["detail"]
        for path in ("/v1/experiments/similar-items/snapshot", "/v1/experiments/nope/snapshot"):
            assert client.get(path).status_code == 401  # nothing said about what exists
        # Checked before the body: an invalid body without a key is a 401, not a 422.
        assert client.post("/v1/events", json={"events": "nonsense"}).status_code == 401

        for headers in (key, ADMIN):
            served = client.get(assignment, params={"unit": "u"}, headers=headers)
            assert served.status_code == 200
            snapshot = client.get("/v1/experiments/similar-items/snapshot", headers=headers)
            assert snapshot.status_code == 200
        ticket = served.json()["ticket"]
        accepted = client.post("/v1/events", json={"events": [event(ticket, "e1")]}, headers=key)
        assert accepted.status_code == 200 and accepted.json()["accepted"] == 1


# -- CORS ------------------------------------------------------------------------------------------
ALLOWED = "https://shop.example.com"
OTHER = "https://evil.example.net"


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/v1/experiments/similar-items/assignment",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_allows_the_configured_origins_only(make_client: ClientFactory) -> None:
    with make_client(cors_origins=f"{ALLOWED}, http://localhost:3000") as client:
        create(client)
        allowed = preflight(client, ALLOWED)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "GET" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed.headers

        refused = preflight(client, OTHER)
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        url = "/v1/experiments/similar-items/assignment"
        simple = client.get(url, params={"unit": "u"}, headers={"Origin": ALLOWED})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        foreign = client.get(url, params={"unit": "u"}, headers={"Origin": OTHER})
        assert foreign.status_code == 200  # answered, but the browser withholds it
        assert "access-control-allow-origin" not in foreign.headers
        # Errors carry the header too, so the page can read why.
        missing = client.get(
            "/v1/experiments/nope/assignment", params={"unit": "u"}, headers={"Origin": ALLOWED}
        )
        assert missing.status_code == 404
        assert missing.headers["access-control-allow-origin"] == ALLOWED


def test_cors_is_off_by_default(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    answer = preflight(sqlite_client, ALLOWED)
    assert "access-control-allow-origin" not in answer.headers
    simple = sqlite_client.get(
        "/v1/experiments/similar-items/assignment",
        params={"unit": "u"},
        headers={"Origin": ALLOWED},
    )
    assert "access-control-allow-origin" not in simple.headers


def test_a_malformed_cors_origin_is_refused_at_start_up() -> None:
    from pydantic import ValidationError

    from api.settings import Settings

    with pytest.raises(ValidationError, match="expected origins such as"):
        Settings(cors_origins="https://ok.example.com, shop.example.com/path")
