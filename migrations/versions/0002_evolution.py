"""evolution: per-experiment genetic-step settings, generations, expert queue

Experiments get their evolution settings (JSON, NULL when never configured), the schedule
(``evolve_interval_s``, NULL unless scheduled steps are enabled), ``last_evolved_at`` and the
number of applied steps (``generation``, 0 for existing experiments). ``generations``
records every applied step; ``expert_configs`` is the expert queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 01:02:20.673703
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=True),
        sa.Column("retired", sa.JSON(), nullable=False),
        sa.Column("added", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "number", name="uq_generations_experiment_number"),
    )
    op.create_table(
        "expert_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("consumed_by_arm_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["consumed_by_arm_id"], ["arms.id"]),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("expert_configs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_expert_configs_experiment_status", ["experiment_id", "status"], unique=False
        )

    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evolution", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("evolve_interval_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("last_evolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("generation")
        batch_op.drop_column("last_evolved_at")
        batch_op.drop_column("evolve_interval_s")
        batch_op.drop_column("evolution")

    with op.batch_alter_table("expert_configs", schema=None) as batch_op:
        batch_op.drop_index("ix_expert_configs_experiment_status")

    op.drop_table("expert_configs")
    op.drop_table("generations")
