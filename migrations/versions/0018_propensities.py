"""propensities: the probability with which each window served each arm

- ``tick_arms.propensity`` (nullable): the probability that a target-group request of the
  window was served the arm. Request mode: P(the policy chooses the arm) under the posteriors
  the window was served with (Thompson sampling: P(the arm's draw is the largest), by
  numerical integration; the nursery's share included). Window mode: 1 for the pinned arm,
  0 for the others.
- ``tick_arms.draw_probability`` (nullable): window mode only, the probability with which
  the draw that pinned the window's arm would have chosen each arm.
- ``ticks.snapshot_version`` (nullable): the experiment's version once the tick applied, the
  one the next window is served with.
- ``ticks.snapshot_changed`` (nullable): whether what was served changed during the window
  (the version moved since the previous tick: an admin action or a genetic step), so that
  the propensities, computed from the state at the window's end, may not hold for all of it.

Existing ticks get NULL in every new column: their propensities were not recorded.
Downgrade drops the columns.

Revision ID: 0018
Revises: 0015
Create Date: 2026-11-30 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tick_arms", sa.Column("propensity", sa.Float(), nullable=True))
    op.add_column("tick_arms", sa.Column("draw_probability", sa.Float(), nullable=True))
    op.add_column("ticks", sa.Column("snapshot_version", sa.Integer(), nullable=True))
    op.add_column("ticks", sa.Column("snapshot_changed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as 0013: no batch rebuild of tables
    # that other tables reference.
    op.drop_column("ticks", "snapshot_changed")
    op.drop_column("ticks", "snapshot_version")
    op.drop_column("tick_arms", "draw_probability")
    op.drop_column("tick_arms", "propensity")
