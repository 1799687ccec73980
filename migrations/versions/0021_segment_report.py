"""segment report: the report's counts per segment (issue 12)

- ``metric_counts.segment`` joins the primary key (existing counts: segment 0), so that
  the report of one segment reads that segment's counts and the overall report their sum.
- ``metric_baselines.segment`` joins the primary key too (existing baselines: segment 0):
  a metric declared mid-phase subtracts, in each segment's report, that segment's counts
  at the declaration.

Unsegmented experiments keep everything in segment 0: their report is unchanged.
Downgrade sums both tables over segments (the overall report stays as it was).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 00:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table's key before this migration, and the column its foreign key holds.
_KEYS = {
    "metric_counts": (
        ("experiment_id", "phase", "arm_id", "assignment_group", "type", "bucket"),
        ("experiment_id", "experiments.id"),
    ),
    "metric_baselines": (
        ("metric_id", "phase", "arm_id", "assignment_group", "type", "bucket"),
        ("metric_id", "experiment_metrics.id"),
    ),
}


def upgrade() -> None:
    for table in _KEYS:
        _rebuild(table, with_segment=True)


def downgrade() -> None:
    for table in _KEYS:
        _rebuild(table, with_segment=False)


def _rebuild(table: str, *, with_segment: bool) -> None:
    """The table rebuilt with or without ``segment`` in its key, its counts summed over the
    dropped key (the same way on both stores, as migration 0019 rebuilt pending_counts)."""
    key, (owner, referred) = _KEYS[table]
    columns = [
        sa.Column(name, sa.String(length=16 if name == "assignment_group" else 64))
        if name in ("assignment_group", "type")
        else sa.Column(name, sa.Integer())
        for name in key
    ]
    for column in columns:
        column.nullable = False
    columns.append(sa.Column("count", sa.BigInteger(), nullable=False))
    new_key = list(key)
    if with_segment:
        columns.append(sa.Column("segment", sa.Integer(), server_default="0", nullable=False))
        new_key.append("segment")
    rebuilt = f"{table}_rebuilt"
    op.create_table(
        rebuilt,
        *columns,
        sa.ForeignKeyConstraint([owner], [referred]),
        sa.PrimaryKeyConstraint(*new_key),
    )
    grouped = ", ".join(key)
    op.execute(
        f"INSERT INTO {rebuilt} ({grouped}, count) "
        f"SELECT {grouped}, SUM(count) FROM {table} GROUP BY {grouped}"
    )
    op.drop_table(table)
    op.rename_table(rebuilt, table)
    if op.get_bind().dialect.name == "postgresql":
        # Keep the constraint names that PostgreSQL gave the original table.
        for suffix in ("pkey", f"{owner}_fkey"):
            op.execute(
                f"ALTER TABLE {table} RENAME CONSTRAINT {rebuilt}_{suffix} TO {table}_{suffix}"
            )
