"""Migration 0015: the stored tokens' table and the audit log's token column, both ways."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from api.db import migrations_config
from tests.conftest import ADMIN, settings_for


def test_downgrade_drops_the_tokens_and_upgrade_brings_the_table_back(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        created = client.post("/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=ADMIN)
        assert created.status_code == 201
    config = migrations_config(database_url)
    engine = create_engine(database_url)

    command.downgrade(config, "0014")
    schema = inspect(engine)
    assert "api_tokens" not in schema.get_table_names()
    assert "token" not in {column["name"] for column in schema.get_columns("audit_log")}
    with engine.connect() as connection:  # the audit entry itself stays
        actions = connection.execute(text("SELECT action FROM audit_log")).scalars().all()
    assert "token.create" in actions

    command.upgrade(config, "head")
    schema = inspect(engine)
    columns = {column["name"] for column in schema.get_columns("api_tokens")}
    assert columns == {
        "id",
        "name",
        "role",
        "token_hash",
        "prefix",
        "created_at",
        "revoked_at",
        "last_used_at",
    }
    assert "token" in {column["name"] for column in schema.get_columns("audit_log")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 0
    engine.dispose()
    # The server runs on the upgraded database again, without the dropped token.
    with TestClient(create_app(settings_for(database_url))) as client:
        assert client.get("/v1/tokens", headers=ADMIN).json() == []
