"""Regret bounds for Bernoulli bandits: the Lai-Robbins lower bound and the UCB1 upper bound.

Notation: arm means ``p_1 .. p_K``, best mean ``p* = max p_k``, gaps ``Delta_k = p* - p_k``.
Regret is the pseudo-regret ``R(T) = sum_t Delta_{A_t}``, whose expectation both bounds are
about.

- Lai & Robbins (1985), Theorem 2: every uniformly good policy has
  ``liminf_T E[R(T)] / ln T >= C = sum_{k: Delta_k > 0} Delta_k / KL(p_k, p*)``, with
  ``KL`` the Kullback-Leibler divergence between Bernoulli distributions. It is an
  *asymptotic* statement: at a finite ``T``, ``C ln T`` is a reference line, not a floor.
- Auer, Cesa-Bianchi & Fischer (2002), Theorem 1: for UCB1 (index
  ``mean_k + sqrt(2 ln n / n_k)``, every arm played once first) and every ``n > K``,
  ``E[R(n)] <= 8 sum_{k: Delta_k > 0} ln n / Delta_k + (1 + pi^2 / 3) sum_k Delta_k``.

Invalid means raise :class:`bandit.errors.InvalidParameterError`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]


def check_means(means: npt.ArrayLike) -> FloatArray:
    """Return ``means`` as a 1-d float array after checking that they are probabilities."""
    p = np.asarray(means, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise InvalidParameterError(
            f"arm means must be a non-empty 1-d sequence; got shape {p.shape}", parameter="means"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0.0) or np.any(p > 1.0):
        raise InvalidParameterError(
            f"arm means must be probabilities in [0, 1]; got {p.tolist()}", parameter="means"
        )
    return p


def gaps(means: npt.ArrayLike) -> FloatArray:
    """``Delta_k = p* - p_k`` for every arm (zero for every optimal arm)."""
    p = check_means(means)
    result: FloatArray = p.max() - p
    return result


def bernoulli_kl(p: npt.ArrayLike, q: npt.ArrayLike) -> FloatArray:
    """``KL(Ber(p) || Ber(q)) = p ln(p/q) + (1-p) ln((1-p)/(1-q))``, elementwise.

    Uses ``0 ln 0 = 0``; the divergence is ``+inf`` where ``q`` puts zero mass on an outcome
    that ``p`` can produce (``q = 0 < p`` or ``q = 1 > p``).
    """
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    for name, values in (("p", p_arr), ("q", q_arr)):
        if np.any((values < 0) | (values > 1) | np.isnan(values)):
            raise InvalidParameterError(
                "bernoulli_kl needs probabilities in [0, 1]", parameter=name
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        # xlogy-style terms: zero when the leading factor is zero, whatever the ratio.
        success_term = np.where(p_arr > 0, p_arr * np.log(p_arr / q_arr), 0.0)
        failure_term = np.where(p_arr < 1, (1 - p_arr) * np.log((1 - p_arr) / (1 - q_arr)), 0.0)
    # For p close to q the two terms cancel to first order and rounding can leave a value
    # below the true one, even negative (p = 0.01 + 1e-18, q = 0.01 gave -1e-18). Pinsker's
    # inequality KL >= 2 (p - q)^2 holds exactly, so flooring at it only removes rounding
    # error and keeps Delta / KL finite and positive in the Lai-Robbins constant.
    result: FloatArray = np.maximum(success_term + failure_term, 2.0 * (p_arr - q_arr) ** 2)
    return result


def lai_robbins_constant(means: npt.ArrayLike) -> float:
    """``C = sum_{k: Delta_k > 0} Delta_k / KL(p_k, p*)`` (Lai & Robbins 1985).

    When ``p* = 1`` every suboptimal arm has ``KL = inf`` (one failure rules it out), so its
    term is 0; an instance whose arms are all optimal has ``C = 0``.
    """
    p = check_means(means)
    delta = p.max() - p
    suboptimal = delta > 0
    if not np.any(suboptimal):
        return 0.0
    kl = bernoulli_kl(p[suboptimal], np.full(int(suboptimal.sum()), p.max()))
    return float(np.sum(delta[suboptimal] / kl))


def lai_robbins_bound(means: npt.ArrayLike, t: npt.ArrayLike) -> FloatArray:
    """The asymptotic lower bound ``C ln t`` at every ``t`` (``t >= 1``)."""
    t_arr = _check_times(t)
    result: FloatArray = lai_robbins_constant(means) * np.log(t_arr)
    return result


def ucb1_upper_bound(means: npt.ArrayLike, t: npt.ArrayLike) -> FloatArray:
    """Auer et al. (2002) Theorem 1 for UCB1:
    ``8 sum_{k: Delta_k > 0} ln t / Delta_k + (1 + pi^2/3) sum_k Delta_k``.

    The theorem is stated for ``t > K``; below that the formula is still returned (it is then
    a loose but harmless line on a plot). It applies to UCB1 with its original exploration
    term ``sqrt(2 ln t / n_k)`` (``bandit.policies.UCB1(alpha=2)``).
    """
    p = check_means(means)
    t_arr = _check_times(t)
    delta = p.max() - p
    suboptimal = delta > 0
    log_coefficient = 8.0 * float(np.sum(1.0 / delta[suboptimal]))
    constant = (1.0 + math.pi**2 / 3.0) * float(np.sum(delta))
    result: FloatArray = log_coefficient * np.log(t_arr) + constant
    return result


def _check_times(t: npt.ArrayLike) -> FloatArray:
    t_arr = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(t_arr)) or np.any(t_arr < 1):
        raise InvalidParameterError("times must be finite and >= 1", parameter="times")
    return t_arr
