"""Assignment cost against the number of arms (issue 14): 5 arms against 250.

Thompson sampling draws every arm's posterior for every target request. The service serves
an experiment of ``api.serving.ALLOCATION_MIN_ARMS`` policy arms or more by inverting the
allocation computed with its snapshot (P(arm is the argmax), exact to under 1e-6: one
uniform and a bisection per request, whatever the arm count) and a smaller one from blocks
of draws (``bandit.policies.ThompsonDraws``: one vectorised Beta draw of ``block x K``
values, served one argmax at a time); before the blocks it made ``K`` scalar draws per
request (``bandit.policies.thompson_choice``). This benchmark times the whole in-process
assignment (the application as an ASGI callable, as benchmarks/segments.py) of an
experiment with 5 arms and one with 250 (the most an experiment is created with) three
ways: as the service serves it, with the block draws forced (no allocation), and with the
scalar draws swapped back in, all in the same run. Rounds rotate the order; reported are the
medians of the per-round times and of the per-round ratios. Target: 250 arms within 20% of
5 arms (time ratio <= 1.2) as served.

The arms' posteriors are those after a few ticks of simulated traffic (not the flat prior),
and every request is a target request (reference_share 0.01 would still send 1% to the
reference: the share is set to its minimum, and the figure is per assignment).

    .venv/bin/python benchmarks/arm_count.py [--rounds 60 --calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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

from api.app import create_app
from api.runtime import Runtime
from api.serving import ServingState
from api.settings import Settings
from bandit.policies import thompson_choice
from benchmarks.common import ADMIN_TOKEN, median, say
from benchmarks.segments import _assign, _experiment, _scope

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TARGET_RATIO = 1.2  # time per assignment, 250 arms / 5 arms
ARM_COUNTS = (5, 250)


def _scalar_thompson(
    self: ServingState, key: tuple[int, int | None], params: tuple[tuple[float, float], ...]
) -> int:
    """The scalar path the service used before the blocks: K draws per request."""
    return thompson_choice(params, self.rng)


def _posteriors(runtime: Runtime, name: str, rng: np.random.Generator) -> None:
    """Give every arm a posterior of its own, as traffic would (alpha, beta around 1-3% of
    a few thousand exposures), and reload the snapshot."""
    snapshot = runtime.serving.get(name)
    assert snapshot is not None
    with runtime.transaction() as session:
        from api import repositories as repo

        for arm in repo.arms_of(session, snapshot.id):
            exposures = float(rng.uniform(500, 5_000))
            rate = float(rng.uniform(0.01, 0.03))
            arm.alpha = 1.0 + exposures * rate
            arm.beta = 1.0 + exposures * (1 - rate)
        repo.get_experiment(session, snapshot.id).version += 1  # type: ignore[union-attr]
    runtime.refresh_snapshots()


def run(rounds: int, calls: int) -> dict[str, Any]:
    say(f"load average before: {os.getloadavg()[0]:.2f} (a shared machine)")
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-arms-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    from api.db import upgrade_database

    upgrade_database(url)
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False))
    figures: dict[str, list[float]] = {}
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        rng = np.random.default_rng(3)
        for count in ARM_COUNTS:
            body = {**_experiment(f"arms{count}", count, None), "reference_share": 0.01}
            answer = client.post("/v1/experiments", json=body, headers=ADMIN)
            assert answer.status_code == 201, answer.text
            runtime.refresh_snapshots()
            _posteriors(runtime, f"arms{count}", rng)
        variants = [
            (f"{path} {count}", count, path)
            for path in ("served", "block", "scalar")
            for count in ARM_COUNTS
        ]
        figures = {label: [] for label, _, _ in variants}
        block_path = ServingState._thompson
        served = {f"arms{count}": runtime.serving.get(f"arms{count}") for count in ARM_COUNTS}
        assert served[f"arms{ARM_COUNTS[1]}"].thompson_allocation is not None  # type: ignore[union-attr]
        # The same snapshots without their allocation: the block draws serve them.
        drawn = {
            name: dataclasses.replace(snapshot, thompson_allocation=None)  # type: ignore[type-var]
            for name, snapshot in served.items()
        }

        def install(path: str) -> None:
            snapshots = served if path == "served" else drawn
            for name, snapshot in snapshots.items():
                assert snapshot is not None
                runtime.serving._by_name[name] = snapshot
                runtime.serving._by_id[snapshot.id] = snapshot
            ServingState._thompson = _scalar_thompson if path == "scalar" else block_path  # type: ignore[method-assign]

        async def timed(count: int, path: str, start: int) -> float:
            install(path)
            scopes = [_scope(unit, f"arms{count}", None) for unit in range(start, start + calls)]
            began = time.thread_time()
            for scope in scopes:
                await _assign(app, scope)
            return (time.thread_time() - began) / calls * 1e6

        async def measure() -> None:
            for _, count, path in variants:  # warm up: blocks drawn, caches filled
                await timed(count, path, 0)
            for number in range(rounds):
                shift = number % len(variants)
                for label, count, path in variants[shift:] + variants[:shift]:
                    figures[label].append(await timed(count, path, (number + 1) * calls))

        try:
            asyncio.run(measure())
        finally:
            install("served")
            ServingState._thompson = block_path  # type: ignore[method-assign]

    def ratio(path: str) -> float:
        many, few = figures[f"{path} {ARM_COUNTS[1]}"], figures[f"{path} {ARM_COUNTS[0]}"]
        return median([m / f for m, f in zip(many, few, strict=True)])

    summary: dict[str, Any] = {label: median(values) for label, values in figures.items()}
    summary["served_ratio"] = ratio("served")
    summary["block_ratio"] = ratio("block")
    summary["scalar_ratio"] = ratio("scalar")
    summary["target_ratio"] = TARGET_RATIO
    for label, values in figures.items():
        say(f"{label:>12} arms: {median(values):7.1f} us CPU per assignment (median of {rounds})")
    say(
        f"250 arms / 5 arms, time per assignment: as served {summary['served_ratio']:.3f}x, "
        f"block draws {summary['block_ratio']:.3f}x, scalar draws {summary['scalar_ratio']:.3f}x;"
        f" target <= {TARGET_RATIO}x as served: "
        f"{'met' if summary['served_ratio'] <= TARGET_RATIO else 'MISSED'}"
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    run(args.rounds, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
