"""`ranktune simulate seasonality`: the CLI end to end, the update it simulates, and the
direction of the effect under fixed seeds.

The statistical margins below were checked on seeds 1-6 before being written down; each
holds on all of them with room to spare (the smallest observed value is in the comment).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.update import (
    Prior,
    WindowCounts,
    decayed,
    ratio_increments,
    reference_ratio_update,
)
from simulations import seasonality
from simulations.cli import main
from simulations.seasonality import (
    TABLE_COLUMNS,
    SeasonalityConfig,
    Traffic,
    daily_rates,
    simulate,
    simulate_combination,
)


def _rows(result: seasonality.SeasonalityResult) -> dict[tuple[str, str], dict[str, float]]:
    return {(row["mode"], row["feed"]): row for row in result.rows}


# --- the command ----------------------------------------------------------------------------


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


def test_cli_subset_and_fixed_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["seasonality", "--runs", "3", "--days", "0.25", "--modes", "window", "--feeds", "raw"]
    code = main(
        [*argv, "--start-hour", "20", "--no-plots", "--no-progress", "--out", str(tmp_path)]
    )

    assert code == 0
    body = capsys.readouterr().out.splitlines()[2:3]
    assert body[0].split()[:2] == ["window", "raw"]
    assert not list(tmp_path.glob("*.png"))
    document = json.loads((tmp_path / "seasonality.json").read_text())
    assert document["parameters"]["start_hour"] == 20
    assert document["effects"] == []


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--arms", "1.0,1.0", "exactly one arm"),
        ("--decay", "0", "decay"),
        ("--modes", "hourly", "modes"),
        ("--base-rate", "0.6", "peak contact rate"),
    ],
)
def test_cli_rejects_bad_parameters_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    code = main(["seasonality", flag, value, "--out", str(tmp_path), "--no-progress"])

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "seasonality.json").exists()


# --- the model and the update ---------------------------------------------------------------


def test_daily_cycle_has_the_requested_peak_to_trough_and_mean() -> None:
    config = SeasonalityConfig(base_rate=0.02, peak_to_trough=4.0, peak_hour=20.0)
    hours = np.linspace(0, 24, 24 * 60, endpoint=False)
    rates = daily_rates(hours, config)

    assert daily_rates(20.0, config) == pytest.approx(0.032)
    assert daily_rates(8.0, config) == pytest.approx(0.008)
    assert rates.max() / rates.min() == pytest.approx(4.0)
    assert rates.mean() == pytest.approx(0.02)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from([None, 0, 2]),
    st.floats(min_value=0.5, max_value=1.0),
)
def test_vectorised_ratio_update_matches_bandit_update_run_by_run(
    seed: int, chosen_arm: int | None, decay: float
) -> None:
    """The simulator's (runs, K) increments are exactly what the service's update does."""
    rng = np.random.default_rng(seed)
    runs, k = 5, 3
    prior = Prior(1.0, 2.0)
    alphas = prior.alpha + rng.gamma(2.0, 3.0, size=(runs, k))
    betas = prior.beta + rng.gamma(2.0, 3.0, size=(runs, k))
    exposures = rng.integers(0, 50, size=(runs, k)).astype(float)
    if chosen_arm is not None:  # window mode: the chosen arm holds the whole target group
        exposures = np.where(np.arange(k) == chosen_arm, exposures.sum(1, keepdims=True), 0.0)
    events = rng.binomial(exposures.astype(np.int64), 0.3).astype(float)
    reference_exposures = rng.integers(1, 40, size=runs).astype(float)
    reference_events = rng.binomial(reference_exposures.astype(np.int64), 0.3).astype(float)

    alpha_increments, beta_increments = ratio_increments(
        events, exposures, reference_events, reference_exposures
    )
    simulated_alphas = decayed(alphas, prior.alpha, decay) + alpha_increments
    simulated_betas = decayed(betas, prior.beta, decay) + beta_increments

    for run in range(runs):
        counts = WindowCounts.of(
            reference_events[run], reference_exposures[run], events[run], exposures[run]
        )
        expected = reference_ratio_update(
            alphas[run], betas[run], counts, prior=prior, decay=decay, chosen_arm=chosen_arm
        )
        np.testing.assert_allclose(simulated_alphas[run], expected.alphas_after, rtol=1e-12)
        np.testing.assert_allclose(simulated_betas[run], expected.betas_after, rtol=1e-12)


def _traffic(reference_exposures: list[int], runs: int = 4) -> Traffic:
    windows = len(reference_exposures)
    reference = np.repeat(np.array(reference_exposures)[:, None], runs, axis=1)
    return Traffic(
        target_requests=np.full((windows, runs), 200, dtype=np.int64),
        reference_exposures=reference.astype(np.int64),
        reference_events=(reference // 10).astype(np.int64),  # a reference rate of exactly 0.1
    )


@pytest.mark.parametrize("mode", ["request", "window"])
def test_window_without_reference_exposure_waits_for_the_next_tick(mode: str) -> None:
    config = SeasonalityConfig(arm_qualities=(1.0, 2.0), runs=4, days=1, window_minutes=480)
    rates = np.full((3, 4), 0.1)
    rng = np.random.default_rng(3)

    # Windows 1 and 2 have no reference group: their data are carried to window 3.
    result = simulate_combination(config, mode, "ratio", _traffic([0, 0, 50]), rates, rng)

    np.testing.assert_allclose(result.final_alphas - 1.0, result.events)
    np.testing.assert_allclose(result.final_betas - 1.0, 0.1 * result.exposures)
    assert result.exposures.sum() == 3 * 4 * 200

    # The same data with the last window also unreferenced stay pending, not counted.
    rng = np.random.default_rng(3)
    pending = simulate_combination(config, mode, "ratio", _traffic([0, 0, 0]), rates, rng)
    np.testing.assert_allclose(pending.final_alphas, 1.0)
    np.testing.assert_allclose(pending.final_betas, 1.0)


def test_raw_feed_counts_contacts_as_successes_and_the_rest_as_failures() -> None:
    config = SeasonalityConfig(arm_qualities=(1.0, 2.0), runs=4, days=1, window_minutes=480)
    rates = np.full((3, 4), 0.1)
    result = simulate_combination(
        config, "request", "raw", _traffic([0, 10, 10]), rates, np.random.default_rng(5)
    )

    np.testing.assert_allclose(result.final_alphas - 1.0, result.events)
    np.testing.assert_allclose(result.final_betas - 1.0, result.exposures - result.events)


def test_same_seed_same_result_and_combinations_share_the_traffic() -> None:
    config = SeasonalityConfig(runs=5, days=0.5, window_minutes=60)
    first, second = simulate(config), simulate(config)

    assert first.rows == second.rows
    target = [r.target_exposures for r in first.results.values()]
    for other in target[1:]:
        np.testing.assert_array_equal(other, target[0])
    # Regret is zero only if every exposure went to the best arm.
    for result in first.results.values():
        assert np.all(result.regret_contacts >= 0)


# --- the effect, under fixed seeds ----------------------------------------------------------


def test_request_mode_ratio_feed_finds_the_best_arm_more_often_than_raw() -> None:
    """Request mode, 10-minute ticks, random start hours: raw conversion locks in early.

    Over seeds 1-6 the ratio feed's P(best) exceeded the raw feed's by 0.15 to 0.37.
    """
    config = SeasonalityConfig(runs=100, days=4, modes=("request",), seed=1)
    rows = _rows(simulate(config))
    raw, ratio = rows[("request", "raw")], rows[("request", "ratio")]

    assert ratio["p_best_final"] - raw["p_best_final"] >= 0.10
    assert ratio["p_best_final"] >= 0.80
    assert ratio["wasted_traffic"] < raw["wasted_traffic"]


def test_window_mode_effect_appears_with_the_cycle_and_reverses_without_it() -> None:
    """Window mode, hourly ticks: the ratio feed wins only because of the daily cycle.

    With a 4x cycle the ratio feed's P(best) exceeded raw by 0.21 to 0.29 over seeds 1-6 and
    its regret was lower by 0.9 to 1.6 points; with a flat rate raw conversion won by 0.19 to
    0.29, because the ratio pays for the reference group's noise.
    """
    base = {"runs": 200, "days": 7, "window_minutes": 60, "modes": ("window",), "seed": 1}
    cycle = _rows(simulate(SeasonalityConfig(**base)))
    flat = _rows(simulate(SeasonalityConfig(**base, peak_to_trough=1.0)))

    raw, ratio = cycle[("window", "raw")], cycle[("window", "ratio")]
    assert ratio["p_best_final"] - raw["p_best_final"] >= 0.15
    assert ratio["regret_pct"] < raw["regret_pct"]

    raw, ratio = flat[("window", "raw")], flat[("window", "ratio")]
    assert raw["p_best_final"] - ratio["p_best_final"] >= 0.10
    assert raw["regret_pct"] < ratio["regret_pct"]
