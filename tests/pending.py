"""Test helpers for the pending counts (``pending_batches``, ``api.pending``): read them
summed by key, add a batch, rewrite or clear them. On a Connection (``engine.begin()``,
``session.connection()``), on either store."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Connection, text

from api.pending import BATCH_COLUMNS, PendingRow, pack_batch, sum_batches
from api.repositories import PendingWindow, insert_pending_batches

# (experiment_id, arm_id, group, type, reason, bucket, segment)
Key = tuple[int, int, str, str, str, int, int]


def pending_rows(connection: Connection, experiment_id: int) -> list[PendingRow]:
    """The experiment's pending counts summed by key, in key order."""
    batches = connection.execute(
        text(
            f"SELECT {', '.join(BATCH_COLUMNS[2:])} FROM pending_batches "
            "WHERE experiment_id = :experiment_id ORDER BY id"
        ),
        {"experiment_id": experiment_id},
    ).all()
    return PendingWindow.of_columns(sum_batches(tuple(batch) for batch in batches)).rows()


def pending_totals(connection: Connection, experiment_id: int | None = None) -> dict[Key, int]:
    """Every pending count (or the experiment's) summed by key, zero totals left out."""
    if experiment_id is None:
        experiments = connection.execute(
            text("SELECT DISTINCT experiment_id FROM pending_batches")
        ).scalars()
    else:
        experiments = iter([experiment_id])
    totals: dict[Key, int] = {}
    for experiment in list(experiments):
        for row in pending_rows(connection, int(experiment)):
            if row.count:
                key = (int(experiment), row.arm_id, row.group, row.type, row.reason)
                totals[(*key, row.bucket, row.segment)] = row.count
    return totals


def pending_sum(connection: Connection, experiment_id: int | None = None, **where: object) -> int:
    """The total of the pending counts whose fields (of :class:`PendingRow`: ``group``,
    ``type``, ``reason``, ``segment``...) equal ``where``."""
    fields = ("experiment_id", *PendingRow._fields[:5], "segment")
    total = 0
    for key, count in pending_totals(connection, experiment_id).items():
        named = dict(zip(fields, key, strict=True))
        if all(named[name] == value for name, value in where.items()):
            total += count
    return total


def insert_pending(connection: Connection, experiment_id: int, rows: Iterable[PendingRow]) -> None:
    """Add one batch of counts (each key once) to the experiment's pending counts."""
    listed = list(rows)
    if listed:
        insert_pending_batches(connection, [(experiment_id, pack_batch(listed))])


def rewrite_pending(
    connection: Connection, experiment_id: int, keep: Callable[[PendingRow], bool]
) -> None:
    """Keep only the experiment's pending counts that ``keep`` accepts (as one batch)."""
    rows = pending_rows(connection, experiment_id)
    connection.execute(
        text("DELETE FROM pending_batches WHERE experiment_id = :experiment_id"),
        {"experiment_id": experiment_id},
    )
    insert_pending(connection, experiment_id, [row for row in rows if keep(row)])


def clear_pending(connection: Connection) -> None:
    """Forget every pending count."""
    connection.execute(text("DELETE FROM pending_batches"))
