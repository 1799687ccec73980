"""packed segment state: one row per arm and one per tick instead of one per (segment, arm)

- ``arm_segment_states`` replaces ``arm_segments``: per arm, its per-segment posteriors and
  credited totals as four arrays over the segments by index (little-endian float64 bytes;
  a segment beyond an array's length has no data: the prior, zero counts).
- ``tick_segment_windows`` replaces ``tick_segments``: per applied tick, its (segment, arm)
  pairs with data as parallel arrays (segments and arm ids int64, the counts, increments
  and posteriors after the update float64).

A dense tick of 1,000 segments x 20 arms writes 21 + 1 rows instead of 21,000 + 21,000
(docs/segments.md, "Cost"). The data move both ways: the upgrade packs every existing row,
the downgrade unpacks them (a segment without data in an arm's arrays gets no row).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 04:10:00.000000
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORD_FLOATS = (
    "exposures",
    "target_events",
    "alpha_increments",
    "beta_increments",
    "alphas_after",
    "betas_after",
)
_PAIR_FLOATS = ("exposures", "target_events", "alpha_increment", "beta_increment")


def _floats(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _ints(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def upgrade() -> None:
    op.create_table(
        "arm_segment_states",
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("alphas", sa.LargeBinary(), nullable=False),
        sa.Column("betas", sa.LargeBinary(), nullable=False),
        sa.Column("exposures", sa.LargeBinary(), nullable=False),
        sa.Column("target_events", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arms.id"]),
        sa.PrimaryKeyConstraint("arm_id"),
    )
    op.create_table(
        "tick_segment_windows",
        sa.Column("tick_id", sa.Integer(), nullable=False),
        sa.Column("segments", sa.LargeBinary(), nullable=False),
        sa.Column("arm_ids", sa.LargeBinary(), nullable=False),
        *(sa.Column(name, sa.LargeBinary(), nullable=False) for name in _RECORD_FLOATS),
        sa.ForeignKeyConstraint(["tick_id"], ["ticks.id"]),
        sa.PrimaryKeyConstraint("tick_id"),
    )
    connection = op.get_bind()
    _pack_arm_segments(connection)
    _pack_tick_segments(connection)
    op.drop_table("tick_segments")
    op.drop_table("arm_segments")


def _priors(connection: sa.Connection) -> dict[int, tuple[float, float]]:
    rows = connection.execute(
        sa.text(
            "SELECT arms.id, experiments.prior_alpha, experiments.prior_beta FROM arms "
            "JOIN experiments ON arms.experiment_id = experiments.id"
        )
    )
    return {int(arm_id): (float(a), float(b)) for arm_id, a, b in rows}


def _pack_arm_segments(connection: sa.Connection) -> None:
    by_arm: dict[int, list[tuple[int, float, float, float, float]]] = defaultdict(list)
    for arm_id, segment, *values in connection.execute(
        sa.text("SELECT arm_id, segment, alpha, beta, exposures, target_events FROM arm_segments")
    ):
        by_arm[int(arm_id)].append((int(segment), *map(float, values)))
    priors = _priors(connection)
    rows = []
    for arm_id, pairs in by_arm.items():
        size = max(segment for segment, *_ in pairs) + 1
        prior_alpha, prior_beta = priors[arm_id]
        state = np.zeros((4, size))
        state[0], state[1] = prior_alpha, prior_beta
        for segment, *values in pairs:
            state[:, segment] = values
        rows.append(
            {"arm_id": arm_id, **dict(zip(("a", "b", "n", "x"), map(_floats, state), strict=True))}
        )
    if rows:
        connection.execute(
            sa.text(
                "INSERT INTO arm_segment_states (arm_id, alphas, betas, exposures, "
                "target_events) VALUES (:arm_id, :a, :b, :n, :x)"
            ),
            rows,
        )


def _pack_tick_segments(connection: sa.Connection) -> None:
    by_tick: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for tick_id, *values in connection.execute(
        sa.text(
            "SELECT tick_id, segment, arm_id, exposures, target_events, alpha_increment, "
            "beta_increment, alpha_after, beta_after FROM tick_segments "
            "ORDER BY tick_id, segment, arm_id"
        )
    ):
        by_tick[int(tick_id)].append(tuple(values))
    rows = []
    for tick_id, pairs in by_tick.items():
        columns = list(zip(*pairs, strict=True))
        rows.append(
            {
                "tick_id": tick_id,
                "segments": _ints(columns[0]),
                "arm_ids": _ints(columns[1]),
                **{
                    name: _floats(column)
                    for name, column in zip(_RECORD_FLOATS, columns[2:], strict=True)
                },
            }
        )
    if rows:
        names = ", ".join(_RECORD_FLOATS)
        marks = ", ".join(f":{name}" for name in _RECORD_FLOATS)
        connection.execute(
            sa.text(
                f"INSERT INTO tick_segment_windows (tick_id, segments, arm_ids, {names}) "
                f"VALUES (:tick_id, :segments, :arm_ids, {marks})"
            ),
            rows,
        )


def downgrade() -> None:
    op.create_table(
        "arm_segments",
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.Column("exposures", sa.Float(), nullable=False),
        sa.Column("target_events", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["arm_id"], ["arms.id"]),
        sa.PrimaryKeyConstraint("arm_id", "segment"),
    )
    op.create_table(
        "tick_segments",
        sa.Column("tick_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in _PAIR_FLOATS),
        sa.Column("alpha_after", sa.Float(), nullable=False),
        sa.Column("beta_after", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tick_id"], ["ticks.id"]),
        sa.PrimaryKeyConstraint("tick_id", "segment", "arm_id"),
    )
    connection = op.get_bind()
    _unpack_arm_segments(connection)
    _unpack_tick_segments(connection)
    op.drop_table("tick_segment_windows")
    op.drop_table("arm_segment_states")


def _unpack_arm_segments(connection: sa.Connection) -> None:
    priors = _priors(connection)
    rows = []
    for arm_id, *blobs in connection.execute(
        sa.text("SELECT arm_id, alphas, betas, exposures, target_events FROM arm_segment_states")
    ):
        alphas, betas, exposures, events = (np.frombuffer(blob, dtype="<f8") for blob in blobs)
        prior_alpha, prior_beta = priors[int(arm_id)]
        data = (exposures > 0) | (events > 0) | (alphas != prior_alpha) | (betas != prior_beta)
        rows.extend(
            {
                "arm_id": int(arm_id),
                "segment": int(s),
                "a": float(alphas[s]),
                "b": float(betas[s]),
                "n": float(exposures[s]),
                "x": float(events[s]),
            }
            for s in np.flatnonzero(data)
        )
    if rows:
        connection.execute(
            sa.text(
                "INSERT INTO arm_segments (arm_id, segment, alpha, beta, exposures, "
                "target_events) VALUES (:arm_id, :segment, :a, :b, :n, :x)"
            ),
            rows,
        )


def _unpack_tick_segments(connection: sa.Connection) -> None:
    rows = []
    names = ("segments", "arm_ids", *_RECORD_FLOATS)
    for tick_id, *blobs in connection.execute(
        sa.text(f"SELECT tick_id, {', '.join(names)} FROM tick_segment_windows")
    ):
        segments, arm_ids = (np.frombuffer(blob, dtype="<i8") for blob in blobs[:2])
        floats = [np.frombuffer(blob, dtype="<f8") for blob in blobs[2:]]
        for i in range(segments.size):
            rows.append(
                {
                    "tick_id": int(tick_id),
                    "segment": int(segments[i]),
                    "arm_id": int(arm_ids[i]),
                    **{f"v{j}": float(column[i]) for j, column in enumerate(floats)},
                }
            )
    if rows:
        connection.execute(
            sa.text(
                "INSERT INTO tick_segments (tick_id, segment, arm_id, exposures, "
                "target_events, alpha_increment, beta_increment, alpha_after, beta_after) "
                "VALUES (:tick_id, :segment, :arm_id, :v0, :v1, :v2, :v3, :v4, :v5)"
            ),
            rows,
        )
