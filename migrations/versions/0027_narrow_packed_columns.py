"""narrow packed columns: each packed array names its element type and takes the narrowest

The packed columns (migrations 0023-0025) held every array as little-endian int64 or
float64. Now each value starts with one byte naming its element type (``1``, ``2``, ``4``,
``8``: a signed integer of that many bytes; ``f``: float64), followed by the elements,
little-endian. Integers, and float arrays whose elements are all whole numbers (counts),
take the narrowest integer type that holds every element (``api.db.pack_ints``,
``pack_floats``). A dense segmented tick (1,000 segments x 20 arms) wrote 3.3 MB of
arrays; it now writes about 1.3 MB: segments and buckets fit in 1-2 bytes, counts in 2-4,
only the posteriors need 8.

The upgrade rewrites every stored array in the new format; the downgrade rewrites them as
plain int64/float64 arrays. Both read and write the rows in pages of 200 by primary key,
with the codecs of this revision written out here (frozen: ``api.db`` may change).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01 06:30:00.000000
"""

from collections.abc import Callable, Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INT, FLOAT = "int", "float"
# table: (primary key, {column: the kind of its elements}), as migrations 0023-0025 made them.
PACKED: dict[str, tuple[str, dict[str, str]]] = {
    "pending_batches": (
        "id",
        {column: INT for column in ("arm_ids", "kind_codes", "buckets", "segments", "counts")},
    ),
    "metric_count_batches": (
        "id",
        {column: INT for column in ("arm_ids", "buckets", "segments", "counts")},
    ),
    "arm_segment_states": (
        "arm_id",
        {column: FLOAT for column in ("alphas", "betas", "exposures", "target_events")},
    ),
    "tick_segment_windows": (
        "tick_id",
        {
            "segments": INT,
            "arm_ids": INT,
            **{
                column: FLOAT
                for column in (
                    "exposures",
                    "target_events",
                    "alpha_increments",
                    "beta_increments",
                    "alphas_after",
                    "betas_after",
                )
            },
        },
    ),
}
PAGE = 200
_INT_TYPES = [(str(size).encode(), np.dtype(f"<i{size}")) for size in (1, 2, 4, 8)]
_TYPES = {code[0]: dtype for code, dtype in [*_INT_TYPES, (b"f", np.dtype("<f8"))]}


def _narrow_ints(ints: np.ndarray) -> bytes:
    low, high = (int(ints.min()), int(ints.max())) if ints.size else (0, 0)
    for code, dtype in _INT_TYPES:
        bounds = np.iinfo(dtype)
        if bounds.min <= low and high <= bounds.max:
            return code + ints.astype(dtype).tobytes()
    raise AssertionError("int64 holds every int64")


def _narrow(kind: str, blob: bytes) -> bytes:
    """A plain int64/float64 array in this revision's format."""
    if kind == INT:
        return _narrow_ints(np.frombuffer(blob, dtype="<i8"))
    floats = np.frombuffer(blob, dtype="<f8")
    if bool(np.all(np.abs(floats) <= 2.0**53)) and np.array_equal(floats, np.trunc(floats)):
        return _narrow_ints(floats.astype(np.int64))
    return b"f" + floats.tobytes()


def _plain(kind: str, blob: bytes) -> bytes:
    """This revision's format as the plain int64/float64 array it was before."""
    values = np.frombuffer(blob, dtype=_TYPES[blob[0]], offset=1)
    return values.astype("<i8" if kind == INT else "<f8").tobytes()


def _rewrite(convert: Callable[[str, bytes], bytes]) -> None:
    connection = op.get_bind()
    for table, (key, columns) in PACKED.items():
        names = list(columns)
        assignments = ", ".join(f"{name} = :{name}" for name in names)
        update = sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :key")
        after = None
        while True:
            where = "" if after is None else f" WHERE {key} > {int(after)}"
            rows = connection.execute(
                sa.text(
                    f"SELECT {key}, {', '.join(names)} FROM {table}{where} "
                    f"ORDER BY {key} LIMIT {PAGE}"
                )
            ).all()
            if not rows:
                break
            connection.execute(
                update,
                [
                    {
                        "key": row[0],
                        **{
                            name: convert(columns[name], bytes(blob))
                            for name, blob in zip(names, row[1:], strict=True)
                        },
                    }
                    for row in rows
                ],
            )
            after = rows[-1][0]


def upgrade() -> None:
    _rewrite(_narrow)


def downgrade() -> None:
    _rewrite(_plain)
