"""Migration 0023 (the per-segment state and tick records packed), both ways: the
``(arm, segment)`` rows become one row of arrays per arm (a segment without a row holds the
experiment's prior and no counts), the ``(tick, segment, arm)`` rows one row per tick, and
the way down gives back exactly the rows there were; the service reads the packed state."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api import repositories as repo
from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create, tick
from tests.conftest import ADMIN, settings_for
from tests.segment_state import recorded_pairs

PRIOR = (2.0, 3.0)  # the experiment's prior: what a segment without a row holds


def test_packed_segment_state_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        experiment = create(
            client,
            segments={"max_segments": 5},
            prior_alpha=PRIOR[0],
            prior_beta=PRIOR[1],
        )
        tick_id = tick(client)["id"]  # an admin tick is recorded, applied or not
    arm_ids = [arm["id"] for arm in experiment["arms"]]
    # Each arm has data in some segments only (gaps, and an arm with none at all). A pair
    # holding exactly the prior and no counts would come back as no row, which is the same.
    pairs = [
        (arm_id, segment, PRIOR[0] + k + segment, PRIOR[1] + 2 * k, 10.0 * k + segment, 1.0 * k)
        for k, arm_id in enumerate(arm_ids[:-1], start=1)
        for segment in (0, 2, 3 + k % 2)
    ]
    recorded = [
        (tick_id, segment, arm_id, 5.0 + segment, 1.0, 0.5, 4.5, 3.0 + k, 7.0 - k)
        for k, arm_id in enumerate(arm_ids)
        for segment in (1, 3)
    ]
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    command.downgrade(config, "0022")
    with engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO segments (experiment_id, "index", name, created_at) '
                "SELECT 1, i, 's' || i, created_at FROM experiments, "
                "(SELECT 1 AS i UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) AS n"
            )
        )
        connection.execute(
            text(
                "INSERT INTO arm_segments (arm_id, segment, alpha, beta, exposures, "
                "target_events) VALUES (:a, :s, :alpha, :beta, :n, :x)"
            ),
            [dict(zip(("a", "s", "alpha", "beta", "n", "x"), p, strict=True)) for p in pairs],
        )
        connection.execute(
            text(
                "INSERT INTO tick_segments (tick_id, segment, arm_id, exposures, "
                "target_events, alpha_increment, beta_increment, alpha_after, beta_after) "
                "VALUES (:t, :s, :a, :n, :x, :ai, :bi, :aa, :ba)"
            ),
            [
                dict(zip(("t", "s", "a", "n", "x", "ai", "bi", "aa", "ba"), r, strict=True))
                for r in recorded
            ],
        )
    command.upgrade(config, "head")
    with TestClient(create_app(settings_for(database_url))) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.read_transaction() as session:
            states = repo.arm_segment_states(session, arm_ids)
            unpacked = sorted(tuple(pair) for pair in recorded_pairs(session, [tick_id]))
        assert sorted(states) == arm_ids[:-1]  # the arm without data has no row
        for arm_id, state in states.items():
            mine = {s: p for p in pairs if p[0] == arm_id for s in [p[1]]}
            assert state.alphas.size == max(mine) + 1
            for s in range(state.alphas.size):
                expected = mine[s][2:] if s in mine else (*PRIOR, 0.0, 0.0)
                got = (state.alphas[s], state.betas[s], state.exposures[s], state.target_events[s])
                assert got == expected
        assert unpacked == sorted(recorded)
        # The service reads the packed state: one segment's statistics are its pairs'.
        stats = client.get(
            "/v1/experiments/similar-items/stats", params={"segment": "s2"}, headers=ADMIN
        )
        assert stats.status_code == 200, stats.text
        exposures = {row["arm_id"]: row["exposures"] for row in stats.json()["arms"]}
        assert exposures == {
            arm_id: next((p[4] for p in pairs if p[:2] == (arm_id, 2)), 0.0) for arm_id in arm_ids
        }
    command.downgrade(config, "0022")
    with engine.connect() as connection:
        back = connection.execute(
            text("SELECT arm_id, segment, alpha, beta, exposures, target_events FROM arm_segments")
        ).all()
        back_records = connection.execute(
            text(
                "SELECT tick_id, segment, arm_id, exposures, target_events, alpha_increment, "
                "beta_increment, alpha_after, beta_after FROM tick_segments"
            )
        ).all()
    command.upgrade(config, "head")
    engine.dispose()
    assert sorted(tuple(row) for row in back) == sorted(pairs)
    assert sorted(tuple(row) for row in back_records) == sorted(recorded)
