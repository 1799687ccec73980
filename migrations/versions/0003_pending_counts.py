"""pending_counts: what the ticks count, kept by the event writer

The tick no longer claims event rows (``UPDATE events SET tick_id`` touched every event of
the window); the writer adds each stored event to ``pending_counts`` (per experiment, arm,
group and type) in the same transaction, and an applied tick deletes the counts it read.
The events not yet counted by an applied tick (``tick_id`` NULL) are carried over into
``pending_counts``; ``events.tick_id`` is no longer set (kept, NULL for new rows: dropping
it would rewrite the table on SQLite) and its index goes.

Downgrade turns the pending counts back into unclaimed rows: every existing event is
marked as counted (``tick_id`` 0) and each pending count becomes one event row without
``event_id`` (like a flush of server-counted exposures), ``tick_id`` NULL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 02:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_counts",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("experiment_id", "arm_id", "assignment_group", "type"),
    )
    op.execute(
        "INSERT INTO pending_counts (experiment_id, arm_id, assignment_group, type, count) "
        "SELECT experiment_id, arm_id, assignment_group, type, SUM(count) FROM events "
        "WHERE tick_id IS NULL GROUP BY experiment_id, arm_id, assignment_group, type"
    )
    op.drop_index("ix_events_experiment_tick", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_experiment_tick", "events", ["experiment_id", "tick_id"])
    op.execute("UPDATE events SET tick_id = 0 WHERE tick_id IS NULL")
    op.execute(
        "INSERT INTO events (experiment_id, arm_id, assignment_group, type, count, received_at) "
        "SELECT experiment_id, arm_id, assignment_group, type, count, CURRENT_TIMESTAMP "
        "FROM pending_counts WHERE count <> 0"
    )
    op.drop_table("pending_counts")
