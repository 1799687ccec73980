"""How long migration 0027 (narrow packed columns) takes to rewrite stored arrays.

An operator upgrading a database with a long history of segmented ticks wants to know how
long ``ranktune db upgrade`` will take. On a scratch database of each store, migrated to
0026: ``--records`` rows of ``tick_segment_windows`` as a dense segmented tick wrote them
before 0027 (21,000 (segment, arm) pairs, eight plain int64/float64 arrays: 1.34 MB each),
then the upgrade to 0027 timed. Prints the megabytes of plain arrays converted per second.

    .venv/bin/python benchmarks/narrow_migration.py [--records 100]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres ('' to skip)]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from alembic import command
from sqlalchemy import create_engine, text

from api.db import migrations_config
from benchmarks.common import say

PAIRS = 21_000  # 1,000 segments x (20 arms + the reference)
COLUMNS = (
    "segments",
    "arm_ids",
    "exposures",
    "target_events",
    "alpha_increments",
    "beta_increments",
    "alphas_after",
    "betas_after",
)


def _records(count: int, rng: np.random.Generator) -> list[dict[str, object]]:
    """Dense tick records as 0026 stored them: counts whole, increments and posteriors not."""
    segments = np.repeat(np.arange(1000), 21).astype("<i8").tobytes()
    arm_ids = np.tile(np.arange(1, 22), 1000).astype("<i8").tobytes()
    rows = []
    for tick_id in range(1, count + 1):
        whole = [rng.integers(50, 500, PAIRS).astype("<f8").tobytes() for _ in range(3)]
        fractional = [(rng.random(PAIRS) * 100).astype("<f8").tobytes() for _ in range(3)]
        values = [segments, arm_ids, *whole, *fractional]
        rows.append({"tick_id": tick_id, **dict(zip(COLUMNS, values, strict=True))})
    return rows


def time_upgrade(url: str, records: int) -> float:
    """Seconds to upgrade a database at 0026 holding ``records`` dense tick records."""
    config = migrations_config(url)
    command.upgrade(config, "0026")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            # The records alone: no ticks to refer to (the migration reads only this table).
            if url.startswith("sqlite"):
                connection.execute(text("PRAGMA foreign_keys=OFF"))
            else:
                connection.execute(
                    text(
                        "ALTER TABLE tick_segment_windows "
                        "DROP CONSTRAINT IF EXISTS tick_segment_windows_tick_id_fkey"
                    )
                )
            marks = ", ".join(f":{column}" for column in ("tick_id", *COLUMNS))
            connection.execute(
                text(
                    f"INSERT INTO tick_segment_windows (tick_id, {', '.join(COLUMNS)}) "
                    f"VALUES ({marks})"
                ),
                _records(records, np.random.default_rng(1)),
            )
    finally:
        engine.dispose()
    started = time.perf_counter()
    command.upgrade(config, "0027")
    return time.perf_counter() - started


def _report(store: str, records: int, seconds: float) -> None:
    megabytes = records * len(COLUMNS) * 8 * PAIRS / 1e6
    say(
        f"migration 0027 [{store}]: {records} dense tick records, {megabytes:.0f} MB of plain "
        f"arrays, rewritten in {seconds:.1f} s: {megabytes / seconds:.0f} MB/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server URL ('' to skip)",
    )
    args = parser.parse_args()
    say(f"load average before: {os.getloadavg()[0]:.2f}")
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-migration-"))
    _report("sqlite", args.records, time_upgrade(f"sqlite:///{directory / 'm.db'}", args.records))
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        name = f"ranktune_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
            _report("postgresql", args.records, time_upgrade(url, args.records))
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
