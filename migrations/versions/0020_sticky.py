"""sticky: an experiment option that keeps a target unit's arm within a posterior version

- ``experiments.sticky`` (false by default): a target unit's arm is the inverse of the
  snapshot's allocation probabilities at a hash of (salt, unit, version) instead of a
  Thompson draw per request (api.serving, docs/design.md "Sticky assignment").

Existing experiments keep drawing per request (false). Downgrade drops the column: sticky
experiments go back to a draw per request.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both stores: a batch rebuild of the referenced table fails on
    # SQLite (its foreign keys), and a constant default needs no rebuild.
    op.add_column(
        "experiments",
        sa.Column("sticky", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0007 and 0019 do: rebuilding a referenced table fails.
    op.drop_column("experiments", "sticky")
