"""Profile ``ranktune serve`` under wrk load with py-spy (``pip install py-spy`` into .venv).

    .venv/bin/python benchmarks/profile_server.py assignment|ingest-sqlite|ingest-postgresql

Writes a collapsed-stack file and prints the functions with the most samples (self and
inclusive), for finding the hot path's costs. Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import collections
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import ingestion
from benchmarks.common import BenchError, create_example_experiment, run_wrk, say, start_ranktune


def top(collapsed: Path, count: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    say(f"{total} samples\n-- self --")
    for frame, n in own.most_common(count):
        say(f"{100 * n / total:5.1f}%  {frame}")
    say("-- inclusive --")
    for frame, n in inclusive.most_common(count):
        say(f"{100 * n / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=["assignment", "ingest-sqlite", "ingest-postgresql"])
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--idle", action="store_true", help="include idle frames")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only the thread holding the GIL: where the Python CPU goes when threads compete",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="ranktune-profile-"))
    database_url = f"sqlite:///{workdir / 'ranktune.db'}"
    if args.target == "ingest-postgresql":
        database_url = ingestion.create_pg_database()
    server = start_ranktune(
        database_url, workdir / "ranktune.log", RANKTUNE_TICKET_SECRET=ingestion.TICKET_SECRET
    )
    try:
        experiment = create_example_experiment(server)
        if args.target == "assignment":
            url, script = server.url + "/v1/experiments/similar-items/assignment", "assignment.lua"
            script_args = ["similar-items", "p"]
        else:
            tickets = workdir / "tickets.txt"
            # One ticket per event, as the ingestion benchmark sends them.
            count = int(ingestion.TICKETS_PER_SECOND * args.duration)
            tickets.write_text("\n".join(ingestion.mint_tickets(experiment, count)) + "\n")
            url, script = server.url + "/v1/events", "events.lua"
            script_args = [str(tickets), "p" + secrets.token_hex(3), "100"]
        result: dict[str, object] = {}

        def load() -> None:
            result.update(
                run_wrk(
                    url,
                    script,
                    script_args,
                    duration=args.duration,
                    connections=args.connections,
                )
            )

        loader = threading.Thread(target=load)
        loader.start()
        collapsed = workdir / "profile.txt"
        command = [py_spy, "record", "--pid", str(server.pid()), "--duration"]
        command += [str(int(args.duration - 2)), "--format", "raw", "--output", str(collapsed)]
        if args.idle:
            command.append("--idle")
        if args.gil:
            command.append("--gil")
        subprocess.run(command, check=True, capture_output=True)
        loader.join()
        say(f"wrk: {result.get('rps', 0):.0f} req/s, p99 {result.get('p99_us')} us")
        top(collapsed, args.top)
        say(f"collapsed stacks: {collapsed}")
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if args.target == "ingest-postgresql":
            ingestion.drop_pg_database()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
