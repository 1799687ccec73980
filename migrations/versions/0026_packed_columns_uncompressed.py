"""packed columns uncompressed: PostgreSQL stores the packed arrays without compression

The packed columns (``pending_batches``, ``arm_segment_states``, ``tick_segment_windows``,
``metric_count_batches``: arrays of int64 and float64 as bytes, migrations 0023-0025) were
``bytea`` with PostgreSQL's default storage, EXTENDED: values over 2 kB are compressed by
pglz in the writing transaction. A dense segmented tick (1,000 segments x 20 arms) writes
about 3 MB of them, and pglz took most of its time (6 rows of 672 kB: 652 ms with
compression, 20 ms without, on PostgreSQL 15: benchmarks/packed_columns.py). Storage
EXTERNAL keeps them out of line, uncompressed: the size SQLite stores them at. Rows
written before keep their compression (PostgreSQL reads both).

Nothing to do on SQLite. Downgrade: back to EXTENDED.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 05:05:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PACKED = {
    "pending_batches": ("arm_ids", "kind_codes", "buckets", "segments", "counts"),
    "arm_segment_states": ("alphas", "betas", "exposures", "target_events"),
    "tick_segment_windows": (
        "segments",
        "arm_ids",
        "exposures",
        "target_events",
        "alpha_increments",
        "beta_increments",
        "alphas_after",
        "betas_after",
    ),
    "metric_count_batches": ("arm_ids", "buckets", "segments", "counts"),
}


def _set_storage(storage: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in PACKED.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET STORAGE {storage}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_storage("EXTERNAL")


def downgrade() -> None:
    _set_storage("EXTENDED")
