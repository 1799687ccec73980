"""credit key order: the bucket and the phase move to the end of ``ticket_credits.key``

The per-ticket credit key was the ticket's signed bytes (version, issue time, experiment,
arm, group, bucket, phase, serial); it is now the same bytes with the bucket and the phase
after the serial (``api.tickets.credit_key``), so that the writer's upserts of one second
land together in the index. The stored keys are rewritten the same way, so a ticket issued
before the upgrade keeps its count (and cannot credit its allowance twice). Downgrade
rewrites them back. The table only holds tickets within the attribution window.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 1-based byte positions: [1, 14] version..group, [15, 17] bucket and phase, [18, 23]
# prefix and serial, then the event type.
_TO_NEW = "substr(key, 1, 14) || substr(key, 18, 6) || substr(key, 15, 3) || substr(key, 24)"
_TO_OLD = "substr(key, 1, 14) || substr(key, 21, 3) || substr(key, 15, 6) || substr(key, 24)"


def upgrade() -> None:
    _rewrite(_TO_NEW)


def downgrade() -> None:
    _rewrite(_TO_OLD)


def _rewrite(expression: str) -> None:
    """Into a new table and back (a key may equal another row's key before its rewrite, so
    an UPDATE in place could collide on the primary key midway)."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's || makes text of blobs (every byte kept): make it a blob again.
        expression = f"CAST({expression} AS BLOB)"
    op.create_table(
        "ticket_credits_rewritten",
        sa.Column("key", sa.LargeBinary(length=96), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sqlite_with_rowid=False,
    )
    op.execute(
        f"INSERT INTO ticket_credits_rewritten (key, count) "
        f"SELECT {expression}, count FROM ticket_credits"
    )
    op.drop_table("ticket_credits")
    op.rename_table("ticket_credits_rewritten", "ticket_credits")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE ticket_credits RENAME CONSTRAINT ticket_credits_rewritten_pkey "
            "TO ticket_credits_pkey"
        )
