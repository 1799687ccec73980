"""The probability that each arm comes out first (second, ...) of independent Beta draws.

Thompson sampling draws ``theta_k ~ Beta(a_k, b_k)`` and serves ``argmax theta``, so the
probability that a request is served arm ``k`` is ``P(theta_k is the largest)``; a ranked
list of ``L`` slots (the Open Bandit Dataset's three positions) serves arm ``k`` in slot
``r`` with ``P(theta_k is the (r+1)-th largest)``. These are the propensities that
off-policy estimators divide by (bandit.offpolicy).

Computed by numerical integration, not simulation::

    P(theta_k has rank r) = integral of P(exactly r of the other arms exceed x) dF_k(x)

The inner probability is a Poisson-binomial term over the other arms' survival functions
``1 - F_j(x)``, truncated to the ranks asked for, built by a prefix and a suffix recursion
over the arms (so that "the other arms" never needs a division by ``F_k``, which would be
unstable in ``F_k``'s lower tail). The integral is a trapezoid rule in ``F_k`` on one grid
shared by every arm: ``points_per_arm`` quantiles of every arm's Beta (its mass is where its
quantiles are) plus far tails, so a sharp posterior (Beta(1000, 200000)) is resolved as well
as a flat one. The rule is of second order in the grid spacing; the error stated with the
result is the largest change of any probability between the grid and a grid of half the
points per arm, an over-estimate of the error of the finer one.

Pure: arrays in, arrays out, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]

# Quantiles per arm: at least this many, and more when there are few arms, so that the shared
# grid has at least GRID_POINTS points (accuracy depends on the grid's total density).
MIN_POINTS_PER_ARM = 64
GRID_POINTS = 4096
# Far-tail quantiles added to the grid of every arm: the integrand is negligible beyond them.
_TAILS = np.array([1e-15, 1e-12, 1e-9, 1e-6, 1e-4, 1 - 1e-4, 1 - 1e-6, 1 - 1e-9, 1 - 1e-12])


@dataclass(frozen=True)
class RankProbabilities:
    """``probabilities[k, r]``: the probability that arm ``k`` has rank ``r`` (0 is the
    largest draw); ``error``: a bound on the integration error of any entry (module doc)."""

    probabilities: FloatArray
    error: float

    @property
    def first(self) -> FloatArray:
        """P(arm k is the argmax): the arm a single Thompson draw serves."""
        first: FloatArray = self.probabilities[:, 0]
        return first


def _validated(alphas: npt.ArrayLike, betas: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise InvalidParameterError(
            f"alphas and betas must have the same shape (K,) with K >= 1; got {a.shape} and "
            f"{b.shape}",
            parameter="betas" if a.ndim == 1 and a.size else "alphas",
        )
    for label, values in (("alphas", a), ("betas", b)):
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise InvalidParameterError(
                f"{label} must be finite numbers > 0; got {values.tolist()!r}", parameter=label
            )
    return a, b


def _grid(a: FloatArray, b: FloatArray, points_per_arm: int) -> FloatArray:
    levels = np.concatenate([(np.arange(points_per_arm) + 0.5) / points_per_arm, _TAILS])
    quantiles = special.betaincinv(a[:, None], b[:, None], levels[None, :])
    grid: FloatArray = np.unique(np.concatenate([[0.0, 1.0], quantiles.ravel()]))
    return grid


def _exceeding_counts(cdf: FloatArray, ranks: int) -> FloatArray:
    """``out[k, m, g]``: P(exactly m of the arms other than k exceed grid point g), m < ranks.

    ``prefix[k]`` counts over arms ``< k``, ``suffix[k]`` over arms ``> k``; their
    convolution, truncated at ``ranks``, leaves arm ``k`` out.
    """
    arms, points = cdf.shape
    survival = 1.0 - cdf
    prefix = np.zeros((arms + 1, ranks, points))
    suffix = np.zeros((arms + 1, ranks, points))
    prefix[0, 0] = suffix[arms, 0] = 1.0
    for k in range(arms):
        prefix[k + 1] = prefix[k] * cdf[k]
        prefix[k + 1, 1:] += prefix[k, :-1] * survival[k]
        j = arms - 1 - k
        suffix[j] = suffix[j + 1] * cdf[j]
        suffix[j, 1:] += suffix[j + 1, :-1] * survival[j]
    out = np.zeros((arms, ranks, points))
    for m in range(ranks):
        for low in range(m + 1):
            out[:, m] += prefix[:arms, low] * suffix[1:, m - low]
    return out


def _integrate(a: FloatArray, b: FloatArray, ranks: int, points_per_arm: int) -> FloatArray:
    grid = _grid(a, b, points_per_arm)
    cdf = special.betainc(a[:, None], b[:, None], grid[None, :])
    inner = _exceeding_counts(cdf, ranks)
    steps = np.diff(cdf, axis=1)[:, None, :]
    probabilities: FloatArray = np.sum(steps * (inner[:, :, 1:] + inner[:, :, :-1]) / 2, axis=2)
    return probabilities


def beta_rank_probabilities(
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    *,
    ranks: int = 1,
    points_per_arm: int | None = None,
) -> RankProbabilities:
    """P(draw ``k`` of independent ``Beta(alphas[k], betas[k])`` has rank ``r``), for the
    ``ranks`` largest ranks (``ranks=1``: the argmax probabilities Thompson sampling serves).

    Ties have probability zero for continuous draws. A single arm is served with certainty.
    ``points_per_arm`` defaults to ``max(MIN_POINTS_PER_ARM, GRID_POINTS // K)``.
    """
    a, b = _validated(alphas, betas)
    if points_per_arm is None:
        points_per_arm = max(MIN_POINTS_PER_ARM, GRID_POINTS // a.size)
    if not (isinstance(ranks, int) and 1 <= ranks <= a.size):
        raise InvalidParameterError(
            f"ranks must be an integer in [1, {a.size}] (the number of arms); got {ranks!r}",
            parameter="ranks",
        )
    if not (isinstance(points_per_arm, int) and points_per_arm >= 8):
        raise InvalidParameterError(
            f"points_per_arm must be an integer >= 8; got {points_per_arm!r}",
            parameter="points_per_arm",
        )
    if a.size == 1:
        return RankProbabilities(np.ones((1, 1)), 0.0)
    fine = _integrate(a, b, ranks, points_per_arm)
    coarse = _integrate(a, b, ranks, points_per_arm // 2)
    error = float(np.max(np.abs(fine - coarse)))
    return RankProbabilities(np.clip(fine, 0.0, 1.0), error)
