"""Migration 0019 (segments), both ways: pending counts keep their totals (summed over
segments on the way down, in segment 0 on the way up), and an experiment from before it
keeps serving and ticking, unsegmented."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import assign, create, event, post_events, tick
from tests.conftest import settings_for
from tests.pending import pending_rows


def test_segments_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client)
        create(client, name="segmented", segments={"max_segments": 4})
    engine = create_engine(database_url)
    config = migrations_config(database_url)
    command.downgrade(config, "0024")  # pending_counts, before migration 0025 packed them
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM pending_counts"))
        for segment, count in ((0, 3), (1, 4), (2, 5)):
            connection.execute(
                text(
                    "INSERT INTO pending_counts (experiment_id, arm_id, assignment_group, type, "
                    "reason, bucket, segment, count) VALUES (2, 5, 'target', 'exposure', '', 7, "
                    ":segment, :count)"
                ),
                {"segment": segment, "count": count},
            )
    command.downgrade(config, "0018")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT arm_id, bucket, count FROM pending_counts WHERE experiment_id = 2")
        ).all()
        tables = set(inspect(connection).get_table_names())
        experiment_columns = {c["name"] for c in inspect(connection).get_columns("experiments")}
    assert [tuple(row) for row in rows] == [(5, 7, 12)]
    assert not {"segments", "arm_segments", "tick_segments"} & tables
    assert "max_segments" not in experiment_columns
    command.upgrade(config, "head")
    with engine.connect() as connection:
        rows = [(row.segment, row.count) for row in pending_rows(connection, 2)]
        maximum = connection.execute(text("SELECT max_segments FROM experiments")).scalars().all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [(0, 12)]
    assert maximum == [None, None]  # the downgrade forgot that experiment 2 was segmented
    with TestClient(create_app(settings_for(database_url))) as client:
        answers = [assign(client, f"u{i}") for i in range(60)]
        assert all(len(answer["ticket"]) == 52 for answer in answers)
        post_events(client, [event(a["ticket"], f"e{i}") for i, a in enumerate(answers)])
        client.app.state.runtime.flush_exposures()  # type: ignore[attr-defined]
        assert tick(client)["applied"] is True
