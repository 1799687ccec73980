"""Migration 0025 (pending counts as packed batches), both ways: each experiment's
``pending_counts`` rows become one batch with the same totals by key (and its credited
reference exposures), the way down sums the batches by key back into rows, and the
service ticks the migrated counts."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from api.db import migrations_config
from api.pending import PendingRow
from tests.api.helpers import create, tick
from tests.conftest import settings_for
from tests.pending import clear_pending, insert_pending, pending_totals

KEY = ("experiment_id", "arm_id", "assignment_group", "type", "reason", "bucket", "segment")


def test_pending_batches_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        first = create(client)
        second = create(client, name="segmented", segments={"max_segments": 4})
    reference = first["reference_arm_id"]
    target = first["arms"][1]["id"]
    other = second["arms"][1]["id"]
    rows = [
        (1, reference, "reference", "exposure", "", 3, 0, 40),
        (1, reference, "reference", "contact", "", 3, 0, 4),
        (1, target, "target", "exposure", "", 5, 0, 50),
        (1, target, "target", "contact", "over_ticket_limit", 5, 0, 2),
        (2, other, "target", "exposure", "", 7, 1, 3),
        (2, other, "target", "exposure", "", 7, 2, 2**40),
    ]
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    command.downgrade(config, "0024")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM pending_counts"))
        connection.execute(
            text(
                f"INSERT INTO pending_counts ({', '.join(KEY)}, count) VALUES "
                f"({', '.join(':' + name for name in KEY)}, :count)"
            ),
            [dict(zip((*KEY, "count"), row, strict=True)) for row in rows],
        )
    command.upgrade(config, "head")
    with engine.begin() as connection:
        assert "pending_counts" not in inspect(connection).get_table_names()
        batches = connection.execute(
            text(
                "SELECT experiment_id, reference_exposures FROM pending_batches "
                "ORDER BY experiment_id"
            )
        ).all()
        assert [tuple(batch) for batch in batches] == [(1, 40), (2, 0)]
        assert pending_totals(connection) == {row[:-1]: row[-1] for row in rows}
        # A second batch of a key already pending: the way down sums them.
        insert_pending(connection, 2, [PendingRow(other, "target", "exposure", "", 7, 5, 1)])
    command.downgrade(config, "0024")
    with engine.connect() as connection:
        back = connection.execute(
            text(f"SELECT {', '.join(KEY)}, count FROM pending_counts ORDER BY {', '.join(KEY)}")
        ).all()
    expected = sorted([*rows[:4], (2, other, "target", "exposure", "", 7, 1, 8), rows[5]])
    assert [tuple(row) for row in back] == expected
    command.upgrade(config, "head")
    engine.dispose()
    with TestClient(create_app(settings_for(database_url))) as client:
        applied = tick(client)
        assert applied["applied"] is True
        assert applied["reference_exposures"] == 40
        assert applied["target_exposures"] == 50
    engine = create_engine(database_url)
    with engine.begin() as connection:
        assert set(pending_totals(connection)) == {row[:-1] for row in rows[4:]}
        clear_pending(connection)
    engine.dispose()
