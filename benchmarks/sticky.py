"""Sticky assignment's cost (issue 12): the choice per request, and the snapshot's load.

1. **Assignment**, in-process, ``ServingState.assign`` (hash, choice, ticket): a sticky
   experiment of 10 arms against the same experiment drawing per request (Thompson). Rounds
   rotate the order; reported are the medians of the per-round ratios of time per
   assignment.
2. **Snapshot load** (``load_snapshot``, run by the refresher after every tick, off the
   request path): a sticky experiment integrates its allocation probabilities there
   (bandit.propensities). Timed for 10 arms and 250 arms against the same experiment
   without sticky assignment, medians of ``--loads`` loads.

Segmented experiments cannot be sticky (yet): a segment's allocation took 20 ms per segment
of 10 arms and 75 ms of 20 arms, at every posterior update (docs/design.md).

Every experiment has had one tick of data, so the posteriors are not all at the prior.

    .venv/bin/python benchmarks/sticky.py [--rounds 30 --calls 2000 --loads 5]
"""

from __future__ import annotations

import argparse
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
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.ticks import apply_tick
from api.serving import ExperimentSnapshot, load_snapshot
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, median, say
from benchmarks.segments import _experiment, _window

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# name -> arms
SHAPES = {"plain": 10, "wide": 250}


def _create(client: TestClient, runtime: Runtime, key: str, arms: int, sticky: bool) -> int:
    """An experiment of this shape (the same arms for both twins) after one tick of data."""
    body = _experiment(key, arms, None)
    body["name"] = f"{key}-{'sticky' if sticky else 'drawn'}"
    body["assignment"] = {"sticky": sticky}
    identifier: int = client.post("/v1/experiments", json=body, headers=ADMIN).json()["id"]
    rng = np.random.default_rng(identifier)
    _window(runtime, identifier, 1, rng)
    with runtime.transaction() as session:
        tick = apply_tick(session, identifier, now=now_utc(), rng=rng, only_if_due=False)
        assert tick is not None and tick.applied
    return identifier


def _load_ms(runtime: Runtime, identifier: int, loads: int) -> list[float]:
    times = []
    for _ in range(loads):
        with runtime.read_transaction() as session:
            experiment = repo.get_experiment(session, identifier)
            assert experiment is not None
            began = time.perf_counter()
            load_snapshot(session, experiment)
            times.append((time.perf_counter() - began) * 1e3)
    return times


def _assign_us(runtime: Runtime, snapshot: ExperimentSnapshot, units: list[str]) -> float:
    serving = runtime.serving
    began = time.perf_counter()
    for unit in units:
        serving.assign(snapshot, unit)
    return (time.perf_counter() - began) / len(units) * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/sticky.db"
        upgrade_database(url)
        settings = Settings(
            database_url=url,
            admin_token=ADMIN_TOKEN,
            scheduler_enabled=False,
            snapshot_refresh_s=3600,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            runtime: Runtime = app.state.runtime
            ids = {}
            for key, shape in SHAPES.items():
                for sticky in (False, True):
                    ids[key, sticky] = _create(client, runtime, key, shape, sticky)
            figures.update(_loads(runtime, ids, args.loads))
            runtime.serving.refresh(runtime.read_session_factory)
            figures.update(_assignments(runtime, ids, args.rounds, args.calls))
    return figures


def _loads(runtime: Runtime, ids: dict[tuple[str, bool], int], loads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, arms in SHAPES.items():
        drawn = _load_ms(runtime, ids[key, False], loads)
        sticky = _load_ms(runtime, ids[key, True], loads)
        ratio = median([s / d for s, d in zip(sticky, drawn, strict=True)])
        shape = f"{arms} arms"
        say(
            f"load_snapshot, {shape}: per request {median(drawn):.1f} ms, sticky "
            f"{median(sticky):.1f} ms (median ratio {ratio:.2f}x, medians of {loads})"
        )
        out[f"load_{key}_drawn_ms"] = median(drawn)
        out[f"load_{key}_sticky_ms"] = median(sticky)
        out[f"load_{key}_ratio"] = ratio
    return out


def _assignments(
    runtime: Runtime, ids: dict[tuple[str, bool], int], rounds: int, calls: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("plain",):
        snapshots = {
            sticky: runtime.serving.get_by_id(ids[key, sticky]) for sticky in (False, True)
        }
        assert all(
            s is not None and (s.sticky_prefix is not None) == k for k, s in snapshots.items()
        )
        ratios, times = [], {False: [], True: []}
        for number in range(rounds):
            units = [f"unit-{number}-{i}" for i in range(calls)]
            order = (False, True) if number % 2 == 0 else (True, False)
            measured = {}
            for sticky in order:
                snapshot = snapshots[sticky]
                assert snapshot is not None
                measured[sticky] = _assign_us(runtime, snapshot, units)
                times[sticky].append(measured[sticky])
            ratios.append(measured[True] / measured[False])
        shape = f"{SHAPES[key]} arms"
        say(
            f"assign, {shape}: per request {median(times[False]):.2f} us, sticky "
            f"{median(times[True]):.2f} us per assignment (median ratio of time "
            f"{median(ratios):.3f}x over {rounds} rounds of {calls})"
        )
        out[f"assign_{key}_drawn_us"] = median(times[False])
        out[f"assign_{key}_sticky_us"] = median(times[True])
        out[f"assign_{key}_ratio"] = median(ratios)
    return out


if __name__ == "__main__":
    main()
