"""The floor of a tick (benchmarks/ticks.py, benchmarks/segments.py): what a tick writes,
by a minimal script on the same connection, so that a tick's time is compared with the
database's own work on the same rows in the same run."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from api import repositories as repo
from api.db import driver_rows, insert_rows, update_rows
from api.pending import BATCH_COLUMNS, sum_batches
from api.runtime import Runtime


def tick_floor(connection: Connection, experiment_id: int, number: int) -> None:
    """A tick's writes, minimal (benchmarks/ticks.py's docstring), for benchmarks/segments.py too:
    with segments, also the arms' per-segment state read and written packed
    (``arm_segment_states``, a row per arm) and the (arm, segment) pairs with data recorded
    (``tick_segment_windows``, a row). Arrays travel as api.db's text literals, the rows
    come straight from the driver, the pending batches are summed (``api.pending``) and go
    by one DELETE of the experiment's; the posteriors written are placeholders of the
    right size (the floor does no statistics)."""
    postgres = connection.dialect.name == "postgresql"
    lock = " FOR NO KEY UPDATE" if postgres else ""
    driver_rows(connection, f"SELECT id FROM experiments WHERE id = {experiment_id}{lock}", ())
    batches = driver_rows(
        connection,
        f"SELECT {', '.join(BATCH_COLUMNS[2:])} FROM pending_batches "
        f"WHERE experiment_id = {experiment_id}" + (" FOR UPDATE" if postgres else ""),
        (),
    )
    pending = sum_batches(batches).rows()
    connection.exec_driver_sql(f"DELETE FROM pending_batches WHERE experiment_id = {experiment_id}")
    tick_id = connection.exec_driver_sql(
        "INSERT INTO ticks (experiment_id, number, created_at, applied, mode, decay, "
        "reference_exposures, reference_events, target_exposures, target_events, "
        "empty_windows_before, quarantined_events) VALUES "
        f"({experiment_id}, {number}, '2026-01-01 00:00:00', true, 'request', 1.0, "
        "0, 0, 0, 0, 0, 0) RETURNING id"
    ).scalar_one()
    by_arm: dict[int, list[float]] = {}
    by_pair: dict[tuple[int, int], list[float]] = {}
    report: dict[tuple[int, str, str, int, int], int] = {}
    for arm_id, group, kind, _reason, bucket, count, segment in pending:
        key = (arm_id, group, kind, bucket, segment)  # the report's key, per segment
        report[key] = report.get(key, 0) + count
        if kind in ("exposure", "contact"):
            by_pair.setdefault((segment, arm_id), [0.0, 0.0])[kind == "contact"] += count
            if group == "target":
                by_arm.setdefault(arm_id, [0.0, 0.0])[kind == "contact"] += count
    insert_rows(
        connection,
        "tick_arms",
        repo.TICK_ARM_COLUMNS,
        [
            (tick_id, arm_id, n, c, c, n - c, 1.0, 1.0, 1.0 + c, 1.0 + n, 0.0, 0.002, None)
            for arm_id, (n, c) in by_arm.items()
        ],
    )
    update_rows(
        connection,
        "arms",
        repo.ARM_STATE_COLUMNS,
        [(1.0 + c, 1.0 + n, n, c, 0.0, arm_id) for arm_id, (n, c) in by_arm.items()],
    )
    if any(segment for segment, _ in by_pair):
        _segment_writes(connection, tick_id, by_pair)
    with Session(bind=connection) as session:  # the service's batches: a row per kind
        repo.add_metric_counts(
            session,
            experiment_id,
            1,
            repo.PendingWindow.of(
                [
                    repo.PendingRow(arm_id, group, kind, "", bucket, count, segment)
                    for (arm_id, group, kind, bucket, segment), count in report.items()
                ]
            ),
        )
    connection.exec_driver_sql(
        "UPDATE experiments SET tick_count = tick_count + 1, version = version + 1 "
        f"WHERE id = {experiment_id}"
    )


def _segment_writes(
    connection: Connection, tick_id: int, by_pair: dict[tuple[int, int], list[float]]
) -> None:
    """The per-segment state read and written packed (one row per arm, as the service),
    and the tick's (segment, arm) record (one row)."""
    segments = np.array([s for s, _ in by_pair])
    arm_ids = np.array([arm_id for _, arm_id in by_pair])
    exposures, events = np.array(list(by_pair.values())).T
    with Session(bind=connection) as session:  # the service's statements
        arms = sorted(set(arm_ids.tolist()))
        repo.arm_segment_states(session, arms)
        size = int(segments.max()) + 1
        states = {}
        for arm_id in arms:
            mine = arm_ids == arm_id
            n, x = np.zeros(size), np.zeros(size)
            n[segments[mine]], x[segments[mine]] = exposures[mine], events[mine]
            states[arm_id] = repo.ArmSegmentArrays(1.0 + x, 1.0 + n, n, x)
        repo.write_arm_segment_states(session, states)
        repo.insert_tick_segment_records(
            session,
            tick_id,
            repo.TickSegmentRecords(
                segments, arm_ids, exposures, events, events, exposures, events, exposures
            ),
        )


def timed_floor(runtime: Runtime, experiment_id: int, number: int) -> tuple[float, float]:
    """Wall and CPU milliseconds of :func:`tick_floor` in a transaction, commit included."""
    began, cpu = time.perf_counter(), time.process_time()
    with runtime.transaction() as session:
        tick_floor(session.connection(), experiment_id, number)
    return (time.perf_counter() - began) * 1e3, (time.process_time() - cpu) * 1e3
