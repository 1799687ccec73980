"""segment quarantine: each arm's quarantined events per segment

``arm_segment_states.quarantined_events``: a packed array over the segments (as the other
columns, migration 0027's format) of the target events each segment's tick windows did
not credit to the arm: those over their ticket's limit and those over the (arm,
segment)'s exposure cap. ``stats?segment=`` shows them; they sum, over the segments, to
the quarantined events the segmented ticks added to the arm. NULL for rows written
before (nothing is known of them per segment: read as zeros). PostgreSQL stores it
uncompressed, like the other packed columns (migration 0026).

Downgrade: the column is dropped.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("arm_segment_states") as batch_op:
        batch_op.add_column(sa.Column("quarantined_events", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE arm_segment_states ALTER COLUMN quarantined_events SET STORAGE EXTERNAL"
        )


def downgrade() -> None:
    with op.batch_alter_table("arm_segment_states") as batch_op:
        batch_op.drop_column("quarantined_events")
