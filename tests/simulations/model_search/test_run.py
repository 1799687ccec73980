"""``ranktune simulate model-search``: both variants on identical traffic, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simulations.cli import main
from simulations.model_search.run import DATA_UNAVAILABLE
from tests.simulations.movielens.fixture import generate, write_official


def test_cli_compares_the_variants_on_identical_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["model-search", "--seeds", "1", "--first-seed", "2", "--hours", "0.3",
         "--checkpoints", "0.2,0.3", "--views-per-minute", "1500", "--evolve-minutes", "15",
         "--grid-steps", "4", "--model-weight", "3", "--drop-count", "2", "--no-progress",
         "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "Share of the available lift captured" in printed
    assert "genetic+model" in printed and "difference" in printed
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert [(r["seed"], r["variant"]) for r in runs] == [("2", "genetic"), ("2", "genetic+model")]
    base, model = runs
    # before the first step (15 minutes: its arms need 2,000 exposures) the two runs are
    # the same run: same traffic, same arms
    assert base["captured_0.2h"] == model["captured_0.2h"]
    assert int(base["model_arms"]) == 0 and int(model["model_arms"]) > 0
    assert 0 <= float(model["bad_traffic_share"]) <= 1
    # the platform's pick is one of the arms served: it captures no more than the best one
    for run in runs:
        assert float(run["captured_0.3h"]) <= float(run["best_served"])
    assert base["best_model_arm"] == "" and float(model["best_model_arm"]) <= float(
        model["best_served"]
    )
    assert "Search or selection? At 0.3 h" in printed
    document = json.loads((out / "results.json").read_text())
    summary = document["summary"]
    assert set(summary["variants"]) == {"genetic", "genetic+model"}
    assert [row["hour"] for row in summary["paired_difference"]] == [0.2, 0.3]
    assert summary["paired_difference"][0]["mean"] == 0
    assert (out / "model-search.png").stat().st_size > 0


def test_cli_rejects_checkpoints_past_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model-search", "--hours", "1", "--checkpoints", "0.5,2"]) == 2
    assert "checkpoints must be hours in (0, hours]" in capsys.readouterr().err


def test_cli_compares_the_variants_on_movielens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = write_official(tmp_path / "ml-100k", generate())
    out = tmp_path / "out"
    code = main(
        ["model-search", "--environment", "movielens", "--data", str(data_dir),
         "--seeds", "1", "--first-seed", "3", "--hours", "0.3", "--checkpoints", "0.1,0.3",
         "--views-per-minute", "1500", "--evolve-minutes", "6", "--grid-steps", "4",
         "--drop-count", "2", "--no-progress", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "Model search on movielens: 1 seeds" in printed
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert [(r["seed"], r["variant"]) for r in runs] == [("3", "genetic"), ("3", "genetic+model")]
    base, model = runs
    # before the first step the two runs are the same run: same traffic, same arms
    assert base["captured_0.1h"] == model["captured_0.1h"]
    assert int(base["model_arms"]) == 0 and int(model["model_arms"]) > 0
    document = json.loads((out / "results.json").read_text())
    assert document["parameters"]["environment"] == "movielens"
    assert "--environment movielens" in document["reproduce"]


def test_cli_without_movielens_data_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["model-search", "--environment", "movielens", "--data", str(tmp_path)])
    assert code == DATA_UNAVAILABLE
    assert "MovieLens 100k unavailable" in capsys.readouterr().err
