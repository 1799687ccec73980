"""decision state: settings, pause reason, winner and the circuit breaker's baseline

Five nullable JSON columns of ``experiments`` (api.services.decisions, docs/decisions.md):

- ``decisions``: the decision settings as given at creation (NULL: the defaults, which is
  what existing experiments get);
- ``paused_reason``: who paused the experiment and why (an admin, or the circuit breaker
  with the rule and the numbers);
- ``winner`` and ``winner_candidate``: the declared winner of the phase and the arm now
  passing the winner thresholds, with since when;
- ``breaker_baseline``: the counts when the circuit breaker paused, so that after a resume
  it judges only what was counted since.

Downgrade drops the columns.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("decisions", "paused_reason", "winner", "winner_candidate", "breaker_baseline")


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding ``experiments``
    # fails on SQLite once other tables' rows reference it.
    for name in reversed(_COLUMNS):
        op.drop_column("experiments", name)
