"""Migration 0024 (the ticks' report count batches), both ways: the way down folds every
batch into ``metric_counts`` (no count lost, added to the counts already folded), the way
up starts with no batch, and the report reads the same numbers throughout."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api import repositories as repo
from api.app import create_app
from api.db import add_counts, migrations_config
from tests.api.helpers import create
from tests.conftest import ADMIN, settings_for


def report_rows(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/experiments/similar-items/report", headers=ADMIN)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


def test_metric_batches_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        experiment = create(client, segments={"max_segments": 3})
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        reference = experiment["reference_arm_id"]
        keys = [
            (arm["id"], "reference" if arm["id"] == reference else "target", kind, bucket, seg)
            for arm in experiment["arms"]
            for kind in ("exposure", "contact")
            for bucket in (0, 5, 63)
            for seg in (0, 2)
        ]
        folded = [(1, 1, *key, 40 + 3 * i) for i, key in enumerate(keys)]
        pending = [
            repo.PendingRow(arm, group, kind, "", bucket, 10 + i % 7, seg)
            for i, (arm, group, kind, bucket, seg) in enumerate(keys)
        ]
        with runtime.transaction() as session:
            add_counts(session.connection(), "metric_counts", repo._METRIC_COUNT_KEY, folded)
            # a tick's batches, not folded
            repo.add_metric_counts(session, 1, 1, repo.PendingWindow.of(pending))
        before = report_rows(client)
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    command.downgrade(config, "0023")
    with engine.connect() as connection:
        assert "metric_count_batches" not in inspect(connection).get_table_names()
        stored = connection.execute(
            text("SELECT arm_id, assignment_group, type, bucket, segment, count FROM metric_counts")
        ).all()
    assert {tuple(row[:5]): row[5] for row in stored} == {
        key: 40 + 3 * i + 10 + i % 7 for i, key in enumerate(keys)
    }
    command.upgrade(config, "head")
    engine.dispose()
    with TestClient(create_app(settings_for(database_url))) as client:
        assert report_rows(client) == before
