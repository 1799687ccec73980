"""Migration 0018: the propensity columns, both ways; ticks recorded before it keep working
(NULL propensities: the export shows them empty, the estimates leave those windows out)."""

from __future__ import annotations

import json

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import assign, create, event, post_events, tick
from tests.conftest import ADMIN, settings_for

NAME = "similar-items"


def _window(client: TestClient, prefix: str) -> None:
    answers = [assign(client, f"{prefix}-{unit}") for unit in range(40)]
    post_events(client, [event(a["ticket"], f"{prefix}-c{i}") for i, a in enumerate(answers)])
    tick(client)


def test_downgrade_drops_the_columns_and_old_ticks_survive_the_upgrade(database_url: str) -> None:
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client)
        _window(client, "before")
    command.downgrade(config, "0015")
    schema = inspect(engine)
    assert {"propensity", "draw_probability"}.isdisjoint(
        column["name"] for column in schema.get_columns("tick_arms")
    )
    assert {"snapshot_version", "snapshot_changed"}.isdisjoint(
        column["name"] for column in schema.get_columns("ticks")
    )
    command.upgrade(config, "head")
    engine.dispose()
    with TestClient(create_app(settings_for(database_url))) as client:
        _window(client, "after")
        export = client.get(
            f"/v1/experiments/{NAME}/ticks/export", params={"format": "jsonl"}, headers=ADMIN
        )
        assert export.status_code == 200
        rows = [json.loads(line) for line in export.text.splitlines()]
        old = [r for r in rows if r["tick"] == 1 and r["group"] == "target"]
        new = [r for r in rows if r["tick"] == 2 and r["group"] == "target"]
        assert old and all(r["propensity"] is None for r in old)
        assert new and sum(r["propensity"] for r in new) == pytest.approx(1.0, abs=1e-5)
        # The first tick after the upgrade has no earlier version to compare with.
        assert {r["snapshot_changed"] for r in rows if r["tick"] == 2} == {None}
        result = client.post(
            f"/v1/experiments/{NAME}/evaluate",
            json={"candidate": {"kind": "uniform"}},
            headers=ADMIN,
        ).json()
        assert result["windows"] == 1
        assert result["windows_skipped"] == {"without_propensities": 1, "snapshot_changed": 0}
