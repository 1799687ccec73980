"""The floor of a tick (benchmarks/ticks.py, benchmarks/segments.py): what a tick writes,
by a minimal script on the same connection, so that a tick's time is compared with the
database's own work on the same rows in the same run."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
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
    right size (the floor does no statistics); the window is summed with NumPy, as the
    service sums it."""
    postgres = connection.dialect.name == "postgresql"
    lock = " FOR NO KEY UPDATE" if postgres else ""
    driver_rows(connection, f"SELECT id FROM experiments WHERE id = {experiment_id}{lock}", ())
    batches = driver_rows(
        connection,
        f"SELECT {', '.join(BATCH_COLUMNS[2:])} FROM pending_batches "
        f"WHERE experiment_id = {experiment_id}" + (" FOR UPDATE" if postgres else ""),
        (),
    )
    window = repo.PendingWindow.of_columns(sum_batches(batches))
    connection.exec_driver_sql(f"DELETE FROM pending_batches WHERE experiment_id = {experiment_id}")
    tick_id = connection.exec_driver_sql(
        "INSERT INTO ticks (experiment_id, number, created_at, applied, mode, decay, "
        "reference_exposures, reference_events, target_exposures, target_events, "
        "empty_windows_before, quarantined_events) VALUES "
        f"({experiment_id}, {number}, '2026-01-01 00:00:00', true, 'request', 1.0, "
        "0, 0, 0, 0, 0, 0) RETURNING id"
    ).scalar_one()
    # The window's sums as the tick needs them, with NumPy (as the service): per target
    # arm, and per (segment, arm) of every group; exposures then contacts.
    contact = window.type_is("contact")
    counted = window.type_is("exposure") | contact
    counts = window.count.astype(np.float64)
    target = counted & window.group_is("target")
    arms, arm_of = np.unique(window.arm_id[target], return_inverse=True)
    n_arm = np.bincount(arm_of, np.where(contact[target], 0.0, counts[target]), arms.size)
    c_arm = np.bincount(arm_of, np.where(contact[target], counts[target], 0.0), arms.size)
    insert_rows(
        connection,
        "tick_arms",
        repo.TICK_ARM_COLUMNS,
        [
            (tick_id, arm_id, n, c, c, n - c, 1.0, 1.0, 1.0 + c, 1.0 + n, 0.0, 0.002, None)
            for arm_id, n, c in zip(arms.tolist(), n_arm.tolist(), c_arm.tolist(), strict=True)
        ],
    )
    update_rows(
        connection,
        "arms",
        repo.ARM_STATE_COLUMNS,
        [
            (1.0 + c, 1.0 + n, n, c, 0.0, arm_id)
            for arm_id, n, c in zip(arms.tolist(), n_arm.tolist(), c_arm.tolist(), strict=True)
        ],
    )
    if np.any(window.segment[counted]):
        _segment_writes(connection, tick_id, window, counted, contact)
    with Session(bind=connection) as session:  # the service's batches: a row per kind
        repo.add_metric_counts(session, experiment_id, 1, window)
    connection.exec_driver_sql(
        "UPDATE experiments SET tick_count = tick_count + 1, version = version + 1 "
        f"WHERE id = {experiment_id}"
    )


def _segment_writes(
    connection: Connection,
    tick_id: int,
    window: repo.PendingWindow,
    counted: npt.NDArray[np.bool_],
    contact: npt.NDArray[np.bool_],
) -> None:
    """The per-segment state read and written packed (one row per arm, as the service),
    and the tick's (segment, arm) record (one row)."""
    counts = window.count.astype(np.float64)
    pairs, pair_of = np.unique(
        np.stack([window.segment[counted], window.arm_id[counted]], axis=1),
        axis=0,
        return_inverse=True,
    )
    pair_of = pair_of.ravel()
    exposures = np.bincount(pair_of, np.where(contact[counted], 0.0, counts[counted]), len(pairs))
    events = np.bincount(pair_of, np.where(contact[counted], counts[counted], 0.0), len(pairs))
    segments, arm_ids = pairs[:, 0], pairs[:, 1]
    with Session(bind=connection) as session:  # the service's statements
        arms = sorted(set(arm_ids.tolist()))
        repo.arm_segment_states(session, arms)
        size = int(segments.max()) + 1
        states = {}
        for arm_id in arms:
            mine = arm_ids == arm_id
            n, x = np.zeros(size), np.zeros(size)
            n[segments[mine]], x[segments[mine]] = exposures[mine], events[mine]
            states[arm_id] = repo.ArmSegmentArrays(1.0 + x, 1.0 + n, n, x, np.zeros(size), n)
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
