"""``ranktune simulate marketplace``: the hidden model, the views trap, the CLI end to end.

The model tests are exact (expectations over every source listing), so they do not depend
on sampling. The end-to-end tests drive the real service layer on a temporary SQLite
database with fixed seeds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from simulations.cli import main
from simulations.marketplace import (
    TRAP_LABEL,
    MarketplaceConfig,
    arm_summary,
    bin_rows,
    lift_interval,
    simulate,
    verdict,
)
from simulations.marketplace_model import (
    FEATURES,
    PRICE_SCALE,
    MarketModel,
    Marketplace,
    ViewsTrap,
    search_best,
    simplex_grid,
)


@pytest.fixture(scope="module")
def market() -> Marketplace:
    return Marketplace(MarketModel())


@pytest.fixture(scope="module")
def trap(market: Marketplace) -> ViewsTrap:
    return ViewsTrap(
        view_maximiser=search_best(market, "views", grid_steps=8, refine_rounds=3),
        contact_maximiser=search_best(market, "contacts", grid_steps=8, refine_rounds=3),
    )


def test_block_is_the_spec_formula_ranked_by_brute_force(market: Marketplace) -> None:
    """For a few sources, rank every candidate by SPEC §1 by hand and compare the block."""
    weights = np.array([0.7, 0.3, 0.5, 0.9])  # text, metro, region, price
    blocks = market.blocks(weights)
    catalogue = market.catalogue
    titles = catalogue.titles
    for source in (0, 17, 1234):
        same = np.flatnonzero(catalogue.categories == catalogue.categories[source])
        scores = []
        for item in same[same != source]:
            a, b = titles[source], titles[item]
            text = (a & b).sum() / (a | b).sum()
            price = PRICE_SCALE / (
                abs(catalogue.prices[item] - catalogue.prices[source]) + PRICE_SCALE
            )
            score = (
                weights[0] * text
                + weights[1] * (catalogue.metros[item] == catalogue.metros[source])
                + weights[2] * (catalogue.regions[item] == catalogue.regions[source])
                + weights[3] * price
            )
            scores.append((score, item))
        expected = [
            item for _, item in sorted(scores, key=lambda p: -p[0])[: blocks.items.shape[1]]
        ]
        assert blocks.items[source].tolist() == expected


def test_expected_rates_match_monte_carlo(market: Marketplace) -> None:
    weights = np.array([0.3, 0.2, 0.2, 0.9])
    blocks = market.blocks(weights)
    rng = np.random.default_rng(5)
    n = 400_000
    sources = rng.integers(0, market.n_sources, n)
    clicked = rng.random((n, blocks.items.shape[1])) < blocks.click_probs[sources]
    contacted = clicked & (rng.random(clicked.shape) < blocks.contact_probs[sources])
    views = clicked.sum() / n
    contacts = contacted.sum() / n
    assert views == pytest.approx(blocks.expected_views, rel=0.02)
    assert contacts == pytest.approx(blocks.expected_contacts, rel=0.04)


def test_simplex_grid_covers_every_direction() -> None:
    grid = simplex_grid(4)
    assert grid.shape == (35, len(FEATURES))  # C(4 + 3, 3)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()


def test_views_trap_reproduces_under_the_hidden_model(trap: ViewsTrap, market: Marketplace) -> None:
    """The view-maximiser drops the region weight, gets more views and fewer contacts."""
    views_best, contacts_best = trap.view_maximiser, trap.contact_maximiser
    region = FEATURES.index("same_region")
    assert views_best.weights[region] == 0.0
    assert contacts_best.weights[region] > 0.0
    assert trap.reproduced
    # SPEC §2: views +15% while contacts fell by about as much.
    assert 0.05 < trap.views_gain < 0.5
    assert 0.05 < trap.contacts_loss < 0.5
    # Each maximiser is at least as good as every grid point at its own objective.
    rates = np.array([market.expected_rates(w) for w in simplex_grid(5)])
    assert views_best.views >= rates[:, 0].max() - 1e-12
    assert contacts_best.contacts >= rates[:, 1].max() - 1e-12


def test_lift_interval_contains_the_ratio_and_is_nan_without_contacts() -> None:
    lift, low, high = lift_interval(120, 1000, 100, 1000)
    assert lift == pytest.approx(0.2)
    assert low < lift < high
    assert all(np.isnan(lift_interval(0, 1000, 100, 1000)))


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
    for name in ("lift.csv", "best.csv", "arms.csv", "results.json"):
        assert (out / name).stat().st_size > 0
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
