"""``make bench``: the performance acceptance of the service, with wrk over real HTTP.

1. installs wrk (Debian's package) if it is missing;
2. assignment: ``GET /v1/experiments/{name}/assignment`` of ``ranktune serve`` against a
   plain FastAPI baseline and a bare ASGI callable under the same uvicorn settings,
   alternating runs;
3. ingestion: ``POST /v1/events`` in batches of 100, durably acknowledged events per
   second, on SQLite (synchronous=FULL) and on PostgreSQL (127.0.0.1:5432), each followed
   by its floor (benchmarks/ingest_floor.py: the same rows inserted by a minimal writer
   with the same durability, per batch and grouped, at the best connection count);
4. start-up: launch to the first /health of ``ranktune serve`` against a plain FastAPI
   app, and ``ranktune simulate regret`` (benchmarks/startup.py);
5. segments (benchmarks/segments.py): a segmented tick of 1,000 segments x 20 arms on
   SQLite and PostgreSQL against the unsegmented tick and the floor of the same writes,
   and in-process assignment with 50 segments x 10 arms against the unsegmented path;
   ticks (benchmarks/ticks.py): a tick of 500 arms on SQLite and PostgreSQL against the
   floor of the same writes (benchmarks/tick_floor.py);
6. arm count (benchmarks/arm_count.py): in-process assignment with 250 arms against 5, as
   served (250 arms: the allocation inverted), with the block draws and with scalar draws;
7. model search: a genetic step with 200 arms in the history, with and without the
   surrogate model (benchmarks/model_search.py; pure computation, no server);
8. prints a summary table with the targets and the ratios to the floors, and writes every
   figure as JSON (``--json``).

Exit status: 0 when every benchmark ran (targets met or not: the table says), 1 when one
could not run. Medians over repeats are quoted because the machine is small and shared.

    .venv/bin/python benchmarks/run_all.py [--duration 10] [--repeats 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    arm_count,
    assignment,
    ingest_floor,
    ingestion,
    model_search,
    segments,
    startup,
    ticks,
)
from benchmarks.common import BenchError, ensure_wrk, fmt_ms, fmt_rate, say

THROUGHPUT_TARGET = assignment.THROUGHPUT_TARGET
P99_TARGET = assignment.P99_TARGET
INGEST_TARGET = 30_000.0
# Ingestion against the database's own grouped-commit floor, measured in the same run.
FLOOR_TARGET = 0.8
# Assignment against the raw ASGI constant endpoint (issue "Performance to the floor").
RAW_TARGET = 0.8
# What --only selects (default: all of them, in this order).
BENCHMARKS = [
    "assignment",
    "sqlite",
    "postgresql",
    "startup",
    "segments",
    "ticks",
    "arms",
    "model-search",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "figure (median)", "target", "met")]
    a = results.get("assignment")
    if a:
        rows += [
            (
                "assignment: baseline",
                f"{fmt_rate(a['baseline']['rps'])} req/s, p50 {fmt_ms(a['baseline']['p50_us'])} ms"
                f", p99 {fmt_ms(a['baseline']['p99_us'])} ms",
                "",
                "",
            ),
            (
                "assignment: ranktune",
                f"{fmt_rate(a['ranktune']['rps'])} req/s, p50 {fmt_ms(a['ranktune']['p50_us'])} ms"
                f", p99 {fmt_ms(a['ranktune']['p99_us'])} ms",
                "",
                "",
            ),
            (
                "assignment: raw ASGI",
                f"{fmt_rate(a['raw']['rps'])} req/s, p50 {fmt_ms(a['raw']['p50_us'])} ms"
                f", p99 {fmt_ms(a['raw']['p99_us'])} ms",
                "",
                "",
            ),
            (
                "assignment: throughput ratio",
                f"{a['throughput_ratio']:.2f}x "
                f"(paired median {a['median_pair_throughput_ratio']:.2f}x)",
                f">= {THROUGHPUT_TARGET}x",
                "yes" if a["throughput_ratio"] >= THROUGHPUT_TARGET else "NO",
            ),
            (
                "assignment: p99 ratio",
                f"{a['p99_ratio']:.2f}x (paired median {a['median_pair_p99_ratio']:.2f}x)",
                f"<= {P99_TARGET}x",
                "yes" if a["p99_ratio"] <= P99_TARGET else "NO",
            ),
            (
                "assignment: share of raw ASGI",
                f"{a['raw_throughput_ratio']:.2f}x "
                f"(paired median {a['median_pair_raw_throughput_ratio']:.2f}x; "
                f"baseline {a['baseline_raw_throughput_ratio']:.2f}x)",
                "",
                "",
            ),
            (
                "assignment: p99 over the raw ASGI floor's",
                f"{a['ranktune']['p99_us'] / a['raw']['p99_us']:.2f}x",
                f"<= {P99_TARGET}x",
                "yes" if a["ranktune"]["p99_us"] / a["raw"]["p99_us"] <= P99_TARGET else "NO",
            ),
            (
                "assignment: throughput over raw ASGI",
                f"{a['raw_throughput_ratio']:.2f}x",
                f">= {RAW_TARGET}x",
                "yes" if a["raw_throughput_ratio"] >= RAW_TARGET else "NO",
            ),
            (
                "assignment: server CPU per request",
                f"ranktune {a['ranktune'].get('cpu_us', 0):.0f} us, baseline "
                f"{a['baseline'].get('cpu_us', 0):.0f} us, raw {a['raw'].get('cpu_us', 0):.0f} us",
                "",
                "",
            ),
            (
                "assignment: load average",
                f"before {a['load_average']['before']}, after {a['load_average']['after']}",
                "",
                "",
            ),
        ]
    for database in ("sqlite", "postgresql"):
        i = results.get(f"ingestion_{database}")
        if i:
            rows.append(
                (
                    f"ingestion: {database}",
                    f"{fmt_rate(i['events_per_s'])} events/s, p50 {fmt_ms(i['p50_us'])} ms, "
                    f"p99 {fmt_ms(i['p99_us'])} ms, server CPU {i['cpu_us']:.1f} us/event",
                    f">= {fmt_rate(INGEST_TARGET)} events/s",
                    "yes" if i["events_per_s"] >= INGEST_TARGET else "NO",
                )
            )
        f = results.get(f"floor_{database}")
        if f and i:
            grouped, batch = f["grouped"], f["batch"]
            ratio = i["events_per_s"] / grouped["rows_per_s"]
            p99_ratio = i["p99_us"] / grouped["p99_us"]
            rows += [
                (
                    f"floor: {database}, one commit per batch",
                    f"{fmt_rate(batch['rows_per_s'])} rows/s ({batch['connections']} "
                    f"connection(s)), commit p99 {fmt_ms(batch['p99_us'])} ms",
                    "",
                    "",
                ),
                (
                    f"floor: {database}, grouped commits",
                    f"{fmt_rate(grouped['rows_per_s'])} rows/s ({grouped['connections']} "
                    f"connection(s)), commit p99 {fmt_ms(grouped['p99_us'])} ms, "
                    f"CPU {grouped['cpu_us']:.1f} us/row",
                    "",
                    "",
                ),
                (
                    f"ingestion: {database} over the grouped floor",
                    f"{ratio:.2f}x",
                    f">= {FLOOR_TARGET}x",
                    "yes" if ratio >= FLOOR_TARGET else "NO",
                ),
                (
                    f"ingestion: {database} p99 over the floor's commit p99",
                    f"{p99_ratio:.2f}x",
                    f"<= {P99_TARGET}x",
                    "yes" if p99_ratio <= P99_TARGET else "NO",
                ),
            ]
    up = results.get("startup")
    if up:
        medians = up["median_s"]
        rows += [
            (
                "start-up: serve to /health",
                f"{medians['serve']:.2f} s (plain FastAPI {medians['fastapi']:.2f} s: "
                f"{up['serve_over_fastapi']:.2f}x; CPU {up['cpu_s']['serve']:.2f} s vs "
                f"{up['cpu_s']['fastapi']:.2f} s)",
                f"<= {startup.SERVE_TARGET_S} s",
                "yes" if medians["serve"] <= startup.SERVE_TARGET_S else "NO",
            ),
            (
                "start-up: simulate regret",
                f"{medians['regret']:.2f} s (python -c pass {medians['python']:.2f} s)",
                f"< {startup.REGRET_TARGET_S} s",
                "yes" if medians["regret"] < startup.REGRET_TARGET_S else "NO",
            ),
        ]
    seg = results.get("segments")
    if seg:
        for store in ("sqlite", "postgresql"):
            tick = seg.get(f"tick_{store}")
            if not tick:
                continue
            for kind in ("dense", "sparse"):
                wall = tick[f"{kind}_segmented_ms"]
                rows.append(
                    (
                        f"segments: tick, {kind} window, {store}",
                        f"{wall:.1f} ms (CPU {tick[f'{kind}_segmented_cpu_ms']:.1f} ms; locked "
                        f"{tick[f'{kind}_segmented_locked_ms']:.1f} ms; "
                        f"{tick[f'{kind}_ratio']:.1f}x the unsegmented tick)",
                        f"< {segments.TICK_TARGET_MS:.0f} ms",
                        "yes" if wall < segments.TICK_TARGET_MS else "NO",
                    )
                )
            for kind in ("dense", "sparse"):
                rows.append(
                    (
                        f"segments: tick, {kind} window, {store}, over the floor",
                        f"{tick[f'{kind}_floor_ratio']:.1f}x (floor "
                        f"{tick[f'{kind}_floor_ms']:.1f} ms)",
                        "",
                        "",
                    )
                )
        ratio = seg["assignment"]["throughput_ratio"]
        rows.append(
            (
                "segments: assignment throughput",
                f"{ratio:.3f}x the unsegmented path (control "
                f"{seg['assignment']['control_ratio']:.3f}x)",
                f">= {segments.ASSIGNMENT_TARGET:.2f}x",
                "yes" if ratio >= segments.ASSIGNMENT_TARGET else "NO",
            )
        )
    t = results.get("ticks")
    for store in ("sqlite", "postgresql"):
        tick = (t or {}).get(store)
        if tick:
            rows += [
                (
                    f"tick: 500 arms, {store}, the locked transaction",
                    f"{tick['locked_ms']:.1f} ms (CPU {tick['cpu_ms']:.1f} ms; floor "
                    f"{tick['floor_ms']:.1f} ms: {tick['ratio']:.2f}x)",
                    f"< {ticks.TICK_TARGET_MS:.0f} ms",
                    "yes" if tick["locked_ms"] < ticks.TICK_TARGET_MS else "NO",
                ),
                (
                    f"tick: 500 arms, {store}, with the propensities",
                    f"{tick['total_ms']:.1f} ms (the integral before the lock)",
                    f"< {ticks.TICK_TARGET_MS:.0f} ms",
                    "yes" if tick["total_ms"] < ticks.TICK_TARGET_MS else "NO",
                ),
            ]
    arms = results.get("arm_count")
    if arms:
        rows.append(
            (
                "assignment: 250 arms / 5 arms",
                f"{arms['served_ratio']:.2f}x the time per assignment (block draws: "
                f"{arms['block_ratio']:.2f}x, scalar draws: {arms['scalar_ratio']:.2f}x)",
                f"<= {arm_count.TARGET_RATIO}x",
                "yes" if arms["served_ratio"] <= arm_count.TARGET_RATIO else "NO",
            )
        )
    m = results.get("model_search")
    if m:
        rows.append(
            (
                "model search: genetic step, 200 arms",
                f"{m['model_median_s'] * 1000:.0f} ms with the model, "
                f"{m['baseline_median_s'] * 1000:.0f} ms without ({m['ratio']:.0f}x)",
                f"< {m['budget_s']:g} s",
                "yes" if m["model_median_s"] < m["budget_s"] else "NO",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=5, help="assignment runs per server")
    parser.add_argument("--ingest-repeats", type=int, default=3, help="ingestion runs per database")
    parser.add_argument("--connections", type=int, default=16, help="assignment wrk connections")
    parser.add_argument("--ingest-connections", type=int, default=16)
    parser.add_argument(
        "--floor-duration", type=float, default=5.0, help="seconds per floor measure"
    )
    parser.add_argument("--startup-repeats", type=int, default=7)
    parser.add_argument(
        "--only",
        choices=BENCHMARKS,
        action="append",
        help="run only these benchmarks (repeatable; default all)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    selected = set(args.only or BENCHMARKS)

    try:
        say(f"wrk: {ensure_wrk()}")
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    say(f"machine: {machine()}")
    results: dict[str, Any] = {"machine": machine(), "at": datetime.now(UTC).isoformat()}
    failed = False
    if "assignment" in selected:
        try:
            results["assignment"] = assignment.run(args.duration, args.repeats, args.connections)
        except (BenchError, subprocess.SubprocessError) as error:
            print(f"error: assignment benchmark: {error}", file=sys.stderr)
            failed = True
    for database in ("sqlite", "postgresql"):
        if database in selected:
            try:
                results[f"ingestion_{database}"] = ingestion.run(
                    database, args.duration, args.ingest_repeats, args.ingest_connections
                )
                results[f"floor_{database}"] = ingest_floor.run(database, args.floor_duration)
            except (BenchError, subprocess.SubprocessError, OSError) as error:
                print(f"error: ingestion benchmark on {database}: {error}", file=sys.stderr)
                failed = True
            except Exception as error:  # e.g. PostgreSQL not reachable
                print(f"error: ingestion benchmark on {database}: {error!r}", file=sys.stderr)
                failed = True
    if "startup" in selected:
        try:
            results["startup"] = startup.run(args.startup_repeats)
        except (BenchError, subprocess.SubprocessError, OSError) as error:
            print(f"error: start-up benchmark: {error}", file=sys.stderr)
            failed = True
    if "segments" in selected:
        try:
            results["segments"] = segments.run(
                ticks=7, rounds=200, calls=200, postgres=segments.POSTGRES_SERVER
            )
        except Exception as error:  # e.g. PostgreSQL not reachable
            print(f"error: segments benchmark: {error!r}", file=sys.stderr)
            failed = True
    if "ticks" in selected:
        try:
            results["ticks"] = ticks.run(ticks=9, arms=500, postgres=segments.POSTGRES_SERVER)
        except Exception as error:  # e.g. PostgreSQL not reachable
            print(f"error: ticks benchmark: {error!r}", file=sys.stderr)
            failed = True
    if "arms" in selected:
        results["arm_count"] = arm_count.run(rounds=40, calls=300)
    if "model-search" in selected:
        results["model_search"] = model_search.run(repeats=15)
    say("")
    say(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        say(f"figures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
