"""The probability that each arm comes out first (second, ...) of independent Beta draws.

Thompson sampling draws ``theta_k ~ Beta(a_k, b_k)`` and serves ``argmax theta``, so the
probability that a request is served arm ``k`` is ``P(theta_k is the largest)``; a ranked
list of ``L`` slots (the Open Bandit Dataset's three positions) serves arm ``k`` in slot
``r`` with ``P(theta_k is the (r+1)-th largest)``. These are the propensities that
off-policy estimators divide by (bandit.offpolicy).

Computed by numerical integration, not simulation::

    P(theta_k has rank r) = integral of f_k(x) P(exactly r of the other arms exceed x) dx

The inner probability is a Poisson-binomial term over the other arms' survival functions
``1 - F_j(x)``, truncated to the ranks asked for, built by a prefix and a suffix recursion
over the arms (so that "the other arms" never needs a division by ``F_k``, which would be
unstable in ``F_k``'s lower tail). The integral is a Gauss-Legendre rule on each interval of
one partition shared by every arm: every arm's Beta quantiles at ``levels`` evenly spaced
levels and in the far tails. Each arm's mass is spread over its own quantiles, so a sharp
posterior (Beta(1000, 200000)) is resolved as well as a flat one, and within an interval
every density and distribution function is smooth. The error stated with the result is the
largest difference of any probability between the rule with ``FINE_NODES`` and with
``COARSE_NODES`` nodes per interval: a bound on the error of the coarse rule, far above the
fine one's, which is returned.

Pure: arrays in, arrays out, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# Quantile levels per arm: at least 32, and more with few arms (the partition's density is
# what the accuracy depends on, and few arms make it cheap): max(32, 384 // K).
MIN_LEVELS = 32
LEVELS_BUDGET = 384
FINE_NODES = 6
# Partition points at most (_partition), and the probability below which a tail is ignored
# (_contenders; added to the stated error once per arm).
MAX_POINTS = 512
NEGLIGIBLE = 1e-15
COARSE_NODES = 3
# Far-tail quantiles added to every arm's levels: the integrand is negligible beyond them.
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


def _partition(
    a: FloatArray, b: FloatArray, levels: int, floor: float = 0.0, max_points: int | None = None
) -> FloatArray:
    """``floor``, 1 and every arm's Beta quantiles above ``floor`` at ``levels`` evenly spaced
    levels and in the tails; at most ``max_points`` of them (evenly spaced in rank: many
    overlapping arms do not need every one of their quantiles, and the error stated with the
    result says how well the thinner partition did)."""
    from scipy import special  # imported when used: serving needs none of scipy

    at = np.concatenate([(np.arange(levels) + 0.5) / levels, _TAILS])
    quantiles = special.betaincinv(a[:, None], b[:, None], at[None, :]).ravel()
    points: FloatArray = np.unique(np.concatenate([[floor, 1.0], quantiles[quantiles > floor]]))
    if max_points is not None and points.size > max_points:
        ranks = np.linspace(0, points.size - 1, max_points).round().astype(int)
        points = points[np.unique(ranks)]
    return points


def _exceeding_counts(cdf: FloatArray, ranks: int) -> FloatArray:
    """``out[k, m, g]``: P(exactly m of the arms other than k exceed grid point g), m < ranks.

    ``prefix[k]`` counts over arms ``< k``, ``suffix[k]`` over arms ``> k``; their
    convolution, truncated at ``ranks``, leaves arm ``k`` out. For ``ranks == 1`` (the
    argmax) both are running products of the CDFs, taken by ``np.cumprod`` in the same
    order of multiplications as the loop (the same floating-point result, without a
    Python step per arm).
    """
    arms, points = cdf.shape
    if ranks == 1:
        prefix1 = np.ones((arms + 1, points))
        suffix1 = np.ones((arms + 1, points))
        np.cumprod(cdf, axis=0, out=prefix1[1:])
        np.cumprod(cdf[::-1], axis=0, out=suffix1[-2::-1])
        first: FloatArray = (prefix1[:arms] * suffix1[1:])[:, None, :]
        return first
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


def _integrate(
    a: FloatArray, b: FloatArray, ranks: int, partition: FloatArray, nodes: int
) -> FloatArray:
    from scipy import special

    unit_nodes, unit_weights = np.polynomial.legendre.leggauss(nodes)
    half = np.diff(partition) / 2
    middle = partition[:-1] + half
    x = (middle[:, None] + half[:, None] * unit_nodes[None, :]).ravel()
    weights = (half[:, None] * unit_weights[None, :]).ravel()
    cdf = special.betainc(a[:, None], b[:, None], x[None, :])
    log_pdf = (
        special.xlogy(a[:, None] - 1, x[None, :])
        + special.xlog1py(b[:, None] - 1, -x[None, :])
        - special.betaln(a, b)[:, None]
    )
    inner = _exceeding_counts(cdf, ranks)
    probabilities: FloatArray = np.sum(
        (weights[None, :] * np.exp(log_pdf))[:, None, :] * inner, axis=2
    )
    return probabilities


def beta_rank_probabilities(
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    *,
    ranks: int = 1,
    levels: int | None = None,
) -> RankProbabilities:
    """P(draw ``k`` of independent ``Beta(alphas[k], betas[k])`` has rank ``r``), for the
    ``ranks`` largest ranks (``ranks=1``: the argmax probabilities Thompson sampling serves).

    Ties have probability zero for continuous draws. A single arm is served with certainty.
    ``levels``: quantile levels per arm in the partition (module doc); by default
    ``max(MIN_LEVELS, LEVELS_BUDGET // K)``, and then at most ``MAX_POINTS`` points in all
    (with hundreds of arms: 0.1-0.4 s for 250 arms instead of 10 s; measured differences
    to a partition four times finer below 3e-7 for 20 to 250 arms, up to 1e-4 for 500
    sharply separated ones).
    """
    a, b = _validated(alphas, betas)
    max_points = MAX_POINTS if levels is None else None  # levels asked for are all kept
    if levels is None:
        levels = max(MIN_LEVELS, LEVELS_BUDGET // a.size)
    if not (isinstance(ranks, int) and 1 <= ranks <= a.size):
        raise InvalidParameterError(
            f"ranks must be an integer in [1, {a.size}] (the number of arms); got {ranks!r}",
            parameter="ranks",
        )
    if not (isinstance(levels, int) and levels >= 4):
        raise InvalidParameterError(
            f"levels must be an integer >= 4; got {levels!r}", parameter="levels"
        )
    if a.size == 1:
        return RankProbabilities(np.ones((1, 1)), 0.0)
    keep, floor = _contenders(a, b, ranks)
    a_kept, b_kept = a[keep], b[keep]
    partition = _partition(a_kept, b_kept, levels, floor, max_points)
    fine = _integrate(a_kept, b_kept, ranks, partition, FINE_NODES)
    coarse = _integrate(a_kept, b_kept, ranks, partition, COARSE_NODES)
    error = float(np.max(np.abs(fine - coarse))) + NEGLIGIBLE * a.size
    probabilities = np.zeros((a.size, ranks))
    probabilities[keep] = np.clip(fine, 0.0, 1.0)
    return RankProbabilities(probabilities, error)


def _contenders(a: FloatArray, b: FloatArray, ranks: int) -> tuple[IntArray, float]:
    """The arms that can take one of the ``ranks`` first ranks, and where the integral starts.

    Below ``floor``, the ``ranks + 1``-th largest of the arms' ``NEGLIGIBLE`` quantiles, at
    least ``ranks`` other arms exceed any point but with probability ``ranks * NEGLIGIBLE``:
    no arm takes a first rank there. An arm whose ``1 - NEGLIGIBLE`` quantile is below
    ``floor`` is then (but with that probability) beaten by ``ranks + 1`` arms: its
    probabilities are 0, and it leaves the others' integrals (its CDF is 1 above ``floor``).
    With sharp posteriors few arms remain; this and the capped partition keep the cost of
    hundreds of arms to a fraction of a second (benchmarks/propensities.py)."""
    if a.size <= ranks:
        return np.arange(a.size), 0.0
    from scipy import special

    lower = special.betaincinv(a, b, NEGLIGIBLE)
    upper = special.betaincinv(a, b, 1.0 - NEGLIGIBLE)
    floor = float(np.sort(lower)[-(ranks + 1)])
    keep: IntArray = np.flatnonzero(upper >= floor)
    return keep, floor


# -- many posteriors at once: the argmax only ----------------------------------------------
# beta_rank_probabilities integrates one posterior at a time with exact distribution
# functions (SciPy's betainc at every node: tens of milliseconds for 10-20 arms), which is
# what a segmented sticky experiment cannot afford for each of its hundreds of segments at
# every version. argmax_probabilities below integrates many rows in one vectorised pass and
# evaluates only densities: each distribution function is the running integral of its
# density on the same nodes.

# Each arm's partition points on the logit scale: the logit of a Beta has mean
# digamma(a) - digamma(b) and variance trigamma(a) + trigamma(b); points at these z, and
# the ends +-LOGIT_END (beyond which the mass is below exp(-a LOGIT_END) / a).
_Z_HALF = [0.25, 0.8, 1.4, 2.0, 2.75, 3.75, 5.0, 6.5, 9.0, 15.0, 25.0, 40.0]
_Z_LEVELS = np.array([-z for z in reversed(_Z_HALF)] + _Z_HALF)
LOGIT_END = 700.0
ARGMAX_NODES = 4  # Gauss-Legendre nodes per interval
ARGMAX_MAX_POINTS = 96  # partition points per row at most (thinned evenly in rank)
_CHUNK_ELEMENTS = 1_000_000  # rows per pass: at most about this many (row, arm, node) values


def _running_integral_matrix(nodes: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gauss-Legendre nodes ``t`` and weights on [-1, 1], and ``A[m, l]``: the integral from
    -1 to ``t[m]`` of the Lagrange basis polynomial of node ``l`` (so that
    ``sum_l A[m, l] f(t_l)`` is the running integral of the interpolant of ``f`` at ``t_m``)."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    running = np.empty((nodes, nodes))
    for node in range(nodes):
        others = np.delete(t, node)
        basis = np.polynomial.Polynomial.fromroots(others) / np.prod(t[node] - others)
        running[:, node] = basis.integ(lbnd=-1.0)(t)
    return t, w, running


def argmax_probabilities(alphas: npt.ArrayLike, betas: npt.ArrayLike) -> FloatArray:
    """P(draw ``k`` is the largest) of independent ``Beta(alphas[s, k], betas[s, k])``, for
    every row ``s`` of shape ``(S, K)`` arrays at once: what one Thompson draw serves from
    each of ``S`` posteriors (a segmented experiment's segments).

    The integral of :func:`beta_rank_probabilities` with ``ranks=1``,
    ``P_k = integral of f_k(x) prod_{j != k} F_j(x) dx``, taken on the logit scale
    ``y = log(x / (1 - x))``, where every density ``g_j(y) = x^a_j (1 - x)^b_j / B(a_j, b_j)``
    is smooth (no singularity at 0 or 1 when a parameter is below 1). Each row's partition
    is ``+-LOGIT_END`` and every arm's logit-normal points at ``_Z_LEVELS`` (at most
    ``ARGMAX_MAX_POINTS``, thinned evenly in rank), ``ARGMAX_NODES`` Gauss-Legendre nodes per
    interval. Each ``F_j`` is the running integral of ``g_j``: the intervals before the
    node's, plus the integral of the density's interpolant over its own interval up to the
    node, divided by the rule's total (its estimate of 1). Only densities are evaluated
    (no incomplete Beta function), which makes a row of 20 arms cost about a millisecond
    instead of tens. Each row is normalised to sum to 1; tests/bandit/test_propensities.py
    bounds the error against SciPy's adaptive quadrature."""
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] == 0:
        raise InvalidParameterError(
            f"alphas and betas must have the same shape (S, K) with K >= 1; got {a.shape} and "
            f"{b.shape}",
            parameter="betas" if a.ndim == 2 and a.shape[1] else "alphas",
        )
    for label, values in (("alphas", a), ("betas", b)):
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise InvalidParameterError(f"{label} must be finite numbers > 0", parameter=label)
    rows, arms = a.shape
    out = np.empty((rows, arms))
    points = min(arms * _Z_LEVELS.size + 2, ARGMAX_MAX_POINTS)
    step = max(1, _CHUNK_ELEMENTS // (arms * (points - 1) * ARGMAX_NODES))
    for start in range(0, rows, step):
        out[start : start + step] = _argmax_rows(a[start : start + step], b[start : start + step])
    return out


# An arm can win only where the leader can lose: an arm whose point at +CONTENDER_Z lies
# below every point at -CONTENDER_Z of the arm highest there is left out of the partition
# (its points would take the resolution the contenders need) and of the product (its
# distribution function is 1 where any contender can win; its own probability is 0).
CONTENDER_Z = 12.0


def _logit_partitions(a: FloatArray, b: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Shape ``(S, P)``: each row's sorted partition of the logit scale (see above), from
    its contenders' points; and the ``(S, K)`` mask of the contenders."""
    from scipy import special

    centre = special.digamma(a) - special.digamma(b)
    spread = np.sqrt(special.polygamma(1, a) + special.polygamma(1, b))
    floor = np.max(centre - CONTENDER_Z * spread, axis=1, keepdims=True)
    contenders: BoolArray = centre + CONTENDER_Z * spread >= floor
    points = centre[:, :, None] + spread[:, :, None] * _Z_LEVELS[None, None, :]
    # The others' points go to the upper end, past every real point after the sort.
    points = np.where(contenders[:, :, None], points, LOGIT_END)
    points = np.clip(points.reshape(a.shape[0], -1), -LOGIT_END, LOGIT_END)
    ends = np.tile([-LOGIT_END, LOGIT_END], (a.shape[0], 1))
    partition: FloatArray = np.sort(np.concatenate([ends, points], axis=1), axis=1)
    real = contenders.sum(axis=1) * _Z_LEVELS.size + 2  # each row's own points and ends
    width = min(int(real.max()), ARGMAX_MAX_POINTS)
    # Evenly in rank over each row's own points (a row with fewer repeats some: intervals
    # of width 0 add nothing); the ends are kept.
    ranks = np.rint(np.linspace(0.0, 1.0, width)[None, :] * (real[:, None] - 1)).astype(int)
    return np.take_along_axis(partition, ranks, axis=1), contenders


def _argmax_rows(a: FloatArray, b: FloatArray) -> FloatArray:
    from scipy import special

    t, w, running = _running_integral_matrix(ARGMAX_NODES)
    nodes = t.size
    partition, contenders = _logit_partitions(a, b)
    half = np.diff(partition, axis=1) / 2  # (S, I)
    # Node first, (n, S, K, I), so that the sums over nodes are plain matrix products.
    y = (partition[:, :-1] + half)[None] + half[None] * t[:, None, None]  # (n, S, I)
    log_x, log_1mx = -np.logaddexp(0.0, -y), -np.logaddexp(0.0, y)
    # Logit-scale densities times the interval's half width (dy = half dt).
    log_g = (
        a[None, :, :, None] * log_x[:, :, None]
        + b[None, :, :, None] * log_1mx[:, :, None]
        - special.betaln(a, b)[None, :, :, None]
    )
    g = np.exp(log_g)
    g *= half[None, :, None, :]
    flat = g.reshape(nodes, -1)
    totals = (w @ flat).reshape(g.shape[1:])  # (S, K, I): each interval's integral
    mass = totals.sum(axis=2, keepdims=True)
    before = np.cumsum(totals, axis=2) - totals
    cdf = (running @ flat).reshape(g.shape)
    cdf += before
    left_out = ~contenders[None, :, :, None]
    # A left-out arm's density may be nowhere on the partition (mass 0): it is replaced.
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf /= mass
        g /= mass
    cdf = np.where(left_out, 1.0, np.clip(cdf, 0.0, 1.0))
    g = np.where(left_out, 0.0, g)
    g *= _others_product(cdf)
    probabilities: FloatArray = (w @ g.reshape(nodes, -1)).reshape(totals.shape).sum(axis=2)
    normalised: FloatArray = probabilities / probabilities.sum(axis=1, keepdims=True)
    return normalised


def _others_product(cdf: FloatArray) -> FloatArray:
    """``out[:, :, k] = prod_{j != k} cdf[:, :, j]`` over axis 2 (the arms), from a prefix and
    a suffix product (no division, so a distribution function of 0 is no trouble)."""
    out = np.empty_like(cdf)
    running = np.ones_like(cdf[:, :, 0])
    for k in range(cdf.shape[2]):
        out[:, :, k] = running
        running = running * cdf[:, :, k]
    running = np.ones_like(cdf[:, :, 0])
    for k in reversed(range(cdf.shape[2])):
        out[:, :, k] *= running
        running = running * cdf[:, :, k]
    return out
