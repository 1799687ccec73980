"""idle windows: scheduled windows in which nothing arrived are counted, not recorded

``experiments.empty_windows`` counts them since the last recorded tick;
``ticks.empty_windows_before`` keeps, on each recorded tick, how many it follows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("empty_windows", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("ticks") as batch:
        batch.add_column(
            sa.Column("empty_windows_before", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("ticks") as batch:
        batch.drop_column("empty_windows_before")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("empty_windows")
