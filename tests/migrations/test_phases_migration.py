"""Migration 0012 (phases): experiments that existed before it get the row of their phase 1,
and a downgrade refuses to leave a promoted experiment to code that knows one reference."""

from __future__ import annotations

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import ADMIN, create
from tests.conftest import settings_for


def test_existing_experiments_get_their_first_phase(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        created = create(client, reference_share=0.3, target_event="purchase")
        create(client, name="archived-one")
        assert client.post("/v1/experiments/archived-one/stop", headers=ADMIN).status_code == 200
        assert client.post("/v1/experiments/archived-one/archive", headers=ADMIN).status_code == 200
    config = migrations_config(database_url)
    command.downgrade(config, "0011")  # as if these experiments predated phases
    engine = create_engine(database_url)
    with engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT name, status FROM experiments")).all())
    assert statuses == {"similar-items": "running", "archived-one": "stopped"}
    command.upgrade(config, "head")

    with TestClient(create_app(settings_for(database_url))) as client:
        answer = client.get("/v1/experiments/similar-items/phases", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        (phase,) = answer.json()
        assert phase["number"] == 1 and phase["trigger"] == "create"
        assert phase["reference_arm_id"] == created["reference_arm_id"]
        assert phase["reference_config"] == created["reference_config"]
        assert (phase["reference_share"], phase["target_event"]) == (0.3, "purchase")
        assert phase["started_at"] == created["created_at"]
        assert (phase["ended_at"], phase["summary"], phase["changes"]) == (None, None, {})
        promoted = client.post(
            "/v1/experiments/similar-items/promote",
            json={"arm_id": created["arms"][1]["id"]},
            headers=ADMIN,
        )
        assert promoted.status_code == 200, promoted.text
    engine.dispose()

    with pytest.raises(RuntimeError, match="past phase 1"):
        command.downgrade(config, "0011")
