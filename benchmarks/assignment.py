"""Assignment benchmark: ranktune's configuration endpoint against a plain FastAPI baseline.

Both servers run as one uvicorn process (log level warning, no access log, uvloop +
httptools as uvicorn picks them; ranktune's protocol adds its request deadlines), both are
driven by the same wrk Lua script (a new ``unit`` on every request, one wrk thread, the same
number of connections), and the runs alternate (A B B A ...) so that drift on a noisy
machine hits both alike. Reported: the median over repeats of throughput, p50 and p99, and
the ratios ranktune / baseline.

    .venv/bin/python benchmarks/assignment.py --duration 10 --repeats 5 --connections 16
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    LOG_LEVEL,
    Server,
    create_example_experiment,
    fmt_ms,
    fmt_rate,
    free_port,
    median,
    run_wrk,
    say,
    start_ranktune,
)

SCRIPT = "assignment.lua"


def start_baseline(log_path: Path) -> Server:
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).resolve().parent / "baseline_app.py"),
        "--port",
        str(port),
        "--log-level",
        LOG_LEVEL,
    ]
    return Server("baseline", command, port, log_path).start()


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "rps": median([run["rps"] for run in runs]),
        "p50_us": median([run["p50_us"] for run in runs]),
        "p99_us": median([run["p99_us"] for run in runs]),
        "errors": float(sum(run["errors"] for run in runs)),
    }


def run(duration: float, repeats: int, connections: int, warmup: float = 3.0) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ranktune-bench-assignment-"))
    database_url = f"sqlite:///{workdir / 'ranktune.db'}"
    say(f"assignment: ranktune on {database_url}, baseline = benchmarks/baseline_app.py")
    ranktune = start_ranktune(database_url, workdir / "ranktune.log")
    try:
        baseline = start_baseline(workdir / "baseline.log")
        try:
            create_example_experiment(ranktune)
            targets = {"baseline": baseline, "ranktune": ranktune}
            prefix = secrets.token_hex(4)
            url = "/v1/experiments/similar-items/assignment"
            for server in targets.values():
                run_wrk(
                    server.url + url,
                    SCRIPT,
                    ["similar-items", f"{prefix}w"],
                    duration=warmup,
                    connections=connections,
                )
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for repeat in range(repeats):
                order = ["baseline", "ranktune"] if repeat % 2 == 0 else ["ranktune", "baseline"]
                for name in order:
                    figures = run_wrk(
                        targets[name].url + url,
                        SCRIPT,
                        ["similar-items", f"{prefix}{repeat}"],
                        duration=duration,
                        connections=connections,
                    )
                    results[name].append(figures)
                    say(
                        f"  run {repeat + 1}/{repeats} {name:8s} {fmt_rate(figures['rps']):>7} "
                        f"req/s  p50 {fmt_ms(figures['p50_us'])} ms  "
                        f"p99 {fmt_ms(figures['p99_us'])} ms  errors {figures['errors']}"
                    )
        finally:
            baseline.stop()
    finally:
        ranktune.stop()
    base, ours = summarise(results["baseline"]), summarise(results["ranktune"])
    # Ratios of the per-repeat pairs too: each pair ran back to back, so it shares the noise.
    pair_rps = [
        o["rps"] / b["rps"] for o, b in zip(results["ranktune"], results["baseline"], strict=True)
    ]
    pair_p99 = [
        o["p99_us"] / b["p99_us"]
        for o, b in zip(results["ranktune"], results["baseline"], strict=True)
    ]
    summary = {
        "baseline": base,
        "ranktune": ours,
        "throughput_ratio": ours["rps"] / base["rps"],
        "p99_ratio": ours["p99_us"] / base["p99_us"],
        "median_pair_throughput_ratio": median(pair_rps),
        "median_pair_p99_ratio": median(pair_p99),
        "runs": results,
        "settings": {"duration_s": duration, "repeats": repeats, "connections": connections},
    }
    say(
        f"assignment: ranktune {fmt_rate(ours['rps'])} req/s vs baseline "
        f"{fmt_rate(base['rps'])} req/s = {summary['throughput_ratio']:.2f}x (target >= 0.85); "
        f"p99 {fmt_ms(ours['p99_us'])} vs {fmt_ms(base['p99_us'])} ms = "
        f"{summary['p99_ratio']:.2f}x (target <= 1.5)"
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    run(args.duration, args.repeats, args.connections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
