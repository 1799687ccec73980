"""Exact values of the Bernoulli KL divergence and of the Lai-Robbins and UCB1 bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.errors import InvalidParameterError
from simulations.bounds import (
    bernoulli_kl,
    gaps,
    lai_robbins_bound,
    lai_robbins_constant,
    ucb1_upper_bound,
)

THREE_ARMS = (0.3, 0.5, 0.7)


def test_bernoulli_kl_closed_forms() -> None:
    # KL(0.3 || 0.7) = 0.3 ln(3/7) + 0.7 ln(7/3) = 0.4 ln(7/3)
    assert bernoulli_kl(0.3, 0.7) == pytest.approx(0.4 * math.log(7 / 3), rel=1e-12)
    # KL(0.5 || 0.7) = 0.5 ln(5/7) + 0.5 ln(5/3) = 0.5 ln(25/21)
    assert bernoulli_kl(0.5, 0.7) == pytest.approx(0.5 * math.log(25 / 21), rel=1e-12)
    assert bernoulli_kl(0.5, 0.7) == pytest.approx(0.0871766, abs=1e-7)


def test_bernoulli_kl_edges_use_zero_log_zero() -> None:
    assert bernoulli_kl(0.4, 0.4) == 0.0
    assert bernoulli_kl(0.0, 0.0) == 0.0
    assert bernoulli_kl(1.0, 1.0) == 0.0
    assert bernoulli_kl(0.0, 0.25) == pytest.approx(math.log(4 / 3), rel=1e-12)
    assert bernoulli_kl(1.0, 0.25) == pytest.approx(math.log(4), rel=1e-12)
    assert bernoulli_kl(0.5, 0.0) == math.inf
    assert bernoulli_kl(0.5, 1.0) == math.inf


def test_kl_of_nearly_equal_means_is_not_lost_to_rounding() -> None:
    # Found by Hypothesis: the terms cancel and rounding made this KL negative.
    p, q = 0.010000000000000002, 0.01
    assert bernoulli_kl(p, q) >= 2 * (p - q) ** 2 > 0
    assert 0 < lai_robbins_constant([p, q]) < math.inf


def test_bernoulli_kl_is_elementwise() -> None:
    values = bernoulli_kl([0.3, 0.5], [0.7, 0.7])
    assert values.shape == (2,)
    assert values[0] == pytest.approx(0.4 * math.log(7 / 3))
    assert values[1] == pytest.approx(0.5 * math.log(25 / 21))


def test_bernoulli_kl_rejects_non_probabilities() -> None:
    with pytest.raises(InvalidParameterError):
        bernoulli_kl(1.2, 0.5)
    with pytest.raises(InvalidParameterError):
        bernoulli_kl(0.5, -0.1)
    with pytest.raises(InvalidParameterError):
        bernoulli_kl(math.nan, 0.5)


def test_gaps() -> None:
    np.testing.assert_allclose(gaps(THREE_ARMS), [0.4, 0.2, 0.0], atol=1e-15)


def test_lai_robbins_constant_three_arms() -> None:
    # sum Delta_k / KL(p_k, p*) = 0.4 / (0.4 ln(7/3)) + 0.2 / (0.5 ln(25/21))
    expected = 1 / math.log(7 / 3) + 0.4 / math.log(25 / 21)
    assert lai_robbins_constant(THREE_ARMS) == pytest.approx(expected, rel=1e-12)
    assert lai_robbins_constant(THREE_ARMS) == pytest.approx(3.474414, abs=1e-6)


def test_lai_robbins_bound_is_constant_times_log_t() -> None:
    c = lai_robbins_constant(THREE_ARMS)
    np.testing.assert_allclose(
        lai_robbins_bound(THREE_ARMS, [1, 10, 10_000]), [0.0, c * math.log(10), c * math.log(1e4)]
    )
    assert float(lai_robbins_bound(THREE_ARMS, 10_000)) == pytest.approx(32.0, abs=0.05)


def test_lai_robbins_degenerate_instances() -> None:
    # All arms optimal: nothing to lose.
    assert lai_robbins_constant([0.4, 0.4]) == 0.0
    # p* = 1: a single failure rules an arm out, KL = inf, no logarithmic regret.
    assert lai_robbins_constant([0.5, 1.0]) == 0.0
    # Two optimal arms: only the suboptimal one counts.
    assert lai_robbins_constant([0.5, 0.7, 0.7]) == pytest.approx(0.2 / (0.5 * math.log(25 / 21)))


def test_ucb1_upper_bound_three_arms() -> None:
    # 8 ln T (1/0.4 + 1/0.2) + (1 + pi^2/3)(0.4 + 0.2) = 240 ln 10 + 0.6 + 0.2 pi^2 at T = 10^4
    expected = 240 * math.log(10) + 0.6 + 0.2 * math.pi**2
    assert float(ucb1_upper_bound(THREE_ARMS, 10_000)) == pytest.approx(expected, rel=1e-12)
    assert float(ucb1_upper_bound(THREE_ARMS, 10_000)) == pytest.approx(555.194, abs=1e-3)
    # At t = 1 only the constant term is left.
    assert float(ucb1_upper_bound(THREE_ARMS, 1)) == pytest.approx(0.6 * (1 + math.pi**2 / 3))


def test_ucb1_upper_bound_ignores_optimal_arms() -> None:
    assert float(ucb1_upper_bound([0.6, 0.6], 1000)) == 0.0


@pytest.mark.parametrize("means", [[], [0.5, 1.5], [0.2, math.nan], [[0.1, 0.2]]])
def test_bounds_reject_bad_means(means: list[float]) -> None:
    with pytest.raises(InvalidParameterError):
        lai_robbins_constant(means)
    with pytest.raises(InvalidParameterError):
        ucb1_upper_bound(means, 10)


def test_bounds_reject_times_below_one() -> None:
    with pytest.raises(InvalidParameterError):
        lai_robbins_bound(THREE_ARMS, 0)
    with pytest.raises(InvalidParameterError):
        ucb1_upper_bound(THREE_ARMS, [10, 0.5])


probabilities = st.floats(min_value=0.01, max_value=0.99, allow_nan=False)


@given(p=probabilities, q=probabilities)
def test_kl_is_nonnegative_and_above_pinsker(p: float, q: float) -> None:
    kl = float(bernoulli_kl(p, q))
    assert kl >= 0.0
    # Pinsker: KL(p, q) >= 2 (p - q)^2.
    assert kl >= 2 * (p - q) ** 2 - 1e-12


@given(st.lists(probabilities, min_size=2, max_size=8))
def test_lai_robbins_below_ucb1_and_order_free(means: list[float]) -> None:
    c = lai_robbins_constant(means)
    assert c >= 0.0
    assert lai_robbins_constant(list(reversed(means))) == pytest.approx(c)
    # Pinsker gives Delta / KL <= 1 / (2 Delta), so C <= sum 1 / (2 Delta) < 8 sum 1 / Delta:
    # the lower bound's slope in ln T never exceeds UCB1's.
    delta = gaps(means)
    assert c <= float(np.sum(1 / (2 * delta[delta > 0]))) * (1 + 1e-9)
