"""What PostgreSQL's storage and result format cost the packed columns (migration 0026).

A dense segmented tick (1,000 segments x 20 arms, every pair with data) writes and reads
packed arrays of a few hundred kB each (docs/segments.md, "Cost"). With psycopg on a
scratch table: inserting 6 rows of 672 kB (84,000 int64) with the column's storage EXTENDED
(PostgreSQL's default for bytea: pglz compression), EXTERNAL (out of line, uncompressed:
what migration 0026 sets) and EXTENDED with lz4 compression; then reading 4 such rows with
results in text format (bytea as hex) and in binary format (what ``api.db.driver_rows``
asks for). Medians of ``--repeats``, alternating.

    .venv/bin/python benchmarks/packed_columns.py [--repeats 7]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import psycopg

ROWS, VALUES = 6, 84_000
STORAGE = {
    "EXTENDED (pglz, the default)": "",
    "EXTERNAL (uncompressed, migration 0026)": "ALTER COLUMN b SET STORAGE EXTERNAL",
    "EXTENDED with lz4": "ALTER COLUMN b SET COMPRESSION lz4",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    blob = np.arange(VALUES, dtype="<i8").tobytes()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with psycopg.connect(args.postgres, autocommit=True) as connection:
        print(f"PostgreSQL {connection.info.server_version}")
        tables = {}
        for index, (label, change) in enumerate(STORAGE.items()):
            table = f"ranktune_bench_packed_{index}"
            connection.execute(f"DROP TABLE IF EXISTS {table}")
            connection.execute(f"CREATE TABLE {table} (id int, b bytea)")
            if change:
                connection.execute(f"ALTER TABLE {table} {change}")
            tables[label] = table
        inserts: dict[str, list[float]] = {label: [] for label in tables}
        reads: dict[bool, list[float]] = {False: [], True: []}
        try:
            for _ in range(args.repeats):
                for label, table in tables.items():
                    began = time.perf_counter()
                    with connection.transaction(), connection.cursor() as cursor:
                        cursor.executemany(
                            f"INSERT INTO {table} VALUES (%s, %s)",
                            [(i, blob) for i in range(ROWS)],
                        )
                    inserts[label].append(time.perf_counter() - began)
                for binary in (False, True):
                    began = time.perf_counter()
                    with connection.cursor(binary=binary) as cursor:
                        cursor.execute(f"SELECT id, b FROM {tables[next(iter(tables))]} LIMIT 4")
                        cursor.fetchall()
                    reads[binary].append(time.perf_counter() - began)
        finally:
            for table in tables.values():
                connection.execute(f"DROP TABLE IF EXISTS {table}")
    size = ROWS * len(blob) // 1000
    for label, values in inserts.items():
        print(
            f"insert {ROWS} rows of {len(blob) // 1000} kB ({size:,} kB), {label}: "
            f"{statistics.median(values) * 1e3:.1f} ms (median of {args.repeats})"
        )
    for binary, values in reads.items():
        print(
            f"read 4 rows ({4 * len(blob) // 1000:,} kB), results in "
            f"{'binary' if binary else 'text (hex)'} format: "
            f"{statistics.median(values) * 1e3:.2f} ms (median of {args.repeats})"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
