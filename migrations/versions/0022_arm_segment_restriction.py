"""arm segment restriction: an arm of a segmented experiment may be served in some segments
only (issue 12's option)

- ``arms.segments`` (nullable JSON): the names of the segments the arm is served in, or
  NULL for every segment. Names, not indices, so that an arm may be restricted to a
  segment not opened yet; the snapshot resolves them (api.serving).

Existing arms are served everywhere (NULL). Downgrade drops the column: restricted arms
are then served in every segment.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both stores, as 0020: a batch rebuild of the referenced table fails
    # on SQLite (its foreign keys), and a nullable column needs no rebuild.
    op.add_column("arms", sa.Column("segments", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0020 does.
    op.drop_column("arms", "segments")
