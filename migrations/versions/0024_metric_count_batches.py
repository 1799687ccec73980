"""metric count batches: an applied tick appends its report counts packed, maintenance folds
them into ``metric_counts``

- ``metric_count_batches``: per applied tick, group and event type, the credited report
  counts as int64 arrays of arm ids, report buckets, segments and counts. The report reads
  them together with ``metric_counts``; maintenance (and a metric's declaration, before it
  copies its baseline) folds them into ``metric_counts`` and deletes them.

Nothing to move on the way up (the table starts empty). The downgrade folds every batch
into ``metric_counts`` first, so no count is lost.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 04:20:00.000000
"""

from collections import Counter
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_count_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("arm_ids", sa.LargeBinary(), nullable=False),
        sa.Column("buckets", sa.LargeBinary(), nullable=False),
        sa.Column("segments", sa.LargeBinary(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_metric_count_batches_experiment_id", "metric_count_batches", ["experiment_id"]
    )


def downgrade() -> None:
    connection = op.get_bind()
    totals: Counter[tuple[int, int, int, str, str, int, int]] = Counter()
    for experiment_id, phase, group, kind, *blobs in connection.execute(
        sa.text(
            "SELECT experiment_id, phase, assignment_group, type, arm_ids, buckets, segments, "
            "counts FROM metric_count_batches"
        )
    ):
        arm_ids, buckets, segments, counts = (np.frombuffer(b, dtype="<i8") for b in blobs)
        for arm_id, bucket, segment, count in zip(
            arm_ids.tolist(), buckets.tolist(), segments.tolist(), counts.tolist(), strict=True
        ):
            totals[(experiment_id, phase, arm_id, group, kind, bucket, segment)] += count
    for key, count in totals.items():
        names = ("e", "p", "a", "g", "t", "b", "s")
        values = {**dict(zip(names, key, strict=True)), "c": count}
        updated = connection.execute(
            sa.text(
                "UPDATE metric_counts SET count = count + :c WHERE experiment_id = :e AND "
                "phase = :p AND arm_id = :a AND assignment_group = :g AND type = :t AND "
                "bucket = :b AND segment = :s"
            ),
            values,
        )
        if updated.rowcount == 0:
            connection.execute(
                sa.text(
                    "INSERT INTO metric_counts (experiment_id, phase, arm_id, assignment_group, "
                    "type, bucket, segment, count) VALUES (:e, :p, :a, :g, :t, :b, :s, :c)"
                ),
                values,
            )
    op.drop_index("ix_metric_count_batches_experiment_id", table_name="metric_count_batches")
    op.drop_table("metric_count_batches")
