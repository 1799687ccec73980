"""The hierarchical segment model against values computed independently here: the marginal
likelihood by ``math.lgamma``, the maximum by a brute-force grid, the limits (identical
segments pool fully, very different ones hardly), method-of-moments estimates, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from bandit.errors import InvalidParameterError
from bandit.hierarchy import (
    dispersion_factors,
    fit_hierarchy,
    log_objective,
    pooling_weights,
    ratio_moment_increments,
    traffic_weighted,
    trigamma,
)
from bandit.update import Prior


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _objective_by_hand(
    x: list[float], m: list[float], mu: float, kappa: float, prior: Prior = Prior()
) -> float:
    """BDA (5.8) without the binomial coefficients, plus the documented hyperprior term."""
    a, b = mu * kappa, (1 - mu) * kappa
    total = sum(_log_beta(xs + a, ms + b) - _log_beta(a, b) for xs, ms in zip(x, m, strict=True))
    return total + prior.alpha * math.log(mu) + prior.beta * math.log(1 - mu)


# --- the objective and its maximum ---------------------------------------------------------


def test_log_objective_equals_the_marginal_likelihood_written_out() -> None:
    x, m = [3.0, 0.0, 12.5, 40.0], [7.0, 5.0, 0.0, 60.25]
    for mu, kappa, prior in ((0.3, 10.0, Prior()), (0.71, 2.5, Prior(2.0, 3.0))):
        expected = _objective_by_hand(x, m, mu, kappa, prior)
        got = float(log_objective(x, m, mu, kappa, prior=prior))
        assert got == pytest.approx(expected, rel=1e-12)


def test_fit_reaches_the_brute_force_grid_maximum() -> None:
    x = np.array([2.0, 15.0, 30.0, 9.0, 0.0])
    m = np.array([18.0, 25.0, 20.0, 31.0, 12.0])
    fit = fit_hierarchy(x, m)
    kappa_max = 2.0 + float(x.sum() + m.sum())
    mus = np.linspace(0.005, 0.995, 600)
    kappas = np.exp(np.linspace(np.log(2.0), np.log(kappa_max), 600))
    grid = log_objective(x, m, mus[:, None], kappas[None, :])
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    assert float(fit.log_objective) >= grid[i, j] - 1e-9
    assert float(fit.log_objective) == pytest.approx(
        _objective_by_hand(list(x), list(m), float(fit.mu), float(fit.kappa)), rel=1e-12
    )
    # Within one grid step of the grid's best point.
    assert abs(float(fit.mu) - mus[i]) <= mus[1] - mus[0]
    assert abs(math.log(float(fit.kappa)) - math.log(kappas[j])) <= math.log(kappas[1] / kappas[0])
    assert 2.0 < float(fit.kappa) < kappa_max  # an interior maximum for this data


def test_the_shrunk_posteriors_and_the_pooling_weights() -> None:
    x = np.array([2.0, 15.0, 30.0, 0.0])
    m = np.array([18.0, 25.0, 20.0, 0.0])
    fit = fit_hierarchy(x, m)
    mu, kappa = float(fit.mu), float(fit.kappa)
    np.testing.assert_allclose(fit.alphas, mu * kappa + x, rtol=1e-14)
    np.testing.assert_allclose(fit.betas, (1 - mu) * kappa + m, rtol=1e-14)
    n = x + m
    weights = pooling_weights(fit.kappa, n)
    np.testing.assert_allclose(weights, kappa / (kappa + n), rtol=1e-14)
    assert weights[-1] == 1.0  # no evidence: only the pool
    rates = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
    np.testing.assert_allclose(
        fit.alphas / (fit.alphas + fit.betas), weights * mu + (1 - weights) * rates, rtol=1e-12
    )
    assert fit.prior_alphas == pytest.approx(mu * kappa)
    assert fit.prior_betas == pytest.approx((1 - mu) * kappa)


def test_pooling_weights_exact_values() -> None:
    np.testing.assert_array_equal(
        pooling_weights(np.array([10.0, 1.0]), np.array([[0.0, 10.0, 30.0], [1.0, 3.0, 0.0]])),
        [[1.0, 0.5, 0.25], [0.5, 0.25, 1.0]],
    )


# --- the limits ------------------------------------------------------------------------------


def test_identical_segments_pool_fully_into_the_pooled_posterior() -> None:
    x, m = np.full(30, 20.0), np.full(30, 80.0)
    fit = fit_hierarchy(x, m)
    assert float(fit.kappa) == pytest.approx(2.0 + 3000.0, rel=1e-12)  # the cap
    assert float(fit.kappa) == pytest.approx(float(fit.kappa_max), rel=1e-12)
    # A new segment starts from (about) the pooled posterior Beta(1 + 600, 1 + 2400).
    assert float(fit.mu) == pytest.approx(601 / 3002, abs=2e-4)
    assert float(fit.prior_alphas + fit.prior_betas) == pytest.approx(3002.0)


def test_very_different_segments_are_pooled_little() -> None:
    x, m = np.array([100.0, 900.0, 500.0]), np.array([900.0, 100.0, 500.0])
    fit = fit_hierarchy(x, m)
    assert float(fit.kappa) < 20.0
    assert np.all(pooling_weights(fit.kappa, x + m) < 0.02)
    means = fit.alphas / (fit.alphas + fit.betas)
    np.testing.assert_allclose(means, [0.1, 0.9, 0.5], atol=0.005)


def test_all_or_nothing_segments_hit_the_floor_of_kappa() -> None:
    # Each segment all successes or all failures: L grows as kappa -> 0; the floor holds it.
    fit = fit_hierarchy([100.0, 0.0, 100.0, 0.0], [0.0, 100.0, 0.0, 100.0])
    assert float(fit.kappa) == pytest.approx(2.0, rel=1e-12)
    assert float(fit.mu) == pytest.approx(0.5, abs=1e-9)


def test_method_of_moments_limit_with_many_well_measured_segments() -> None:
    rng = np.random.default_rng(12)
    mu0, kappa0, segments, n = 0.3, 40.0, 400, 5000
    theta = rng.beta(mu0 * kappa0, (1 - mu0) * kappa0, size=segments)
    x = rng.binomial(n, theta).astype(np.float64)
    fit = fit_hierarchy(x, n - x)
    # Method of moments on the same data: the mean rate, and the variance of the rates less
    # their binomial part, mu (1 - mu) / (kappa + 1).
    rates = x / n
    mean = rates.mean()
    between = rates.var(ddof=1) - np.mean(rates * (1 - rates) / n)
    kappa_moments = mean * (1 - mean) / between - 1
    assert float(fit.mu) == pytest.approx(mean, abs=1e-3)
    assert float(fit.kappa) == pytest.approx(kappa_moments, rel=0.05)
    assert float(fit.kappa) == pytest.approx(kappa0, rel=0.15)


# --- shapes and edge cases -------------------------------------------------------------------


def test_vectorised_fit_equals_one_arm_at_a_time() -> None:
    rng = np.random.default_rng(3)
    n = rng.poisson(rng.pareto(1.0, size=(2, 4, 25)) * 30).astype(np.float64)
    x = rng.binomial(n.astype(np.int64), rng.beta(3, 4, size=n.shape)).astype(np.float64)
    m = (n - x) * 1.07
    fit = fit_hierarchy(x, m)
    assert fit.mu.shape == fit.kappa.shape == (2, 4)
    assert fit.alphas.shape == fit.betas.shape == (2, 4, 25)
    for run in range(2):
        for arm in range(4):
            alone = fit_hierarchy(x[run, arm], m[run, arm])
            assert float(alone.mu) == pytest.approx(fit.mu[run, arm], rel=1e-8)
            assert float(alone.kappa) == pytest.approx(fit.kappa[run, arm], rel=1e-7)


def test_segments_without_evidence_change_nothing_and_get_the_arm_prior() -> None:
    x, m = np.array([2.0, 15.0, 30.0]), np.array([18.0, 25.0, 20.0])
    fit = fit_hierarchy(x, m)
    padded = fit_hierarchy(np.concatenate([x, np.zeros(50)]), np.concatenate([m, np.zeros(50)]))
    assert float(padded.mu) == pytest.approx(float(fit.mu), rel=1e-12)
    assert float(padded.kappa) == pytest.approx(float(fit.kappa), rel=1e-12)
    np.testing.assert_allclose(padded.alphas[3:], float(fit.prior_alphas), rtol=1e-12)
    np.testing.assert_allclose(padded.betas[3:], float(fit.prior_betas), rtol=1e-12)


def test_one_segment_is_its_own_pool() -> None:
    fit = fit_hierarchy([3.0], [7.0])
    assert float(fit.kappa) == pytest.approx(12.0, rel=1e-12)  # prior strength 2 + evidence 10
    assert 0.25 < float(fit.mu) < 0.45
    assert fit.alphas.shape == (1,)


@pytest.mark.parametrize("prior", [Prior(), Prior(2.0, 3.0)])
def test_no_evidence_at_all_gives_the_experiment_prior(prior: Prior) -> None:
    fit = fit_hierarchy(np.zeros((3, 4)), np.zeros((3, 4)), prior=prior)
    np.testing.assert_allclose(fit.alphas, prior.alpha, rtol=1e-12)
    np.testing.assert_allclose(fit.betas, prior.beta, rtol=1e-12)
    np.testing.assert_allclose(fit.kappa, prior.alpha + prior.beta, rtol=1e-12)


def test_an_arm_without_successes_keeps_a_proper_prior() -> None:
    fit = fit_hierarchy(np.zeros(5), np.full(5, 100.0))
    assert 0.0 < float(fit.mu) < 0.05
    assert np.all(np.isfinite(fit.alphas)) and np.all(fit.alphas > 0)


def test_huge_counts() -> None:
    x, m = np.array([3e9, 1e9, 2.5e9]), np.array([7e9, 9e9, 7.5e9])
    fit = fit_hierarchy(x, m)
    assert np.isfinite(float(fit.kappa)) and 2.0 <= float(fit.kappa) <= float(fit.kappa_max)
    means = fit.alphas / (fit.alphas + fit.betas)
    np.testing.assert_allclose(means, x / (x + m), rtol=1e-6)  # evidence dwarfs any prior
    identical = fit_hierarchy(np.full(4, 2e9), np.full(4, 8e9))
    assert float(identical.kappa) == pytest.approx(float(identical.kappa_max), rel=1e-9)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.floats(0, 500), st.floats(0, 500)),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.01, 0.99),
    st.floats(0.0, 1.0),
)
def test_the_fit_is_never_beaten_by_another_point_in_the_bounds(
    segments: list[tuple[float, float]], mu: float, where: float
) -> None:
    x = np.array([s[0] for s in segments])
    m = np.array([s[1] for s in segments])
    fit = fit_hierarchy(x, m)
    kappa = 2.0 * ((2.0 + x.sum() + m.sum()) / 2.0) ** where  # anywhere in [2, kappa_max]
    other = float(log_objective(x, m, mu, kappa))
    assert float(fit.log_objective) >= other - 1e-7 * max(1.0, abs(other))
    assert 2.0 - 1e-9 <= float(fit.kappa) <= float(fit.kappa_max) * (1 + 1e-12)


def test_trigamma_matches_scipy() -> None:
    values = np.concatenate([np.logspace(-8, 12, 400), np.linspace(0.01, 30.0, 400)])
    np.testing.assert_allclose(trigamma(values), special.polygamma(1, values), rtol=1e-13)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "failures", "parameter"),
    [
        ([1.0, 2.0], [1.0], "failures"),
        ([-1.0, 2.0], [1.0, 1.0], "successes"),
        ([1.0, 2.0], [1.0, float("nan")], "failures"),
        ([1.0, float("inf")], [1.0, 1.0], "successes"),
        ([], [], "successes"),
        (3.0, 4.0, "successes"),
    ],
)
def test_invalid_evidence_names_the_parameter(
    successes: object, failures: object, parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        fit_hierarchy(successes, failures)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter


@pytest.mark.parametrize(
    ("kappa", "evidence", "parameter"),
    [
        (np.array([1.0, 2.0]), np.ones((3, 4)), "kappa"),
        (np.array([0.0]), np.ones((1, 4)), "kappa"),
        (np.array([1.0]), -np.ones((1, 4)), "evidence"),
        (1.0, 2.0, "kappa"),
    ],
)
def test_invalid_pooling_weight_arguments_name_the_parameter(
    kappa: object, evidence: object, parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        pooling_weights(kappa, evidence)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter


def test_traffic_weighted_moment_matches_the_weighted_average() -> None:
    """Mean and variance of sum_s w_s theta_s written out by hand, and one segment (or all
    the weight on one) gives that segment's Beta back."""
    alphas = np.array([[3.0, 10.0, 1.0], [2.0, 2.0, 50.0]])
    betas = np.array([[7.0, 10.0, 4.0], [8.0, 3.0, 50.0]])
    weights = np.array([6.0, 3.0, 1.0])
    a, b = traffic_weighted(alphas, betas, weights)
    for k in range(2):
        w = weights / 10.0
        means = [alphas[k, s] / (alphas[k, s] + betas[k, s]) for s in range(3)]
        variances = [
            alphas[k, s]
            * betas[k, s]
            / ((alphas[k, s] + betas[k, s]) ** 2 * (alphas[k, s] + betas[k, s] + 1))
            for s in range(3)
        ]
        mean = sum(w[s] * means[s] for s in range(3))
        variance = sum(w[s] ** 2 * variances[s] for s in range(3))
        assert a[k] / (a[k] + b[k]) == pytest.approx(mean, rel=1e-12)
        total = a[k] + b[k]
        assert a[k] * b[k] / (total**2 * (total + 1)) == pytest.approx(variance, rel=1e-12)
    one_a, one_b = traffic_weighted(alphas, betas, np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(one_a, alphas[:, 1], rtol=1e-12)
    np.testing.assert_allclose(one_b, betas[:, 1], rtol=1e-12)


@pytest.mark.parametrize("weights", [[0.0, 0.0], [1.0, -1.0], [1.0, float("nan")], [1.0]])
def test_traffic_weighted_refuses_bad_weights(weights: list[float]) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        traffic_weighted(np.ones((2, 2)), np.ones((2, 2)), np.array(weights))
    assert raised.value.parameter == "weights"


def test_traffic_weighted_with_weights_per_arm() -> None:
    """Weights of the alphas' shape (an arm restricted to some segments: 0 elsewhere) are
    renormalised per arm: each arm's Beta is what its own weights give it alone, and an arm
    with one allowed segment gets that segment's Beta."""
    alphas = np.array([[3.0, 10.0, 1.0], [2.0, 2.0, 50.0]])
    betas = np.array([[7.0, 10.0, 4.0], [8.0, 3.0, 50.0]])
    weights = np.array([[6.0, 3.0, 1.0], [0.0, 3.0, 0.0]])
    a, b = traffic_weighted(alphas, betas, weights)
    first_a, first_b = traffic_weighted(alphas[:1], betas[:1], weights[0])
    assert (a[0], b[0]) == pytest.approx((first_a[0], first_b[0]), rel=1e-12)
    assert (a[1], b[1]) == pytest.approx((2.0, 3.0), rel=1e-12)
    with pytest.raises(InvalidParameterError) as raised:
        traffic_weighted(alphas, betas, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert raised.value.parameter == "weights"


def _random_evidence(
    rng: np.random.Generator, arms: int, segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per (arm, segment) evidence of every kind the tick meets: empty segments, thin and
    rich ones, segments with no success or no failure, arms whose segments differ."""
    n = rng.choice([0.0, 1.0, 3.0, 30.0, 400.0], size=(arms, segments)) * rng.uniform(0.5, 2)
    theta = rng.beta(rng.uniform(0.5, 20), rng.uniform(0.5, 20), size=(arms, segments))
    x = np.minimum(np.round(n * theta), n)
    return x, n - x


@pytest.mark.parametrize("seed", range(40))
def test_a_warm_start_reaches_the_cold_starts_maximum(seed: int) -> None:
    """A tick's refit starts from the previous fit; after a window of new evidence, and
    from a start anywhere inside the bounds, it ends at the cold start's maximum."""
    rng = np.random.default_rng(seed)
    arms, segments = int(rng.integers(1, 6)), int(rng.integers(2, 60))
    x, m = _random_evidence(rng, arms, segments)
    before = fit_hierarchy(x, m)
    more_x, more_m = _random_evidence(rng, arms, segments)
    cold = fit_hierarchy(x + more_x, m + more_m)
    warm = fit_hierarchy(x + more_x, m + more_m, start=(before.mu, before.kappa))
    far_kappa = np.exp(rng.uniform(np.log(cold.kappa_min), np.log(cold.kappa_max)))
    far = fit_hierarchy(x + more_x, m + more_m, start=(rng.uniform(0.01, 0.99, arms), far_kappa))
    for fit in (warm, far):
        np.testing.assert_allclose(fit.log_objective, cold.log_objective, rtol=0, atol=1e-8)
        np.testing.assert_allclose(fit.mu, cold.mu, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(np.log(fit.kappa), np.log(cold.kappa), rtol=0, atol=1e-5)


def test_dispersion_factors_exact_values() -> None:
    """phi = (1 - theta) + theta M / N, at least 1, written out cell by cell."""
    x = np.array([[3.0, 0.0, 10.0, 4.0], [0.0, 2.0, 1.0, 5.0]])
    m = np.array([[9.0, 5.0, 10.0, 4.0], [0.0, 6.0, 3.0, 5.0]])
    n = np.array([[100.0, 50.0, 200.0, 0.0], [0.0, 80.0, 40.0, 60.0]])
    moments = np.array([[250.0, 90.0, 200.0, 0.0], [0.0, 40.0, 160.0, 30.0]])
    expected = np.array(
        [
            [0.75 + 0.25 * 2.5, 1.0, 0.5 + 0.5 * 1.0, 1.0],
            # no evidence: 1; M / N = 0.5 < 1 would give 0.875 and 0.75: at least 1
            [1.0, 1.0, 0.75 + 0.25 * 4.0, 1.0],
        ]
    )
    np.testing.assert_allclose(dispersion_factors(x, m, n, moments), expected, rtol=1e-15)


def test_dispersion_factors_match_the_simulated_variance_of_the_ratio_estimate() -> None:
    """The delta method against simulation: windows of Poisson contacts, an arm with most
    of a segment's traffic and a 20% reference group; the variance of theta_hat over
    20,000 seeded replications is phi theta (1 - theta) / (x + m) within 5%."""
    rng = np.random.default_rng(12)
    windows, n_k, n_r, rate_k, rate_r = 30, 400.0, 100.0, 0.03, 0.02
    c_k = rng.poisson(rate_k * n_k, size=(20_000, windows)).sum(axis=1)
    c_r = rng.poisson(rate_r * n_r, size=(20_000, windows))
    x, m = c_k.astype(float), (c_r * n_k / n_r).sum(axis=1)
    theta = rate_k / (rate_k + rate_r)
    phi = dispersion_factors(
        np.array([theta]), np.array([1 - theta]), np.array([windows * n_k]),
        np.array([windows * n_k**2 / n_r]),
    )[0]  # fmt: skip
    assert phi == pytest.approx(0.4 + 0.6 * 4.0)
    binomial = theta * (1 - theta) / ((rate_k + rate_r) * windows * n_k)
    assert np.var(x / (x + m)) / binomial == pytest.approx(phi, rel=0.05)


def test_dispersion_factors_refuse_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="one shape") as raised:
        dispersion_factors([1.0], [1.0], [1.0, 2.0], [1.0])
    assert raised.value.parameter == "ratio_moments"
    with pytest.raises(InvalidParameterError, match="exposures must be finite") as raised:
        dispersion_factors([1.0], [1.0], [-1.0], [1.0])
    assert raised.value.parameter == "exposures"


def test_ratio_moment_increments_exact_values() -> None:
    """n_k^2 / n_r per arm, the reference of each row broadcast over its arms."""
    got = ratio_moment_increments([[40.0, 0.0, 10.0], [3.0, 6.0, 9.0]], [20.0, 3.0])
    np.testing.assert_array_equal(got, [[80.0, 0.0, 5.0], [3.0, 12.0, 27.0]])
    with pytest.raises(InvalidParameterError, match="> 0") as raised:
        ratio_moment_increments([[1.0]], [0.0])
    assert raised.value.parameter == "reference_exposures"
