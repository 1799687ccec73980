"""Segments' cost (issue 12): the tick of a segmented experiment, and the assignment path.

1. **Tick**, 1,000 segments x 20 arms: every (arm, segment) and every segment's reference
   group has exposures and contacts in the window (42,000 pending counts, written as one
   pending batch, or spread over ``--window-batches`` of them), and the tick applies the
   reference-ratio rule in every segment, rewrites the 21 arms' per-segment states (one
   row of arrays each), records the 21,000 (segment, arm) pairs in one row, appends the
   report's counts, and refits the 20 arms' pools over 1,000 segments (bandit.hierarchy);
   the packed bytes the last tick wrote are printed too. Timed as the scheduler ticks: the
   window's propensities in a read-only transaction, then ``apply_tick`` in its
   transaction, commit included (that locked part is printed too), steady state (the rows
   exist from the first tick). Baselines in the same run: the same counts for an
   unsegmented experiment of 20 arms, and the floor (the same writes by a minimal script,
   benchmarks/tick_floor.py: the pending batches read, locked, summed and deleted, the
   (arm, segment) states written and recorded, the arms, the tick and the report's counts
   written). Target: under 100 ms.
2. **Assignment**, in-process (the application as an ASGI callable, as
   benchmarks/client_key.py): an unsegmented experiment of 10 arms against a segmented one
   of 10 arms with 50 segments open and fitted (each request names one of the 50), and a
   control (the unsegmented one again, the noise floor). Rounds rotate the order; reported
   are the medians of the per-round ratios. Target: segmented within 10% (ratio >= 0.90
   of the throughput, i.e. time per assignment at most 1/0.9 = 1.11x).

    .venv/bin/python benchmarks/segments.py [--ticks 7] [--rounds 200 --calls 200]
        [--restricted: one more arm in the segmented experiment, restricted to half the
        segments, so that each segment draws among its own arms]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--window-batches 1] [--profile: cProfile of the timed dense ticks]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import os
import pstats
import sys
import tempfile
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api import repositories as repo
from api.app import create_app
from api.db import upgrade_database
from api.pending import pack_batch
from api.runtime import Runtime
from api.server import tune_gc_after_startup
from api.services.common import now_utc
from api.services.segments import register_segments
from api.services.ticks import apply_tick, prepare_propensities
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, assignment_scope, median, say
from benchmarks.tick_floor import timed_floor as _timed_floor

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WINDOW_BATCHES = 1  # pending batches per window (--window-batches)
PROFILE: cProfile.Profile | None = None  # the timed dense ticks' profile (--profile)
_SPLIT = np.random.default_rng(7)
TICK_TARGET_MS = 100.0
SPARSE_WINDOW = 5_000  # assignments in a window of the sparse case
ASSIGNMENT_TARGET = 0.90  # segmented throughput / unsegmented
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _arms(count: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "text_match": round(float(rng.uniform(0, 2)), 4),
            "distance": round(float(rng.uniform(0, 2)), 4),
            "price_diff": round(float(rng.uniform(0, 2)), 4),
            "region": int(rng.integers(0, 4)),
        }
        for _ in range(count)
    ]


def _experiment(name: str, arms: int, segments: int | None) -> dict[str, Any]:
    body = {**SIMILAR_ITEMS, "name": name, "arms": _arms(arms, len(name))}
    body["max_events_per_exposure"] = {"*": 1_000_000, "exposure": 1_000_000}
    if segments is not None:
        body["segments"] = {"max_segments": segments}
    return body


def _open_segments(runtime: Runtime, experiment_id: int, count: int) -> None:
    with runtime.transaction() as session:
        register_segments(session, experiment_id, [f"s{i}" for i in range(1, count)], now_utc())


def _window(
    runtime: Runtime,
    experiment_id: int,
    segments: int,
    rng: np.random.Generator,
    *,
    pooled: bool = False,
    sparse: int = 0,
) -> None:
    """Pending counts as the writer leaves them: per segment, the reference group's and
    every target arm's exposures and contacts (rates differ by arm and segment). ``pooled``:
    the same counts summed into segment 0 (the unsegmented baseline). ``sparse``: instead,
    a window of that many assignments (see below)."""
    with runtime.read_transaction() as session:
        arms = list(repo.arms_of(session, experiment_id))
    reference = next(arm.id for arm in arms if arm.origin == "reference")
    targets = [arm.id for arm in arms if arm.origin != "reference"]
    totals: dict[tuple[Any, ...], int] = {}

    def add(arm: int, group: str, kind: str, segment: int, count: int) -> None:
        key = (experiment_id, arm, group, kind, "", 0, 0 if pooled else segment)
        totals[key] = totals.get(key, 0) + count

    if sparse:
        # A window of ``sparse`` assignments: Zipf traffic over the segments (segment s gets
        # a share 1 / (s + 1)), a fifth to the reference group, the rest uniform over arms.
        shares = 1.0 / np.arange(1, segments + 1)
        drawn = rng.choice(segments, size=sparse, p=shares / shares.sum())
        in_reference = rng.random(sparse) < 0.2
        arm_of = rng.integers(0, len(targets), size=sparse)
        contact = rng.random(sparse) < 0.1
        for segment, ref, k, c in zip(drawn, in_reference, arm_of, contact, strict=True):
            arm, group = (reference, "reference") if ref else (targets[k], "target")
            add(arm, group, "exposure", int(segment), 1)
            if c:
                add(arm, group, "contact", int(segment), 1)
        segments = 0
    for segment in range(segments):
        exposures = int(rng.integers(50, 500))
        add(reference, "reference", "exposure", segment, exposures)
        add(reference, "reference", "contact", segment, exposures // 10)
        for arm in targets:
            n = int(rng.integers(50, 500))
            add(arm, "target", "exposure", segment, n)
            add(arm, "target", "contact", segment, int(rng.binomial(n, rng.uniform(0.05, 0.15))))
    rows = [
        repo.PendingRow(arm, group, kind, reason, bucket, count, segment)
        for (_, arm, group, kind, reason, bucket, segment), count in totals.items()
    ]
    # As the writers leave them: one batch per writer transaction. Each key goes to one of
    # WINDOW_BATCHES batches (its own generator, so the counts are the same whatever it is).
    parts: list[list[repo.PendingRow]] = [[] for _ in range(WINDOW_BATCHES)]
    for row, part in zip(rows, _SPLIT.integers(0, WINDOW_BATCHES, len(rows)), strict=True):
        parts[int(part)].append(row)
    with runtime.transaction() as session:
        repo.insert_pending_batches(
            session.connection(), [(experiment_id, pack_batch(part)) for part in parts if part]
        )


def _timed_tick(
    runtime: Runtime, experiment_id: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Wall and CPU (this process) milliseconds of one tick as the scheduler runs it (the
    window's propensities in a read-only transaction, then ``apply_tick`` in its own,
    commit included), and the wall milliseconds of that second, locked, transaction."""
    began, cpu = time.perf_counter(), time.process_time()
    with runtime.read_transaction() as session:
        prepared = prepare_propensities(session, experiment_id)
    locked = time.perf_counter()
    with runtime.transaction() as session:
        tick = apply_tick(
            session, experiment_id, now=now_utc(), rng=rng, only_if_due=False, prepared=prepared
        )
        assert tick is not None and tick.applied
    end = time.perf_counter()
    return (end - began) * 1e3, (time.process_time() - cpu) * 1e3, (end - locked) * 1e3


_TICK_RECORD = tuple(field.name for field in fields(repo.TickSegmentRecords))
_ARM_STATE = tuple(field.name for field in fields(repo.ArmSegmentArrays))


def _latest_batch_id(runtime: Runtime) -> int:
    with runtime.read_transaction() as session:
        return int(session.execute(text("SELECT max(id) FROM metric_count_batches")).scalar() or 0)


def _packed_bytes(runtime: Runtime, experiment_id: int, batches_after: int) -> dict[str, int]:
    """The packed bytes the experiment's latest tick wrote: its record, its report batches
    (those after id ``batches_after``) and the arms' per-segment states (every arm's row is
    rewritten when its state changed, as in a dense window)."""
    total = " + ".join(f"length({column})" for column in _TICK_RECORD)
    report = " + ".join(f"length({c})" for c in ("arm_ids", "buckets", "segments", "counts"))
    state = " + ".join(f"coalesce(length(s.{column}), 0)" for column in _ARM_STATE)
    with runtime.read_transaction() as session:
        tick_id = session.execute(
            text(f"SELECT max(id) FROM ticks WHERE experiment_id = {int(experiment_id)}")
        ).scalar()
        return {
            name: int(session.execute(text(statement)).scalar() or 0)
            for name, statement in (
                (
                    "tick record",
                    f"SELECT {total} FROM tick_segment_windows WHERE tick_id = {tick_id}",
                ),
                (
                    "report batches",
                    f"SELECT sum({report}) FROM metric_count_batches WHERE id > {batches_after}",
                ),
                (
                    "arm states",
                    f"SELECT sum({state}) FROM arm_segment_states s JOIN arms a ON a.id = s.arm_id "
                    f"WHERE a.experiment_id = {int(experiment_id)}",
                ),
            )
        }


def bench_tick(url: str, ticks: int, segments: int = 1000, arms: int = 20) -> dict[str, float]:
    # The snapshot refresher is off (a reload of the 20,000 pairs after each tick would run
    # in a thread of this process, inside the next timed tick): the tick alone is timed.
    settings = Settings(
        database_url=url,
        admin_token=ADMIN_TOKEN,
        scheduler_enabled=False,
        snapshot_refresh_s=3600,
    )
    app = create_app(settings)
    # The collector as `ranktune serve` tunes it (api.server.tune_gc_after_startup): else
    # a full collection of this process's objects lands in one timed tick or another.
    tune_gc_after_startup(app)
    threshold = gc.get_threshold()
    try:
        return _bench_tick(app, url, ticks, segments, arms)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _bench_tick(app: FastAPI, url: str, ticks: int, segments: int, arms: int) -> dict[str, float]:
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        segmented = client.post(
            "/v1/experiments", json=_experiment("tick-seg", arms, segments), headers=ADMIN
        ).json()["id"]
        plain = client.post(
            "/v1/experiments", json=_experiment("tick-plain", arms, None), headers=ADMIN
        ).json()["id"]
        _open_segments(runtime, segmented, segments)
        rng = np.random.default_rng(1)
        floor_numbers = itertools.count(-1, -1)  # the floor's tick rows: numbers of their own
        figures: dict[str, list[float]] = {}
        first: dict[str, float] = {}
        written: dict[str, dict[str, int]] = {}
        for number in range(ticks + 1):
            for kind, sparse in (("dense", 0), ("sparse", SPARSE_WINDOW)):
                _window(runtime, segmented, segments, rng, sparse=sparse)
                batches_before = _latest_batch_id(runtime)
                profiled = PROFILE is not None and kind == "dense" and number > 0
                if profiled:
                    PROFILE.enable()
                seg_ms, seg_cpu, seg_locked = _timed_tick(runtime, segmented, rng)
                if profiled:
                    PROFILE.disable()
                written[kind] = _packed_bytes(runtime, segmented, batches_before)
                _window(runtime, plain, segments, rng, pooled=True, sparse=sparse)
                plain_ms, _, _ = _timed_tick(runtime, plain, rng)
                _window(runtime, segmented, segments, rng, sparse=sparse)
                floor_ms, _ = _timed_floor(runtime, segmented, next(floor_numbers))
                if number == 0:  # the first tick inserts every (arm, segment) row
                    first[kind] = seg_ms
                    continue
                figures.setdefault(f"{kind}_floor", []).append(floor_ms)
                figures.setdefault(f"{kind}_segmented", []).append(seg_ms)
                figures.setdefault(f"{kind}_segmented_cpu", []).append(seg_cpu)
                figures.setdefault(f"{kind}_segmented_locked", []).append(seg_locked)
                figures.setdefault(f"{kind}_unsegmented", []).append(plain_ms)
    store = url.split(":", 1)[0].split("+", 1)[0]
    _print_profile(store)
    summary: dict[str, float] = {}
    for kind, what in (
        ("dense", f"every (arm, segment) with data: {(arms + 1) * segments * 2:,} pending counts"),
        ("sparse", f"a window of {SPARSE_WINDOW:,} Zipf-distributed assignments"),
    ):
        seg = figures[f"{kind}_segmented"]
        plain = figures[f"{kind}_unsegmented"]
        summary[f"{kind}_segmented_ms"] = median(seg)
        summary[f"{kind}_segmented_cpu_ms"] = median(figures[f"{kind}_segmented_cpu"])
        summary[f"{kind}_segmented_locked_ms"] = median(figures[f"{kind}_segmented_locked"])
        summary[f"{kind}_unsegmented_ms"] = median(plain)
        summary[f"{kind}_ratio"] = median([a / b for a, b in zip(seg, plain, strict=True)])
        floor = figures[f"{kind}_floor"]
        summary[f"{kind}_floor_ms"] = median(floor)
        summary[f"{kind}_floor_ratio"] = median([a / b for a, b in zip(seg, floor, strict=True)])
        met = "met" if median(seg) < TICK_TARGET_MS else "MISSED"
        say(
            f"tick [{store}], {segments} segments x {arms} arms, {what} (medians of {ticks} "
            f"ticks after the first, which took {first[kind]:.1f} ms): segmented "
            f"{median(seg):.1f} ms (CPU {summary[f'{kind}_segmented_cpu_ms']:.1f} ms; of which "
            f"the locked transaction {summary[f'{kind}_segmented_locked_ms']:.1f} ms), "
            f"unsegmented with the same counts {median(plain):.1f} ms, "
            f"median ratio {summary[f'{kind}_ratio']:.1f}x; floor (the same writes by a "
            f"minimal script) {summary[f'{kind}_floor_ms']:.1f} ms, median ratio "
            f"{summary[f'{kind}_floor_ratio']:.1f}x; target < {TICK_TARGET_MS:.0f} ms: {met}"
        )
        parts = written[kind]
        summary[f"{kind}_packed_bytes"] = sum(parts.values())
        say(
            f"  packed bytes its last tick wrote: {sum(parts.values()) / 1e6:.2f} MB ("
            + ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in parts.items())
            + ")"
        )
    return summary


# -- assignment ----------------------------------------------------------------------------
def _scope(unit: int, name: str, segment: str | None) -> dict[str, Any]:
    scope = assignment_scope(unit)
    path = f"/v1/experiments/{name}/assignment"
    scope["path"], scope["raw_path"] = path, path.encode()
    query = b"unit=u%d" % unit
    if segment is not None:
        query += b"&segment=" + segment.encode()
    scope["query_string"] = query
    return scope


async def _assign(app: FastAPI, scope: dict[str, Any]) -> None:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"assignment answered {status}")


def bench_assignment(
    rounds: int, calls: int, segments: int = 50, arms: int = 10, restricted: bool = False
) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-segments-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    upgrade_database(url)
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False))
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        client.post("/v1/experiments", json=_experiment("plain", arms, None), headers=ADMIN)
        seg_id = client.post(
            "/v1/experiments", json=_experiment("seg", arms, segments), headers=ADMIN
        ).json()["id"]
        _open_segments(runtime, seg_id, segments)
        rng = np.random.default_rng(2)
        _window(runtime, seg_id, segments, rng)
        with runtime.transaction() as session:  # fitted pools, per-segment posteriors
            apply_tick(session, seg_id, now=now_utc(), rng=rng, only_if_due=False)
        if restricted:  # one more arm, served in every other segment (docs/segments.md)
            only = [f"s{i}" for i in range(1, segments, 2)]
            body = {"config": _arms(1, 99)[0], "segments": only}
            added = client.post("/v1/experiments/seg/arms", json=body, headers=ADMIN)
            assert added.status_code == 201, added.text
        runtime.refresh_snapshots()
        snapshot = runtime.serving.get("seg")
        assert snapshot is not None and len(snapshot.segment_params) == segments
        assert bool(snapshot.segment_arms) is restricted
        names = [f"s{i}" for i in range(1, segments)] + ["default"]
        targets: dict[str, tuple[str, bool]] = {
            "unsegmented": ("plain", False),
            "control": ("plain", False),
            "segmented": ("seg", True),
        }
        figures: dict[str, list[float]] = {name: [] for name in targets}
        order = list(targets)

        async def timed(name: str, segmented: bool, start: int) -> float:
            scopes = [
                _scope(u, name, names[u % segments] if segmented else None)
                for u in range(start, start + calls)
            ]
            began = time.perf_counter()
            for scope in scopes:
                await _assign(app, scope)
            return (time.perf_counter() - began) / calls * 1e6

        async def measure() -> None:
            for name, segmented in targets.values():
                await timed(name, segmented, 0)
            for number in range(rounds):
                shift = number % len(order)
                for label in order[shift:] + order[:shift]:
                    name, segmented = targets[label]
                    figures[label].append(await timed(name, segmented, (number + 1) * calls))

        asyncio.run(measure())

    def throughput_ratio(label: str) -> float:
        # Throughput ratio = inverse of the time ratio, per round.
        return median([b / a for a, b in zip(figures[label], figures["unsegmented"], strict=True)])

    summary = {
        "unsegmented_us": median(figures["unsegmented"]),
        "control_us": median(figures["control"]),
        "segmented_us": median(figures["segmented"]),
        "throughput_ratio": throughput_ratio("segmented"),
        "control_ratio": throughput_ratio("control"),
    }
    say(
        f"assignment in-process, {segments} segments x {arms} arms"
        f"{' (+1 restricted to half the segments)' if restricted else ''} (medians of "
        f"{rounds} rounds of {calls}): unsegmented {summary['unsegmented_us']:.1f} us, control "
        f"{summary['control_us']:.1f} us, segmented {summary['segmented_us']:.1f} us per "
        f"assignment; throughput segmented/unsegmented {summary['throughput_ratio']:.3f}x "
        f"(control {summary['control_ratio']:.3f}x, the noise); target >= "
        f"{ASSIGNMENT_TARGET:.2f}x: "
        f"{'met' if summary['throughput_ratio'] >= ASSIGNMENT_TARGET else 'MISSED'}"
    )
    return summary


def _postgres_database(server_url: str) -> tuple[str, Any]:
    """A fresh, migrated PostgreSQL database on the server; its URL and a drop function."""
    name = f"ranktune_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade_database(url)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def run(
    ticks: int, rounds: int, calls: int, postgres: str | None, *, restricted: bool = False
) -> dict[str, Any]:
    say(f"load average before: {os.getloadavg()[0]:.2f} (a shared machine)")
    results: dict[str, Any] = {}
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-segments-tick-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    upgrade_database(url)
    results["tick_sqlite"] = bench_tick(url, ticks)
    if postgres:
        pg_url, drop = _postgres_database(postgres)
        try:
            results["tick_postgresql"] = bench_tick(pg_url, ticks)
        finally:
            drop()
    results["assignment"] = bench_assignment(rounds, calls, restricted=restricted)
    say(f"load average after: {os.getloadavg()[0]:.2f}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--restricted",
        action="store_true",
        help="the segmented experiment has one more arm, restricted to half the segments",
    )
    parser.add_argument(
        "--postgres",
        default=POSTGRES_SERVER,
        help="a PostgreSQL server URL to time the tick there too ('' to skip)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the timed dense ticks (cProfile) and print where their time goes",
    )
    parser.add_argument(
        "--window-batches",
        type=int,
        default=1,
        help="pending batches each window is written as (its keys spread over them)",
    )
    args = parser.parse_args()
    global WINDOW_BATCHES
    WINDOW_BATCHES = args.window_batches
    store_profiles(args.profile)
    run(args.ticks, args.rounds, args.calls, args.postgres, restricted=args.restricted)
    return 0


def store_profiles(enabled: bool) -> None:
    """With ``enabled``, profile the timed dense ticks of each store (the profiler's
    overhead is in their times then: read the shares, not the milliseconds)."""
    global PROFILE
    PROFILE = cProfile.Profile() if enabled else None


def _print_profile(store: str) -> None:
    """The profiled ticks' 25 costliest calls by cumulative time, then a fresh profile for
    the next store."""
    if PROFILE is None:
        return
    out = io.StringIO()
    pstats.Stats(PROFILE, stream=out).sort_stats("cumulative").print_stats(25)
    say(f"profile of the timed dense ticks [{store}]:\n{out.getvalue()}")
    store_profiles(True)


if __name__ == "__main__":
    raise SystemExit(main())
