"""segments: one posterior per (arm, segment), shrunk toward the arm's pool (issue 12)

- ``experiments.max_segments`` (NULL: not segmented): how many segments a segmented
  experiment opens on first sight; beyond them, or without a segment, traffic goes to the
  default segment (index 0, named ``default``).
- ``segments``: each experiment's segments, ``(experiment_id, index)`` with a unique name.
- ``arm_segments``: per (arm, segment) the reference-ratio posterior of the segment's own
  data and its credited totals.
- ``arms.pool_mu``, ``arms.pool_kappa``: the arm's hierarchical prior over segments fitted
  by the last applied tick (bandit.hierarchy; NULL before the first).
- ``tick_segments``: per applied tick, segment and arm with data in the window, the counts
  and the increments (written in bulk).
- ``pending_counts.segment`` joins the primary key (existing counts: segment 0).

Existing experiments keep working unchanged: unsegmented, everything in segment 0.
Downgrade drops the new tables and columns; pending counts are summed over segments.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING_KEY = ("experiment_id", "arm_id", "assignment_group", "type", "reason", "bucket")


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("max_segments", sa.Integer(), nullable=True))
    with op.batch_alter_table("arms") as batch:
        batch.add_column(sa.Column("pool_mu", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pool_kappa", sa.Float(), nullable=True))
    op.create_table(
        "segments",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("experiment_id", "index"),
        sa.UniqueConstraint("experiment_id", "name", name="uq_segments_experiment_name"),
    )
    op.create_table(
        "arm_segments",
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.Column("exposures", sa.Float(), nullable=False),
        sa.Column("target_events", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arms.id"]),
        sa.PrimaryKeyConstraint("arm_id", "segment"),
    )
    op.create_table(
        "tick_segments",
        sa.Column("tick_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("exposures", sa.Float(), nullable=False),
        sa.Column("target_events", sa.Float(), nullable=False),
        sa.Column("alpha_increment", sa.Float(), nullable=False),
        sa.Column("beta_increment", sa.Float(), nullable=False),
        sa.Column("alpha_after", sa.Float(), nullable=False),
        sa.Column("beta_after", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tick_id"], ["ticks.id"]),
        sa.PrimaryKeyConstraint("tick_id", "segment", "arm_id"),
    )
    _rebuild_pending_counts(with_segment=True)


def downgrade() -> None:
    _rebuild_pending_counts(with_segment=False)
    op.drop_table("tick_segments")
    op.drop_table("arm_segments")
    op.drop_table("segments")
    # Plain DROP COLUMN (SQLite 3.35+), as 0007 does: rebuilding a referenced table fails.
    op.drop_column("arms", "pool_kappa")
    op.drop_column("arms", "pool_mu")
    op.drop_column("experiments", "max_segments")


def _rebuild_pending_counts(*, with_segment: bool) -> None:
    """The (small) table rebuilt with or without ``segment`` in its key, the same way on
    both stores (as migrations 0004 and 0007 did)."""
    columns = [
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), server_default="", nullable=False),
        sa.Column("bucket", sa.Integer(), server_default="0", nullable=False),
    ]
    key = list(_PENDING_KEY)
    if with_segment:
        columns.append(sa.Column("segment", sa.Integer(), server_default="0", nullable=False))
        key.append("segment")
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
