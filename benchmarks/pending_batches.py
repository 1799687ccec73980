"""What a tick's pending counts cost, as rows per key (before migration 0025) and as packed
batches (``pending_batches``, ``api.pending``), in one process on the same database.

The dense window of benchmarks/segments.py: 1,000 segments x 20 arms and the reference,
exposures and contacts in every (arm, segment): 42,000 keys. Timed, medians of
``--repeats``, alternating, each in its own transaction, commit included:

- **rows**: the keys as ``pending_counts`` rows (a table with that migration's schema): the
  tick's read and consume as they were just before migration 0025 (grouped by (arm,
  group, type, reason), into ``repositories.PendingWindow`` columns; SQLite deletes the
  segments read, PostgreSQL exactly the keys read, unnested);
- **batches**: the same counts as 1, 100 and 1,000 pending batches (each key in one of
  them): ``repositories.pending_counts_for_update`` (read, locked, summed into the same
  columns) and ``consume_pending_counts`` (delete the ids read);
- the writer's side: one commit adding 420 of the keys (a writer group's share), as the
  ``pending_counts`` upsert did and as one batch insert.

    .venv/bin/python benchmarks/pending_batches.py [--repeats 5]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from api import repositories as repo
from api.app import create_app
from api.db import add_counts, array_params, driver_rows, upgrade_database
from api.pending import PendingRow, pack_batch
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, say
from benchmarks.segments import _postgres_database

ARMS, SEGMENTS = 21, 1000
OLD_KEY = (
    ("experiment_id", "int"),
    ("arm_id", "int"),
    ("assignment_group", "varchar"),
    ("type", "varchar"),
    ("reason", "varchar"),
    ("bucket", "int"),
    ("segment", "int"),
)
OLD_TABLE = (
    "CREATE TABLE old_pending_counts (experiment_id int NOT NULL, arm_id int NOT NULL, "
    "assignment_group varchar(16) NOT NULL, type varchar(64) NOT NULL, "
    "reason varchar(32) NOT NULL, bucket int NOT NULL, segment int NOT NULL, "
    "count bigint NOT NULL, PRIMARY KEY (experiment_id, arm_id, assignment_group, type, "
    "reason, bucket, segment))"
)


def window(experiment_id: int) -> list[PendingRow]:
    rng = np.random.default_rng(1)
    return [
        PendingRow(
            experiment_id * 100 + arm,
            "target" if arm else "reference",
            kind,
            "",
            0,
            int(rng.integers(1, 500)),
            segment,
        )
        for arm in range(ARMS)
        for segment in range(SEGMENTS)
        for kind in ("exposure", "contact")
    ]


_PREFIX = "arm_id, assignment_group, type, reason"


def old_tick(connection: Connection, experiment_id: int) -> int:
    """The tick's read and consume before migration 0025 (039574d's
    pending_counts_for_update, PendingWindow.of_groups and consume_pending_counts), on a
    table with the old schema: the rows grouped by (arm, group, type, reason), each
    group's buckets, counts and segments as comma-separated integers, into columns; SQLite
    deletes the segments read, PostgreSQL exactly the keys read."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        lists = ", ".join(
            f"string_agg({column}::text, ',' ORDER BY bucket, segment)"
            for column in ("bucket", "count", "segment")
        )
        source = (
            f"(SELECT {_PREFIX}, bucket, count, segment FROM old_pending_counts "
            f"WHERE experiment_id = {experiment_id} ORDER BY {_PREFIX}, bucket, segment "
            "FOR UPDATE) AS locked"
        )
    else:
        lists = "group_concat(bucket), group_concat(count), group_concat(segment)"
        source = f"old_pending_counts WHERE experiment_id = {experiment_id}"
    groups = driver_rows(
        connection,
        f"SELECT {_PREFIX}, count(*), {lists} FROM {source} GROUP BY {_PREFIX} ORDER BY {_PREFIX}",
        (),
    )
    arm_id, group, type_, reason, sizes, *texts = zip(*groups, strict=True)
    repeats = np.fromiter(sizes, np.int64, len(sizes))
    bucket, count, segment = (
        np.fromstring(",".join(column), dtype=np.int64, sep=",") for column in texts
    )
    window = repo.PendingWindow.of(
        list(zip(arm_id, group, type_, reason, sizes, sizes, sizes, strict=True))
    )
    window = replace(
        window,
        arm_id=np.repeat(window.arm_id, repeats),
        group=np.repeat(window.group, repeats),
        type=np.repeat(window.type, repeats),
        reason=np.repeat(window.reason, repeats),
        bucket=bucket,
        count=count,
        segment=segment,
    )
    if postgres:
        columns = (
            window.arm_id.tolist(),
            window.strings("group"),
            window.strings("type"),
            window.strings("reason"),
            window.bucket.tolist(),
            window.segment.tolist(),
        )
        connection.exec_driver_sql(
            "DELETE FROM old_pending_counts WHERE experiment_id = %s AND "
            "(arm_id, assignment_group, type, reason, bucket, segment) IN (SELECT * FROM "
            "unnest(%s::int[], %s::varchar[], %s::varchar[], %s::varchar[], %s::int[], "
            "%s::int[]))",
            (
                experiment_id,
                *array_params(
                    ("int", "varchar", "varchar", "varchar", "int", "int"),
                    list(zip(*columns, strict=True)),
                ),
            ),
        )
    else:
        listed = ", ".join(str(s) for s in np.unique(window.segment).tolist())
        connection.exec_driver_sql(
            f"DELETE FROM old_pending_counts WHERE experiment_id = {experiment_id} "
            f"AND segment IN ({listed})"
        )
    return len(window)


def old_fill(connection: Connection, experiment_id: int, rows: list[PendingRow]) -> None:
    add_counts(
        connection,
        "old_pending_counts",
        OLD_KEY,
        sorted((experiment_id, *row[:5], row.segment, row.count) for row in rows),
    )


def new_fill(
    connection: Connection, experiment_id: int, rows: list[PendingRow], batches: int
) -> None:
    parts: list[list[PendingRow]] = [[] for _ in range(batches)]
    for index, row in enumerate(rows):
        parts[index * 7919 % batches].append(row)
    repo.insert_pending_batches(
        connection, [(experiment_id, pack_batch(part)) for part in parts if part]
    )


def run(url: str, repeats: int) -> None:
    upgrade_database(url)
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False))
    with TestClient(app) as client:
        created = client.post(
            "/v1/experiments",
            json={**SIMILAR_ITEMS, "name": "pending-bench"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert created.status_code == 201, created.text
        experiment_id = int(created.json()["id"])
        runtime = app.state.runtime
        with runtime.transaction() as session:
            connection = session.connection()
            connection.exec_driver_sql("DROP TABLE IF EXISTS old_pending_counts")
            connection.exec_driver_sql(OLD_TABLE)
            connection.execute(text("DELETE FROM pending_batches"))
        rows = window(experiment_id)
        # As ranktune serve runs (api.server): what is alive at start out of the collector's
        # reach, so that a full collection does not walk the app's objects in a timed part.
        gc.collect()
        gc.freeze()
        writes = rows[:420]
        times: dict[str, list[float]] = {}

        def timed(name: str, work: Callable[[Session], object]) -> None:
            began = time.perf_counter()
            with runtime.transaction() as session:
                work(session)
            times.setdefault(name, []).append((time.perf_counter() - began) * 1000)

        for _ in range(repeats):
            with runtime.transaction() as session:
                old_fill(session.connection(), experiment_id, rows)
            timed("rows", lambda s: old_tick(s.connection(), experiment_id))
            for batches in (1, 100, 1000):
                with runtime.transaction() as session:
                    new_fill(session.connection(), experiment_id, rows, batches)

                def new_tick(session: Session) -> None:
                    read = repo.pending_counts_for_update(session, experiment_id)
                    assert len(read.window) == len(rows)
                    repo.consume_pending_counts(
                        session,
                        experiment_id,
                        read.batch_ids,
                        read.window.select(np.zeros(len(read.window), bool)),
                    )

                timed(f"batches_{batches}", new_tick)
            timed("write_rows", lambda s: old_fill(s.connection(), experiment_id, writes))
            timed("write_batch", lambda s: new_fill(s.connection(), experiment_id, writes, 1))
            with runtime.transaction() as session:
                session.connection().exec_driver_sql("DELETE FROM old_pending_counts")
                session.connection().exec_driver_sql("DELETE FROM pending_batches")
        with runtime.transaction() as session:
            session.connection().exec_driver_sql("DROP TABLE old_pending_counts")
    store = url.split(":", 1)[0].split("+", 1)[0]
    m = {name: statistics.median(values) for name, values in times.items()}
    say(
        f"pending counts [{store}], dense window ({len(rows):,} keys), read into columns + "
        f"consumed, medians of {repeats}: as rows (grouped read) {m['rows']:.1f} ms; as 1 "
        f"batch {m['batches_1']:.1f} ms, 100 batches {m['batches_100']:.1f} ms, 1,000 batches "
        f"{m['batches_1000']:.1f} ms"
    )
    say(
        f"pending counts [{store}], a writer commit of {len(writes)} keys: upserted as rows "
        f"{m['write_rows']:.2f} ms, inserted as one batch {m['write_batch']:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL to time there too")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-pending-"))
    run(f"sqlite:///{directory / 'ranktune.db'}", args.repeats)
    if args.postgres:
        url, drop = _postgres_database(args.postgres)
        try:
            run(url, args.repeats)
        finally:
            drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
