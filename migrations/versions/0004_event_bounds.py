"""event bounds: attribution windows, per-ticket credit limits, quarantine records

- ``experiments.attribution_window_s`` (default 4 hours) and
  ``experiments.max_events_per_exposure`` (NULL: the defaults);
- ``ticket_credits``: events reported per ticket and type, to bound what a ticket credits;
- ``pending_counts.reason`` joins the primary key: "" for creditable counts, otherwise why
  they will not be credited (over the ticket's limit, arm retired);
- ``events.credited``: the creditable part of each stored event (NULL before: all of it);
- ``arms/ticks/tick_arms.quarantined_events`` and ``ticks.uncredited``: what the ticks
  consumed without crediting, reported to admins.

Downgrade drops the new columns and table; pending counts with a reason are dropped (they
would never have been credited).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING_KEY = ["experiment_id", "arm_id", "assignment_group", "type"]


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("attribution_window_s", sa.Float(), server_default="14400", nullable=False)
        )
        batch.add_column(sa.Column("max_events_per_exposure", sa.JSON(), nullable=True))
    for table in ("arms", "ticks", "tick_arms"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("quarantined_events", sa.Float(), server_default="0", nullable=False)
            )
    with op.batch_alter_table("ticks") as batch:
        batch.add_column(sa.Column("uncredited", sa.JSON(), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("credited", sa.Integer(), nullable=True))
    # The primary key gains a column: the (small) table is rebuilt, the same way on both.
    _rebuild_pending_counts(with_reason=True)
    op.create_table(
        "ticket_credits",
        sa.Column("key", sa.LargeBinary(length=96), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("ticket_credits")
    op.execute("DELETE FROM pending_counts WHERE reason <> ''")
    _rebuild_pending_counts(with_reason=False)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("credited")
    with op.batch_alter_table("ticks") as batch:
        batch.drop_column("uncredited")
    for table in ("arms", "ticks", "tick_arms"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("quarantined_events")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("max_events_per_exposure")
        batch.drop_column("attribution_window_s")


def _rebuild_pending_counts(*, with_reason: bool) -> None:
    columns = [
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
    ]
    key = list(_PENDING_KEY)
    if with_reason:
        columns.append(sa.Column("reason", sa.String(length=32), server_default="", nullable=False))
        key.append("reason")
    op.create_table(
        "pending_counts_rebuilt",
        *columns,
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint(*key),
    )
    copied = ", ".join([*_PENDING_KEY, "count"])
    op.execute(f"INSERT INTO pending_counts_rebuilt ({copied}) SELECT {copied} FROM pending_counts")
    op.drop_table("pending_counts")
    op.rename_table("pending_counts_rebuilt", "pending_counts")
    if op.get_bind().dialect.name == "postgresql":
        # Keep the constraint names that PostgreSQL gave the original table.
        for suffix in ("pkey", "experiment_id_fkey"):
            op.execute(
                f"ALTER TABLE pending_counts RENAME CONSTRAINT pending_counts_rebuilt_{suffix} "
                f"TO pending_counts_{suffix}"
            )
