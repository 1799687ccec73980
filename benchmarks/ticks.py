"""The tick's cost with many arms (issue "Performance to the floor"): a tick with 500 arms
under 50 ms, against the floor of the same writes in the same run.

1. **Tick**, one unsegmented experiment of 500 target arms (created with 256, the most a
   request carries, then 244 added by the admin service) and two declared metrics: every
   arm and the reference group have exposures, contacts and both metrics' events in the
   window (2,004 pending counts). Timed as the scheduler ticks (api.runtime): the
   window's propensities in a read-only transaction first
   (api.services.ticks.prepare_propensities: the integral over 500 overlapping Beta
   posteriors, the longest part), then ``apply_tick`` in its transaction, which holds the
   experiment's lock (and on SQLite the write lock) until its commit. The target is on
   that transaction; the whole is printed beside it. Steady state: the first tick, which
   inserts every ``metric_counts`` key, is not counted. The snapshot refresher is off.
2. **Floor**, in the same run and database: what that tick writes, by a minimal script on
   the same connection kind (benchmarks/tick_floor.py: no ORM, no statistics): lock the
   experiment row, read and lock the pending counts, delete them, insert the tick row and
   its 500 ``tick_arms`` rows, update the 500 arms, add the report's ``metric_counts``,
   update the experiment row, commit. The ratio tick / floor says what the service adds
   to the database's own work.

Ticks and floors alternate; medians of ``--ticks`` pairs and of the per-pair ratios.

    .venv/bin/python benchmarks/ticks.py [--ticks 9] [--arms 500]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from fastapi.testclient import TestClient

from api import repositories as repo
from api.app import create_app
from api.db import upgrade_database
from api.pending import pack_batch
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.experiments import add_arm
from api.services.ticks import apply_tick, prepare_propensities
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, median, say
from benchmarks.segments import POSTGRES_SERVER, _arms, _postgres_database
from benchmarks.tick_floor import timed_floor

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TICK_TARGET_MS = 50.0
CREATED_ARMS = 256  # the most arms a creation request carries (api.schemas)
METRICS = ("add_to_cart", "message")
EVENTS = ("exposure", "contact", *METRICS)


def _experiment(name: str, arms: int) -> dict[str, Any]:
    body = {**SIMILAR_ITEMS, "name": name, "arms": _arms(arms, 7)}
    body["max_events_per_exposure"] = {"*": 1_000_000, "exposure": 1_000_000}
    body["metrics"] = [
        {"event": event, "role": "secondary", "direction": "increase"} for event in METRICS
    ]
    return body


def _setup(client: TestClient, runtime: Runtime, arms: int) -> int:
    """The experiment of ``arms`` target arms; its id."""
    configs = _arms(arms + 50, 11)  # more than needed: a few may repeat a signature
    created = client.post(
        "/v1/experiments",
        json={**_experiment("ticks", 0), "arms": configs[:CREATED_ARMS]},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    experiment_id: int = created.json()["id"]
    with runtime.transaction() as session:
        for config in configs[CREATED_ARMS:]:
            if len(repo.arms_of(session, experiment_id)) > arms:
                break
            add_arm(session, "ticks", config)
    return experiment_id


def _window(runtime: Runtime, experiment_id: int, rng: np.random.Generator) -> None:
    """Pending counts as the writer leaves them: every arm's (and the reference group's)
    exposures, contacts and metric events."""
    with runtime.read_transaction() as session:
        arms = list(repo.arms_of(session, experiment_id))
    rows = []
    for arm in arms:
        group = "reference" if arm.origin == "reference" else "target"
        exposures = int(rng.integers(50, 500))
        for event in EVENTS:
            count = exposures if event == "exposure" else int(rng.binomial(exposures, 0.1))
            rows.append(repo.PendingRow(arm.id, group, event, "", 0, max(count, 1)))
    with runtime.transaction() as session:  # one writer transaction's batch
        repo.insert_pending_batches(session.connection(), [(experiment_id, pack_batch(rows))])


def _timed_tick(
    runtime: Runtime, experiment_id: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """As the scheduler ticks (api.runtime.run_due_ticks): the window's propensities in a
    read-only transaction, then the tick in its own. Milliseconds of the whole, of the
    tick's transaction (the experiment's lock held, commit included) and its CPU."""
    began = time.perf_counter()
    with runtime.read_transaction() as session:
        prepared = prepare_propensities(session, experiment_id)
    locked, cpu = time.perf_counter(), time.process_time()
    with runtime.transaction() as session:
        tick = apply_tick(
            session, experiment_id, now=now_utc(), rng=rng, only_if_due=False, prepared=prepared
        )
        assert tick is not None and tick.applied
    end = time.perf_counter()
    return (end - began) * 1e3, (end - locked) * 1e3, (time.process_time() - cpu) * 1e3


def bench(url: str, ticks: int, arms: int, profile: Path | None = None) -> dict[str, float]:
    settings = Settings(
        database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False, snapshot_refresh_s=3600
    )
    app = create_app(settings)
    store = url.split(":", 1)[0].split("+", 1)[0]
    figures: dict[str, list[float]] = {
        name: [] for name in ("total", "locked", "cpu", "floor", "floor_cpu")
    }
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        experiment_id = _setup(client, runtime, arms)
        rng = np.random.default_rng(3)
        _window(runtime, experiment_id, rng)
        first = _timed_tick(runtime, experiment_id, rng)[0]
        profiler = cProfile.Profile() if profile else None
        for number in range(ticks):
            _window(runtime, experiment_id, rng)
            if profiler:
                profiler.enable()
            total, locked, cpu = _timed_tick(runtime, experiment_id, rng)
            if profiler:
                profiler.disable()
            figures["total"].append(total)
            figures["locked"].append(locked)
            figures["cpu"].append(cpu)
            _window(runtime, experiment_id, rng)
            floor, floor_cpu = timed_floor(runtime, experiment_id, -1 - number)
            figures["floor"].append(floor)
            figures["floor_cpu"].append(floor_cpu)
        if profiler and profile:
            profiler.dump_stats(f"{profile}.{store}")
    summary = {f"{name}_ms": median(values) for name, values in figures.items()}
    summary["first_ms"] = first
    summary["ratio"] = median(
        [a / b for a, b in zip(figures["locked"], figures["floor"], strict=True)]
    )
    met = "met" if summary["locked_ms"] < TICK_TARGET_MS else "MISSED"
    say(
        f"tick [{store}], {arms} arms, {len(EVENTS) * (arms + 1):,} pending counts (medians "
        f"of {ticks}, after a first of {first:.1f} ms): the tick's transaction (lock held, "
        f"commit included) {summary['locked_ms']:.1f} ms; floor (the same writes by a "
        f"minimal script) {summary['floor_ms']:.1f} ms (CPU {summary['floor_cpu_ms']:.1f} ms), "
        f"median ratio {summary['ratio']:.2f}x; "
        f"target < {TICK_TARGET_MS:.0f} ms: {met} (CPU {summary['cpu_ms']:.1f} ms). With the "
        f"window's propensities computed before the lock: {summary['total_ms']:.1f} ms in all"
    )
    return summary


def run(ticks: int, arms: int, postgres: str | None, profile: Path | None = None) -> dict[str, Any]:
    say(f"load average before: {os.getloadavg()[0]:.2f} (a shared machine)")
    results: dict[str, Any] = {}
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-ticks-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    upgrade_database(url)
    results["sqlite"] = bench(url, ticks, arms, profile)
    if postgres:
        pg_url, drop = _postgres_database(postgres)
        try:
            results["postgresql"] = bench(pg_url, ticks, arms, profile)
        finally:
            drop()
    say(f"load average after: {os.getloadavg()[0]:.2f}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=9)
    parser.add_argument("--arms", type=int, default=500)
    parser.add_argument(
        "--postgres",
        default=POSTGRES_SERVER,
        help="a PostgreSQL server URL to time the tick there too ('' to skip)",
    )
    parser.add_argument("--profile", type=Path, help="cProfile the ticks into FILE.<store>")
    args = parser.parse_args()
    run(args.ticks, args.arms, args.postgres or None, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
