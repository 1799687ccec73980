"""report: metrics, unit buckets and phases

- ``experiments.phase`` (default 1): posteriors and the report are relative to the
  reference configuration of the current phase; promoting an arm starts the next one.
- ``pending_counts.bucket`` joins the primary key (existing counts: bucket 0): the unit's
  report bucket, so the tick can add the report's counts by bucket.
- ``metric_counts``: credited counts per phase, arm, group, event type and bucket, which
  the applied ticks add to and the report reads.
- ``experiment_metrics``: secondary and guardrail metrics declared for an experiment.

Existing experiments keep serving as before (phase 1, no declared metrics; their report
starts with the first tick after the upgrade). Downgrade drops the new tables and columns;
pending counts are summed over buckets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING_KEY = ("experiment_id", "arm_id", "assignment_group", "type", "reason")


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("phase", sa.Integer(), server_default="1", nullable=False))
    _rebuild_pending_counts(with_bucket=True)
    op.create_table(
        "metric_counts",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint(
            "experiment_id", "phase", "arm_id", "assignment_group", "type", "bucket"
        ),
    )
    op.create_table(
        "experiment_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("max_loss", sa.Float(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_experiment_metrics_experiment", "experiment_metrics", ["experiment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_experiment_metrics_experiment", table_name="experiment_metrics")
    op.drop_table("experiment_metrics")
    op.drop_table("metric_counts")
    _rebuild_pending_counts(with_bucket=False)
    # Plain DROP COLUMN (SQLite 3.35+): rebuilding ``experiments`` fails on SQLite once
    # other tables' rows reference it.
    op.drop_column("experiments", "phase")


def _rebuild_pending_counts(*, with_bucket: bool) -> None:
    """The (small) table rebuilt with or without ``bucket`` in its key, the same way on both
    stores (as migration 0004 did for ``reason``)."""
    columns = [
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), server_default="", nullable=False),
    ]
    key = list(_PENDING_KEY)
    if with_bucket:
        columns.append(sa.Column("bucket", sa.Integer(), server_default="0", nullable=False))
        key.append("bucket")
    op.create_table(
        "pending_counts_rebuilt",
        *columns,
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint(*key),
    )
    grouped = ", ".join(_PENDING_KEY)
    op.execute(
        f"INSERT INTO pending_counts_rebuilt ({grouped}, count) "
        f"SELECT {grouped}, SUM(count) FROM pending_counts GROUP BY {grouped}"
    )
    op.drop_table("pending_counts")
    op.rename_table("pending_counts_rebuilt", "pending_counts")
    if op.get_bind().dialect.name == "postgresql":
        # Keep the constraint names that PostgreSQL gave the original table.
        for suffix in ("pkey", "experiment_id_fkey"):
            op.execute(
                f"ALTER TABLE pending_counts RENAME CONSTRAINT pending_counts_rebuilt_{suffix} "
                f"TO pending_counts_{suffix}"
            )
