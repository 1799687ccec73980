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
    median,
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
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"ranktune-bench-ingest-{database}-"))
    if database == "sqlite":
        database_url = f"sqlite:///{workdir / 'ranktune.db'}"
    elif database == "postgresql":
        database_url = create_pg_database()
    else:
        raise BenchError(f"--database: expected sqlite or postgresql, got {database!r}")
    say(f"ingestion ({database}): ranktune on {database_url}, batches of {batch}")
    runs: list[dict[str, Any]] = []
    try:
        server = start_ranktune(
            database_url, workdir / "ranktune.log", RANKTUNE_TICKET_SECRET=TICKET_SECRET
        )
        try:
            experiment = create_example_experiment(server)
            run_prefix = "b" + secrets.token_hex(4)
            for repeat in range(-1, repeats):  # repeat -1 is the warm-up, not reported
                prefix = f"{run_prefix}r{repeat + 1}"
                tickets_file = workdir / "tickets.txt"
                count = int(TICKETS_PER_SECOND * (min(duration, 3.0) if repeat < 0 else duration))
                tickets_file.write_text("\n".join(mint_tickets(experiment, count)) + "\n")
                figures = run_wrk(
                    server.url + "/v1/events",
                    SCRIPT,
                    [str(tickets_file), prefix, str(batch)],
                    duration=min(duration, 3.0) if repeat < 0 else duration,
                    connections=connections,
                )
                time.sleep(1.0)  # let requests in flight at wrk's stop finish
                stored = stored_events(database_url, prefix)
                figures["stored"] = stored
                figures["events_per_s"] = figures["acked"] / figures["seconds"]
                extra = stored - figures["acked"]
                if extra < 0 or extra > connections * batch or extra % batch:
                    raise BenchError(
                        f"{database}: {figures['acked']} events acknowledged but {stored} stored "
                        f"(expected the acknowledged ones plus at most {connections} in-flight "
                        "batches)"
                    )
                if figures["duplicates"]:
                    raise BenchError(f"{database}: {figures['duplicates']} unexpected duplicates")
                if repeat < 0:
                    continue
                runs.append(figures)
                say(
                    f"  run {repeat + 1}/{repeats} {fmt_rate(figures['events_per_s']):>7} events/s "
                    f"({figures['ok_responses']} batches acknowledged, {stored} events stored, "
                    f"{extra // batch} in flight at stop)  p50 {fmt_ms(figures['p50_us'])} ms  "
                    f"p99 {fmt_ms(figures['p99_us'])} ms  errors {figures['errors']}"
                )
        finally:
            server.stop()
    finally:
        if database == "postgresql":
            drop_pg_database()
    summary = {
        "database": database,
        "events_per_s": median([run["events_per_s"] for run in runs]),
        "p50_us": median([run["p50_us"] for run in runs]),
        "p99_us": median([run["p99_us"] for run in runs]),
        "errors": sum(run["errors"] for run in runs),
        "runs": runs,
        "settings": {
            "duration_s": duration,
            "repeats": repeats,
            "connections": connections,
            "batch": batch,
            "tickets": "one per event, minted per run",
        },
    }
    say(
        f"ingestion ({database}): median {fmt_rate(summary['events_per_s'])} durably "
        "acknowledged events/s (target >= 30,000)"
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    args = parser.parse_args()
    try:
        run(args.database, args.duration, args.repeats, args.connections, args.batch)
    except (BenchError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
