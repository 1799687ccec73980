"""Posterior summaries of Beta arms: mean, credible interval, P(best), P(beats reference), lift.

Under the reference-ratio update ``theta_k = lambda_k / (lambda_k + lambda_r)``, so the arm
beats the reference exactly when ``theta_k > 1/2`` and its rate ratio to the reference is
``theta_k / (1 - theta_k)``.  Both follow from the Beta posterior in closed form; only the
probability of being the best arm needs Monte Carlo, which costs draws x arms Beta samples:
:func:`prob_best` draws them in chunks (bounded memory) and :func:`bounded_draws` lets a
caller cap their number (bounded time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]
# Samples drawn at once by prob_best: 8 MB of float64 (16 MB at the peak of a draw),
# whatever draws x arms.
PROB_BEST_CHUNK_SAMPLES = 1_000_000


@dataclass(frozen=True)
class PosteriorSummary:
    """Per-arm summaries, each an array with one entry per arm."""

    means: FloatArray
    ci_lows: FloatArray
    ci_highs: FloatArray
    prob_best: FloatArray
    prob_beat_reference: FloatArray
    lift_medians: FloatArray
    lift_ci_lows: FloatArray
    lift_ci_highs: FloatArray
    draws: int
    seed: int | None


def _check(alphas: FloatArray, betas: FloatArray) -> None:
    if alphas.shape != betas.shape or alphas.ndim != 1:
        raise InvalidParameterError(
            f"alphas and betas must be 1-d arrays of the same length; got {alphas.shape}, "
            f"{betas.shape}",
            parameter="alphas" if alphas.ndim != 1 else "betas",
        )
    for name, values in (("alphas", alphas), ("betas", betas)):
        if np.any(~np.isfinite(values)):
            raise InvalidParameterError("alphas and betas must be finite", parameter=name)
    for name, values in (("alphas", alphas), ("betas", betas)):
        if np.any(values <= 0):
            raise InvalidParameterError("alphas and betas must be > 0", parameter=name)


def credible_intervals(
    alphas: npt.ArrayLike, betas: npt.ArrayLike, level: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed credible interval of each Beta posterior; ``level`` in [0, 1]."""
    from scipy import stats

    if not (0.0 <= level <= 1.0):
        raise InvalidParameterError(f"level must be in [0, 1], got {level!r}", parameter="level")
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    return stats.beta.ppf(tail, a, b), stats.beta.ppf(1.0 - tail, a, b)


def prob_best(
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    rng: np.random.Generator,
    draws: int = 10_000,
    *,
    chunk_samples: int = PROB_BEST_CHUNK_SAMPLES,
) -> FloatArray:
    """Monte Carlo probability that each arm has the largest theta; sums to one.

    The draws x arms samples are drawn a block of rows at a time (about ``chunk_samples``
    samples each), so memory does not grow with ``draws``. The rows come from ``rng`` in
    the same order as in one block, so the estimate does not depend on the chunk size.
    """
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    if a.size == 0:
        return np.zeros(0)
    rows = max(1, chunk_samples // a.size)
    wins = np.zeros(a.size, dtype=np.int64)
    for start in range(0, draws, rows):
        samples = rng.beta(a, b, size=(min(rows, draws - start), a.size))
        wins += np.bincount(np.argmax(samples, axis=1), minlength=a.size)
    result: FloatArray = wins / draws
    return result


def bounded_draws(requested: int, arms: int, max_samples: int) -> int:
    """The draws to make for ``arms`` arms: ``requested``, cut down (to at least one) so that
    draws x arms stays within ``max_samples``."""
    if arms <= 0:
        return requested
    return max(1, min(requested, max_samples // arms))


def rate_ratio_lift(theta: npt.ArrayLike) -> FloatArray:
    """Lift over the reference implied by ``theta``: ``theta / (1 - theta) - 1``."""
    t = np.asarray(theta, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(t < 1.0, t / (1.0 - t) - 1.0, np.inf)


def lift_medians(alphas: npt.ArrayLike, betas: npt.ArrayLike) -> FloatArray:
    """Each Beta posterior's lift over the reference at its median (exact: the lift is
    monotone in ``theta``), of any shape; ``inf`` where the median is 1."""
    from scipy import stats

    return rate_ratio_lift(stats.beta.ppf(0.5, alphas, betas))


def prob_beat_reference(alphas: npt.ArrayLike, betas: npt.ArrayLike) -> FloatArray:
    """``P(theta > 1/2)`` of each Beta posterior: the arm earns more per exposure than the
    reference (exact)."""
    from scipy import stats

    result: FloatArray = stats.beta.sf(0.5, alphas, betas)
    return result


def summarize(
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    rng: np.random.Generator,
    *,
    draws: int = 10_000,
    seed: int | None = None,
    contenders: npt.ArrayLike | None = None,
) -> PosteriorSummary:
    """Summaries of every arm's Beta posterior.

    ``prob_beat_reference`` is ``P(theta > 1/2)``, exact; the lift interval maps the theta
    quantiles through the monotone ``theta / (1 - theta) - 1``, so it is exact too.  ``seed``
    is only recorded, so that callers can report which generator produced ``prob_best``.
    ``contenders`` (a mask, default all) says which arms compete for ``prob_best``; the
    others get 0 and cost no draw.
    """
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    _check(a, b)
    if draws < 1:
        raise InvalidParameterError(f"draws must be >= 1, got {draws}", parameter="draws")
    competing = np.ones(a.shape, dtype=bool) if contenders is None else np.asarray(contenders)
    if competing.shape != a.shape or competing.dtype != np.bool_:
        raise InvalidParameterError(
            f"contenders must be a boolean mask of {a.size} arms", parameter="contenders"
        )
    best = np.zeros(a.shape)
    best[competing] = prob_best(a[competing], b[competing], rng, draws)
    lows, highs = credible_intervals(a, b)
    return PosteriorSummary(
        means=a / (a + b),
        ci_lows=lows,
        ci_highs=highs,
        prob_best=best,
        prob_beat_reference=prob_beat_reference(a, b),
        lift_medians=lift_medians(a, b),
        lift_ci_lows=rate_ratio_lift(lows),
        lift_ci_highs=rate_ratio_lift(highs),
        draws=draws,
        seed=seed,
    )


# Below this many pseudo-counts (the smaller of alpha and beta) lift_bands computes exact
# Beta quantiles; above it, the normal approximation of the log-odds is within 1% of them
# on the odds scale (tests/bandit/test_summaries.py checks 50 <= alpha, beta <= 1e6).
EXACT_LIFT_BELOW = 50.0
_Z95 = 1.959963984540054


def lift_bands(
    alphas: npt.ArrayLike, betas: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Lift median and 95% band of many Beta posteriors at once, cheaply: what a chart of
    thousands of (tick, arm) points needs, where exact quantiles (``summarize``) cost about
    1.5 us each.

    The log-odds ``log(theta / (1 - theta))`` of ``Beta(a, b)`` has mean
    ``digamma(a) - digamma(b)`` and variance ``trigamma(a) + trigamma(b)`` exactly, and is
    close to normal once a and b are not small; the lift is ``odds - 1``. Posteriors with
    ``min(a, b) < EXACT_LIFT_BELOW`` get exact quantiles.
    """
    from scipy import special, stats

    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    _check(a, b)
    mean = special.digamma(a) - special.digamma(b)
    spread = _Z95 * np.sqrt(special.polygamma(1, a) + special.polygamma(1, b))
    odds = np.exp(np.stack([mean, mean - spread, mean + spread]))
    small = np.minimum(a, b) < EXACT_LIFT_BELOW
    if small.any():
        quantiles = stats.beta.ppf(
            np.array([[0.5], [0.025], [0.975]]), a[small][None, :], b[small][None, :]
        )
        odds[:, small] = quantiles / (1.0 - quantiles)
    lifts = odds - 1.0
    return lifts[0], lifts[1], lifts[2]
