"""api tokens: stored (hashed) admin, viewer and client tokens

- ``api_tokens``: one row per token created with ``POST /v1/tokens`` or ``ranktune tokens
  create``: name, role, the hex SHA-256 of the token (unique; the token itself is never
  stored), a short non-secret prefix, created_at, revoked_at, last_used_at.
- ``audit_log.token`` (nullable): which token acted (``<name> (<prefix>)``, or
  ``RANKTUNE_ADMIN_TOKEN``); NULL for the scheduler and for older entries.

Downgrade drops both: the stored tokens stop working (only RANKTUNE_ADMIN_TOKEN remains).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("token", sa.String(length=96), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), as 0013 does.
    op.drop_column("audit_log", "token")
    op.drop_table("api_tokens")
