"""The nursery: which arms are in it, the share of the draws they get, and that without a
nursery to set apart the policy draws exactly as it would alone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from bandit.errors import InvalidParameterError
from bandit.nursery import Nursery, choose_with_nursery, nursery_of
from bandit.policies import EpsilonGreedy, ThompsonSampling

# A correct sampler fails a chi-square test at this level with probability 1e-4 for a fresh
# seed; with the fixed seeds below the tests are deterministic.
CHI_SQUARE_P = 1e-4

# Arms 1 and 3 have fewer than 100 exposures: they are the nursery.
EXPOSURES = [500.0, 10.0, 800.0, 0.0]
SUCCESSES = [2.0, 0.0, 4.0, 30.0]
FAILURES = [3.0, 0.0, 6.0, 1.0]


def _p_first_beats_second(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(theta_1 > theta_2) for independent Beta(a1, b1) and Beta(a2, b2), by quadrature."""
    value, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2), 0.0, 1.0
    )
    return float(value)


@pytest.mark.parametrize(
    ("min_exposures", "share", "named"),
    [
        (-1.0, 0.1, "min_exposures"),
        (float("nan"), 0.1, "min_exposures"),
        (float("inf"), 0.1, "min_exposures"),
        (10.0, 0.0, "share"),
        (10.0, 1.0, "share"),
        (10.0, -0.1, "share"),
    ],
)
def test_invalid_settings_are_refused_naming_the_parameter(
    min_exposures: float, share: float, named: str
) -> None:
    with pytest.raises(InvalidParameterError, match=f"^{named} must be"):
        nursery_of(EXPOSURES, min_exposures, share)


def test_the_nursery_holds_the_arms_below_the_minimum() -> None:
    assert nursery_of(EXPOSURES, 100.0, 0.2) == Nursery(arms=(1, 3), grown=(0, 2), share=0.2)
    # An arm with exactly the minimum has grown up.
    assert nursery_of([100.0, 99.5], 100.0, 0.1) == Nursery(arms=(1,), grown=(0,), share=0.1)


@pytest.mark.parametrize(
    ("exposures", "min_exposures"),
    [(EXPOSURES, 0.0), ([0.0, 0.0, 0.0], 100.0), ([0.0, 50.0], 100.0), ([100.0, 900.0], 100.0)],
    ids=["off", "all-new", "all-young", "all-grown"],
)
def test_without_a_nursery_to_set_apart_the_policy_draws_alone(
    exposures: list[float], min_exposures: float
) -> None:
    assert nursery_of(exposures, min_exposures, 0.1) is None
    k = len(exposures)
    successes, failures = np.arange(k, dtype=float), np.arange(k, dtype=float)[::-1].copy()
    policy = ThompsonSampling()
    with_nursery, alone = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(500):
        chosen = choose_with_nursery(
            policy,
            successes,
            failures,
            exposures,
            min_exposures=min_exposures,
            share=0.1,
            rng=with_nursery,
        )
        # Same arm and same generator state: not a single extra random number.
        assert chosen == policy.choose_one(successes, failures, alone)


def test_draw_frequencies_match_the_nursery_share_and_the_policy() -> None:
    share, draws = 0.1, 100_000
    rng = np.random.default_rng(20240611)
    chosen = [
        choose_with_nursery(
            ThompsonSampling(),
            SUCCESSES,
            FAILURES,
            EXPOSURES,
            min_exposures=100.0,
            share=share,
            rng=rng,
        )
        for _ in range(draws)
    ]
    counts = np.bincount(chosen, minlength=4)
    # Grown arms 0 and 2: Beta(3, 4) and Beta(5, 7) under the flat prior. Nursery arm 3's
    # posterior (Beta(31, 2)) is far better than both, and must not matter.
    p0 = _p_first_beats_second(3.0, 4.0, 5.0, 7.0)
    expected = draws * np.array([(1 - share) * p0, share / 2, (1 - share) * (1 - p0), share / 2])
    assert stats.chisquare(counts, expected).pvalue > CHI_SQUARE_P
    # And the nursery's share alone, against a binomial bound (5 standard deviations).
    in_nursery = counts[1] + counts[3]
    assert abs(in_nursery - share * draws) < 5 * np.sqrt(draws * share * (1 - share))


def test_the_policy_chooses_among_grown_arms_only() -> None:
    # Greedy (epsilon 0) over the grown arms 0 and 2 always picks arm 2 (mean 0.5 against
    # 0.4): nursery arm 3, the best by far, is served only on the nursery's schedule (with
    # arm 1), never by the policy, so arm 0 is never served at all.
    rng = np.random.default_rng(5)
    policy = EpsilonGreedy(epsilon=0.0)
    chosen = {
        choose_with_nursery(
            policy,
            [2.0, 0.0, 5.0, 30.0],
            [3.0, 0.0, 5.0, 1.0],
            EXPOSURES,
            min_exposures=100.0,
            share=0.3,
            rng=rng,
        )
        for _ in range(2000)
    }
    assert chosen == {1, 2, 3}


class _Fixed(np.random.Generator):
    """A generator whose uniform draws are given."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(np.random.PCG64(0))
        self.values = values

    def random(self, *args: object, **kwargs: object) -> float:  # type: ignore[override]
        return self.values.pop(0)


def test_pick_splits_the_share_uniformly_and_stays_in_range() -> None:
    nursery = Nursery(arms=(4, 7), grown=(0, 1), share=0.25)
    draws = [0.0, 0.124, 0.125, float(np.nextafter(0.25, 0.0)), 0.25, 0.9]
    rng = _Fixed(list(draws))
    assert [nursery.pick(rng) for _ in draws] == [4, 4, 7, 7, None, None]
