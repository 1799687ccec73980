"""Migration 0027 (packed arrays name their element type and take the narrowest), both
ways: plain int64/float64 arrays written at 0026 become exactly the bytes written out
here, the way down gives back the original bytes, more rows than one page of the
migration are converted, and the service reads and ticks what was converted."""

from __future__ import annotations

import json
import struct
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, text

from api import repositories as repo
from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import create, tick
from tests.conftest import settings_for
from tests.migrations.test_packed_storage_migration import PACKED

BATCHES = 450  # pending batches: more than two pages of the migration's 200 rows
BIG = 2**40  # a count that needs 8 bytes


def plain_ints(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def plain_floats(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def narrow(values: list[float]) -> bytes:
    """The format of 0027, written independently: whole numbers in the narrowest of
    int8/16/32/64 (struct codes b, h, i, q), anything else float64."""
    if not all(float(v).is_integer() for v in values):
        return b"f" + plain_floats(values)
    ints = [int(v) for v in values]
    for code, size in (("b", 1), ("h", 2), ("i", 4), ("q", 8)):
        bound = 2 ** (8 * size - 1)
        if all(-bound <= v < bound for v in ints):
            return str(size).encode() + struct.pack(f"<{len(ints)}{code}", *ints)
    raise AssertionError(values)


KEYS = {
    "pending_batches": "id",
    "metric_count_batches": "id",
    "arm_segment_states": "arm_id",
    "tick_segment_windows": "tick_id",
}


def blobs(connection: Connection) -> dict[tuple[str, int, str], bytes]:
    """Every packed value of the four tables (as migrations 0023-0026 made them), by
    (table, row key, column)."""
    found = {}
    for table, columns in PACKED.items():
        key = KEYS[table]
        for row in connection.execute(text(f"SELECT {key}, {', '.join(columns)} FROM {table}")):
            for column, blob in zip(columns, row[1:], strict=True):
                found[(table, int(row[0]), column)] = bytes(blob)
    return found


def test_narrow_packed_migration_both_ways(database_url: str) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        experiment = create(client, segments={"max_segments": 4})
        tick_id = tick(client)["id"]  # recorded, not applied: no record of its own
    reference, target, other = (arm["id"] for arm in experiment["arms"][:3])
    kinds = json.dumps([["reference", "exposure", ""], ["target", "exposure", ""]])
    # Each batch: the reference's and the target's exposures in the default segment.
    counts = [[i + 1, BIG if i == 7 else 2 * i + 2] for i in range(BATCHES)]
    pending = [
        {
            "e": experiment["id"],
            "r": count[0],
            "k": kinds,
            "a": plain_ints([reference, target]),
            "c": plain_ints([0, 1]),
            "b": plain_ints([0, 3]),
            "s": plain_ints([0, 0]),
            "n": plain_ints(count),
        }
        for count in counts
    ]
    state = {
        "alphas": [1.0, 2.5, 40.0],
        "betas": [1.0, 7.0, 1e6],
        "exposures": [0.0, 300.0, 70_000.0],
        "target_events": [0.0, 1.0, 39.0],
    }
    record = {
        "segments": [1, 2, 2],
        "arm_ids": [reference, target, other],
        "exposures": [12.0, 300.0, 5.0],
        "target_events": [1.0, 1.0, 0.0],
        "alpha_increments": [0.0, 1.0, 0.0],
        "beta_increments": [0.0, 25.0, 5 / 12],
        "alphas_after": [1.0, 2.5, 1.0],
        "betas_after": [1.0, 7.0, 1 + 5 / 12],
    }
    report = {
        "arm_ids": [target, other],
        "buckets": [0, 255],
        "segments": [2, 3],
        "counts": [2**33, 1],
    }
    config = migrations_config(database_url)
    engine = create_engine(database_url)
    command.downgrade(config, "0026")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM pending_batches"))
        connection.execute(
            text(
                "INSERT INTO pending_batches (experiment_id, reference_exposures, kinds, "
                "arm_ids, kind_codes, buckets, segments, counts) "
                "VALUES (:e, :r, :k, :a, :c, :b, :s, :n)"
            ),
            pending,
        )
        connection.execute(
            text(
                "INSERT INTO arm_segment_states (arm_id, alphas, betas, exposures, "
                "target_events) VALUES (:arm, :alphas, :betas, :exposures, :target_events)"
            ),
            {"arm": target, **{name: plain_floats(v) for name, v in state.items()}},
        )
        columns = ", ".join(record)
        connection.execute(
            text(
                f"INSERT INTO tick_segment_windows (tick_id, {columns}) "
                f"VALUES (:tick, {', '.join(':' + name for name in record)})"
            ),
            {
                "tick": tick_id,
                **{name: plain_ints(v) for name, v in list(record.items())[:2]},
                **{name: plain_floats(v) for name, v in list(record.items())[2:]},
            },
        )
        connection.execute(
            text(
                "INSERT INTO metric_count_batches (experiment_id, phase, assignment_group, "
                "type, arm_ids, buckets, segments, counts) "
                "VALUES (:e, 0, 'target', 'contact', :a, :b, :s, :n)"
            ),
            {
                "e": experiment["id"],
                **{key: plain_ints(report[name]) for key, name in zip("absn", report, strict=True)},
            },
        )
        before = blobs(connection)
    command.upgrade(config, "head")
    with engine.connect() as connection:
        after = blobs(connection)
    expected: dict[str, Any] = {
        "pending_batches": {"arm_ids": [reference, target], "kind_codes": [0, 1]},
        "arm_segment_states": state,
        "tick_segment_windows": record,
        "metric_count_batches": report,
    }
    assert after.keys() == before.keys()
    assert len({key[1] for key in after if key[0] == "pending_batches"}) == BATCHES
    for (table, row, column), blob in after.items():
        if table == "pending_batches" and column in ("buckets", "segments", "counts"):
            values = {"buckets": [0, 3], "segments": [0, 0]}.get(column)
            values = values or counts[row - min(k[1] for k in after if k[0] == table)]
            assert blob == narrow(values), (row, column)
        else:
            assert blob == narrow(expected[table][column]), (table, column)
    assert after[("arm_segment_states", target, "alphas")][:1] == b"f"
    assert after[("arm_segment_states", target, "exposures")][:1] == b"4"
    assert after[("metric_count_batches", 1, "counts")][:1] == b"8"
    command.downgrade(config, "0026")
    with engine.connect() as connection:
        assert blobs(connection) == before
    command.upgrade(config, "head")
    engine.dispose()
    with TestClient(create_app(settings_for(database_url))) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.read_transaction() as session:
            states = repo.arm_segment_states(session, [target])
            records = repo.tick_segment_records(session, [tick_id])[tick_id]
        assert {name: getattr(states[target], name).tolist() for name in state} == state
        assert {name: getattr(records, name).tolist() for name in record} == record
        applied = tick(client)
    assert applied["applied"] is True
    assert applied["reference_exposures"] == sum(count[0] for count in counts)
    assert applied["target_exposures"] == sum(count[1] for count in counts)
