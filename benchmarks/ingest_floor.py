"""The ingestion floor: what the database does by itself with the rows ranktune stores.

A minimal writer, no HTTP and no ranktune code on the write path: the driver (sqlite3 or
psycopg) straight on a database migrated to the same schema (``ranktune serve --upgrade``
created it, with the example experiment), with the same durability as the service (SQLite
WAL with ``synchronous=FULL``, PostgreSQL with ``synchronous_commit=on``). Per event it
writes what the service's writer writes (``api.ingest``): the ``events`` row (the same
columns, an event id unique in the run, a payload hash), the ticket's ``ticket_credits``
upsert (a key of its own, in issue-time order as real keys are, RETURNING the total), and
per commit the ``pending_batches`` row of the rows' (arm, group, type, bucket) totals;
the same statements (executemany on SQLite; COPY, and keys as strings the server splits,
on PostgreSQL). Rows are built on the fly from a counter, about a microsecond each, which
the floor pays and the service does not: if anything it is a little low.

Two ways to commit, each with 1 and 2 connections on SQLite (one writes at a time anyway),
1, 2, 4 and 8 on PostgreSQL (threads, one connection each):

- ``batch``: one commit per batch of ``--batch`` events (what a naive service does);
- ``grouped``: one commit per ``--group`` events (what the service's writer does when
  requests queue: 16 connections x 100 events are 1,600 events waiting).

The figure of each mode is its best connection count (stated), with the p99 of one commit
there (what a request waits for at least); the service is compared with the grouped floor.
Every committed row is counted in the database afterwards.

    .venv/bin/python benchmarks/ingest_floor.py --database sqlite --duration 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.ingest import COPY_TYPES, INSERT_COLUMNS
from api.pending import BATCH_COLUMNS
from benchmarks.common import (
    BenchError,
    create_example_experiment,
    fmt_rate,
    median,
    say,
    start_ranktune,
)

CONNECTIONS = {"sqlite": (1, 2), "postgresql": (1, 2, 4, 8)}
EVENTS_COLUMNS = ", ".join(INSERT_COLUMNS)  # the service's own columns and types
PENDING = ", ".join(BATCH_COLUMNS)  # the columns of the batch the service inserts
BUCKETS = 64
PG_NAME = "ranktune_bench_floor"


class Rows:
    """Event rows of the example experiment from one shared counter (thread-safe: the
    counter is itertools.count, whose next() is atomic under the GIL)."""

    def __init__(self, experiment: dict[str, Any], prefix: str) -> None:
        self.experiment_id = int(experiment["id"])
        self.reference = int(experiment["reference_arm_id"])
        self.arms = [int(arm["id"]) for arm in experiment["arms"]]
        self.prefix = prefix
        self.counter = itertools.count()
        self.issued = int(time.time())

    def batch(self, size: int, received_at: Any) -> tuple[list[tuple[Any, ...]], list[bytes]]:
        rows: list[tuple[Any, ...]] = []
        keys: list[bytes] = []
        arms = self.arms
        for _ in range(size):
            serial = next(self.counter)
            arm = arms[serial % len(arms)]
            group = "reference" if arm == self.reference else "target"
            rows.append(
                (
                    self.experiment_id,
                    arm,
                    group,
                    "contact",
                    1,
                    f"{self.prefix}-{serial}",
                    f"{serial:032x}",
                    received_at,
                    1,
                )
            )
            keys.append(
                b"\x01"
                + self.issued.to_bytes(4, "big")
                + serial.to_bytes(8, "big")
                + bytes((serial % BUCKETS, 0))
                + b"contact"
            )
        return rows, keys


def pending_of(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The commit's ``pending_batches`` row (``api.pending``): the rows' totals per key
    (arm, group, type, bucket; segment 0), packed as little-endian int64 arrays, the
    (group, type, reason) vocabulary as JSON, the credited reference exposures."""
    totals: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = (row[1], (row[2], row[3], ""), int(row[6], 16) % BUCKETS)
        totals[key] = totals.get(key, 0) + 1
    kinds = sorted({kind for _, kind, _ in totals})
    code = {kind: index for index, kind in enumerate(kinds)}
    keys = sorted(totals, key=lambda k: (k[0], code[k[1]], k[2]))

    def packed(values: list[int]) -> bytes:
        return np.array(values, dtype="<i8").tobytes()

    return (
        rows[0][0],
        sum(n for (_, kind, _), n in totals.items() if kind == ("reference", "exposure", "")),
        json.dumps(kinds),
        packed([k[0] for k in keys]),
        packed([code[k[1]] for k in keys]),
        packed([k[2] for k in keys]),
        packed([0] * len(keys)),
        packed([totals[k] for k in keys]),
    )


def sqlite_writer(path: str, rows: Rows) -> Callable[[int], None]:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        connection.execute(f"PRAGMA {pragma}")
    received_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    insert = f"INSERT INTO events ({EVENTS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    pending = f"INSERT INTO pending_batches ({PENDING}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

    def commit(size: int) -> None:
        batch, keys = rows.batch(size, received_at)
        connection.execute("BEGIN IMMEDIATE")
        credits = (
            "INSERT INTO ticket_credits (key, count) VALUES "
            + ", ".join(["(?, 1)"] * len(keys))
            + " ON CONFLICT (key) DO UPDATE SET count = ticket_credits.count + excluded.count "
            "RETURNING key, count"
        )
        connection.execute(credits, keys).fetchall()
        connection.executemany(insert, batch)
        connection.execute(pending, pending_of(batch))
        connection.execute("COMMIT")

    return commit


def postgres_writer(url: str, rows: Rows) -> Callable[[int], None]:
    import psycopg

    connection = psycopg.connect(url, autocommit=False)
    connection.execute("SET synchronous_commit = on")
    received_at = datetime.now(UTC)
    credits = (
        "INSERT INTO ticket_credits (key, count) SELECT decode(k, 'hex'), c::bigint FROM unnest("
        "string_to_array(%s, ','), string_to_array(%s, ',')) AS t(k, c) ON CONFLICT (key) "
        "DO UPDATE SET count = ticket_credits.count + excluded.count RETURNING key, count"
    )
    pending = (
        f"INSERT INTO pending_batches ({PENDING}) VALUES (%s, %s, %s::json, %s, %s, %s, %s, %s)"
    )

    def commit(size: int) -> None:
        batch, keys = rows.batch(size, received_at)
        with connection.cursor() as cursor:
            cursor.execute(credits, (",".join(k.hex() for k in keys), ",".join(["1"] * len(keys))))
            cursor.fetchall()
            with cursor.copy(f"COPY events ({EVENTS_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(COPY_TYPES)
                for row in batch:
                    copy.write_row(row)
            cursor.execute(pending, pending_of(batch))
        connection.commit()

    return commit


def measure(
    make_writer: Callable[[], Callable[[int], None]],
    connections: int,
    size: int,
    duration: float,
) -> tuple[float, float, float]:
    """Rows per second committed by ``connections`` threads, each committing ``size`` rows
    at a time for ``duration`` seconds, the p99 of one commit's duration in us, and this
    process's CPU per row in us (the rows' building included; not PostgreSQL's backends)."""
    writers = [make_writer() for _ in range(connections)]
    committed = [0] * connections
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors: list[BaseException] = []
    start = threading.Barrier(connections + 1)
    deadline = [0.0]

    def work(index: int) -> None:
        start.wait()
        try:
            while (commit_start := time.perf_counter()) < deadline[0]:
                writers[index](size)
                latencies[index].append(time.perf_counter() - commit_start)
                committed[index] += size
        except BaseException as error:  # reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    cpu_began = time.process_time()
    began = time.perf_counter()
    deadline[0] = began + duration
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    if errors:
        raise BenchError(f"floor writer failed: {errors[0]!r}")
    every = sorted(itertools.chain.from_iterable(latencies))
    p99 = every[min(len(every) - 1, int(0.99 * len(every)))] * 1e6 if every else float("nan")
    rows = sum(committed)
    return rows / elapsed, p99, cpu / rows * 1e6 if rows else float("nan")


def stored(url: str, prefix: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM events WHERE event_id LIKE :p"), {"p": f"{prefix}%"}
            ).scalar_one()
            return int(count)
    finally:
        engine.dispose()


def run(
    database: str, duration: float, repeats: int = 1, batch: int = 100, group: int = 1600
) -> dict[str, Any]:
    """The floor on ``database`` (sqlite or postgresql): rows/s per mode and connection
    count (medians of ``repeats``), and each mode's best."""
    from benchmarks.ingestion import create_pg_database, drop_pg_database

    workdir = Path(tempfile.mkdtemp(prefix=f"ranktune-bench-floor-{database}-"))
    url = (
        f"sqlite:///{workdir / 'floor.db'}" if database == "sqlite" else create_pg_database(PG_NAME)
    )
    try:
        server = start_ranktune(url, workdir / "prepare.log")
        try:
            experiment = create_example_experiment(server)
        finally:
            server.stop()
        if database == "sqlite":
            path = str(make_url(url).database)

            def make(rows: Rows) -> Callable[[], Callable[[int], None]]:
                return lambda: sqlite_writer(path, rows)
        else:
            driver_url = make_url(url).set(drivername="postgresql").render_as_string(False)

            def make(rows: Rows) -> Callable[[], Callable[[int], None]]:
                return lambda: postgres_writer(driver_url, rows)

        figures: dict[str, dict[int, list[float]]] = {"batch": {}, "grouped": {}}
        p99s: dict[str, dict[int, list[float]]] = {"batch": {}, "grouped": {}}
        cpus: dict[str, dict[int, list[float]]] = {"batch": {}, "grouped": {}}
        expected = 0
        prefix = f"floor{int(time.time())}"
        for repeat in range(repeats):
            for mode, size in (("batch", batch), ("grouped", group)):
                for connections in CONNECTIONS[database]:
                    rows = Rows(experiment, f"{prefix}{repeat}{mode}{connections}")
                    rate, p99, cpu = measure(make(rows), connections, size, duration)
                    expected += next(rows.counter)  # rows built so far: all committed
                    figures[mode].setdefault(connections, []).append(rate)
                    p99s[mode].setdefault(connections, []).append(p99)
                    cpus[mode].setdefault(connections, []).append(cpu)
                    say(
                        f"  floor {database} {mode:7} ({size} rows/commit), {connections} "
                        f"connection(s): {fmt_rate(rate)} rows/s, commit p99 {p99 / 1000:.1f} ms, "
                        f"CPU {cpu:.1f} us/row"
                    )
        found = stored(url, prefix)
        if found != expected:
            raise BenchError(f"floor: {expected} rows committed but {found} stored")
    finally:
        if database == "postgresql":
            drop_pg_database(PG_NAME)
    result: dict[str, Any] = {"database": database, "batch": batch, "group": group}
    for mode, by_connections in figures.items():
        medians = {c: median(rates) for c, rates in by_connections.items()}
        best = max(medians, key=lambda c: medians[c])
        result[mode] = {
            "rows_per_s": medians[best],
            "connections": best,
            "p99_us": median(p99s[mode][best]),
            "cpu_us": median(cpus[mode][best]),
            "by_connections": medians,
        }
    say(
        f"floor ({database}): one commit per batch of {batch}: "
        f"{fmt_rate(result['batch']['rows_per_s'])} rows/s "
        f"({result['batch']['connections']} connection(s)); grouped commits of {group}: "
        f"{fmt_rate(result['grouped']['rows_per_s'])} rows/s "
        f"({result['grouped']['connections']} connection(s)); {found} rows verified stored"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measure")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--group", type=int, default=1600)
    args = parser.parse_args()
    try:
        run(args.database, args.duration, args.repeats, args.batch, args.group)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
