"""What the rows of a dense segmented window cost SQLite alone (docs/segments.md, "Cost").

A tick of 1,000 segments x 20 arms with data in every pair consumes 42,000 pending rows
(21 arms with the reference, 1,000 segments, exposures and contacts) and upserts 21,000
``(arm, segment)`` posteriors. This script times, with plain sqlite3 on a WAL database with
``synchronous=FULL`` (as the service), medians of 5: consuming the pending rows (one
SELECT and one DELETE in one transaction), upserting the pairs, and writing the same state
packed as one row per arm (a blob of four float64 arrays over the segments): the layout
that would let the dense window's tick fit its 100 ms target.

    .venv/bin/python benchmarks/segment_rows.py
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ARMS, SEGMENTS, REPEATS = 21, 1000, 5


def main() -> int:
    path = Path(tempfile.mkdtemp(prefix="ranktune-bench-rows-")) / "rows.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE pending (experiment int, arm int, grp text, type text, reason text, "
        "bucket int, segment int, count int, "
        "PRIMARY KEY (experiment, arm, grp, type, reason, bucket, segment))"
    )
    db.execute(
        "CREATE TABLE pairs (arm int, segment int, alpha real, beta real, exposures real, "
        "events real, PRIMARY KEY (arm, segment))"
    )
    db.execute("CREATE TABLE packed (arm int PRIMARY KEY, state blob)")
    pending = [
        (1, arm, "target" if arm else "reference", kind, "", 0, segment, 5)
        for arm in range(ARMS)
        for segment in range(SEGMENTS)
        for kind in ("exposure", "contact")
    ]
    pairs = [(arm, s, 1.0, 2.0, 3.0, 4.0) for arm in range(ARMS) for s in range(SEGMENTS)]
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {"pending": [], "pairs": [], "packed": []}

    def timed(name: str, *statements: tuple[str, list[tuple[object, ...]] | None]) -> None:
        began = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            if rows is None:
                db.execute(sql).fetchall()
            else:
                db.executemany(sql, rows)
        db.execute("COMMIT")
        times[name].append(time.perf_counter() - began)

    for _ in range(REPEATS):
        db.execute("BEGIN")
        db.executemany("INSERT INTO pending VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pending)
        db.execute("COMMIT")
        timed(
            "pending",
            ("SELECT arm, grp, type, reason, bucket, count, segment FROM pending "
             "WHERE experiment = 1", None),
            ("DELETE FROM pending WHERE experiment = 1", None),
        )  # fmt: skip
        timed(
            "pairs",
            ("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (arm, segment) DO UPDATE "
             "SET alpha = excluded.alpha, beta = excluded.beta, "
             "exposures = excluded.exposures, events = excluded.events", pairs),
        )  # fmt: skip
        packed = [(arm, rng.random((4, SEGMENTS)).tobytes()) for arm in range(ARMS)]
        timed("packed", ("INSERT OR REPLACE INTO packed VALUES (?, ?)", packed))
    labels = {
        "pending": f"consume {len(pending):,} pending rows (SELECT + DELETE)",
        "pairs": f"upsert {len(pairs):,} (arm, segment) posteriors",
        "packed": f"the same state packed, {ARMS} rows of arrays",
    }
    for name, label in labels.items():
        print(f"{label:>48}: {statistics.median(times[name]) * 1e3:6.1f} ms (median of {REPEATS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
