"""Migration 0021 (the report's counts per segment), both ways: the counts and the metric
baselines are summed over segments on the way down and land in segment 0 on the way up, and
the overall report reads the same numbers before and after, segmented or not."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create
from tests.conftest import ADMIN, settings_for


def rows_of(client: TestClient, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/experiments/{name}/report", headers=ADMIN)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


def counts(experiment: dict[str, Any], segments: tuple[int, ...]) -> list[dict[str, Any]]:
    """metric_counts rows of an experiment: exposures and contacts of every arm in a few
    buckets, different in each segment."""
    reference = experiment["reference_arm_id"]
    rows = []
    for arm in experiment["arms"]:
        group = "reference" if arm["id"] == reference else "target"
        for segment in segments:
            for bucket in range(0, 64, 3):
                exposures = 20 + (arm["id"] * 7 + bucket * 3 + segment * 11) % 29
                for kind, count in (("exposure", exposures), ("contact", exposures // 4)):
                    rows.append(
                        {
                            "e": experiment["id"],
                            "a": arm["id"],
                            "g": group,
                            "t": kind,
                            "b": bucket,
                            "s": segment,
                            "c": count + segment,
                        }
                    )
    return rows


def test_segment_report_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        segmented = create(client, name="segmented", segments={"max_segments": 4})
        plain = create(client, name="plain")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO metric_counts (experiment_id, phase, arm_id, assignment_group, "
                "type, bucket, segment, count) VALUES (:e, 1, :a, :g, :t, :b, :s, :c)"
            ),
            counts(segmented, (0, 1, 2)) + counts(plain, (0,)),
        )
    with TestClient(create_app(settings_for(database_url))) as client:
        # Declared now: its baseline copies the counts as they stand, segment by segment.
        response = client.post(
            "/v1/experiments/segmented/metrics",
            json={"event": "share", "role": "secondary", "direction": "increase"},
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        before = {name: rows_of(client, name) for name in ("segmented", "plain")}
    with engine.connect() as connection:
        baselines = connection.execute(
            text("SELECT segment, SUM(count) FROM metric_baselines GROUP BY segment")
        ).all()
    assert {row[0] for row in baselines} == {0, 1, 2}
    baseline_total = sum(int(row[1]) for row in baselines)

    config = migrations_config(database_url)
    command.downgrade(config, "0020")
    key = "experiment_id, phase, arm_id, assignment_group, type, bucket"
    with engine.connect() as connection:
        duplicates = connection.execute(
            text(
                f"SELECT COUNT(*) FROM (SELECT {key} FROM metric_counts GROUP BY {key} "
                "HAVING COUNT(*) > 1) AS keys"
            )
        ).scalar_one()
        summed = connection.execute(
            text(
                "SELECT count FROM metric_counts WHERE experiment_id = :e AND arm_id = :a "
                "AND type = 'exposure' AND bucket = 3"
            ),
            {"e": segmented["id"], "a": segmented["reference_arm_id"]},
        ).scalar_one()
        downgraded_baselines = connection.execute(
            text("SELECT SUM(count) FROM metric_baselines")
        ).scalar_one()
    expected = sum(
        row["c"]
        for row in counts(segmented, (0, 1, 2))
        if row["a"] == segmented["reference_arm_id"] and row["t"] == "exposure" and row["b"] == 3
    )
    assert duplicates == 0
    assert summed == expected
    assert downgraded_baselines == baseline_total

    command.upgrade(config, "head")
    with engine.connect() as connection:
        segments = (
            connection.execute(text("SELECT DISTINCT segment FROM metric_counts")).scalars().all()
        )
        baseline_segments = (
            connection.execute(text("SELECT DISTINCT segment FROM metric_baselines"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert segments == [0] and baseline_segments == [0]
    with TestClient(create_app(settings_for(database_url))) as client:
        after = {name: rows_of(client, name) for name in ("segmented", "plain")}
    assert after == before
