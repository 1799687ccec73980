"""Ingestion benchmark: durably acknowledged events per second through ``POST /v1/events``.

``ranktune serve`` runs on SQLite (WAL, synchronous=FULL: a commit is on disk before the
answer) or on PostgreSQL (synchronous_commit on). Every event carries a ticket of its own,
as from one page view each: the server credits at most one contact per ticket (the event
bounds), so reusing a few tickets would measure quarantine, not ingestion. The tickets are
minted beforehand with the server's own key (``RANKTUNE_TICKET_SECRET``, set for the run)
for the experiment's real arms, in both groups, since fetching hundreds of thousands from
the assignment endpoint would take longer than the benchmark. wrk then POSTs batches of
``--batch`` "contact" events, each with an event_id that is unique in the run. An event
counts only when a 200 answer acknowledged it (the ``accepted`` of the body). After every
run the database is asked how many events of the run it holds: every acknowledged event
must be there, and the only extra events allowed are those of requests still in flight
when wrk stopped (at most one batch per connection).

    .venv/bin/python benchmarks/ingestion.py --database sqlite --duration 10 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from api.serving import REPORT_BUCKETS
from api.tickets import TicketSigner
from benchmarks.common import (
    BenchError,
    Server,
    create_example_experiment,
    fmt_ms,
    fmt_rate,
    http_json,
    load_average,
    median,
    process_cpu_seconds,
    run_wrk,
    say,
    start_ranktune,
)

SCRIPT = "events.lua"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "ranktune_bench"


def fetch_tickets(server: Server, count: int, prefix: str) -> list[str]:
    url = f"{server.url}/v1/experiments/similar-items/assignment?unit={prefix}-"
    return [http_json("GET", url + str(index))["ticket"] for index in range(count)]


TICKET_SECRET = "ranktune-benchmark-ticket-secret"
# Tickets minted per run: more than a run can use at the rates measured here (a run that
# used them all would cycle, and its repeated tickets would be quarantined, not dropped).
TICKETS_PER_SECOND = 80_000


def mint_tickets(experiment: dict[str, Any], count: int) -> list[str]:
    """``count`` distinct tickets of the experiment's arms (one in five for the reference),
    signed with the benchmark's ticket key, issued now, spread over the report buckets as
    units are (each bucket's counts are a row of their own for the writer and the tick)."""
    signer = TicketSigner(TICKET_SECRET)
    reference = experiment["reference_arm_id"]
    targets = [arm["id"] for arm in experiment["arms"] if arm["id"] != reference]
    now = time.time()
    buckets = random.Random(count).choices(range(REPORT_BUCKETS), k=count)
    return [
        signer.issue(experiment["id"], reference, "reference", now, bucket=buckets[index])
        if index % 5 == 0
        else signer.issue(
            experiment["id"],
            targets[index % len(targets)],
            "target",
            now,
            bucket=buckets[index],
        )
        for index in range(count)
    ]


def stored_events(database_url: str, prefix: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT count(*) FROM events WHERE event_id LIKE :pattern"),
                {"pattern": f"{prefix}-%"},
            ).scalar_one()
            return int(stored)
    finally:
        engine.dispose()


def _pg_admin(statement: str) -> None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def create_pg_database(name: str = PG_DATABASE) -> str:
    """A new, empty database ``name`` (each benchmark script has its own name)."""
    drop_pg_database(name)
    _pg_admin(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str = PG_DATABASE) -> None:
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(
    database: str,
    duration: float,
    repeats: int,
    connections: int,
    batch: int = 100,
    *,
    before: Path | None = None,
) -> dict[str, Any]:
    """The median of durably acknowledged events/s (and p50, p99, server CPU per event) of
    ranktune, and with ``before`` of ranktune running that source tree too: each on a
    database of its own, the runs alternating (ranktune, before, then before, ranktune)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ranktune-bench-ingest-{database}-"))
    if database not in ("sqlite", "postgresql"):
        raise BenchError(f"--database: expected sqlite or postgresql, got {database!r}")
    names = ["ranktune"] if before is None else ["ranktune", "before"]
    codes = {"ranktune": None, "before": before}
    say(f"ingestion ({database}): batches of {batch}, {connections} connections")
    load_before = load_average()
    say(f"  load average before: {load_before}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    urls: dict[str, str] = {}
    try:
        with ExitStack() as servers:
            targets: dict[str, tuple[Server, dict[str, Any], str]] = {}
            for name in names:
                urls[name] = (
                    f"sqlite:///{workdir / f'{name}.db'}"
                    if database == "sqlite"
                    else create_pg_database(f"{PG_DATABASE}_{name}")
                )
                say(f"  {name}: {urls[name]}" + (f" (source tree {before})" if codes[name] else ""))
                server = start_ranktune(
                    urls[name],
                    workdir / f"{name}.log",
                    code=codes[name],
                    RANKTUNE_TICKET_SECRET=TICKET_SECRET,
                )
                servers.callback(server.stop)
                targets[name] = (server, create_example_experiment(server), urls[name])
            run_prefix = "b" + secrets.token_hex(4)
            for repeat in range(-1, repeats):  # repeat -1 is the warm-up, not reported
                order = names if repeat % 2 else names[::-1]
                for name in order:
                    figures = _one_run(
                        targets[name],
                        f"{run_prefix}{name[0]}r{repeat + 1}",
                        workdir / "tickets.txt",
                        min(duration, 3.0) if repeat < 0 else duration,
                        connections,
                        batch,
                    )
                    if repeat < 0:
                        continue
                    runs[name].append(figures)
                    say(
                        f"  {name} run {repeat + 1}/{repeats} "
                        f"{fmt_rate(figures['events_per_s']):>7} events/s "
                        f"({figures['ok_responses']} batches acknowledged, {figures['stored']} "
                        f"events stored, {figures['in_flight']} in flight at stop)  "
                        f"p50 {fmt_ms(figures['p50_us'])} ms  p99 {fmt_ms(figures['p99_us'])} ms  "
                        f"server CPU {figures.get('cpu_us', float('nan')):.1f} us/event  "
                        f"errors {figures['errors']}"
                    )
    finally:
        if database == "postgresql":
            for name in urls:
                drop_pg_database(f"{PG_DATABASE}_{name}")
    load_after = load_average()
    say(f"  load average after: {load_after}")
    summary = _summarise(database, runs["ranktune"])
    summary["load_average"] = {"before": load_before, "after": load_after}
    summary["settings"] = {
        "duration_s": duration,
        "repeats": repeats,
        "connections": connections,
        "batch": batch,
        "tickets": "one per event, minted per run",
    }
    say(
        f"ingestion ({database}): median {fmt_rate(summary['events_per_s'])} durably "
        f"acknowledged events/s, server CPU {summary['cpu_us']:.1f} us/event"
    )
    if before is not None:
        old = _summarise(database, runs["before"])
        ratios = [
            ours["events_per_s"] / theirs["events_per_s"]
            for ours, theirs in zip(runs["ranktune"], runs["before"], strict=True)
        ]
        old["paired_ratio"] = median(ratios)
        summary["before"] = old
        say(
            f"ingestion ({database}) before ({before}): median {fmt_rate(old['events_per_s'])} "
            f"events/s, server CPU {old['cpu_us']:.1f} us/event; ranktune / before "
            f"{summary['events_per_s'] / old['events_per_s']:.2f}x (paired {median(ratios):.2f}x), "
            f"CPU per event {summary['cpu_us'] / old['cpu_us']:.2f}x"
        )
    return summary


def _one_run(
    target: tuple[Server, dict[str, Any], str],
    prefix: str,
    tickets_file: Path,
    duration: float,
    connections: int,
    batch: int,
) -> dict[str, Any]:
    """One wrk run against one server, checked against what its database stored."""
    server, experiment, database_url = target
    tickets_file.write_text(
        "\n".join(mint_tickets(experiment, int(TICKETS_PER_SECOND * duration))) + "\n"
    )
    cpu_before = process_cpu_seconds(server.pid())
    figures = run_wrk(
        server.url + "/v1/events",
        SCRIPT,
        [str(tickets_file), prefix, str(batch)],
        duration=duration,
        connections=connections,
    )
    time.sleep(1.0)  # let requests in flight at wrk's stop finish
    cpu_after = process_cpu_seconds(server.pid())
    stored = stored_events(database_url, prefix)
    figures["stored"] = stored
    figures["events_per_s"] = figures["acked"] / figures["seconds"]
    if cpu_before is not None and cpu_after is not None and stored:
        # Every stored event was worked on (the in-flight ones too); the server's background
        # jobs (ticks, refreshes) are included, as in production.
        figures["cpu_us"] = (cpu_after - cpu_before) / stored * 1e6
    extra = stored - figures["acked"]
    figures["in_flight"] = extra // batch
    if extra < 0 or extra > connections * batch or extra % batch:
        raise BenchError(
            f"{database_url}: {figures['acked']} events acknowledged but {stored} stored "
            f"(expected the acknowledged ones plus at most {connections} in-flight batches)"
        )
    if figures["duplicates"]:
        raise BenchError(f"{database_url}: {figures['duplicates']} unexpected duplicates")
    return figures


def _summarise(database: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [run["cpu_us"] for run in runs if "cpu_us" in run]
    return {
        "database": database,
        "events_per_s": median([run["events_per_s"] for run in runs]),
        "p50_us": median([run["p50_us"] for run in runs]),
        "p99_us": median([run["p99_us"] for run in runs]),
        "cpu_us": median(cpu) if cpu else float("nan"),
        "errors": sum(run["errors"] for run in runs),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument(
        "--before",
        type=Path,
        help="also ranktune running the source tree in this directory (e.g. `git archive main "
        "| tar -x -C DIR`), alternating with this checkout's, each on a database of its own",
    )
    args = parser.parse_args()
    try:
        run(
            args.database,
            args.duration,
            args.repeats,
            args.connections,
            args.batch,
            before=args.before,
        )
    except (BenchError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
