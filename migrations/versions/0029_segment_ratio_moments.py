"""segment ratio moments: what the hierarchical fit needs to weigh each segment's evidence

``arm_segment_states.ratio_moments``: a packed array over the segments (migration 0027's
format) of ``sum n_k^2 / n_r`` over the windows applied to the (arm, segment), ``n_k`` the
arm's credited exposures there and ``n_r`` the segment's reference exposures. With the
credited exposures it gives each segment's dispersion factor
(``bandit.hierarchy.dispersion_factors``): the reference-ratio evidence is noisier than
binomial evidence, and the fit divides it by that factor. NULL for rows written before:
read as the exposures themselves (a factor of 1 for the evidence so far). PostgreSQL
stores it uncompressed, like the other packed columns (migration 0026).

Downgrade: the column is dropped.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01 07:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("arm_segment_states") as batch_op:
        batch_op.add_column(sa.Column("ratio_moments", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE arm_segment_states ALTER COLUMN ratio_moments SET STORAGE EXTERNAL")


def downgrade() -> None:
    with op.batch_alter_table("arm_segment_states") as batch_op:
        batch_op.drop_column("ratio_moments")
