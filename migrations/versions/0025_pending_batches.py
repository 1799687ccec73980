"""pending counts as packed batches: ``pending_batches`` replaces ``pending_counts``

The event writer inserted (upserted) one ``pending_counts`` row per key (experiment, arm,
group, type, reason, report bucket, segment) and a tick read, locked and deleted every one:
42,000 rows for a dense window of 1,000 segments x 20 arms, more than the tick's whole
budget on SQLite. ``pending_batches`` holds, per writer transaction and experiment, one
append-only row: the keys' totals as parallel little-endian int64 arrays (``arm_ids``,
``kind_codes``, ``buckets``, ``segments``, ``counts``; ``kind_codes`` index ``kinds``, the
batch's sorted (group, type, reason) triples as JSON) and ``reference_exposures``, its
credited reference-group exposures (docs/design.md, "Exactly-once ticks"; ``api.pending``).

The upgrade packs each experiment's existing pending counts into one batch (in key order,
as the writer packs them); the downgrade sums the batches by key back into
``pending_counts`` (rows with a zero total are not kept).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 04:20:00.000000
"""

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARRAYS = ("arm_ids", "kind_codes", "buckets", "segments", "counts")
_KEY = ("arm_id", "assignment_group", "type", "reason", "bucket", "segment")


def _ints(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def upgrade() -> None:
    op.create_table(
        "pending_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("reference_exposures", sa.BigInteger(), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        *(sa.Column(name, sa.LargeBinary(), nullable=False) for name in _ARRAYS),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_pending_batches_experiment_id", "pending_batches", ["experiment_id"], unique=False
    )
    connection = op.get_bind()
    by_experiment: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for experiment_id, *key, count in connection.execute(
        sa.text(f"SELECT experiment_id, {', '.join(_KEY)}, count FROM pending_counts")
    ):
        arm_id, group, type_, reason, bucket, segment = key
        by_experiment[int(experiment_id)].append(
            (int(arm_id), (str(group), str(type_), str(reason)), int(bucket), int(segment), count)
        )
    rows = []
    for experiment_id, keys in sorted(by_experiment.items()):
        kinds = sorted({kind for _, kind, _, _, _ in keys})
        code = {kind: index for index, kind in enumerate(kinds)}
        keys.sort(key=lambda k: (k[0], code[k[1]], k[2], k[3]))
        reference = sum(
            int(count) for _, kind, _, _, count in keys if kind == ("reference", "exposure", "")
        )
        rows.append(
            {
                "experiment_id": experiment_id,
                "reference_exposures": reference,
                "kinds": [list(kind) for kind in kinds],
                "arm_ids": _ints([k[0] for k in keys]),
                "kind_codes": _ints([code[k[1]] for k in keys]),
                "buckets": _ints([k[2] for k in keys]),
                "segments": _ints([k[3] for k in keys]),
                "counts": _ints([int(k[4]) for k in keys]),
            }
        )
    if rows:
        connection.execute(
            sa.text(
                "INSERT INTO pending_batches (experiment_id, reference_exposures, kinds, "
                f"{', '.join(_ARRAYS)}) VALUES (:experiment_id, :reference_exposures, :kinds, "
                f"{', '.join(':' + name for name in _ARRAYS)})"
            ).bindparams(sa.bindparam("kinds", type_=sa.JSON())),
            rows,
        )
    op.drop_table("pending_counts")


def downgrade() -> None:
    # pending_counts as migration 0019 left it.
    op.create_table(
        "pending_counts",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("assignment_group", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), server_default="", nullable=False),
        sa.Column("bucket", sa.Integer(), server_default="0", nullable=False),
        sa.Column("segment", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint(
            "experiment_id", "arm_id", "assignment_group", "type", "reason", "bucket", "segment"
        ),
    )
    connection = op.get_bind()
    totals: dict[tuple[Any, ...], int] = defaultdict(int)
    for experiment_id, kinds, *blobs in connection.execute(
        sa.text(f"SELECT experiment_id, kinds, {', '.join(_ARRAYS)} FROM pending_batches")
    ):
        listed = json.loads(kinds) if isinstance(kinds, str) else kinds
        arm_ids, codes, buckets, segments, counts = (
            np.frombuffer(blob, dtype="<i8").tolist() for blob in blobs
        )
        for arm_id, code, bucket, segment, count in zip(
            arm_ids, codes, buckets, segments, counts, strict=True
        ):
            group, type_, reason = listed[code]
            totals[(int(experiment_id), arm_id, group, type_, reason, bucket, segment)] += count
    rows = [
        dict(zip(("experiment_id", *_KEY, "count"), (*key, count), strict=True))
        for key, count in sorted(totals.items())
        if count
    ]
    if rows:
        connection.execute(
            sa.text(
                f"INSERT INTO pending_counts (experiment_id, {', '.join(_KEY)}, count) "
                f"VALUES (:experiment_id, {', '.join(':' + name for name in _KEY)}, :count)"
            ),
            rows,
        )
    op.drop_index("ix_pending_batches_experiment_id", table_name="pending_batches")
    op.drop_table("pending_batches")
