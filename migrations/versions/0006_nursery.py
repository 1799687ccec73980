"""nursery: a minimum number of exposures before a new arm is drawn by the policy

- ``experiments.nursery_exposures`` (default 0: no nursery, as before) and
  ``experiments.nursery_share`` (default 0.1): until an active arm has
  ``nursery_exposures`` credited exposures, the arms in that state share
  ``nursery_share`` of the target group's draws, and the policy draws the others.

Existing experiments get the defaults, so they serve exactly as before. Downgrade drops the
two columns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("nursery_exposures", sa.Float(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("nursery_share", sa.Float(), server_default="0.1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("nursery_share")
        batch.drop_column("nursery_exposures")
