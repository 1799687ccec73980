"""Arm-selection policies: validation, shapes, hand-computed decisions, statistical behaviour."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import integrate, stats

from bandit.errors import InvalidParameterError
from bandit.policies import (
    POLICY_NAMES,
    UCB1,
    EpsilonDecreasing,
    EpsilonGreedy,
    Policy,
    ThompsonSampling,
    make_policy,
)

# The chi-square tests below reject a correct sampler with probability 1e-4 for a fresh seed;
# with the fixed seeds they are deterministic.
CHI_SQUARE_P = 1e-4


def _rng(seed: int = 12345) -> np.random.Generator:
    return np.random.default_rng(seed)


def _all_policies() -> list[Policy]:
    return [ThompsonSampling(), UCB1(), EpsilonGreedy(epsilon=0.3), EpsilonDecreasing(c=2.0)]


def _frequencies(arms: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(arms, minlength=k)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "parameter", "message"),
    [
        (lambda: EpsilonGreedy(epsilon=-0.1), "epsilon", r"epsilon must be in \[0, 1\], got -0.1"),
        (lambda: EpsilonGreedy(epsilon=1.5), "epsilon", r"epsilon must be in \[0, 1\], got 1.5"),
        (lambda: EpsilonGreedy(epsilon=math.nan), "epsilon", r"epsilon must be in \[0, 1\]"),
        (
            lambda: ThompsonSampling(prior_alpha=0.0),
            "prior_alpha",
            r"prior_alpha must be a finite number > 0",
        ),
        (
            lambda: ThompsonSampling(prior_beta=-1.0),
            "prior_beta",
            r"prior_beta must be a finite number > 0",
        ),
        (
            lambda: ThompsonSampling(prior_alpha=math.inf),
            "prior_alpha",
            r"prior_alpha must be a finite number",
        ),
        (lambda: UCB1(alpha=0.0), "alpha", r"alpha must be a finite number > 0, got 0.0"),
        (lambda: UCB1(alpha=math.nan), "alpha", r"alpha must be a finite number > 0"),
        (lambda: EpsilonDecreasing(c=0.0), "c", r"c must be a finite number > 0, got 0.0"),
        (lambda: EpsilonDecreasing(c=-2.0), "c", r"c must be a finite number > 0"),
        (
            lambda: make_policy("softmax"),
            "policy",
            r"policy must be one of thompson, ucb1, egreedy, edecay",
        ),
    ],
)
def test_invalid_parameters_are_rejected_with_name_and_range(
    build: object, parameter: str, message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message) as error:
        build()  # type: ignore[operator]
    assert error.value.parameter == parameter


def test_invalid_parameter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        EpsilonGreedy(epsilon=2.0)


def test_boundary_values_are_accepted() -> None:
    EpsilonGreedy(epsilon=0.0)
    EpsilonGreedy(epsilon=1.0)


@pytest.mark.parametrize(
    ("successes", "failures"),
    [([1.0, 2.0], [1.0]), ([], []), (3.0, 1.0), (np.zeros((4, 0)), np.zeros((4, 0)))],
)
def test_mismatched_or_empty_statistics_are_rejected(successes: object, failures: object) -> None:
    for policy in _all_policies():
        with pytest.raises(InvalidParameterError, match=r"same non-empty shape \(\.\.\., K\)"):
            policy.choose(successes, failures, _rng())  # type: ignore[arg-type]


def test_make_policy_builds_every_named_policy() -> None:
    built = {name: make_policy(name, epsilon=0.2, c=3.0, ucb_alpha=1.0) for name in POLICY_NAMES}
    assert built["thompson"] == ThompsonSampling()
    assert built["ucb1"] == UCB1(alpha=1.0)
    assert built["egreedy"] == EpsilonGreedy(epsilon=0.2)
    assert built["edecay"] == EpsilonDecreasing(c=3.0)
    assert all(policy.name == name for name, policy in built.items())


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", _all_policies(), ids=lambda p: p.name)
def test_vectorised_shapes(policy: Policy) -> None:
    rng = _rng()
    successes = rng.integers(0, 20, size=(6, 3, 4)).astype(float)
    failures = rng.integers(0, 20, size=(6, 3, 4)).astype(float)

    batch = policy.choose(successes, failures, rng)
    assert batch.shape == (6, 3)
    assert batch.dtype == np.int64
    assert np.all((batch >= 0) & (batch < 4))

    rows = policy.choose(successes[0], failures[0], rng)
    assert rows.shape == (3,)

    single = policy.choose(successes[0, 0], failures[0, 0], rng)
    assert np.ndim(single) == 0

    one = policy.choose_one(list(successes[0, 0]), list(failures[0, 0]), rng)
    assert type(one) is int
    assert 0 <= one < 4


@pytest.mark.parametrize("policy", _all_policies(), ids=lambda p: p.name)
def test_same_seed_same_choices(policy: Policy) -> None:
    statistics = _rng(3).integers(0, 10, size=(2, 500, 5)).astype(float)
    first = policy.choose(statistics[0], statistics[1], _rng(99))
    second = policy.choose(statistics[0], statistics[1], _rng(99))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "policy", [ThompsonSampling(), EpsilonGreedy(epsilon=0.5)], ids=lambda p: p.name
)
def test_different_seeds_different_choices(policy: Policy) -> None:
    # guards the reproducibility test against a policy that ignores its generator
    successes, failures = np.full((500, 5), 3.0), np.full((500, 5), 3.0)
    first = policy.choose(successes, failures, _rng(1))
    second = policy.choose(successes, failures, _rng(2))
    assert not np.array_equal(first, second)


# --- UCB1 ---------------------------------------------------------------------------------------


def test_ucb1_plays_every_unplayed_arm_first() -> None:
    policy, rng = UCB1(), _rng()
    # arm 1 looks excellent, but arms 0 and 2 have never been played
    assert policy.choose_one([0.0, 5.0, 0.0], [0.0, 1.0, 0.0], rng) == 0
    assert policy.choose_one([1.0, 5.0, 0.0], [0.0, 1.0, 0.0], rng) == 2
    # and row by row in a batch
    successes = np.array([[0.0, 5.0, 0.0], [1.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    failures = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert list(policy.choose(successes, failures, rng)) == [0, 2, 0]


def test_ucb1_follows_the_hand_computed_index() -> None:
    policy, rng = UCB1(), _rng()
    # s = (1, 3), f = (1, 1): pulls (2, 4), t = 6, ln 6 = 1.791759...
    #   arm 0: 1/2 + sqrt(2 * 1.791759 / 2) = 0.5  + 1.338566 = 1.838566
    #   arm 1: 3/4 + sqrt(2 * 1.791759 / 4) = 0.75 + 0.946509 = 1.696509
    #   -> arm 0, not the greedy arm 1
    assert policy.choose_one([1.0, 3.0], [1.0, 1.0], rng) == 0
    # s = (0, 3), f = (2, 1): same pulls, means (0, 0.75)
    #   arm 0: 0 + 1.338566 = 1.338566;  arm 1: 1.696509  -> arm 1
    assert policy.choose_one([0.0, 3.0], [2.0, 1.0], rng) == 1
    # a smaller exploration constant alpha = 1/2 on the first case:
    #   arm 0: 0.5  + sqrt(0.5 * 1.791759 / 2) = 0.5  + 0.669284 = 1.169284
    #   arm 1: 0.75 + sqrt(0.5 * 1.791759 / 4) = 0.75 + 0.473254 = 1.223254  -> arm 1
    assert UCB1(alpha=0.5).choose_one([1.0, 3.0], [1.0, 1.0], rng) == 1


def test_ucb1_is_deterministic() -> None:
    successes = _rng(5).integers(0, 10, size=(200, 3)).astype(float)
    failures = _rng(6).integers(1, 10, size=(200, 3)).astype(float)
    np.testing.assert_array_equal(
        UCB1().choose(successes, failures, _rng(1)), UCB1().choose(successes, failures, _rng(2))
    )


# --- epsilon-greedy -----------------------------------------------------------------------------


def test_epsilon_zero_is_greedy() -> None:
    rng = _rng()
    successes = rng.integers(0, 50, size=(2_000, 4)).astype(float)
    failures = rng.integers(1, 50, size=(2_000, 4)).astype(float)
    means = successes / (successes + failures)
    chosen = EpsilonGreedy(epsilon=0.0).choose(successes, failures, rng)
    np.testing.assert_array_equal(chosen, np.argmax(means, axis=1))


def test_greedy_tries_unplayed_arms_first() -> None:
    chosen = EpsilonGreedy(epsilon=0.0).choose_one([9.0, 0.0, 0.0], [1.0, 0.0, 0.0], _rng())
    assert chosen == 1


def test_epsilon_one_is_uniform() -> None:
    # arm 0 is by far the best, yet with epsilon = 1 every arm is equally likely
    runs, k = 40_000, 4
    successes = np.tile([90.0, 10.0, 10.0, 10.0], (runs, 1))
    failures = np.tile([10.0, 90.0, 90.0, 90.0], (runs, 1))
    chosen = EpsilonGreedy(epsilon=1.0).choose(successes, failures, _rng())
    counts = _frequencies(chosen, k)
    assert stats.chisquare(counts).pvalue > CHI_SQUARE_P
    # and the test has power: a greedy policy is rejected
    greedy = _frequencies(EpsilonGreedy(epsilon=0.0).choose(successes, failures, _rng()), k)
    assert stats.chisquare(greedy).pvalue < CHI_SQUARE_P


def test_epsilon_greedy_explores_with_probability_epsilon() -> None:
    # epsilon 0.2 over 4 arms: greedy arm 0.8 + 0.2/4 = 0.85, every other arm 0.05
    runs = 40_000
    successes = np.tile([90.0, 10.0, 10.0, 10.0], (runs, 1))
    failures = np.tile([10.0, 90.0, 90.0, 90.0], (runs, 1))
    chosen = EpsilonGreedy(epsilon=0.2).choose(successes, failures, _rng())
    expected = runs * np.array([0.85, 0.05, 0.05, 0.05])
    assert stats.chisquare(_frequencies(chosen, 4), expected).pvalue > CHI_SQUARE_P


@pytest.mark.parametrize(
    ("c", "pulls", "epsilon"),
    [
        (1.0, 19, 0.2),  # t = 20: min(1, 1 * 4 / 20) = 0.2
        (0.5, 39, 0.05),  # t = 40: 0.5 * 4 / 40 = 0.05
        (5.0, 9, 1.0),  # t = 10: 5 * 4 / 10 = 2 -> capped at 1
        (1.0, 0, 1.0),  # t = 1: nothing played yet, pure exploration
    ],
)
def test_epsilon_decreasing_schedule(c: float, pulls: int, epsilon: float) -> None:
    # epsilon_t = min(1, c * K / t) with t = pulls so far + 1, K = 4
    runs = 40_000
    if pulls:
        # every arm played once or more, arm 0 clearly best, so the greedy arm is arm 0
        row_successes = np.array([pulls - 3.0, 0.0, 0.0, 0.0])
        row_failures = np.array([0.0, 1.0, 1.0, 1.0])
    else:
        row_successes = row_failures = np.zeros(4)
    assert row_successes.sum() + row_failures.sum() == pulls
    successes, failures = np.tile(row_successes, (runs, 1)), np.tile(row_failures, (runs, 1))
    chosen = EpsilonDecreasing(c=c).choose(successes, failures, _rng())
    greedy_share = 1.0 - epsilon + epsilon / 4 if pulls else 0.25
    expected = runs * np.array([greedy_share] + [(1.0 - greedy_share) / 3] * 3)
    assert stats.chisquare(_frequencies(chosen, 4), expected).pvalue > CHI_SQUARE_P


# --- Thompson sampling --------------------------------------------------------------------------


def _exact_prob_best(alphas: list[float], betas: list[float]) -> np.ndarray:
    """P(arm k has the largest theta) = integral of pdf_k(x) * prod_{j != k} cdf_j(x) dx."""
    result = []
    for k in range(len(alphas)):
        others = [j for j in range(len(alphas)) if j != k]

        def integrand(x: float, k: int = k, others: list[int] = others) -> float:
            density = stats.beta.pdf(x, alphas[k], betas[k])
            return float(
                density * np.prod([stats.beta.cdf(x, alphas[j], betas[j]) for j in others])
            )

        result.append(integrate.quad(integrand, 0.0, 1.0)[0])
    return np.array(result)


def test_thompson_choice_frequencies_match_the_probability_of_being_best() -> None:
    # posteriors Beta(3, 4), Beta(2, 3), Beta(5, 7) under the uniform prior
    successes, failures = [2.0, 1.0, 4.0], [3.0, 2.0, 6.0]
    exact = _exact_prob_best([3.0, 2.0, 5.0], [4.0, 3.0, 7.0])
    assert exact.sum() == pytest.approx(1.0, abs=1e-8)
    runs = 40_000
    chosen = ThompsonSampling().choose(
        np.tile(successes, (runs, 1)), np.tile(failures, (runs, 1)), _rng()
    )
    assert stats.chisquare(_frequencies(chosen, 3), runs * exact).pvalue > CHI_SQUARE_P


def test_thompson_uses_its_prior() -> None:
    # data s = (0, 5), f = (5, 0) under a Beta(50, 50) prior: Beta(50, 55) vs Beta(55, 50),
    # P(arm 1 best) = 0.7559 (by quadrature); under the flat prior it is Beta(1, 6) vs Beta(6, 1)
    runs = 4_000
    successes, failures = np.tile([0.0, 5.0], (runs, 1)), np.tile([5.0, 0.0], (runs, 1))
    chosen = ThompsonSampling(prior_alpha=50.0, prior_beta=50.0).choose(successes, failures, _rng())
    p = _exact_prob_best([50.0, 55.0], [55.0, 50.0])[1]
    assert abs(chosen.mean() - p) < 4 * math.sqrt(p * (1 - p) / runs)
    assert ThompsonSampling().choose(successes, failures, _rng()).mean() > 0.98


def test_thompson_accepts_real_valued_pseudo_counts() -> None:
    # live statistics are alpha - prior_alpha, beta - prior_beta: real numbers like 5.25
    chosen = ThompsonSampling().choose_one([3.0, 0.5], [5.25, 1.75], _rng())
    assert chosen in (0, 1)


@pytest.mark.parametrize("policy", _all_policies(), ids=lambda p: p.name)
def test_choose_one_rejects_a_batch_with_a_clear_message(policy: Policy) -> None:
    # found by this suite: a (1, K) batch failed with numpy's "only 0-dimensional arrays ..."
    with pytest.raises(InvalidParameterError, match=r"choose_one needs statistics of shape \(K,\)"):
        policy.choose_one([[1.0, 2.0]], [[1.0, 1.0]], _rng())


def test_thompson_choice_makes_the_same_draws_and_choice_as_choose() -> None:
    from bandit.policies import thompson_choice

    policy = ThompsonSampling(prior_alpha=1.0, prior_beta=2.0)
    successes = np.array([3.0, 10.5, 0.0, 7.0, 2.0])
    failures = np.array([5.0, 20.0, 0.0, 6.5, 1.0])
    params = policy.posterior_parameters(successes, failures)
    assert params[1] == (11.5, 22.0)
    batched, scalar = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(2000):
        assert thompson_choice(params, scalar) == policy.choose_one(successes, failures, batched)


def test_posterior_parameters_of_no_arms_are_empty() -> None:
    assert ThompsonSampling().posterior_parameters([], []) == ()


def test_invalid_parameter_error_names_its_parameter_and_survives_pickling() -> None:
    with pytest.raises(InvalidParameterError) as raised:
        EpsilonGreedy(epsilon=2.0)
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (copy.parameter, str(copy)) == ("epsilon", str(raised.value))


def test_thompson_draws_serve_the_choices_of_independent_full_draws() -> None:
    """Block by block, the same draws and choices as one vectorised draw of the block."""
    from bandit.policies import ThompsonDraws

    params = [(3.0, 4.0), (2.0, 3.0), (5.0, 7.0), (40.5, 61.0)]
    draws = ThompsonDraws(params, block=7)
    served = [draws.next(np.random.default_rng(11)) for _ in range(1)]
    served += [draws.next(np.random.default_rng(99)) for _ in range(6)]  # same block: no draw
    alphas, betas = np.array(params).T
    expected = np.argmax(np.random.default_rng(11).beta(alphas, betas, size=(7, 4)), axis=1)
    assert served == expected.tolist()


@pytest.mark.parametrize("block", [1, 3, None])
def test_thompson_draws_choose_with_the_probability_of_being_best(block: int | None) -> None:
    from bandit.policies import ThompsonDraws

    alphas, betas = [3.0, 2.0, 5.0], [4.0, 3.0, 7.0]
    exact = _exact_prob_best(alphas, betas)
    draws = ThompsonDraws(list(zip(alphas, betas, strict=True)), block=block)
    rng = _rng()
    runs = 30_000
    chosen = np.array([draws.next(rng) for _ in range(runs)])
    assert stats.chisquare(_frequencies(chosen, 3), runs * exact).pvalue > CHI_SQUARE_P


def test_thompson_draws_default_block_shares_about_4096_draws() -> None:
    from bandit.policies import ThompsonDraws

    draws = ThompsonDraws([(1.0, 1.0)] * 250)
    rng = np.random.default_rng(0)
    draws.next(rng)
    assert len(draws._choices) == 4096 // 250 - 1


@pytest.mark.parametrize(
    ("params", "block", "message"),
    [
        ([], None, "at least one arm"),
        ([(1.0, 0.0)], None, "finite numbers > 0"),
        ([(float("nan"), 1.0)], None, "finite numbers > 0"),
        ([(1.0, 1.0)], 0, "block must be >= 1"),
    ],
)
def test_thompson_draws_refuse_bad_input(
    params: list[tuple[float, float]], block: int | None, message: str
) -> None:
    from bandit.policies import ThompsonDraws

    with pytest.raises(InvalidParameterError, match=message):
        ThompsonDraws(params, block=block)
