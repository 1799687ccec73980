"""srm alert: the notified sample ratio mismatch

- ``experiments.srm_alert`` (JSON, nullable): ``{phase, since, snapshot_id}`` while the
  report's sample ratio check has failed and been notified (``srm``); NULL once it is ok
  again, so that only a new failure is notified. Existing experiments get NULL: a
  mismatch that is already there is notified at their next applied tick.

The circuit breaker's ``breaker_baseline`` now holds per-arm counts (``counts``); the
per-group totals stored before this revision stay readable (no data change on upgrade).

Downgrade drops the column, and adds to each per-arm baseline the per-group totals that the
code before this revision reads.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("srm_alert", sa.JSON(), nullable=True))


def downgrade() -> None:
    _add_group_totals()
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding
    # ``experiments`` on SQLite fails its foreign keys once other tables reference its rows.
    op.drop_column("experiments", "srm_alert")


def _add_group_totals() -> None:
    """Each group's per-bucket totals over its arms, beside the per-arm ``counts``."""
    experiments = sa.table(
        "experiments", sa.column("id", sa.Integer()), sa.column("breaker_baseline", sa.JSON())
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(experiments.c.id, experiments.c.breaker_baseline).where(
            experiments.c.breaker_baseline.is_not(None)
        )
    ).all()
    for experiment_id, baseline in rows:
        if not isinstance(baseline, dict) or "counts" not in baseline:
            continue
        for group, kinds in baseline["counts"].items():
            baseline[group] = {
                kind: [sum(column) for column in zip(*by_arm.values(), strict=True)]
                for kind, by_arm in kinds.items()
            }
        bind.execute(
            experiments.update()
            .where(experiments.c.id == experiment_id)
            .values(breaker_baseline=baseline)
        )
