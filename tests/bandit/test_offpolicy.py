"""Off-policy estimators: Vowpal Wabbit's published test vectors (the ``estimators`` package,
estimators/test/test_bandits.py and test_bandits_ips.py), exact values computed here by hand,
and the interval's coverage in simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bandit.errors import InvalidParameterError
from bandit.offpolicy import (
    LoggedSamples,
    doubly_robust,
    effective_sample_size,
    importance_weights,
    ips,
    snips,
    support_gap,
)


def _alternating(n: int, r: float, p_pred: tuple[float, float]) -> LoggedSamples:
    """VW's simulator: p_log 0.5; even rows reward r and p_pred[0], odd rows 0 and p_pred[1]."""
    chosen = np.arange(n) % 2
    return LoggedSamples.of(
        np.where(chosen == 0, r, 0.0),
        np.full(n, 0.5),
        np.where(chosen == 0, p_pred[0], p_pred[1]),
    )


def test_vw_single_example() -> None:
    # test_bandits_ips.py: add_example(p_log=0.3, r=1, p_pred=0.6) -> 2.0
    assert ips(LoggedSamples.of([1.0], [0.3], [0.6])).value == pytest.approx(2.0)


@pytest.mark.parametrize("reward", [1.0, 10.0, -1.0])
def test_vw_constant_rewards(reward: float) -> None:
    # test_estimate_1_from_1s, test_estimate_10_from_10s, test_estimate_negative_constant
    samples = LoggedSamples.of(np.full(10, reward), np.ones(10), np.ones(10))
    for estimate in (ips(samples), snips(samples)):
        assert estimate.value == pytest.approx(reward)
        assert estimate.low <= reward <= estimate.high


def test_vw_counts() -> None:
    # test_convergence_with_count: 1000 x (1, 1, 1) and 500 x count 2 of (1, 0, 1) -> 0.5
    samples = LoggedSamples.of(
        np.r_[np.ones(1000), np.zeros(500)],
        np.ones(1500),
        np.ones(1500),
        np.r_[np.ones(1000), np.full(500, 2.0)],
    )
    assert ips(samples).value == pytest.approx(0.5)
    assert snips(samples).value == pytest.approx(0.5)
    assert ips(samples).samples == 2000
    assert ips(samples).low <= 0.5 <= ips(samples).high


@pytest.mark.parametrize("reward", [1.0, 10.0])
def test_vw_simple_convergence(reward: float) -> None:
    # test_simple_convergence: the gaussian interval lies within (0.75 r, 0.85 r)
    estimate = ips(_alternating(10_000, reward, (0.8, 0.2)))
    assert 0.75 * reward <= estimate.low <= estimate.high <= 0.85 * reward


def test_vw_convergence_with_no_overflow() -> None:
    estimate = ips(_alternating(1_000_000, 1.0, (0.2, 0.8)))
    assert 0.15 <= estimate.low <= estimate.high <= 0.25


def test_vw_more_examples_and_lower_level_give_tighter_intervals() -> None:
    less, more = ips(_alternating(100, 1.0, (0.2, 0.8))), ips(_alternating(10_000, 1.0, (0.2, 0.8)))
    assert less.low <= more.low and less.high >= more.high
    samples = _alternating(1000, 1.0, (0.2, 0.8))
    widths = [
        ips(samples, level=level).high - ips(samples, level=level).low for level in (0.5, 0.9, 0.99)
    ]
    assert widths == sorted(widths)


def test_exact_values_on_a_small_log() -> None:
    rewards = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    propensities = np.array([0.5, 0.25, 0.25, 0.5, 0.1])
    targets = np.array([1.0, 0.0, 0.5, 1.0, 0.3])
    samples = LoggedSamples.of(rewards, propensities, targets)
    w = np.array([2.0, 0.0, 2.0, 2.0, 3.0])
    terms = w * rewards  # 2, 0, 2, 0, 3: mean 7/5, sample variance 1.7
    result = ips(samples)
    assert result.value == pytest.approx(1.4)
    assert result.standard_error == pytest.approx(np.sqrt(np.var(terms, ddof=1) / 5))
    z = stats.norm.ppf(0.975)
    assert result.low == pytest.approx(1.4 - z * result.standard_error)
    assert result.effective_sample_size == pytest.approx(81 / 21)  # (9)^2 / (4+4+4+9)
    v = 7 / 9
    assert snips(samples).value == pytest.approx(v)
    assert snips(samples).standard_error == pytest.approx(
        np.sqrt(np.sum((w * (rewards - v)) ** 2)) / 9
    )
    predicted = np.array([0.6, 0.2, 0.4, 0.6, 0.5])
    expected = np.array([0.6, 0.6, 0.45, 0.6, 0.41])
    dr_terms = expected + w * (rewards - predicted)
    assert doubly_robust(samples, predicted, expected).value == pytest.approx(dr_terms.mean())


def test_counts_are_the_same_as_repeated_rows() -> None:
    grouped = LoggedSamples.of([1.0, 0.0], [0.2, 0.2], [0.5, 0.5], [3, 7])
    repeated = LoggedSamples.of([1.0] * 3 + [0.0] * 7, [0.2] * 10, [0.5] * 10)
    for estimator in (ips, snips):
        a, b = estimator(grouped), estimator(repeated)
        assert (a.value, a.standard_error, a.effective_sample_size) == pytest.approx(
            (b.value, b.standard_error, b.effective_sample_size)
        )


def test_dr_with_a_perfect_model_has_no_variance_from_the_weights() -> None:
    rng = np.random.default_rng(2)
    propensities = rng.uniform(0.05, 1.0, 500)
    rewards = rng.uniform(0, 1, 500)
    samples = LoggedSamples.of(rewards, propensities, rng.uniform(0, 1, 500))
    result = doubly_robust(samples, rewards, np.full(500, 0.3))
    assert result.value == pytest.approx(0.3)
    assert result.standard_error == pytest.approx(0.0, abs=1e-12)


def test_clipping_caps_weights_and_warns() -> None:
    samples = LoggedSamples.of([1.0, 1.0, 0.0], [0.005, 0.5, 0.5], [1.0, 0.5, 0.5])
    weights = importance_weights(samples, clip=50.0)
    assert weights.values.tolist() == [50.0, 1.0, 1.0]
    assert weights.clipped == 1
    result = ips(samples, clip=50.0)
    assert result.value == pytest.approx(17.0)
    assert result.clipped == 1
    assert any("clipped" in note for note in result.warnings)
    assert any("propensities as small as 0.005" in note for note in result.warnings)


def test_low_effective_sample_size_and_support_gap_are_flagged() -> None:
    samples = LoggedSamples.of(np.zeros(100), np.full(100, 0.5), np.r_[1.0, np.zeros(99)])
    assert effective_sample_size(importance_weights(samples).values) == pytest.approx(1.0)
    gap = support_gap(
        [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], [1, 3]
    )
    assert gap == pytest.approx(0.375)
    notes = ips(samples, unsupported=gap).warnings
    assert any("effective sample size 1.0" in note for note in notes)
    assert any("37.5%" in note for note in notes)


def test_interval_coverage_in_simulation() -> None:
    """Logging: uniform over 4 arms; candidate: 70 % on arm 2, 10 % on each other arm. The
    95 % IPS and DR intervals cover the true value in 95 +- 1.5 % of 2000 logs of 2000 rows."""
    means = np.array([0.05, 0.08, 0.12, 0.06])
    candidate = np.array([0.1, 0.1, 0.7, 0.1])
    truth = float(candidate @ means)
    rng = np.random.default_rng(7)
    replicates, n = 2000, 2000
    arms = rng.integers(0, 4, size=(replicates, n))
    rewards = (rng.random((replicates, n)) < means[arms]).astype(float)
    w = candidate[arms] / 0.25
    terms = w * rewards
    # The estimator, vectorised over the replicates, is checked against one call per row.
    first = ips(LoggedSamples.of(rewards[0], np.full(n, 0.25), candidate[arms[0]]))
    assert first.value == pytest.approx(terms[0].mean())
    se = terms.std(axis=1, ddof=1) / np.sqrt(n)
    z = stats.norm.ppf(0.975)
    covered = np.abs(terms.mean(axis=1) - truth) <= z * se
    assert abs(covered.mean() - 0.95) < 0.015


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rewards": [], "propensities": [], "targets": []}, "rewards"),
        ({"rewards": [1.0], "propensities": [0.0], "targets": [1.0]}, "propensities"),
        ({"rewards": [1.0], "propensities": [0.5], "targets": [1.5]}, "targets"),
        ({"rewards": [1.0], "propensities": [0.5, 0.5], "targets": [1.0]}, "propensities"),
        ({"rewards": [1.0], "propensities": [0.5], "targets": [1.0], "counts": [0]}, "counts"),
        ({"rewards": [float("nan")], "propensities": [0.5], "targets": [1.0]}, "rewards"),
    ],
)
def test_invalid_samples_name_the_field(kwargs: dict[str, list[float]], named: str) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        LoggedSamples.of(**kwargs)
    assert raised.value.parameter == named


def test_invalid_options_name_the_field() -> None:
    samples = LoggedSamples.of([1.0], [0.5], [1.0])
    with pytest.raises(InvalidParameterError) as raised:
        ips(samples, clip=0.0)
    assert raised.value.parameter == "clip"
    with pytest.raises(InvalidParameterError) as raised:
        snips(samples, level=1.0)
    assert raised.value.parameter == "level"
    with pytest.raises(InvalidParameterError) as raised:
        doubly_robust(samples, [0.1, 0.2], [0.1])
    assert raised.value.parameter == "predicted"
