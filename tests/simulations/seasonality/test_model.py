"""``simulations.seasonality.model``: the daily cycle and the update it simulates."""

from __future__ import annotations

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
from simulations.seasonality import (
    SeasonalityConfig,
    Traffic,
    daily_rates,
    simulate_combination,
)


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
