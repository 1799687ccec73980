"""Replicas on one PostgreSQL: durably acknowledged events/s with 1, 2 and 3 servers.

The ingestion benchmark's load (benchmarks/ingestion.py: batches of 100 ``contact`` events,
a ticket of its own per event, unique event ids), with the same total number of wrk
connections split evenly over the replicas (one wrk process per replica, one thread each),
all ``ranktune serve`` processes on one PostgreSQL database (``synchronous_commit=on``),
the way docs/scaling.md describes a deployment behind a load balancer. The replica counts
alternate (1 2 3, then 3 2 1, ...) on the same database, which grows across runs as in the
ingestion benchmark. After every run the database must hold every acknowledged event (and
at most the batches in flight at wrk's stop): otherwise the benchmark fails.

On a machine with two cores the servers, PostgreSQL and wrk share them: more replicas add
Python processes, not cores. docs/scaling.md says what the figures mean.

    .venv/bin/python benchmarks/replicas.py --duration 10 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BenchError,
    create_example_experiment,
    fmt_rate,
    median,
    process_cpu_seconds,
    run_wrk,
    say,
    start_ranktune,
)
from benchmarks.ingestion import (
    SCRIPT,
    TICKET_SECRET,
    TICKETS_PER_SECOND,
    create_pg_database,
    drop_pg_database,
    mint_tickets,
    stored_events,
)

REPLICAS = (1, 2, 3)
BATCH = 100
PG_NAME = "ranktune_bench_replicas"


def one_run(
    servers: list[Any],
    experiment: dict[str, Any],
    database_url: str,
    workdir: Path,
    prefix: str,
    duration: float,
    connections: int,
) -> dict[str, Any]:
    """wrk against each server at once; the acknowledged events/s of all of them."""
    share = max(1, connections // len(servers))
    results: list[dict[str, Any] | BaseException] = [RuntimeError("no result")] * len(servers)
    files = []
    for index in range(len(servers)):
        path = workdir / f"tickets-{index}.txt"
        tickets = mint_tickets(experiment, int(TICKETS_PER_SECOND * duration / len(servers)))
        path.write_text("\n".join(tickets) + "\n")
        files.append(path)

    def drive(index: int) -> None:
        try:
            results[index] = run_wrk(
                servers[index].url + "/v1/events",
                SCRIPT,
                [str(files[index]), f"{prefix}-s{index}", str(BATCH)],
                duration=duration,
                connections=share,
            )
        except BaseException as error:  # reported below
            results[index] = error

    cpu_before = [process_cpu_seconds(server.pid()) or 0.0 for server in servers]
    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = [
        (process_cpu_seconds(server.pid()) or 0.0) - before
        for server, before in zip(servers, cpu_before, strict=True)
    ]
    for result in results:
        if isinstance(result, BaseException):
            raise BenchError(f"wrk failed: {result!r}")
    figures = [result for result in results if isinstance(result, dict)]
    time.sleep(1.0)  # requests in flight at wrk's stop finish
    acked = sum(figure["acked"] for figure in figures)
    stored = stored_events(database_url, prefix)
    extra = stored - acked
    if extra < 0 or extra > share * len(servers) * BATCH or extra % BATCH:
        raise BenchError(f"{acked} events acknowledged but {stored} stored")
    seconds = max(figure["seconds"] for figure in figures)
    return {
        "replicas": len(servers),
        "events_per_s": acked / seconds,
        "p99_us": max(figure["p99_us"] for figure in figures),
        "server_cores": sum(cpu) / seconds,
        "stored": stored,
    }


def run(duration: float, repeats: int, connections: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ranktune-bench-replicas-"))
    database_url = create_pg_database(PG_NAME)
    say(f"replicas: up to {max(REPLICAS)} ranktune serve on {database_url}, {connections} conns")
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in REPLICAS}
    load_before = os.getloadavg()[0]
    try:
        with ExitStack() as stack:
            servers = []
            for index in range(max(REPLICAS)):
                server = start_ranktune(
                    database_url,
                    workdir / f"replica-{index}.log",
                    RANKTUNE_TICKET_SECRET=TICKET_SECRET,
                )
                stack.callback(server.stop)
                servers.append(server)
            experiment = create_example_experiment(servers[0])
            for server in servers[1:]:
                create_example_experiment_seen(server)
            run_prefix = "r" + secrets.token_hex(4)
            warm = one_run(servers[:1], experiment, database_url, workdir, f"{run_prefix}w", 3, 16)
            say(f"  warm-up: {fmt_rate(warm['events_per_s'])} events/s")
            for repeat in range(repeats):
                order = REPLICAS if repeat % 2 == 0 else REPLICAS[::-1]
                for count in order:
                    figures = one_run(
                        servers[:count],
                        experiment,
                        database_url,
                        workdir,
                        f"{run_prefix}x{repeat}n{count}",
                        duration,
                        connections,
                    )
                    runs[count].append(figures)
                    say(
                        f"  {count} replica(s): {fmt_rate(figures['events_per_s'])} events/s, "
                        f"p99 {figures['p99_us'] / 1000:.1f} ms, servers used "
                        f"{figures['server_cores']:.2f} cores, {figures['stored']} stored"
                    )
    finally:
        drop_pg_database(PG_NAME)
    summary = {
        count: {
            "events_per_s": median([r["events_per_s"] for r in rs]),
            "p99_us": median([r["p99_us"] for r in rs]),
            "server_cores": median([r["server_cores"] for r in rs]),
        }
        for count, rs in runs.items()
    }
    one = summary[1]["events_per_s"]
    say(
        "replicas (medians): "
        + "; ".join(
            f"{count}: {fmt_rate(s['events_per_s'])} events/s ({s['events_per_s'] / one:.2f}x), "
            f"servers {s['server_cores']:.2f} cores"
            for count, s in summary.items()
        )
        + f"; load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    return {"summary": summary, "runs": runs}


def create_example_experiment_seen(server: Any) -> None:
    """Wait until another replica serves the experiment (its snapshot refresh)."""
    from benchmarks.common import http_json

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            http_json(
                "GET", f"{server.url}/v1/experiments/similar-items/assignment?unit=w", admin=True
            )
            return
        except Exception:
            time.sleep(0.1)
    raise BenchError("a replica does not serve the experiment 10 s after its creation")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--connections", type=int, default=18, help="split over the replicas")
    args = parser.parse_args()
    try:
        run(args.duration, args.repeats, args.connections)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
