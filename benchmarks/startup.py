"""Start-up benchmark: launch to the first ``/health`` answer, and ``simulate regret``.

Measured in one run, alternating (A B C D, then D C B A, ...), each a new process:

- ``ranktune serve`` on an existing database (migrated, with the example experiment; no
  ``--upgrade``): wall time from launching the process to its first 200 on ``/health``,
  polled every 10 ms;
- the plain FastAPI app of the assignment benchmark (``baseline_app.py``, uvicorn), the
  same measure: the start-up of the framework alone;
- ``ranktune simulate regret`` with its default comparison (four policies, 200 runs of
  10,000 steps, tables and plots written), wall time to exit, interpreter start-up
  included;
- ``python -c pass``: the interpreter alone.

Reported: the medians, and ranktune serve over the plain FastAPI app. The targets (issue
"Performance to the floor"): /health within 1.5 s of launch, the regret command under 3 s.
On a shared machine read the ratio: the other tenants slow both alike.

    .venv/bin/python benchmarks/startup.py [--repeats 7] [--before DIR]

``--before DIR`` adds the ``ranktune serve`` of another source tree (``python -m ranktune``
run in DIR imports DIR's code) to the alternation: before/after in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    ADMIN_TOKEN,
    LOG_LEVEL,
    BenchError,
    create_example_experiment,
    free_port,
    median,
    process_cpu_seconds,
    ranktune_command,
    say,
    start_ranktune,
)

SERVE_TARGET_S = 1.5
REGRET_TARGET_S = 3.0
POLL_S = 0.01


def _health_answered(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def seconds_to_health(
    command: list[str],
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[float, float]:
    """Launch ``command`` (a server on ``port``) and return the wall seconds until its first
    200 on /health and the CPU seconds the process had used by then (less disturbed by the
    other tenants of a shared machine); the process is stopped afterwards."""
    url = f"http://127.0.0.1:{port}/health"
    with log_path.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        try:
            while not _health_answered(url):
                if process.poll() is not None:
                    raise BenchError(f"{command[0]} exited at start; see {log_path}")
                if time.perf_counter() - started > 60:
                    raise BenchError(f"no /health within 60 s; see {log_path}")
                time.sleep(POLL_S)
            wall = time.perf_counter() - started
            return wall, process_cpu_seconds(process.pid) or float("nan")
        finally:
            process.terminate()
            process.wait(30)


def seconds_to_exit(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, check=False, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def existing_database(workdir: Path) -> str:
    """A migrated SQLite database holding the example experiment (a server made it)."""
    url = f"sqlite:///{workdir / 'existing.db'}"
    server = start_ranktune(url, workdir / "prepare.log")
    try:
        create_example_experiment(server)
    finally:
        server.stop()
    return url


def run(repeats: int, before: Path | None = None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ranktune-bench-startup-"))
    url = existing_database(workdir)
    say(f"start-up: ranktune serve on an existing database ({url}), {repeats} repeats")

    cpu: dict[str, list[float]] = {"serve": [], "fastapi": [], "before": []}

    def serve_of(name: str, code: Path | None) -> Callable[[], float]:
        def serve() -> float:
            port = free_port()
            # ``python -m ranktune`` run in another source tree imports that tree's code.
            program = ranktune_command() if code is None else [sys.executable, "-m", "ranktune"]
            command = [*program, "serve", "--port", str(port), "--log-level", LOG_LEVEL]
            env = {"RANKTUNE_DATABASE_URL": url, "RANKTUNE_ADMIN_TOKEN": ADMIN_TOKEN}
            wall, used = seconds_to_health(command, port, workdir / f"{name}.log", env, code)
            cpu[name].append(used)
            return wall

        return serve

    def fastapi() -> float:
        port = free_port()
        script = Path(__file__).resolve().parent / "baseline_app.py"
        command = [sys.executable, str(script), "--port", str(port), "--log-level", LOG_LEVEL]
        wall, used = seconds_to_health(command, port, workdir / "baseline.log")
        cpu["fastapi"].append(used)
        return wall

    def regret() -> float:
        out = workdir / "regret"
        command = [*ranktune_command(), "simulate", "regret", "--no-progress", "--seed", "1"]
        return seconds_to_exit([*command, "--out", str(out)], workdir)

    def interpreter() -> float:
        return seconds_to_exit([sys.executable, "-c", "pass"], workdir)

    measures: dict[str, Callable[[], float]] = {
        "serve": serve_of("serve", None),
        "fastapi": fastapi,
        "regret": regret,
        "python": interpreter,
    }
    if before is not None:
        measures["before"] = serve_of("before", before)
    times: dict[str, list[float]] = {name: [] for name in measures}
    names = list(measures)
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(measures[name]())
        say(
            f"  repeat {repeat + 1}: "
            + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in names)
        )
    medians = {name: median(values) for name, values in times.items()}
    result: dict[str, Any] = {
        "runs": times,
        "median_s": medians,
        "serve_over_fastapi": medians["serve"] / medians["fastapi"],
        "cpu_s": {name: median(values) for name, values in cpu.items() if values},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    say(
        f"  medians: serve to /health {medians['serve']:.2f} s (target <= {SERVE_TARGET_S} s), "
        f"plain FastAPI {medians['fastapi']:.2f} s, ratio {result['serve_over_fastapi']:.2f}x; "
        f"simulate regret {medians['regret']:.2f} s (target < {REGRET_TARGET_S} s); "
        f"python -c pass {medians['python']:.2f} s; load average {result['load_average']}"
    )
    say(
        f"  CPU used by /health (medians): serve {result['cpu_s']['serve']:.2f} s, plain FastAPI "
        f"{result['cpu_s']['fastapi']:.2f} s, ratio "
        f"{result['cpu_s']['serve'] / result['cpu_s']['fastapi']:.2f}x"
    )
    if before is not None:
        say(
            f"  the serve of {before} (--before): {medians['before']:.2f} s to /health, CPU "
            f"{result['cpu_s']['before']:.2f} s; this tree over it: "
            f"{medians['serve'] / medians['before']:.2f}x wall, "
            f"{result['cpu_s']['serve'] / result['cpu_s']['before']:.2f}x CPU"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--before",
        type=Path,
        help="also start the serve of this source tree (e.g. git archive main | tar -x -C DIR)",
    )
    args = parser.parse_args()
    try:
        run(args.repeats, args.before)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
