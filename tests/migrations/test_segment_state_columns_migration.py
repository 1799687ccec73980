"""Migrations 0028 (each arm's quarantined events per segment) and 0029 (its ratio
moments), both ways: a state row written before them reads as no quarantined events and
ratio moments equal to its exposures (a dispersion factor of 1), the columns are stored
uncompressed on PostgreSQL like the other packed columns, and the way down drops them and
keeps the rest."""

from __future__ import annotations

import numpy as np
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api import repositories as repo
from api.app import create_app
from api.db import migrations_config, pack_floats
from tests.api.helpers import create
from tests.conftest import settings_for


def test_segment_quarantine_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        arm_id = create(client, segments={"max_segments": 3})["arms"][1]["id"]
    before = [np.array([1.0, 2.5]), np.array([1.0, 4.0]), np.array([0.0, 7.0]), np.array([0, 1.0])]
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    command.downgrade(config, "0027")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO arm_segment_states (arm_id, alphas, betas, exposures, "
                "target_events) VALUES (:arm, :a, :b, :n, :x)"
            ),
            {"arm": arm_id, **dict(zip("abnx", map(pack_floats, before), strict=True))},
        )
    command.upgrade(config, "head")
    if database_url.startswith("postgresql"):
        with engine.connect() as connection:
            storage = connection.execute(
                text(
                    "SELECT a.attname, a.attstorage FROM pg_attribute a JOIN pg_class c "
                    "ON c.oid = a.attrelid WHERE c.relname = 'arm_segment_states' "
                    "AND a.attname IN ('quarantined_events', 'ratio_moments')"
                )
            ).all()
        assert dict(storage) == {"quarantined_events": "e", "ratio_moments": "e"}
    with TestClient(create_app(settings_for(database_url))) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.read_transaction() as session:
            state = repo.arm_segment_states(session, [arm_id])[arm_id]
        assert state.quarantined_events.tolist() == [0.0, 0.0]  # nothing known: none
        assert state.ratio_moments.tolist() == [0.0, 7.0]  # the exposures: a factor of 1
        assert [state.alphas.tolist(), state.target_events.tolist()] == [[1.0, 2.5], [0.0, 1.0]]
        with runtime.transaction() as session:
            repo.write_arm_segment_states(
                session,
                {arm_id: repo.ArmSegmentArrays(*before, np.array([0.0, 3.0]), np.array([0, 12.5]))},
            )
        with runtime.read_transaction() as session:
            state = repo.arm_segment_states(session, [arm_id])[arm_id]
        assert state.quarantined_events.tolist() == [0.0, 3.0]
        assert state.ratio_moments.tolist() == [0.0, 12.5]
    command.downgrade(config, "0027")
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM arm_segment_states")).mappings().one()
    assert "quarantined_events" not in row and "ratio_moments" not in row
    assert bytes(row["betas"]) == pack_floats(before[1])
    command.upgrade(config, "head")
    engine.dispose()
