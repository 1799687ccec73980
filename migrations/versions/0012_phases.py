"""phases: the history of reference configurations, archiving, editable settings

- ``phases``: one row per phase of an experiment (number, when it started and ended, the
  reference arm and configuration, the reference share and decision metric in force, what
  started it, and how it ended). Existing experiments get the row of their current phase
  (phase 1: no promotion existed before this revision), started when they were created.
- ``experiments.tickets_valid_from`` (unix seconds, default 0): tickets issued before it
  are expired whatever the attribution window; lengthening the window sets it.
- ``experiments.status`` may be ``archived`` (a VARCHAR(16) already: no schema change).

Downgrade drops both; archived experiments become ``stopped``. It refuses while an
experiment is past phase 1: the code before this revision would take its first (retired)
reference arm as the reference.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("tickets_valid_from", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_table(
        "phases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference_arm_id", sa.Integer(), nullable=False),
        sa.Column("reference_config", sa.JSON(), nullable=False),
        sa.Column("reference_share", sa.Float(), nullable=False),
        sa.Column("target_event", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("report_snapshot_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.ForeignKeyConstraint(["reference_arm_id"], ["arms.id"]),
        sa.ForeignKeyConstraint(["report_snapshot_id"], ["report_snapshots.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "number", name="uq_phases_experiment_number"),
    )
    # Every existing experiment is in phase 1 with its one reference arm.
    op.execute(
        "INSERT INTO phases (experiment_id, number, started_at, reference_arm_id, "
        "reference_config, reference_share, target_event, trigger, changes) "
        "SELECT e.id, e.phase, e.created_at, a.id, a.config, e.reference_share, "
        "e.target_event, 'create', '{}' "
        "FROM experiments e JOIN arms a ON a.experiment_id = e.id AND a.origin = 'reference'"
    )


def downgrade() -> None:
    bind = op.get_bind()
    promoted = bind.execute(sa.text("SELECT name FROM experiments WHERE phase > 1")).scalars()
    names = sorted(promoted)
    if names:
        raise RuntimeError(
            f"cannot downgrade below 0012: experiments {names} are past phase 1, and the code "
            "before this revision would take their first (retired) reference arm as the "
            "reference"
        )
    op.execute("UPDATE experiments SET status = 'stopped' WHERE status = 'archived'")
    op.drop_table("phases")
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding
    # ``experiments`` on SQLite fails its foreign keys once other tables reference its rows.
    op.drop_column("experiments", "tickets_valid_from")
