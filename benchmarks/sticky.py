"""Sticky assignment's cost (issue 12): the choice per request, and the snapshot's load.

1. **Assignment**, in-process, ``ServingState.assign`` (hash, choice, ticket): a sticky
   experiment of 10 arms against the same experiment drawing per request (Thompson), and a
   sticky segmented one (50 segments x 10 arms, each request naming one of the 50) against
   the unsegmented experiment drawing per request (the issue's baseline for segments).
   Rounds rotate the order; reported are the medians of the per-round ratios of time per
   assignment, and the throughput ratio (its inverse).
2. **Snapshot load** (``load_snapshot``, run by the refresher after every version move, off
   the request path): a sticky experiment integrates its allocation probabilities there
   (bandit.propensities), a segmented one every segment's at once
   (bandit.propensities.argmax_probabilities). Timed for 10 and 250 arms, 50 segments x 10
   arms and 1,000 segments x 20 arms, each against the same experiment without sticky
   assignment, medians of ``--loads`` loads; and for the segmented ones a load after a
   version move that left the segments' posteriors as they were (a segment registered, an
   admin change): the placements are kept, nothing is integrated.

Every experiment has had one tick of data (per-segment rates differ), so the posteriors are
not all at the prior.

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
from benchmarks.segments import _experiment, _open_segments, _window

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# name -> (arms, segments or None)
SHAPES = {"plain": (10, None), "wide": (250, None), "seg50": (10, 50), "seg1000": (20, 1000)}


def _create(
    client: TestClient, runtime: Runtime, key: str, shape: tuple[int, int | None], sticky: bool
) -> int:
    """An experiment of this shape (the same arms for both twins) after one tick of data."""
    arms, segments = shape
    body = _experiment(key, arms, segments)
    body["name"] = f"{key}-{'sticky' if sticky else 'drawn'}"
    body["assignment"] = {"sticky": sticky}
    identifier: int = client.post("/v1/experiments", json=body, headers=ADMIN).json()["id"]
    if segments is not None:
        _open_segments(runtime, identifier, segments)
    rng = np.random.default_rng(identifier)
    _window(runtime, identifier, segments or 1, rng)
    with runtime.transaction() as session:
        tick = apply_tick(session, identifier, now=now_utc(), rng=rng, only_if_due=False)
        assert tick is not None and tick.applied
    return identifier


def _load_ms(
    runtime: Runtime, identifier: int, loads: int, previous: ExperimentSnapshot | None = None
) -> list[float]:
    """``load_snapshot`` times; with ``previous`` (the same version's snapshot) the
    segments' placements are kept, as after a version move that changed no posterior."""
    times = []
    for _ in range(loads):
        with runtime.read_transaction() as session:
            experiment = repo.get_experiment(session, identifier)
            assert experiment is not None
            began = time.perf_counter()
            load_snapshot(session, experiment, previous)
            times.append((time.perf_counter() - began) * 1e3)
    return times


def _assign_us(
    runtime: Runtime, snapshot: ExperimentSnapshot, units: list[str], segments: list[str | None]
) -> float:
    serving = runtime.serving
    began = time.perf_counter()
    for unit, segment in zip(units, segments, strict=True):
        serving.assign(snapshot, unit, segment)
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
            runtime.serving.refresh(runtime.read_session_factory)
            figures.update(_loads(runtime, ids, args.loads))
            figures.update(_assignments(runtime, ids, args.rounds, args.calls))
    return figures


def _loads(runtime: Runtime, ids: dict[tuple[str, bool], int], loads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (arms, segments) in SHAPES.items():
        drawn = _load_ms(runtime, ids[key, False], loads)
        sticky = _load_ms(runtime, ids[key, True], loads)
        ratio = median([s / d for s, d in zip(sticky, drawn, strict=True)])
        shape = f"{arms} arms" if segments is None else f"{segments} segments x {arms} arms"
        say(
            f"load_snapshot, {shape}: per request {median(drawn):.1f} ms, sticky "
            f"{median(sticky):.1f} ms (median ratio {ratio:.2f}x, medians of {loads})"
        )
        out[f"load_{key}_drawn_ms"] = median(drawn)
        out[f"load_{key}_sticky_ms"] = median(sticky)
        out[f"load_{key}_ratio"] = ratio
        if segments is not None:
            previous = runtime.serving.get_by_id(ids[key, True])
            assert previous is not None and len(previous.segment_placements) == segments
            kept = _load_ms(runtime, ids[key, True], loads, previous)
            say(
                f"load_snapshot, {shape}, sticky, posteriors unchanged since the last load: "
                f"{median(kept):.1f} ms (placements kept; {median(kept) / median(drawn):.2f}x "
                "the load without sticky assignment)"
            )
            out[f"load_{key}_kept_ms"] = median(kept)
    return out


# name -> (sticky experiment, baseline drawing per request, segments the requests name)
ASSIGNMENTS = {"plain": ("plain", "plain", None), "seg50": ("seg50", "plain", 50)}


def _assignments(
    runtime: Runtime, ids: dict[tuple[str, bool], int], rounds: int, calls: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(7)
    for key, (sticky_key, baseline_key, segments) in ASSIGNMENTS.items():
        names: list[str | None] = (
            [None] * calls
            if segments is None
            else ["default" if i == 0 else f"s{i}" for i in rng.integers(0, segments, calls)]
        )
        sticky_snapshot = runtime.serving.get_by_id(ids[sticky_key, True])
        baseline = runtime.serving.get_by_id(ids[baseline_key, False])
        assert sticky_snapshot is not None and baseline is not None
        assert sticky_snapshot.sticky_prefix is not None or sticky_snapshot.segment_placements
        ratios, times = [], {False: [], True: []}
        for number in range(rounds):
            units = [f"unit-{number}-{i}" for i in range(calls)]
            order = (False, True) if number % 2 == 0 else (True, False)
            measured = {}
            for sticky in order:
                snapshot, asked = (sticky_snapshot, names) if sticky else (baseline, [None] * calls)
                measured[sticky] = _assign_us(runtime, snapshot, units, asked)
                times[sticky].append(measured[sticky])
            ratios.append(measured[True] / measured[False])
        arms, _ = SHAPES[sticky_key]
        shape = f"{arms} arms" if segments is None else f"{segments} segments x {arms} arms"
        say(
            f"assign, sticky {shape}: {median(times[True]):.2f} us per assignment; unsegmented "
            f"{SHAPES[baseline_key][0]} arms drawn per request {median(times[False]):.2f} us "
            f"(median ratio of time {median(ratios):.3f}x, throughput "
            f"{1 / median(ratios):.3f}x, over {rounds} rounds of {calls})"
        )
        out[f"assign_{key}_drawn_us"] = median(times[False])
        out[f"assign_{key}_sticky_us"] = median(times[True])
        out[f"assign_{key}_ratio"] = median(ratios)
    return out


if __name__ == "__main__":
    main()
