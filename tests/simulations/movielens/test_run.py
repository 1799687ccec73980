"""``ranktune simulate movielens`` end to end on the real service layer: the generated
fixture through ``--data``, the refusals, and a short run on the real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from simulations.cli import main
from simulations.movielens import (
    MovieLensConfig,
    available_lift,
    bad_traffic_share,
    captured,
    checkpoints,
    experiment_body,
    simulate,
)
from simulations.movielens.model import REFERENCE_CONFIG
from simulations.movielens.run import DATA_UNAVAILABLE
from tests.simulations.movielens.fixture import generate, write_official
from tests.simulations.movielens.test_data import real_movielens

SHORT = ["--hours", "0.2", "--views-per-minute", "300", "--tick-seconds", "30",
         "--evolve-minutes", "6", "--bin-minutes", "6", "--grid-steps", "4",
         "--no-progress"]  # fmt: skip


def test_cli_on_the_official_format_fixture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = write_official(tmp_path / "ml-100k", generate())
    out = tmp_path / "out"
    code = main(["movielens", *SHORT, "--seed", "3", "--runs", "2", "--data", str(data_dir),
                 "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "Lift of the target group over the reference group, run 1 (seed 3)" in printed
    assert "Best possible (exhaustive search of 35 grid points" in printed
    assert "Over 2 run(s): share of the available lift captured" in printed
    for name in ("lift.csv", "best.csv", "runs.csv", "arms.csv", "results.json"):
        assert (out / name).stat().st_size > 0
    for stem in ("movielens-lift", "movielens-captured"):
        assert (out / f"{stem}.png").stat().st_size > 0
    document = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in document["runs"]] == [3, 4]
    assert "--seed 3 --runs 2" in document["reproduce"]
    assert document["environment"]["sources"] >= 1
    with (out / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["seed"] for r in rows] == ["3", "4"]
    assert set(rows[0]) >= {"captured_0.2h", "bad_traffic_0.2h"}
    with (out / "lift.csv").open() as handle:
        lift = list(csv.DictReader(handle))
    assert len(lift) == 4  # 2 runs x 12 minutes in bins of 6


def test_a_run_counts_what_the_platform_served(tmp_path: Path) -> None:
    from simulations.movielens.data import load_local

    ml = load_local(write_official(tmp_path / "ml", generate()))
    config = MovieLensConfig(
        hours=0.25, views_per_minute=400, seed=11, tick_seconds=30, evolve_minutes=5,
        bin_minutes=5, grid_steps=4,
    )  # fmt: skip
    result = simulate(config, ml)
    run = result.runs[0]
    exposures = sum(sum(w.values()) for w in run.log.exposures)
    final = {a["arm_id"]: a for a in run.final_arms}
    # The platform counted every page view the simulator served, arm by arm.
    assert exposures == sum(a["exposures"] for a in final.values())
    for arm_id in final:
        served = sum(w.get(arm_id, 0) for w in run.log.exposures)
        assert final[arm_id]["exposures"] == served
        assert final[arm_id]["target_events"] == sum(w.get(arm_id, 0) for w in run.log.contacts)
    assert run.ticks_applied == config.n_windows
    reference = run.arms[run.reference_arm_id]
    assert reference.config == REFERENCE_CONFIG
    assert captured(result, run, run.reference_arm_id) == 0.0
    assert available_lift(result) > 0
    # Traffic on worse arms, recomputed from the arms table.
    worse = sum(
        sum(w.get(a, 0) for w in run.log.exposures)
        for a, info in run.arms.items()
        if a != run.reference_arm_id and info.true_contacts < result.reference_rate
    )
    target = exposures - sum(w.get(run.reference_arm_id, 0) for w in run.log.exposures)
    assert bad_traffic_share(result, run, config.hours) == pytest.approx(worse / target)
    assert [c.hour for c in checkpoints(result)] == [0.25]


def test_the_same_seed_repeats_the_run(tmp_path: Path) -> None:
    from simulations.movielens.data import load_local

    ml = load_local(write_official(tmp_path / "ml", generate()))
    config = MovieLensConfig(hours=0.1, views_per_minute=300, seed=5, grid_steps=3)
    first, second = simulate(config, ml).runs[0], simulate(config, ml).runs[0]
    assert first.log.exposures == second.log.exposures
    assert first.log.contacts == second.log.contacts


def test_model_proposals_go_into_the_evolution_mix() -> None:
    config = MovieLensConfig(seed=1, model_proposals=True, model_weight=2.0, drop_count=2)
    body = experiment_body(config, [dict(REFERENCE_CONFIG, text_match=0.5)])
    assert body["evolution"]["mix"] == {
        "random": 1.0, "mutation": 1.0, "crossover": 1.0, "model": 2.0,
    }  # fmt: skip
    assert body["evolution"]["drop_count"] == 2
    assert "mix" not in experiment_body(MovieLensConfig(seed=1), [])["evolution"]


def test_model_needs_evolution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["movielens", "--model", "--no-evolve", "--seed", "1"]) == 2
    assert "--model needs --evolve" in capsys.readouterr().err


def test_missing_data_exits_3_and_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["movielens", "--seed", "1", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert code == DATA_UNAVAILABLE == 3
    error = capsys.readouterr().err
    assert "MovieLens 100k unavailable" in error and "expected u.data and u.item" in error


def test_a_short_run_on_the_real_data(tmp_path: Path) -> None:
    ml = real_movielens()
    config = MovieLensConfig(
        hours=0.25, views_per_minute=600, seed=1, tick_seconds=30, evolve_minutes=5,
        bin_minutes=5, grid_steps=4,
    )  # fmt: skip
    result = simulate(config, ml)
    run = result.runs[0]
    assert result.environment["sources"] > 300
    assert run.ticks_applied == config.n_windows
    contacts = sum(sum(w.values()) for w in run.log.contacts)
    expected = sum(sum(w.values()) for w in run.log.expected_contacts)
    # Observed contacts against the exact expectation of what was served (Poisson-like).
    assert abs(contacts - expected) < 5 * np.sqrt(expected)
