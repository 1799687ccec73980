"""metric baselines: the report's counts as they stood when a metric was declared

- ``metric_baselines``: per declaration of a metric, the phase's exposure counts (and the
  event's own counts left from an earlier declaration) by arm, group and bucket, copied
  from ``metric_counts`` at the declaration. The report subtracts them, so that a metric
  declared mid-phase compares its events with the exposures of the same period.

Existing declarations have no baseline (none could be declared through the API before
this revision). Downgrade drops the table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_baselines",
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["metric_id"], ["experiment_metrics.id"]),
        sa.PrimaryKeyConstraint(
            "metric_id", "phase", "arm_id", "assignment_group", "type", "bucket"
        ),
    )


def downgrade() -> None:
    op.drop_table("metric_baselines")
