"""Database growth: bytes stored per event, per table, and what pruning gives back.

Events go through the real ingest path in-process: ``EventIntake`` checks each event's
ticket (one ticket per event, as from one page view each, signed by the server's key) and
the ``EventWriter`` stores them (the event row, the ticket's credit row, the pending
counts) in groups of ``--batch``, as ``POST /v1/events`` would; ticks consume the pending
counts every ``--tick-every`` events, as the scheduler would. Then:

1. the size of every table and index (SQLite: ``dbstat``, PostgreSQL:
   ``pg_total_relation_size``) and the bytes per event, extrapolated to a million events
   and to the steady state of ``--rate`` events/s kept ``--retention-days``;
2. the maintenance job with the clock moved past the retention window (and the tickets'
   attribution window): the pruning rate, and the space in use afterwards (SQLite keeps the
   freed pages in the file for reuse; PostgreSQL's autovacuum marks them reusable, forced
   here with VACUUM);
3. the same number of events again: the file (or relation) should not grow, since the new
   rows fill the freed space;
4. ``--ticks`` ticks with data, recorded: the bytes of one recorded tick (``ticks`` and
   ``tick_arms``), the one table that still grows with time while traffic flows.

    .venv/bin/python benchmarks/db_growth.py --database sqlite --events 300000
    .venv/bin/python benchmarks/db_growth.py --database postgres --events 300000
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sqlalchemy import create_engine, text

from api import repositories as repo
from api.db import upgrade_database
from api.ingest import EventRow
from api.retention import DAY_S
from api.runtime import Runtime
from api.schemas import ExperimentCreate
from api.services.events import CLOCK_SKEW_S
from api.services.experiments import create_experiment
from api.services.retention import BATCH_ROWS, prune
from api.services.ticks import apply_tick
from api.settings import Settings
from benchmarks.common import SIMILAR_ITEMS, say

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "ranktune_growth"
MB = 1024 * 1024
ATTRIBUTION_WINDOW_S = 14_400.0  # the default: the ticket credits' lifetime


class Reported(NamedTuple):
    """One reported event, as ``api.schemas.EventIn`` has it."""

    ticket: str
    type: str
    count: int  # type: ignore[assignment]  # shadows tuple.count(); the API's name
    event_id: str


@contextmanager
def database(kind: str) -> Iterator[tuple[str, Path | None]]:
    """A fresh migrated database: (URL, the SQLite file or None)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ranktune-growth-") as directory:
            path = Path(directory) / "growth.db"
            url = f"sqlite:///{path}"
            upgrade_database(url)
            yield url, path
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {PG_DATABASE}"))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    try:
        upgrade_database(url)
        yield url, None
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        admin.dispose()


class Sizes(NamedTuple):
    total: int  # bytes the database occupies (SQLite: the file; PostgreSQL: every table)
    in_use: int  # of which holding data (SQLite: not on the free list)
    tables: dict[str, int]  # table -> bytes with its indexes


def sizes(runtime: Runtime, path: Path | None) -> Sizes:
    if path is not None:
        # A connection of its own, outside SQLAlchemy's transactions: a checkpoint first,
        # so that the file holds every page.
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (page,) = connection.execute("PRAGMA page_size").fetchone()
            (free,) = connection.execute("PRAGMA freelist_count").fetchone()
            stat = connection.execute(
                "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                "LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY 1"
            ).fetchall()
        finally:
            connection.close()
        total = path.stat().st_size
        return Sizes(total, total - free * page, {name: int(size) for name, size in stat})
    with runtime.engine.connect() as pg:
        rows = pg.exec_driver_sql(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables"
        ).all()
    tables = {name: int(size) for name, size in rows}
    total = sum(tables.values())
    return Sizes(total, total, tables)


def vacuum(runtime: Runtime, path: Path | None) -> None:
    """PostgreSQL: what autovacuum does after a large delete (marks the space reusable)."""
    if path is None:
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")


def show(title: str, now: Sizes, base: Sizes, events: int) -> None:
    say(f"\n{title}: {now.total / MB:.1f} MB on disk, {now.in_use / MB:.1f} MB in use")
    for name in sorted(now.tables, key=lambda n: -now.tables[n]):
        grown = now.tables[name] - base.tables.get(name, 0)
        if now.tables[name] >= 256 * 1024 or (events and grown):
            per = f"{grown / events:7.1f} B/event" if events else ""
            say(f"  {name:22s} {now.tables[name] / MB:9.2f} MB  {per}")


class Example(NamedTuple):
    """The example experiment's ids."""

    id: int
    arms: list[int]  # the target arms
    reference: int


def setup(runtime: Runtime) -> Example:
    with runtime.transaction() as session:
        experiment = create_experiment(
            session,
            ExperimentCreate.model_validate(SIMILAR_ITEMS),
            default_interval_s=10,
            rng=np.random.default_rng(1),
        )
        arms = list(repo.arms_of(session, experiment.id))
        example = Example(
            experiment.id,
            [arm.id for arm in arms if arm.origin != "reference"],
            next(arm.id for arm in arms if arm.origin == "reference"),
        )
    runtime.serving.refresh(runtime.read_session_factory)
    return example


def ingest(runtime: Runtime, experiment: Example, args: argparse.Namespace, label: str) -> float:
    """Report ``args.events`` contacts, each on a ticket of its own, with their server-counted
    exposures, applying a tick every ``args.tick_every``; the seconds it took."""
    intake = runtime.event_intake()
    rng = np.random.default_rng(11)
    count, batch = args.events, args.batch
    started = time.perf_counter()
    step = max(count // 5, batch)
    for start in range(0, count, batch):
        now = time.time()
        events = []
        for index in range(start, min(start + batch, count)):
            reference_group = index % 5 == 0
            ticket = runtime.signer.issue(
                experiment.id,
                experiment.reference
                if reference_group
                else experiment.arms[index % len(experiment.arms)],
                "reference" if reference_group else "target",
                now,
                bucket=int(rng.integers(0, 64)),
            )
            events.append(Reported(ticket, "contact", 1, f"{label}-u{index}-contact-1"))
        rows = intake.rows(events, now=now)
        # The exposures of those page views, as the server counts them (a few rows).
        rows += [
            EventRow(experiment.id, arm, "target", "exposure", batch * 10, None, None)
            for arm in experiment.arms
        ]
        result = runtime.writer.submit(rows).result()
        assert result.accepted == len(rows), result
        done = start + batch
        if done % args.tick_every < batch:
            with runtime.transaction() as session:
                apply_tick(
                    session,
                    experiment.id,
                    now=datetime.now(UTC),
                    rng=np.random.default_rng(0),
                    only_if_due=False,
                )
        if done % step < batch:
            elapsed = time.perf_counter() - started
            say(f"  {label}: {min(done, count):,} events, {done / elapsed:,.0f}/s")
    return time.perf_counter() - started


def estimate(full: Sizes, empty: Sizes, args: argparse.Namespace) -> None:
    """Bytes per event, and the steady state at ``args.rate`` kept ``args.retention_days``."""
    credit_bytes = full.tables["ticket_credits"] - empty.tables["ticket_credits"]
    event_bytes = full.in_use - empty.in_use - credit_bytes
    per_event = (event_bytes + credit_bytes) / args.events
    kept = args.rate * args.retention_days * DAY_S
    # Events stay for the retention window; ticket credits for the attribution window.
    steady = event_bytes / args.events * kept + credit_bytes / args.events * args.rate * (
        ATTRIBUTION_WINDOW_S + CLOCK_SKEW_S
    )
    say(
        f"\nbytes per event: {per_event:.0f} in all ({event_bytes / args.events:.0f} kept for "
        f"the retention window, {credit_bytes / args.events:.0f} of ticket credits kept for "
        f"the attribution window); per million events: {per_event * 1e6 / 1024**3:.3f} GiB"
    )
    say(
        f"without pruning: +{event_bytes / args.events * args.rate * DAY_S / 1024**3:.2f} GiB "
        f"a day at {args.rate:g} events/s, for ever"
    )
    say(
        f"steady state at {args.rate:g} events/s kept {args.retention_days:g} days "
        f"({kept / 1e6:.1f} M events) and a 4-hour attribution window: "
        f"{steady / 1024**3:.1f} GiB"
    )


def prune_all(runtime: Runtime, moved: datetime, retention_days: float) -> None:
    """What the maintenance job does, with the clock at ``moved``, until nothing is left."""
    started = time.perf_counter()
    with runtime.transaction() as session:
        credits = repo.purge_expired_ticket_credits(session, moved.timestamp(), CLOCK_SKEW_S)
    credit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    batches = events = 0
    longest = busy = 0.0
    while True:  # one maintenance run per budget, as the scheduler would repeat it
        pruned = prune(runtime.transaction, now=moved, retention_days=retention_days)
        batches += pruned.batches
        events += pruned.events
        longest = max(longest, pruned.longest_batch_s)
        busy += pruned.busy_s
        if pruned.finished:
            break
    seconds = time.perf_counter() - started
    say(
        f"\npruned {events:,} events in {batches} batches in {seconds:.1f} s "
        f"({events / seconds:,.0f}/s, pauses included); batches of {BATCH_ROWS} took "
        f"{busy / batches * 1000:.0f} ms on average, the longest {longest * 1000:.0f} ms; "
        f"{credits:,} ticket credits in {credit_seconds:.2f} s"
    )


def record_ticks(runtime: Runtime, experiment: Example, n: int) -> None:
    """``n`` recorded ticks, each with a little of every arm's traffic."""
    start = datetime.now(UTC)
    for number in range(n):
        rows = [
            EventRow(experiment.id, arm, "target", kind, 5, None, None)
            for arm in experiment.arms
            for kind in ("exposure", "contact")
        ]
        rows += [
            EventRow(experiment.id, experiment.reference, "reference", kind, 5, None, None)
            for kind in ("exposure", "contact")
        ]
        runtime.writer.submit(rows).result()
        with runtime.transaction() as session:
            apply_tick(
                session,
                experiment.id,
                now=start + timedelta(seconds=10 * (number + 1)),
                rng=np.random.default_rng(number),
                only_if_due=False,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per writer group")
    parser.add_argument("--tick-every", type=int, default=20_000, help="events between ticks")
    parser.add_argument("--ticks", type=int, default=1000, help="recorded ticks to measure")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s of the estimate")
    parser.add_argument("--retention-days", type=float, default=7.0)
    parser.add_argument("--cycles", type=int, default=2, help="prune-and-store-again cycles")
    parser.add_argument(
        "--time-index",
        action="store_true",
        help="add an index on events.received_at first, to measure what it would cost",
    )
    args = parser.parse_args()
    say(f"database growth on {args.database}: {args.events:,} events, one ticket each")
    with database(args.database) as (url, path):
        settings = Settings(
            database_url=url,
            scheduler_enabled=False,
            event_retention_days=args.retention_days,
        )
        runtime = Runtime(settings)
        runtime.writer.start()
        try:
            experiment = setup(runtime)
            if args.time_index:
                with runtime.transaction() as session:
                    session.execute(text("CREATE INDEX ix_events_received ON events (received_at)"))
            empty = sizes(runtime, path)
            seconds = ingest(runtime, experiment, args, "cycle0")
            say(
                f"ingested {args.events:,} events in {seconds:.1f} s "
                f"({args.events / seconds:,.0f}/s)"
            )
            full = sizes(runtime, path)
            show("after ingesting", full, empty, args.events)
            estimate(full, empty, args)
            on_disk = [full.total]
            for cycle in range(1, args.cycles + 1):
                # Each cycle moves the clock past the retention window (and the tickets'
                # attribution window), prunes as the maintenance job would, and stores as
                # many events again: the space freed is reused.
                moved = datetime.now(UTC) + timedelta(days=cycle * (args.retention_days + 1))
                prune_all(runtime, moved, args.retention_days)
                vacuum(runtime, path)
                after = sizes(runtime, path)
                show(f"cycle {cycle}: after pruning", after, empty, 0)
                alone = ingest(runtime, experiment, args, f"cycle{cycle}")
                again = sizes(runtime, path)
                say(
                    f"cycle {cycle}: after storing {args.events:,} events again: "
                    f"{again.total / MB:.1f} MB on disk, {again.in_use / MB:.1f} MB in use"
                )
                on_disk.append(again.total)
            say(
                "\non disk after each cycle of pruning and storing as many again: "
                + ", ".join(f"{size / MB:.1f}" for size in on_disk)
                + " MB"
            )
            if args.cycles:
                # Ingestion with the pruning job deleting the previous cycle's rows beside
                # it (the clock moved so that exactly the rows stored before now go).
                started = datetime.now(UTC)
                pruner = threading.Thread(
                    target=prune_all,
                    args=(
                        runtime,
                        started + timedelta(days=args.retention_days),
                        args.retention_days,
                    ),
                )
                pruner.start()
                beside = ingest(runtime, experiment, args, "beside-pruning")
                pruner.join()
                say(
                    f"\ningestion alone {args.events / alone:,.0f} events/s (the last cycle), "
                    f"with the pruning job running beside it {args.events / beside:,.0f} "
                    f"events/s ({beside / alone:.2f}x the time)"
                )

            if args.ticks:
                before = sizes(runtime, path)
                record_ticks(runtime, experiment, args.ticks)
                ticks = sizes(runtime, path)
                grown = sum(
                    ticks.tables.get(name, 0) - before.tables.get(name, 0)
                    for name in ("ticks", "tick_arms")
                )
                per_tick = grown / args.ticks
                say(
                    f"\n{args.ticks} recorded ticks ({len(experiment.arms)} arms): "
                    f"{per_tick:.0f} bytes per tick in ticks + tick_arms; one experiment "
                    f"ticking every 10 s with traffic: {per_tick * 8640 / MB:.1f} MB/day, "
                    f"{per_tick * 8640 * 365 / 1024**3:.2f} GiB/year"
                )
        finally:
            runtime.writer.stop()
            runtime.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
