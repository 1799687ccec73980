"""``simulations.marketplace.run``: the command end to end, on the real service layer.

The tests drive the real service layer on a temporary SQLite database with fixed seeds.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from api.db import unpack_ints
from simulations.cli import main
from simulations.marketplace import (
    TRAP_LABEL,
    MarketplaceConfig,
    arm_summary,
    bin_rows,
    simulate,
    verdict,
)


def test_cli_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        ["marketplace", "--hours", "0.1", "--views-per-minute", "200", "--seed", "3",
         "--tick-seconds", "30", "--evolve-minutes", "2", "--bin-minutes", "3",
         "--grid-steps", "4", "--no-progress", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "Lift of the target group over the reference group" in printed
    assert "Best configuration found: arm" in printed
    assert "Views trap" in printed and "trap reproduced" in printed
    assert "Scorecard: the platform's report at the end" in printed
    for name in ("lift.csv", "best.csv", "arms.csv", "results.json", "report.json"):
        assert (out / name).stat().st_size > 0
    # The platform's own report: contacts (the decision metric) and views (a guardrail by
    # default), the bandit group and each arm against the reference group, as the API gives.
    report = json.loads((out / "report.json").read_text())
    assert [(m["event"], m["role"]) for m in report["metrics"]] == [
        ("contact", "decision"),
        ("view", "guardrail"),
    ]
    assert {row["treatment"] for row in report["rows"]} >= {"bandit"}
    with (out / "scorecard.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(report["rows"])
    for stem in ("marketplace-lift", "marketplace-best", "marketplace-views-trap"):
        assert (out / f"{stem}.png").stat().st_size > 0
    document = json.loads((out / "results.json").read_text())
    assert document["seed"] == 3
    assert document["parameters"]["hours"] == 0.1
    assert document["parameters"]["model"]["n_listings"] == 2000
    assert "--seed 3" in document["reproduce"]
    with (out / "lift.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2  # 6 minutes in bins of 3
    assert sum(int(r["target_exposures"]) + int(r["reference_exposures"]) for r in rows) > 0
    with (out / "arms.csv").open() as handle:
        labels = {r["label"] for r in csv.DictReader(handle)}
    assert {"reference", TRAP_LABEL} <= labels


def test_cli_rejects_bad_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["marketplace", "--reference-share", "1.5", "--out", "unused"])
    assert code == 2
    assert "reference_share" in capsys.readouterr().err


def test_bandit_does_not_pick_the_view_maximiser() -> None:
    """Seeded run of the real service layer: after 1.5 simulated hours optimising contacts,
    the best arm (highest posterior mean) is not the view-maximiser, which earns a lower
    posterior mean than the best and less than its uniform share of the traffic at the end.
    """
    config = MarketplaceConfig(
        hours=1.5, views_per_minute=600, seed=1, evolve=False, tick_seconds=60, grid_steps=4
    )
    result = simulate(config)
    summary = verdict(result, bin_rows(result))
    assert result.trap.reproduced
    assert summary.trap_avoided
    arms = {a["arm_id"]: a for a in arm_summary(result)}
    trap_arm = arms[result.trap_arm_id]
    best_arm = arms[summary.best_arm_id]
    assert trap_arm["posterior_mean"] < best_arm["posterior_mean"]
    n_target_arms = len(arms) - 1
    assert trap_arm["traffic_share_last_hour"] < 1.0 / n_target_arms
    # Every exposure counted by the server went through the ticks into the posteriors.
    stored = sum(row["exposures"] for row in result.final_arms)
    assert stored == sum(sum(w.values()) for w in result.log.exposures)
    stored_contacts = sum(row["target_events"] for row in result.final_arms)
    assert stored_contacts == sum(sum(w.values()) for w in result.log.contacts)
    assert result.ticks_applied == config.n_windows


def test_a_seeded_window_mode_run_repeats_exactly(tmp_path: Path) -> None:
    """The service layer draws the pinned arm of window mode from the simulator's seeded
    generators, never from a fresh one: the same seed gives the same files. Three runs and
    twelve candidate arms, so that unseeded draws (a uniform first pick, before any data)
    would agree by chance with probability about 1/12**2."""
    documents = []
    for run in range(3):
        out = tmp_path / f"run-{run}"
        code = main(
            ["marketplace", "--mode", "window", "--hours", "0.05", "--views-per-minute", "200",
             "--seed", "1", "--arms", "8", "--tick-seconds", "30", "--evolve-minutes", "1",
             "--bin-minutes", "1", "--grid-steps", "4", "--no-progress", "--out", str(out)]
        )  # fmt: skip
        assert code == 0
        files = {name: (out / name).read_text() for name in ("lift.csv", "best.csv", "arms.csv")}
        document = json.loads((out / "results.json").read_text())
        for timing in ("wall_time_s", "search_time_s"):
            document.pop(timing)
        documents.append((files, document))
    assert documents[0][1]["parameters"]["mode"] == "window"
    assert documents[1] == documents[0]
    assert documents[2] == documents[0]


def test_optimising_views_the_contact_guardrail_retires_the_views_trap() -> None:
    """The views trap, caught by a guardrail: a team that optimises views (the old
    objective) with a guardrail on contacts. The bandit favours the view-maximiser; once its
    always-valid interval on contacts lies entirely below -1%, the platform's decisions
    retire it, and its recorded reason names the metric and the numbers (12 simulated hours,
    the evidence needs hours of traffic). When the always-valid interval clears the
    tolerance depends on the draws: with seed 2 at 4.64 h of the documented 12-hour run
    (docs/simulator-marketplace.md), so 5 hours replay it (seeds 1 and 3 take longer since
    Thompson choices are drawn in blocks, which changed the stream)."""
    config = MarketplaceConfig(hours=5, seed=2, optimise="view", guardrail_loss=0.01)
    result = simulate(config)
    assert result.trap_arm_id in result.guardrail_retired
    hour, reason = result.guardrail_retired[result.trap_arm_id]
    assert 1 < hour < 5
    assert "guardrail metric 'contact'" in reason and "tolerated loss of 1.00%" in reason
    trap_rows = {
        row["metric"]: row
        for row in result.report["rows"]
        if row["treatment"] == result.trap_arm_id
    }
    assert trap_rows["view"]["verdict"] == "better"  # the trap: more views...
    assert trap_rows["contact"]["verdict"] == "worse"  # ...and fewer contacts


def test_the_report_counts_are_folded_on_the_services_maintenance_cadence(
    tmp_path: Path,
) -> None:
    """The simulated platform folds the ticks' report batches every maintenance interval
    (60 s), as the service's maintenance job does: the batches left are those of the ticks
    since the last fold, not of every tick of the run (which every decision's report would
    sum), and the folded counts are the report's."""
    database = tmp_path / "marketplace.db"
    config = MarketplaceConfig(
        hours=0.26, views_per_minute=200, seed=3, grid_steps=4, evolve=False, tick_seconds=10
    )
    result = simulate(config, database=database)
    assert result.ticks_applied > 60
    connection = sqlite3.connect(database)
    try:
        batches = connection.execute("SELECT count(*) FROM metric_count_batches").fetchone()[0]
        folded = connection.execute(
            "SELECT sum(count) FROM metric_counts WHERE type = 'exposure'"
        ).fetchone()[0]
        unfolded = [
            unpack_ints(blob).sum()
            for (blob,) in connection.execute(
                "SELECT counts FROM metric_count_batches WHERE type = 'exposure'"
            )
        ]
    finally:
        connection.close()
    kinds = 2 * 3  # (reference, target) x (exposure, view, contact)
    assert 0 < batches <= kinds * 60 / config.tick_seconds
    # Folded or not, every exposure served while the experiment ran is in the report's counts.
    served = sum(sum(window.values()) for window in result.log.exposures)
    assert folded > 0
    assert folded + sum(unfolded) == served
