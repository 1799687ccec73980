"""Assignment benchmark: ranktune's configuration endpoint against a plain FastAPI baseline
and against a bare ASGI callable (the ceiling).

The three servers run as one uvicorn process each (log level warning, no access log, uvloop
+ httptools as uvicorn picks them; ranktune's protocol adds its request deadlines), all are
driven by the same wrk Lua script (a new ``unit`` on every request, one wrk thread, the same
number of connections), and the runs alternate (A B C, C B A, ...) so that drift on a noisy
machine hits all alike. Reported: the median over repeats of throughput, p50 and p99, the
ratios ranktune / baseline and ranktune / raw, and the load average before and after.

    .venv/bin/python benchmarks/assignment.py --duration 10 --repeats 5 --connections 16

Two optional servers join the same alternation, for before/after comparisons in one run:
``--client-key`` adds ranktune with RANKTUNE_CLIENT_KEY_REQUIRED=true, which wrk calls with
a client token (``Authorization: Bearer``); ``--before DIR`` adds ranktune running the
source tree in DIR (e.g. ``git archive main | tar -x -C DIR``). Each is reported as the
median of its per-repeat ratios to ranktune (the pairs ran back to back).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from contextlib import ExitStack
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
    http_json,
    load_average,
    median,
    process_cpu_seconds,
    run_wrk,
    say,
    start_ranktune,
)

SCRIPT = "assignment.lua"
# ranktune's throughput must at least match a plain FastAPI endpoint of the same shape.
THROUGHPUT_TARGET = 1.0
P99_TARGET = 1.5


def start_script(name: str, script: str, log_path: Path) -> Server:
    """One of the comparison servers (``baseline_app.py``, ``raw_asgi_app.py``)."""
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).resolve().parent / script),
        "--port",
        str(port),
        "--log-level",
        LOG_LEVEL,
    ]
    return Server(name, command, port, log_path).start()


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    summary = {
        "rps": median([run["rps"] for run in runs]),
        "p50_us": median([run["p50_us"] for run in runs]),
        "p99_us": median([run["p99_us"] for run in runs]),
        "errors": float(sum(run["errors"] for run in runs)),
    }
    if all("cpu_us" in run for run in runs):
        summary["cpu_us"] = median([run["cpu_us"] for run in runs])
    return summary


def run(
    duration: float,
    repeats: int,
    connections: int,
    warmup: float = 3.0,
    *,
    client_key: bool = False,
    before: Path | None = None,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ranktune-bench-assignment-"))
    database_url = f"sqlite:///{workdir / 'ranktune.db'}"
    say(
        f"assignment: ranktune on {database_url}, baseline = benchmarks/baseline_app.py, "
        "raw = benchmarks/raw_asgi_app.py"
    )
    load_before = load_average()
    say(f"  load average before: {load_before}")
    with ExitStack() as servers:
        ranktune = start_ranktune(database_url, workdir / "ranktune.log")
        servers.callback(ranktune.stop)
        baseline = start_script("baseline", "baseline_app.py", workdir / "baseline.log")
        servers.callback(baseline.stop)
        raw = start_script("raw", "raw_asgi_app.py", workdir / "raw.log")
        servers.callback(raw.stop)
        create_example_experiment(ranktune)
        targets = {"baseline": baseline, "ranktune": ranktune, "raw": raw}
        keys: dict[str, str] = {}
        if client_key:
            keyed = start_ranktune(
                f"sqlite:///{workdir / 'keyed.db'}",
                workdir / "keyed.log",
                RANKTUNE_CLIENT_KEY_REQUIRED="true",
            )
            servers.callback(keyed.stop)
            create_example_experiment(keyed)
            token = http_json(
                "POST", keyed.url + "/v1/tokens", {"name": "bench", "role": "client"}, admin=True
            )
            targets["keyed"] = keyed
            keys["keyed"] = token["token"]
        if before is not None:
            old = start_ranktune(
                f"sqlite:///{workdir / 'before.db'}", workdir / "before.log", code=before
            )
            servers.callback(old.stop)
            create_example_experiment(old)
            targets["before"] = old
        results = _alternate(targets, duration, repeats, connections, warmup, keys)
    load_after = load_average()
    say(f"  load average after: {load_after}")
    base, ours, ceiling = (summarise(results[name]) for name in ("baseline", "ranktune", "raw"))
    summary = {
        "baseline": base,
        "ranktune": ours,
        "raw": ceiling,
        "throughput_ratio": ours["rps"] / base["rps"],
        "p99_ratio": ours["p99_us"] / base["p99_us"],
        # Ratios of the per-repeat pairs too: each pair ran back to back, so it shares the noise.
        "median_pair_throughput_ratio": _pair_median(results, "ranktune", "baseline", "rps"),
        "median_pair_p99_ratio": _pair_median(results, "ranktune", "baseline", "p99_us"),
        "raw_throughput_ratio": ours["rps"] / ceiling["rps"],
        "median_pair_raw_throughput_ratio": _pair_median(results, "ranktune", "raw", "rps"),
        "baseline_raw_throughput_ratio": base["rps"] / ceiling["rps"],
        # Server CPU per request, baseline / ranktune: above 1 when ranktune costs less.
        "cpu_ratio": (
            base["cpu_us"] / ours["cpu_us"] if "cpu_us" in ours and "cpu_us" in base else None
        ),
        "load_average": {"before": load_before, "after": load_after},
        "runs": results,
        "settings": {"duration_s": duration, "repeats": repeats, "connections": connections},
    }
    say(
        f"assignment: ranktune {fmt_rate(ours['rps'])} req/s vs baseline "
        f"{fmt_rate(base['rps'])} req/s = {summary['throughput_ratio']:.2f}x "
        f"(paired {summary['median_pair_throughput_ratio']:.2f}x; target >= "
        f"{THROUGHPUT_TARGET}); p99 {fmt_ms(ours['p99_us'])} vs {fmt_ms(base['p99_us'])} ms = "
        f"{summary['p99_ratio']:.2f}x (target <= {P99_TARGET}); raw ASGI "
        f"{fmt_rate(ceiling['rps'])} req/s: ranktune reaches {summary['raw_throughput_ratio']:.2f}x"
        f" of it (paired {summary['median_pair_raw_throughput_ratio']:.2f}x), the baseline "
        f"{summary['baseline_raw_throughput_ratio']:.2f}x"
    )
    if summary["cpu_ratio"] is not None:
        say(
            f"assignment: server CPU per request: ranktune {ours['cpu_us']:.0f} us, baseline "
            f"{base['cpu_us']:.0f} us ({summary['cpu_ratio']:.2f}x), raw {ceiling['cpu_us']:.0f} us"
        )
    for name, what in (("keyed", "with a required client key"), ("before", f"of {before}")):
        if name not in results:
            continue
        other = summarise(results[name])
        pairs = {
            figure: _pair_median(results, name, "ranktune", figure)
            for figure in ("rps", "p50_us", "p99_us")
        }
        if all("cpu_us" in run for run in results[name] + results["ranktune"]):
            pairs["cpu_us"] = _pair_median(results, name, "ranktune", "cpu_us")
        summary[name] = {**other, "paired_ratio_to_ranktune": pairs}
        say(
            f"assignment: ranktune {what}: {fmt_rate(other['rps'])} req/s, p50 "
            f"{fmt_ms(other['p50_us'])} ms, p99 {fmt_ms(other['p99_us'])} ms; median of pairs / "
            f"ranktune: throughput {pairs['rps']:.3f}x, p50 {pairs['p50_us']:.3f}x, p99 "
            f"{pairs['p99_us']:.3f}x"
            + (f", server CPU {pairs['cpu_us']:.3f}x" if "cpu_us" in pairs else "")
        )
    return summary


def _alternate(
    targets: dict[str, Server],
    duration: float,
    repeats: int,
    connections: int,
    warmup: float,
    keys: dict[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Warm every server up, then run them in turn, forward and backward on alternate
    repeats (A B C, C B A, ...), so that each server runs as often early as late."""
    prefix = secrets.token_hex(4)
    url = "/v1/experiments/similar-items/assignment"
    keys = keys or {}

    def key_of(name: str) -> list[str]:
        return [keys[name]] if name in keys else []

    for name, server in targets.items():
        run_wrk(
            server.url + url,
            SCRIPT,
            ["similar-items", f"{prefix}w", *key_of(name)],
            duration=warmup,
            connections=connections,
        )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    names = list(targets)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            cpu_before = process_cpu_seconds(targets[name].pid())
            figures = run_wrk(
                targets[name].url + url,
                SCRIPT,
                ["similar-items", f"{prefix}{repeat}", *key_of(name)],
                duration=duration,
                connections=connections,
            )
            cpu_after = process_cpu_seconds(targets[name].pid())
            if cpu_before is not None and cpu_after is not None and figures["requests"]:
                figures["cpu_us"] = (cpu_after - cpu_before) / figures["requests"] * 1e6
            results[name].append(figures)
            say(
                f"  run {repeat + 1}/{repeats} {name:8s} {fmt_rate(figures['rps']):>7} "
                f"req/s  p50 {fmt_ms(figures['p50_us'])} ms  "
                f"p99 {fmt_ms(figures['p99_us'])} ms  "
                f"server CPU {figures.get('cpu_us', float('nan')):.0f} us/request  "
                f"errors {figures['errors']}"
            )
    return results


def _pair_median(
    results: dict[str, list[dict[str, Any]]], numerator: str, denominator: str, figure: str
) -> float:
    return median(
        [
            ours[figure] / theirs[figure]
            for ours, theirs in zip(results[numerator], results[denominator], strict=True)
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--client-key",
        action="store_true",
        help="also ranktune with RANKTUNE_CLIENT_KEY_REQUIRED=true, called with a client token",
    )
    parser.add_argument(
        "--before", type=Path, help="also ranktune running the source tree in this directory"
    )
    args = parser.parse_args()
    run(
        args.duration,
        args.repeats,
        args.connections,
        client_key=args.client_key,
        before=args.before,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
