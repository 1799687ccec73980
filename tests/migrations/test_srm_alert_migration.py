"""Migration 0013: a downgrade leaves the circuit breaker's per-arm baseline readable by the
code before it (per-group totals beside the per-arm counts)."""

from __future__ import annotations

import json

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create
from tests.conftest import settings_for

COUNTS = {
    "target": {"exposure": {"2": [5, 0, 1], "3": [1, 2, 0]}, "contact": {"3": [0, 1, 0]}},
    "reference": {"exposure": {"1": [4, 4, 4]}},
}


def test_downgrade_adds_group_totals_to_breaker_baselines(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client)
    engine = create_engine(database_url)
    baseline = {"phase": 1, "at": "2026-12-04T10:00:00+00:00", "arm_id": None, "counts": COUNTS}
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE experiments SET breaker_baseline = :b, srm_alert = :a"),
            {"b": json.dumps(baseline), "a": '{"phase": 1}'},
        )
    config = migrations_config(database_url)
    command.downgrade(config, "0012")
    with engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT breaker_baseline FROM experiments")).scalars()
    engine.dispose()
    stored = stored if isinstance(stored, dict) else json.loads(stored)  # SQLite: text
    assert stored == {
        **baseline,
        "target": {"exposure": [6, 2, 1], "contact": [0, 1, 0]},
        "reference": {"exposure": [4, 4, 4]},
    }
    command.upgrade(config, "head")
