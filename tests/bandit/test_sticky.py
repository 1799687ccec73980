"""bandit.sticky: the arm at a point of [0, 1) is the allocation's inverse distribution
function, checked against slices computed by hand; spread_over_nursery against the nursery's
own probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from bandit import ThompsonSampling
from bandit.errors import InvalidParameterError
from bandit.nursery import nursery_of, probabilities_with_nursery, spread_over_nursery
from bandit.propensities import beta_rank_probabilities
from bandit.sticky import Allocation, thompson_allocations


def test_each_point_falls_in_its_arms_slice() -> None:
    # Slices [0, .2), [.2, .5), [.5, 1): the boundaries belong to the next arm.
    allocation = Allocation.of([0.2, 0.3, 0.5])
    points = [0.0, 0.1999, 0.2, 0.4999, 0.5, 0.75, 0.999999]
    assert [allocation.arm_at(u) for u in points] == [0, 0, 1, 1, 2, 2, 2]


def test_unnormalised_probabilities_are_normalised() -> None:
    # An integration's total of 1 - 1e-8 (or any positive scale) gives the same slices.
    assert Allocation.of([2.0, 6.0]).cumulative == (0.25, 1.0)
    assert Allocation.of([0.5 - 5e-9, 0.5 - 5e-9]).arm_at(0.999999999) == 1


def test_an_arm_of_probability_zero_is_never_served() -> None:
    allocation = Allocation.of([0.0, 0.4, 0.0, 0.6, 0.0])
    points = np.linspace(0.0, 1.0, 10_001)[:-1]
    served = {allocation.arm_at(float(u)) for u in points}
    assert served == {1, 3}
    # Rounding at u -> 1 lands on the last arm with a positive probability, not arm 4.
    assert allocation.arm_at(np.nextafter(1.0, 0.0)) == 3
    assert allocation.last == 3


def test_evenly_spread_points_give_each_arm_its_share() -> None:
    # n points (i + 1/2) / n: arm k gets n p_k of them, up to one at each slice boundary.
    probabilities = np.array([0.05, 0.15, 0.3, 0.1, 0.4])
    n = 100_000
    allocation = Allocation.of(probabilities)
    served = [allocation.arm_at((i + 0.5) / n) for i in range(n)]
    counts = np.bincount(served, minlength=probabilities.size)
    assert np.all(np.abs(counts - n * probabilities) <= 1), counts


@pytest.mark.parametrize(
    "probabilities", [[], [[0.5, 0.5]], [0.5, -0.1], [0.0, 0.0], [0.5, float("nan")]]
)
def test_invalid_probabilities_are_refused(probabilities: list[float]) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        Allocation.of(probabilities)
    assert raised.value.parameter == "probabilities"


def test_spread_over_nursery_is_the_nursery_probabilities() -> None:
    exposures = np.array([500.0, 10.0, 300.0, 5.0])
    successes, failures = np.array([4.0, 0.0, 9.0, 1.0]), np.array([6.0, 0.0, 8.0, 0.0])
    nursery = nursery_of(exposures, 100, 0.3)
    assert nursery is not None and nursery.grown == (0, 2)
    grown = ThompsonSampling().probabilities(successes[[0, 2]], failures[[0, 2]])
    spread = spread_over_nursery(nursery, grown)
    # By hand: 0.15 to each nursery arm, 0.7 times the policy's to the grown ones.
    np.testing.assert_allclose(spread, [0.7 * grown[0], 0.15, 0.7 * grown[1], 0.15])
    expected = probabilities_with_nursery(
        ThompsonSampling(), successes, failures, exposures, min_exposures=100, share=0.3
    )
    np.testing.assert_array_equal(spread, expected)
    np.testing.assert_array_equal(spread_over_nursery(None, grown), grown)


def test_thompson_allocations_give_each_row_its_argmax_shares_with_the_nursery() -> None:
    # Two posteriors of the grown arms 0 and 2 (arm 1 in the nursery, 30% of the draws).
    nursery = nursery_of([500.0, 10.0, 300.0], min_exposures=100, share=0.3)
    assert nursery is not None and nursery.grown == (0, 2)
    alphas = np.array([[31.0, 36.0], [40.0, 12.0]])
    betas = np.array([[71.0, 66.0], [60.0, 88.0]])
    allocations = thompson_allocations(alphas, betas, nursery)
    for row, allocation in enumerate(allocations):
        first = beta_rank_probabilities(alphas[row], betas[row]).first
        expected = [0.7 * first[0], 0.3, 0.7 * first[1]]
        shares = np.diff(np.concatenate([[0.0], allocation.cumulative]))
        np.testing.assert_allclose(shares, expected, atol=1e-6)
    # Without a nursery the rows' shares are the argmax probabilities themselves.
    plain = thompson_allocations(alphas, betas, None)[1]
    np.testing.assert_allclose(
        plain.cumulative[0], beta_rank_probabilities(alphas[1], betas[1]).first[0], atol=1e-6
    )
