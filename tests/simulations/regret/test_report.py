"""``simulations.regret.report``: the table, the CSV and JSON files and the plot."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest

from simulations.bounds import lai_robbins_bound
from simulations.cli import main


def test_command_writes_table_data_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "regret"
    argv = ["regret", "--arms", "0.2,0.5,0.8", "--horizon", "300", "--runs", "20", "--seed", "3"]
    code = main([*argv, "--no-progress", "--log-x", "--out", str(out)])
    assert code == 0

    printed = capsys.readouterr()
    assert "Lai-Robbins" in printed.out and "Auer" in printed.out
    for policy in ("egreedy", "edecay", "ucb1", "thompson"):
        assert policy in printed.out
    assert printed.err == ""  # --no-progress (and not a terminal anyway)

    for name in ("summary.csv", "curves.csv", "results.json", "regret.png", "regret.svg"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["policy"] for row in rows] == ["egreedy", "edecay", "ucb1", "thompson"]
    assert all(
        float(r["ci95_low"]) <= float(r["mean_regret"]) <= float(r["ci95_high"]) for r in rows
    )

    document = json.loads((out / "results.json").read_text())
    assert document["parameters"]["seed"] == 3
    assert document["parameters"]["means"] == [0.2, 0.5, 0.8]
    assert document["parameters"]["horizon"] == 300
    assert document["curves"]["t"][-1] == 300
    expected_bound = float(lai_robbins_bound([0.2, 0.5, 0.8], 300))
    assert document["bounds"]["lai_robbins_lower_bound_at_horizon"] == pytest.approx(expected_bound)
    assert len(document["summary"][0]["regret_at_horizon_by_run"]) == 20

    # The saved command repeats the run exactly.
    again = tmp_path / "again"
    repeat = shlex.split(document["reproduce"])[2:]
    assert main([*repeat, "--no-progress", "--out", str(again)]) == 0
    assert (again / "summary.csv").read_text().splitlines()[1].split(",")[:10] == (
        (out / "summary.csv").read_text().splitlines()[1].split(",")[:10]
    )
