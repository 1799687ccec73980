"""Posterior summaries: closed forms checked against hand-computed values, P(best) by tolerance."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.errors import InvalidParameterError
from bandit.summaries import (
    bounded_draws,
    credible_intervals,
    prob_best,
    rate_ratio_lift,
    summarize,
)

EXACT = {"rel": 1e-12, "abs": 0.0}


def _rng(seed: int = 20240501) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_means_are_alpha_over_alpha_plus_beta() -> None:
    summary = summarize([1.0, 2.0, 3.0, 7.5], [1.0, 6.0, 1.0, 2.5], _rng(), draws=10)
    assert list(summary.means) == [0.5, 0.25, 0.75, 0.75]


def test_credible_intervals_match_closed_forms() -> None:
    # Beta(1, 1) is uniform: the 95% interval is [0.025, 0.975].
    # Beta(2, 1) has CDF x^2, so its quantiles are sqrt(q): [sqrt(.025), sqrt(.975)].
    # Beta(1, 2) has CDF 1 - (1 - x)^2, so quantiles 1 - sqrt(1 - q).
    lows, highs = credible_intervals([1.0, 2.0, 1.0], [1.0, 1.0, 2.0])
    assert lows[0] == pytest.approx(0.025, **EXACT)
    assert highs[0] == pytest.approx(0.975, **EXACT)
    assert lows[1] == pytest.approx(0.15811388300841897, **EXACT)  # sqrt(0.025)
    assert highs[1] == pytest.approx(0.98742088290657494, **EXACT)  # sqrt(0.975)
    assert lows[2] == pytest.approx(0.01257911709342506, rel=1e-9)  # 1 - sqrt(0.975)
    assert highs[2] == pytest.approx(0.84188611699158103, **EXACT)  # 1 - sqrt(0.025)


def test_credible_interval_of_a_general_beta() -> None:
    # scipy.stats.beta.ppf([0.025, 0.975], 3, 5), written down once
    lows, highs = credible_intervals([3.0], [5.0])
    assert lows[0] == pytest.approx(0.09898828, abs=1e-8)
    assert highs[0] == pytest.approx(0.70957914, abs=1e-8)
    # a 50% interval lies inside the 95% one
    lows50, highs50 = credible_intervals([3.0], [5.0], level=0.5)
    assert lows[0] < lows50[0] < highs50[0] < highs[0]


def test_prob_beat_reference_is_p_theta_above_one_half() -> None:
    # P(theta > 1/2): uniform -> 1/2; density 2x -> 1 - 1/4; density 2(1-x) -> 1/4;
    # Beta(3, 5) -> P(Binomial(7, 1/2) <= 2) = (1 + 7 + 21) / 128 = 29/128 = 0.2265625
    summary = summarize([1.0, 2.0, 1.0, 3.0], [1.0, 1.0, 2.0, 5.0], _rng(), draws=10)
    assert summary.prob_beat_reference == pytest.approx([0.5, 0.75, 0.25, 0.2265625], **EXACT)


def test_lift_maps_theta_to_the_rate_ratio() -> None:
    # theta = lambda_k / (lambda_k + lambda_r), so lambda_k / lambda_r - 1 = theta / (1 - theta) - 1
    lifts = rate_ratio_lift([0.0, 0.2, 0.5, 0.75, 0.8, 1.0])
    assert lifts[:5] == pytest.approx([-1.0, -0.75, 0.0, 2.0, 3.0], **EXACT)
    assert lifts[5] == math.inf


def test_lift_summary_is_the_image_of_the_theta_quantiles() -> None:
    # median of Beta(1, 1) is 1/2 -> lift 0; median of Beta(2, 1) is sqrt(1/2) ->
    # lift sqrt(1/2) / (1 - sqrt(1/2)) - 1 = (sqrt(2) + 1) - 1 = sqrt(2)
    summary = summarize([1.0, 2.0], [1.0, 1.0], _rng(), draws=10)
    assert summary.lift_medians == pytest.approx([0.0, math.sqrt(2.0)], rel=1e-12, abs=1e-15)
    # uniform: lifts of 0.025 and 0.975 are 0.025 / 0.975 - 1 and 0.975 / 0.025 - 1 = 38
    assert summary.lift_ci_lows[0] == pytest.approx(0.025 / 0.975 - 1.0, rel=1e-9)
    assert summary.lift_ci_highs[0] == pytest.approx(38.0, rel=1e-9)
    assert np.all(summary.lift_ci_lows <= summary.lift_medians)
    assert np.all(summary.lift_medians <= summary.lift_ci_highs)


def test_prob_best_of_beta_2_1_against_uniform_is_two_thirds() -> None:
    # P(X > Y) for X ~ Beta(2, 1) (density 2x), Y ~ U(0, 1): integral of 2x * x over [0, 1] = 2/3
    draws = 40_000
    estimate = prob_best([2.0, 1.0], [1.0, 1.0], _rng(), draws=draws)
    standard_error = math.sqrt((2 / 3) * (1 / 3) / draws)
    assert abs(estimate[0] - 2 / 3) < 4 * standard_error
    assert estimate[0] + estimate[1] == pytest.approx(1.0, abs=1e-12)


def test_prob_best_of_clearly_separated_posteriors_is_nearly_one() -> None:
    # Beta(200, 20) has mean 0.91 and sd 0.02; Beta(20, 200) mean 0.09: they never overlap
    estimate = prob_best([20.0, 200.0, 50.0], [200.0, 20.0, 50.0], _rng(), draws=5_000)
    assert estimate[1] >= 0.999
    assert estimate.sum() == pytest.approx(1.0, abs=1e-12)


def test_prob_best_is_reproducible_with_the_same_seed() -> None:
    alphas, betas = [3.0, 4.0, 5.0], [5.0, 4.0, 3.0]
    first = prob_best(alphas, betas, _rng(7), draws=2_000)
    second = prob_best(alphas, betas, _rng(7), draws=2_000)
    other = prob_best(alphas, betas, _rng(8), draws=2_000)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def _blocked_prob_best(
    alphas: list[float], betas: list[float], rng: np.random.Generator, draws: int
) -> np.ndarray:
    """The estimate from one draws x arms block, as prob_best computed it before chunking."""
    samples = rng.beta(alphas, betas, size=(draws, len(alphas)))
    return np.bincount(np.argmax(samples, axis=1), minlength=len(alphas)) / draws


@pytest.mark.parametrize("chunk_samples", [1, 7, 1_000, 10**9])
def test_prob_best_in_chunks_equals_one_block(chunk_samples: int) -> None:
    # Chunks draw the same rows in the same order from the generator, so the estimate is
    # the very same numbers, whatever the chunk size (1 sample: one row per chunk).
    alphas, betas = [3.0, 4.0, 5.0, 2.5], [5.0, 4.0, 3.0, 2.5]
    chunked = prob_best(alphas, betas, _rng(7), draws=2_001, chunk_samples=chunk_samples)
    np.testing.assert_array_equal(chunked, _blocked_prob_best(alphas, betas, _rng(7), 2_001))


def test_prob_best_memory_is_bounded_by_the_chunk() -> None:
    # 100,000 draws x 50 arms in one block is 40 MB of float64 (39 MB measured at its peak);
    # chunks of 250,000 samples take about 2 MB, twice that while numpy draws them (4 MB
    # measured). numpy reports its buffers to tracemalloc.
    alphas = list(np.linspace(1.0, 50.0, 50))
    tracemalloc.start()
    try:
        prob_best(alphas, alphas[::-1], _rng(), draws=100_000, chunk_samples=250_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize(
    ("requested", "arms", "max_samples", "expected"),
    [
        (20_000, 3, 10_000_000, 20_000),  # small enough: as requested
        (200_000, 50, 10_000_000, 200_000),  # exactly the budget
        (200_000, 256, 10_000_000, 39_062),  # 10,000,000 // 256
        (200_000, 0, 10_000_000, 200_000),  # no arm to draw for
        (500, 100, 10, 1),  # at least one draw
    ],
)
def test_bounded_draws_caps_draws_times_arms(
    requested: int, arms: int, max_samples: int, expected: int
) -> None:
    assert bounded_draws(requested, arms, max_samples) == expected


def test_summarize_counts_prob_best_among_the_contenders_only() -> None:
    alphas, betas = [2.0, 9.0, 1.0, 4.0], [1.0, 1.0, 1.0, 4.0]
    contenders = [True, False, True, True]  # the best posterior (arm 1) is not competing
    summary = summarize(alphas, betas, _rng(3), draws=3_000, contenders=contenders)
    among = prob_best([2.0, 1.0, 4.0], [1.0, 1.0, 4.0], _rng(3), draws=3_000)
    np.testing.assert_array_equal(summary.prob_best, [among[0], 0.0, among[1], among[2]])
    assert summary.means[1] == 0.9  # closed forms still cover every arm


def test_summarize_records_draws_and_seed() -> None:
    summary = summarize([1.0], [1.0], _rng(), draws=123, seed=42)
    assert (summary.draws, summary.seed) == (123, 42)
    assert list(summary.prob_best) == [1.0]


@pytest.mark.parametrize(
    ("alphas", "betas", "message"),
    [
        ([1.0, 2.0], [1.0], "same length"),
        ([[1.0]], [[1.0]], "1-d"),
        ([0.0], [1.0], "> 0"),
        ([1.0], [-2.0], "> 0"),
        ([float("nan")], [1.0], "finite"),
        ([1.0], [float("inf")], "finite"),
    ],
)
def test_summarize_rejects_invalid_posteriors(
    alphas: list[float], betas: list[float], message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        summarize(alphas, betas, _rng())


def test_summarize_rejects_zero_draws() -> None:
    with pytest.raises(InvalidParameterError, match="draws must be >= 1"):
        summarize([1.0], [1.0], _rng(), draws=0)


_beta_parameter = st.floats(0.05, 1e4)


@settings(max_examples=50)
@given(
    st.lists(st.tuples(_beta_parameter, _beta_parameter), min_size=1, max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_prob_best_is_a_distribution(parameters: list[tuple[float, float]], seed: int) -> None:
    alphas, betas = zip(*parameters, strict=True)
    summary = summarize(alphas, betas, _rng(seed), draws=500)
    assert np.all(summary.prob_best >= 0)
    assert summary.prob_best.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all((summary.prob_beat_reference >= 0) & (summary.prob_beat_reference <= 1))
    assert np.all(summary.ci_lows <= summary.means)
    assert np.all(summary.means <= summary.ci_highs)


@pytest.mark.parametrize("level", [1.5, -0.1, float("nan")])
def test_credible_level_outside_the_unit_interval_is_rejected(level: float) -> None:
    # found by this suite: level=1.5 used to return silent NaN bounds
    with pytest.raises(InvalidParameterError, match=r"level must be in \[0, 1\]"):
        credible_intervals([1.0], [1.0], level=level)


def test_credible_levels_zero_and_one_are_the_median_and_the_support() -> None:
    lows, highs = credible_intervals([1.0], [1.0], level=0.0)
    assert (list(lows), list(highs)) == ([0.5], [0.5])
    lows, highs = credible_intervals([2.0], [3.0], level=1.0)
    assert (list(lows), list(highs)) == ([0.0], [1.0])


def test_lift_bands_are_exact_for_small_posteriors_and_within_one_percent_above() -> None:
    """lift_bands: exact Beta quantiles below EXACT_LIFT_BELOW pseudo-counts; above, the
    normal approximation of the log-odds, within 1% of the exact quantiles on the odds
    scale over a grid from 50 to a million (the worst is 0.96%, at the most skewed)."""
    from scipy import stats as scipy_stats

    from bandit.summaries import EXACT_LIFT_BELOW, lift_bands

    grid = np.geomspace(EXACT_LIFT_BELOW, 1e6, 25)
    a, b = (values.ravel() for values in np.meshgrid(grid, grid))
    small_a = np.array([1.0, 2.5, 10.0, 49.0, 3.0])
    small_b = np.array([1.0, 7.0, 10.0, 400.0, 2.0])
    for alphas, betas, tolerance in ((a, b, 0.0097), (small_a, small_b, 1e-12)):
        median, low, high = lift_bands(alphas, betas)
        for got, q in ((median, 0.5), (low, 0.025), (high, 0.975)):
            theta = scipy_stats.beta.ppf(q, alphas, betas)
            exact_odds = theta / (1 - theta)
            np.testing.assert_allclose(got + 1, exact_odds, rtol=tolerance)
