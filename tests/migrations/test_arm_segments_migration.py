"""Migration 0022 (arm segment restriction), both ways: arms from before it are served in
every segment (NULL); the way down drops the restriction (the arm is then served
everywhere) and the way up brings the column back empty; the experiment keeps serving and
ticking throughout."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create, tick
from tests.api.helpers import inspect as inspect_experiment
from tests.conftest import ADMIN, settings_for

NEW = {"text_match": 0.3, "distance": 1.7, "price_diff": 0.2, "region": 3}
ARMS = "/v1/experiments/similar-items/arms"


def test_arm_segments_migration_both_ways(database_url: str) -> None:
    config = migrations_config(database_url)
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client, segments={"max_segments": 3})
        body = {"config": NEW, "segments": ["cars"]}
        restricted = client.post(ARMS, json=body, headers=ADMIN).json()["id"]
    engine = create_engine(database_url)
    command.downgrade(config, "0021")
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("arms")}
    assert "segments" not in columns
    command.upgrade(config, "head")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT id, segments FROM arms ORDER BY id")).all()
    engine.dispose()
    assert restricted in [row[0] for row in stored]
    assert [row[1] for row in stored] == [None] * len(stored)
    with TestClient(create_app(settings_for(database_url))) as client:
        arms = inspect_experiment(client)["arms"]
        assert [arm["segments"] for arm in arms] == [None] * len(arms)
        served = set()
        for index in range(200):
            answer = client.get(
                "/v1/experiments/similar-items/assignment",
                params={"unit": f"u{index}", "segment": "default"},
            ).json()
            served.add(answer["arm_id"])
        assert restricted in served  # no longer restricted: served in the default segment
        assert tick(client)["applied"] in (True, False)
        other = {**NEW, "region": 2}
        again = client.post(ARMS, json={"config": other, "segments": ["cars"]}, headers=ADMIN)
        assert again.status_code == 201 and again.json()["segments"] == ["cars"]
