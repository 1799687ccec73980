"""Propensities: P(each arm is served) under every policy, the Thompson ones by numerical
integration, checked against closed forms computed here and against the policies' own draws."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from scipy import integrate, special, stats

from bandit.errors import InvalidParameterError
from bandit.nursery import choose_with_nursery, probabilities_with_nursery
from bandit.policies import UCB1, EpsilonDecreasing, EpsilonGreedy, Policy, ThompsonSampling
from bandit.propensities import (
    _exceeding_counts,
    argmax_probabilities,
    beta_rank_probabilities,
)


def _p_second_beats_first(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(Beta(a2, b2) > Beta(a1, b1)) for integer parameters, in closed form (a finite sum of
    Beta functions: Cook 2005; Miller 2015), in logs so that large parameters do not overflow."""
    i = np.arange(a2)
    logs = (
        special.betaln(a1 + i, b1 + b2)
        - np.log(b2 + i)
        - special.betaln(1 + i, b2)
        - special.betaln(a1, b1)
    )
    return float(np.exp(special.logsumexp(logs)))


@pytest.mark.parametrize(
    ("a1", "b1", "a2", "b2"),
    [
        (1, 1, 1, 1),
        (3, 7, 5, 5),
        (2, 30, 1, 10),
        (40, 9000, 45, 9100),
        (1000, 200000, 1050, 200000),
    ],
)
def test_two_arms_match_the_closed_form(a1: int, b1: int, a2: int, b2: int) -> None:
    result = beta_rank_probabilities([a1, a2], [b1, b2], ranks=2)
    exact = _p_second_beats_first(a1, b1, a2, b2)
    assert result.first[1] == pytest.approx(exact, abs=2e-6)
    assert result.first[0] == pytest.approx(1 - exact, abs=2e-6)
    # Two arms: second place is the other arm's first place.
    np.testing.assert_allclose(result.probabilities[:, 1], result.first[::-1], atol=2e-6)
    assert result.error < 1e-4


def test_identical_arms_share_every_rank_equally() -> None:
    result = beta_rank_probabilities([3.0] * 6, [8.0] * 6, ranks=3)
    np.testing.assert_allclose(result.probabilities, np.full((6, 3), 1 / 6), atol=1e-6)


def test_stated_error_bounds_the_error_against_a_much_finer_grid() -> None:
    alphas, betas = [47.0, 8.0, 62.0, 3.0, 857.0], [9000.0, 2000.0, 11000.0, 700.0, 200000.0]
    default = beta_rank_probabilities(alphas, betas, ranks=3)
    fine = beta_rank_probabilities(alphas, betas, ranks=3, levels=256)
    assert np.max(np.abs(default.probabilities - fine.probabilities)) <= default.error
    np.testing.assert_allclose(fine.probabilities.sum(axis=0), 1.0, atol=1e-6)


def test_ranks_match_the_frequencies_of_sorted_draws() -> None:
    alphas = np.array([5.0, 9.0, 3.0, 12.0, 7.0])
    betas = np.array([50.0, 60.0, 20.0, 100.0, 55.0])
    draws = np.random.default_rng(11).beta(alphas, betas, size=(200_000, 5))
    order = np.argsort(-draws, axis=1)[:, :3]
    observed = np.stack([np.bincount(order[:, r], minlength=5) for r in range(3)], axis=1)
    frequencies = observed / draws.shape[0]
    exact = beta_rank_probabilities(alphas, betas, ranks=3).probabilities
    se = np.sqrt(exact * (1 - exact) / draws.shape[0])
    assert np.all(np.abs(frequencies - exact) < 4.5 * se + 1e-12)


def test_thompson_probabilities_match_its_own_choices() -> None:
    policy = ThompsonSampling(prior_alpha=1.0, prior_beta=1.0)
    successes, failures = np.array([4.0, 9.0, 2.5, 7.0]), np.array([40.0, 70.0, 12.0, 80.0])
    n = 200_000
    chosen = policy.choose(
        np.broadcast_to(successes, (n, 4)),
        np.broadcast_to(failures, (n, 4)),
        np.random.default_rng(5),
    )
    frequencies = np.bincount(chosen, minlength=4) / n
    exact = policy.probabilities(successes, failures)
    assert np.all(np.abs(frequencies - exact) < 4.5 * np.sqrt(exact * (1 - exact) / n))


def test_a_single_arm_is_certain() -> None:
    result = beta_rank_probabilities([2.0], [3.0])
    assert result.probabilities.tolist() == [[1.0]]
    assert result.error == 0.0


@pytest.mark.parametrize(
    ("alphas", "betas", "kwargs", "named"),
    [
        ([1.0, 2.0], [1.0], {}, "betas"),
        ([], [], {}, "alphas"),
        ([1.0, 0.0], [1.0, 1.0], {}, "alphas"),
        ([1.0, 1.0], [1.0, float("nan")], {}, "betas"),
        ([1.0, 1.0], [1.0, 1.0], {"ranks": 3}, "ranks"),
        ([1.0, 1.0], [1.0, 1.0], {"levels": 2}, "levels"),
    ],
)
def test_invalid_inputs_name_the_parameter(
    alphas: list[float], betas: list[float], kwargs: dict[str, int], named: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        beta_rank_probabilities(alphas, betas, **kwargs)
    assert raised.value.parameter == named


def test_epsilon_greedy_probabilities_are_exact() -> None:
    probabilities = EpsilonGreedy(epsilon=0.2).probabilities([3.0, 9.0, 1.0], [7.0, 1.0, 9.0])
    np.testing.assert_allclose(probabilities, [0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3])


def test_epsilon_decreasing_uses_the_current_epsilon() -> None:
    # t = 20 pulls + 1, epsilon = min(1, 5 * 2 / 21)
    epsilon = 10 / 21
    probabilities = EpsilonDecreasing(c=5.0).probabilities([8.0, 2.0], [2.0, 8.0])
    np.testing.assert_allclose(probabilities, [1 - epsilon / 2, epsilon / 2])


def test_ucb1_is_deterministic() -> None:
    policy = UCB1()
    assert policy.probabilities([1.0, 0.0, 2.0], [1.0, 0.0, 2.0]).tolist() == [0.0, 1.0, 0.0]
    s, f = [10.0, 30.0, 12.0], [90.0, 70.0, 88.0]
    expected = np.zeros(3)
    expected[policy.choose_one(s, f, np.random.default_rng(0))] = 1.0
    assert policy.probabilities(s, f).tolist() == expected.tolist()


@pytest.mark.parametrize(
    "policy", [ThompsonSampling(), EpsilonGreedy(epsilon=0.3)], ids=["thompson", "egreedy"]
)
def test_nursery_probabilities_match_its_draws(policy: Policy) -> None:
    successes, failures = [2.0, 0.0, 4.0, 30.0], [3.0, 0.0, 6.0, 1.0]
    exposures = [500.0, 10.0, 800.0, 0.0]
    probabilities = probabilities_with_nursery(
        policy, successes, failures, exposures, min_exposures=100, share=0.2
    )
    assert probabilities[1] == pytest.approx(0.1)
    assert probabilities[3] == pytest.approx(0.1)
    rng = np.random.default_rng(3)
    n = 8_000
    counts = np.bincount(
        [
            choose_with_nursery(
                policy, successes, failures, exposures, min_exposures=100, share=0.2, rng=rng
            )
            for _ in range(n)
        ],
        minlength=4,
    )
    chi2 = stats.chisquare(counts, probabilities * n)
    assert chi2.pvalue > 1e-4


def test_a_policy_without_probabilities_says_so() -> None:
    class Fixed(Policy):
        name = "fixed"

        def choose(self, successes: object, failures: object, rng: object) -> np.ndarray:  # type: ignore[override]
            return np.zeros((), dtype=np.int64)

    with pytest.raises(InvalidParameterError) as raised:
        Fixed().probabilities([1.0], [1.0])
    assert raised.value.parameter == "policy"


def test_many_arms_keep_their_accuracy_with_the_capped_partition() -> None:
    """60 arms, some far behind: the default (contenders only, at most MAX_POINTS partition
    points) agrees with every arm's full partition (levels given: nothing capped or left out)."""
    rng = np.random.default_rng(5)
    alphas = rng.uniform(5.0, 400.0, 60)
    betas = alphas * rng.uniform(15.0, 40.0, 60)
    alphas[:5] = 2.0  # five arms far behind: certainly not first
    betas[:5] = 4000.0
    default = beta_rank_probabilities(alphas, betas)
    full = beta_rank_probabilities(alphas, betas, levels=32)
    assert np.max(np.abs(default.first - full.first)) < 1e-6
    assert np.all(default.first[:5] == 0.0)
    assert default.first.sum() == pytest.approx(1.0, abs=1e-6)


# -- argmax_probabilities: many posteriors in one pass ----------------------------------------
def argmax_by_quadrature(alphas: list[float], betas: list[float]) -> np.ndarray:
    """P(arm k is the largest) by SciPy's adaptive quadrature of
    f_k(x) prod_{j != k} F_j(x) over [0, 1], split at every arm's quartiles and far tails."""
    a, b = np.array(alphas), np.array(betas)
    levels = np.array([1e-9, 1e-4, 0.25, 0.5, 0.75, 1 - 1e-4])
    edges = np.unique(
        np.concatenate([[0.0, 1.0], special.betaincinv(a[:, None], b[:, None], levels).ravel()])
    )
    out = []
    for k in range(a.size):
        others = np.arange(a.size) != k

        def integrand(x: float, k: int = k, others: np.ndarray = others) -> float:
            density = stats.beta.pdf(x, a[k], b[k])
            return float(density * np.prod(special.betainc(a[others], b[others], x)))

        out.append(
            sum(
                integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-10, limit=200)[0]
                for lo, hi in itertools.pairwise(edges)
            )
        )
    return np.array(out)


# Rows of one (S, K) batch: overlapping, sharp, separated, parameters below 1 (densities
# unbounded at 0), a sharp contender among flat arms, and one arm.
ARGMAX_ROWS = [
    ([3.0, 5.0, 4.0], [7.0, 5.0, 6.0]),
    ([1000.0, 1040.0, 1010.0], [20000.0, 20100.0, 19900.0]),
    ([2.0, 30.0, 60.0], [30.0, 270.0, 240.0]),
    ([0.4, 0.7, 0.3], [6.0, 9.0, 2.5]),
    ([150.0, 2.0, 1.5], [850.0, 9.0, 11.0]),
]


def test_argmax_probabilities_match_quadrature_for_every_row() -> None:
    alphas = np.array([row[0] for row in ARGMAX_ROWS])
    betas = np.array([row[1] for row in ARGMAX_ROWS])
    got = argmax_probabilities(alphas, betas)
    assert got.shape == (len(ARGMAX_ROWS), 3)
    for row, (a, b) in enumerate(ARGMAX_ROWS):
        exact = argmax_by_quadrature(a, b)
        assert exact.sum() == pytest.approx(1.0, abs=1e-8)
        np.testing.assert_allclose(got[row], exact, atol=1e-6, rtol=0, err_msg=f"row {row}")
    assert argmax_probabilities([[2.0]], [[5.0]]).tolist() == [[1.0]]


def test_argmax_probabilities_agree_with_the_exact_rule_for_many_arms() -> None:
    # 200 segments x 20 arms in one call against beta_rank_probabilities row by row (its
    # error bound is the reference's; every row here has one below 1e-7).
    rng = np.random.default_rng(12)
    alphas = np.exp(rng.uniform(-0.5, 6.0, size=(200, 20)))
    betas = alphas * np.exp(rng.uniform(1.0, 3.0, size=(200, 20)))
    got = argmax_probabilities(alphas, betas)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    for row in range(0, 200, 20):
        reference = beta_rank_probabilities(alphas[row], betas[row])
        assert reference.error < 1e-7
        np.testing.assert_allclose(got[row], reference.first, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arms", [20, 40, 250])
def test_argmax_probabilities_stay_exact_for_sharp_posteriors_spread_apart(arms: int) -> None:
    """Posteriors of 100,000s of exposures whose means spread over 0.45-0.55: each density is
    far narrower than the gaps between them, so a partition spent on every arm's points
    (96 at most) resolved none of the few that can win (errors up to 0.02 at 250 arms)."""
    rng = np.random.default_rng(arms)
    for scale in (1e5, 1e6):
        means = rng.uniform(0.45, 0.55, size=(3, arms))
        sizes = rng.uniform(0.5, 2.0, size=(3, arms)) * scale
        alphas, betas = means * sizes, (1.0 - means) * sizes
        got = argmax_probabilities(alphas, betas)
        for row in range(3):
            # The exact rule's stated bound is loose here (up to 1e-5): its default and a
            # finer grid agreeing to 1e-9 show it converged.
            reference = beta_rank_probabilities(alphas[row], betas[row], levels=64).first
            coarser = beta_rank_probabilities(alphas[row], betas[row]).first
            np.testing.assert_allclose(coarser, reference, atol=1e-9, rtol=0)
            np.testing.assert_allclose(got[row], reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("alphas", "betas", "parameter"),
    [
        ([1.0, 2.0], [1.0, 2.0], "alphas"),
        ([[1.0, 2.0]], [[1.0]], "betas"),
        ([[1.0, 0.0]], [[1.0, 2.0]], "alphas"),
        ([[1.0, 2.0]], [[1.0, np.inf]], "betas"),
    ],
)
def test_argmax_probabilities_refuse_invalid_parameters(
    alphas: Any, betas: Any, parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        argmax_probabilities(alphas, betas)
    assert raised.value.parameter == parameter


@pytest.mark.parametrize("arms", [2, 3, 17, 120])
def test_the_first_rank_shortcut_takes_the_same_products_as_the_recursion(arms: int) -> None:
    """For ranks=1 the running products are taken with np.cumprod, in the order of the
    general recursion's multiplications: the same numbers bit for bit as its first rank."""
    cdf = np.random.default_rng(arms).random((arms, 50))
    assert np.array_equal(_exceeding_counts(cdf, 1)[:, 0], _exceeding_counts(cdf, 2)[:, 0])
