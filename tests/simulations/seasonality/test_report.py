"""``simulations.seasonality.report``: the table, the CSV and JSON files and the plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simulations.cli import main
from simulations.seasonality import TABLE_COLUMNS


def test_cli_smoke_writes_table_data_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["seasonality", "--runs", "6", "--days", "0.5", "--window-minutes", "30"]
    code = main([*argv, "--seed", "7", "--out", str(tmp_path), "--no-progress"])

    assert code == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == list(TABLE_COLUMNS)
    for mode in ("request", "window"):
        for feed in ("raw", "ratio"):
            assert any(line.split()[:2] == [mode, feed] for line in out.splitlines())

    for name in (
        "summary.csv",
        "runs.csv",
        "best_share.csv",
        "seasonality.json",
        "seasonality-best-share.png",
        "seasonality-best-share.svg",
        "seasonality-daily-cycle.png",
        "seasonality-daily-cycle.svg",
    ):
        assert (tmp_path / name).stat().st_size > 0, name

    with (tmp_path / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == 4
    assert set(TABLE_COLUMNS) <= set(summary[0])
    with (tmp_path / "runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4 * 6
    with (tmp_path / "best_share.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 24  # half a day of 30-minute windows

    document = json.loads((tmp_path / "seasonality.json").read_text())
    assert document["seed"] == 7
    assert document["parameters"]["runs"] == 6
    assert document["parameters"]["window_minutes"] == 30
    assert document["parameters"]["arm_qualities"] == [1.0, 1.05, 1.1, 0.9]
    assert document["parameters"]["start_hour"] is None
    assert {(e["mode"], e["metric"]) for e in document["effects"]} == {
        (mode, metric)
        for mode in ("request", "window")
        for metric in ("p_best_final", "regret_pct")
    }


def test_an_unwritable_output_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["seasonality", "--runs", "2", "--days", "0.1", "--window-minutes", "60"]
    assert main([*argv, "--no-progress", "--out", str(blocker / "out")]) == 1
    assert "ranktune simulate seasonality: cannot write outputs" in capsys.readouterr().err
