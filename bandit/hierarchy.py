"""Hierarchical sharing between segments: one Beta-Binomial prior per arm, by empirical Bayes.

An arm served in many segments (categories) has, per segment ``s``, the evidence of the
reference-ratio update (:mod:`bandit.update`)::

    x_s = alpha_s - prior_alpha        m_s = beta_s - prior_beta        n_s = x_s + m_s

(non-negative reals).  The model (Gelman et al., *Bayesian Data Analysis*, 3rd ed., ch. 5.3)
gives every segment its own ``theta_s`` drawn from the arm's population distribution::

    theta_s ~ Beta(mu kappa, (1 - mu) kappa)        x_s | theta_s ~ "Binomial"(n_s, theta_s)

``mu`` is the arm's typical ``theta`` across segments, ``kappa`` how tightly the segments
agree (a prior worth ``kappa`` pseudo-observations).  ``(mu, kappa)`` is estimated per arm
by maximising the marginal likelihood of all segments (the binomial coefficient does not
depend on ``(mu, kappa)`` and is left out)::

    log L(mu, kappa) = sum_s [ log B(x_s + mu kappa, m_s + (1 - mu) kappa)
                               - log B(mu kappa, (1 - mu) kappa) ]

times a weak hyperprior that makes the maximum exist for every data set:

* ``mu ~ Beta(prior_alpha, prior_beta)`` (the experiment's own prior, default uniform), and
  the mode is taken in ``eta = logit(mu)``, which multiplies by the Jacobian
  ``mu (1 - mu)``: without it, an arm with no successes anywhere has its maximum at
  ``mu = 0``;
* ``log kappa`` flat on ``[kappa_min, kappa_max]`` with
  ``kappa_min = prior_alpha + prior_beta`` (the least pooling: each segment keeps a prior
  as weak as the unsegmented one) and ``kappa_max = prior_alpha + prior_beta + N``, ``N``
  the arm's total evidence ``sum_s n_s``.  When segments agree, ``L`` keeps growing as
  ``kappa -> infinity`` (the sample variance is below the binomial one); the cap makes
  full pooling give a new segment the arm's pooled posterior
  ``Beta(prior_alpha + sum x, prior_beta + sum m)`` (about: ``mu`` is the marginal maximum,
  close to the pooled mean), not an infinitely confident one.  When segments are very
  different (each all successes or all failures), ``L`` grows as ``kappa -> 0``; the floor
  keeps every segment's prior proper.  BDA uses the hyperprior
  ``p(alpha, beta) ~ (alpha + beta)^(-5/2)`` for a proper full posterior; a point estimate
  only needs the bounds.

Each segment's shrunk posterior is then ``Beta(mu kappa + x_s, (1 - mu) kappa + m_s)``; a
segment without evidence gets ``Beta(mu kappa, (1 - mu) kappa)``, the arm's pooled
behaviour.  Its posterior mean is ``w_s mu + (1 - w_s) x_s / n_s`` with the pooling weight
``w_s = kappa / (kappa + n_s)`` (:func:`pooling_weights`).

The maximum is found by Newton's method on ``(logit mu, log kappa)`` for all arms at once
(:func:`fit_hierarchy`), with analytic gradients and Hessians (digamma and trigamma),
the Hessian shifted to be negative definite where it is not, step halving until the
objective does not decrease, and ``log kappa`` projected onto its bounds.  The start is the
pooled mean and the best of a few ``kappa`` on a log grid.  docs/segments.md has the
derivation and the references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.update import Prior

FloatArray = npt.NDArray[np.float64]

MAX_ITERATIONS = 100
MAX_HALVINGS = 40
MAX_STEP = 2.0  # in logit / log units: a step never moves mu or kappa by more than e^2
GRID_POINTS = 5
TOLERANCE = 1e-7  # in logit / log units; Newton's next step would be ~1e-14


@dataclass(frozen=True)
class HierarchicalFit:
    """The estimated population prior of each arm and every segment's shrunk posterior.

    Leading shape ``L`` is the input's without its last (segment) axis: ``()`` for one arm,
    ``(arms,)``, or ``(runs, arms)`` in the simulator.

    ``mu``, ``kappa``: shape ``L``; the arm's prior for any segment is
    ``Beta(mu kappa, (1 - mu) kappa)``.
    ``alphas``, ``betas``: shape ``L + (segments,)``, the shrunk posteriors
    ``(mu kappa + x_s, (1 - mu) kappa + m_s)``.
    ``kappa_min``, ``kappa_max``: the bounds of ``kappa`` (shape ``L``); ``kappa`` at
    ``kappa_max`` means the segments are pooled fully, at ``kappa_min`` as little as allowed.
    ``log_objective``: the maximised ``log L + log hyperprior`` (shape ``L``).
    ``iterations``: the Newton iterations taken (the largest over arms).
    """

    mu: FloatArray
    kappa: FloatArray
    alphas: FloatArray
    betas: FloatArray
    kappa_min: FloatArray
    kappa_max: FloatArray
    log_objective: FloatArray
    iterations: int

    @property
    def prior_alphas(self) -> FloatArray:
        """``mu kappa``: the prior a segment without evidence gets (shape ``L``)."""
        result: FloatArray = self.mu * self.kappa
        return result

    @property
    def prior_betas(self) -> FloatArray:
        """``(1 - mu) kappa`` (shape ``L``)."""
        result: FloatArray = (1.0 - self.mu) * self.kappa
        return result


def _evidence(successes: npt.ArrayLike, failures: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(successes, dtype=np.float64)
    m = np.asarray(failures, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InvalidParameterError(
            f"successes must have shape (..., segments) with at least one segment; got {x.shape}",
            parameter="successes",
        )
    if m.shape != x.shape:
        raise InvalidParameterError(
            f"failures must have the shape of successes {x.shape}; got {m.shape}",
            parameter="failures",
        )
    for name, values in (("successes", x), ("failures", m)):
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InvalidParameterError(
                f"{name} must be finite and >= 0 (evidence beyond the prior)", parameter=name
            )
    return x, m


def log_objective(
    successes: npt.ArrayLike,
    failures: npt.ArrayLike,
    mu: npt.ArrayLike,
    kappa: npt.ArrayLike,
    *,
    prior: Prior = Prior(),
) -> FloatArray:
    """``log L(mu, kappa) + prior_alpha log mu + prior_beta log(1 - mu)``: what
    :func:`fit_hierarchy` maximises over ``(logit mu, log kappa)`` within the bounds of
    ``kappa``.  ``mu`` and ``kappa`` broadcast against the leading shape of ``successes``
    (a grid of them against one arm, say)."""
    from scipy import special

    x, m = _evidence(successes, failures)
    mu_ = np.asarray(mu, dtype=np.float64)[..., None]
    kappa_ = np.asarray(kappa, dtype=np.float64)[..., None]
    a, b = mu_ * kappa_, (1.0 - mu_) * kappa_
    likelihood = (special.betaln(x + a, m + b) - special.betaln(a, b)).sum(axis=-1)
    hyperprior = prior.alpha * np.log(mu_[..., 0]) + prior.beta * np.log(1.0 - mu_[..., 0])
    result: FloatArray = likelihood + hyperprior
    return result


def trigamma(values: npt.ArrayLike) -> FloatArray:
    """``psi_1(x)``, the second derivative of ``log Gamma``, for ``x > 0``.

    ``scipy.special.polygamma(1, x)`` goes through the Hurwitz zeta function and costs
    about 30 times ``digamma``; this is the recurrence ``psi_1(x) = psi_1(x + 1) + 1 / x^2``
    up to ``x >= 10`` and then the asymptotic series (Abramowitz & Stegun 6.4.12), whose
    first omitted term is below ``1e-14`` relative there.
    """
    y = np.array(values, dtype=np.float64)
    shifted = np.zeros_like(y)
    small = np.flatnonzero(y < 10.0)
    if small.size:
        # Only the small values are shifted (typically a minority of the segments).
        ys = y[small]
        acc = np.zeros_like(ys)
        for _ in range(10):
            below = ys < 10.0
            acc += np.where(below, 1.0 / (ys * ys), 0.0)
            ys = np.where(below, ys + 1.0, ys)
        shifted[small] = acc
        y[small] = ys
    z = 1.0 / y
    z2 = z * z
    series = z2 * (1.0 / 42 + z2 * (-1.0 / 30 + z2 * (5.0 / 66 + z2 * (-691.0 / 2730))))
    result: FloatArray = shifted + z + z2 * (0.5 + z * (1.0 / 6 + z2 * (-1.0 / 30 + series)))
    return result


@dataclass(frozen=True)
class _Segments:
    """The segments with evidence, flattened: segments without any add exactly nothing to
    the objective and its derivatives, and in a long tail they are most of them."""

    rows: npt.NDArray[np.intp]
    x: FloatArray
    m: FloatArray
    n: FloatArray
    counts: FloatArray  # segments with evidence, per row
    n_rows: int

    @classmethod
    def of(cls, x: FloatArray, m: FloatArray) -> _Segments:
        n = x + m
        rows, columns = np.nonzero(n > 0)
        return cls(
            rows,
            x[rows, columns],
            m[rows, columns],
            n[rows, columns],
            np.bincount(rows, minlength=x.shape[0]).astype(np.float64),
            x.shape[0],
        )

    def per_row(self, values: FloatArray) -> FloatArray:
        sums = np.bincount(self.rows, weights=values, minlength=self.n_rows)
        return sums.astype(np.float64, copy=False)

    def objective(
        self, mu: FloatArray, one_minus_mu: FloatArray, kappa: FloatArray, prior: Prior
    ) -> FloatArray:
        from scipy import special

        a, b = mu * kappa, one_minus_mu * kappa
        rows = self.rows
        per_segment = (
            special.gammaln(self.x + a[rows])
            + special.gammaln(self.m + b[rows])
            - special.gammaln(self.n + kappa[rows])
        )
        constant = special.gammaln(kappa) - special.gammaln(a) - special.gammaln(b)
        total: FloatArray = (
            self.per_row(per_segment)
            + self.counts * constant
            + prior.alpha * np.log(mu)
            + prior.beta * np.log(one_minus_mu)
        )
        return total

    def derivatives(
        self, eta: FloatArray, tau: FloatArray, prior: Prior
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(g_eta, g_tau, H_eta_eta, H_eta_tau, H_tau_tau)`` of the objective in
        ``(eta, tau) = (logit mu, log kappa)``, per row (docs/segments.md)."""
        from scipy import special

        mu, one_minus_mu = special.expit(eta), special.expit(-eta)
        kappa = np.exp(tau)
        a, b = mu * kappa, one_minus_mu * kappa
        rows, counts = self.rows, self.counts
        xa, mb, nk = self.x + a[rows], self.m + b[rows], self.n + kappa[rows]
        d = self.per_row(special.digamma(nk)) - counts * special.digamma(kappa)
        e = self.per_row(trigamma(nk)) - counts * trigamma(kappa)
        grad_a = self.per_row(special.digamma(xa)) - counts * special.digamma(a) - d
        grad_b = self.per_row(special.digamma(mb)) - counts * special.digamma(b) - d
        h_aa = self.per_row(trigamma(xa)) - counts * trigamma(a) - e
        h_bb = self.per_row(trigamma(mb)) - counts * trigamma(b) - e
        h_ab = -e
        v = mu * one_minus_mu
        kv = kappa * v
        diff = grad_a - grad_b
        g_eta = kv * diff + prior.alpha * one_minus_mu - prior.beta * mu
        g_tau = a * grad_a + b * grad_b
        h_ee = kv * kv * (h_aa - 2.0 * h_ab + h_bb) + kv * (one_minus_mu - mu) * diff
        h_ee = h_ee - (prior.alpha + prior.beta) * v
        h_et = kv * diff + kv * (a * h_aa + b * h_ab - a * h_ab - b * h_bb)
        h_tt = g_tau + a * a * h_aa + 2.0 * a * b * h_ab + b * b * h_bb
        return g_eta, g_tau, h_ee, h_et, h_tt


def fit_hierarchy(
    successes: npt.ArrayLike,
    failures: npt.ArrayLike,
    *,
    prior: Prior = Prior(),
    start: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> HierarchicalFit:
    """Estimate each arm's population prior over segments and shrink every segment to it.

    ``successes`` and ``failures`` are the evidence beyond the prior, ``alpha - prior_alpha``
    and ``beta - prior_beta``, of shape ``(..., segments)``: the last axis is the segments of
    one arm, every leading index an independent arm.  Segments without evidence (zeros)
    add nothing to the likelihood and get the arm's prior.  See the module docstring for the
    model, the hyperprior and the bounds of ``kappa``.

    ``start``: ``(mu, kappa)`` of each arm (the leading shape) to start Newton's method
    from instead of the pooled mean and the log grid of ``kappa``: a previous fit of
    evidence that grew since (a tick's refit), which is a few iterations away. ``kappa``
    is moved inside the bounds; the maximum found is the same (tested against the cold
    start).
    """
    from scipy import special

    x, m = _evidence(successes, failures)
    leading = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    m2 = m.reshape(-1, m.shape[-1])
    segments = _Segments.of(x2, m2)
    strength = prior.alpha + prior.beta
    total = x2.sum(axis=-1) + m2.sum(axis=-1)
    tau_low = np.full(total.shape, np.log(strength))
    tau_high = np.log(strength + total)
    eta = special.logit((prior.alpha + x2.sum(axis=-1)) / (strength + total))

    def objective(eta_: FloatArray, tau_: FloatArray) -> FloatArray:
        return segments.objective(special.expit(eta_), special.expit(-eta_), np.exp(tau_), prior)

    if start is None:
        # Start: the pooled mean, and the best kappa of a log grid between the bounds.
        fractions = np.linspace(0.0, 1.0, GRID_POINTS)
        grid = tau_low[:, None] + (tau_high - tau_low)[:, None] * fractions
        scores = np.stack([objective(eta, grid[:, j]) for j in range(GRID_POINTS)], axis=-1)
        tau = grid[np.arange(grid.shape[0]), np.argmax(scores, axis=-1)]
    else:
        mu0 = np.clip(np.asarray(start[0], dtype=np.float64).reshape(-1), 1e-12, 1 - 1e-12)
        kappa0 = np.asarray(start[1], dtype=np.float64).reshape(-1)
        eta = special.logit(mu0)
        tau = np.clip(np.log(np.maximum(kappa0, 1e-300)), tau_low, tau_high)
    value = objective(eta, tau)

    active = np.ones(eta.shape, dtype=bool)
    iterations = 0
    while iterations < MAX_ITERATIONS and np.any(active):
        iterations += 1
        d_eta, d_tau = _newton_step(*segments.derivatives(eta, tau, prior), tau, tau_low, tau_high)
        d_eta[~active] = 0.0
        d_tau[~active] = 0.0
        step = np.ones(eta.shape)
        pending = active.copy()
        new_eta, new_tau, new_value = eta.copy(), tau.copy(), value.copy()
        for _ in range(MAX_HALVINGS):
            trial_eta = eta + step * d_eta
            trial_tau = np.clip(tau + step * d_tau, tau_low, tau_high)
            trial = objective(trial_eta, trial_tau)
            slack = 1e-12 * np.maximum(1.0, np.abs(value))
            accepted = pending & np.isfinite(trial) & (trial >= value - slack)
            new_eta[accepted] = trial_eta[accepted]
            new_tau[accepted] = trial_tau[accepted]
            new_value[accepted] = trial[accepted]
            pending &= ~accepted
            if not np.any(pending):
                break
            step[pending] *= 0.5
        moved = np.maximum(np.abs(new_eta - eta), np.abs(new_tau - tau))
        eta, tau, value = new_eta, new_tau, new_value
        # Converged: the step no longer moves, or no fraction of it stops decreasing.
        active &= ~pending & (moved > TOLERANCE)

    mu = special.expit(eta)
    kappa = np.exp(tau)
    a, b = mu * kappa, special.expit(-eta) * kappa
    return HierarchicalFit(
        mu=mu.reshape(leading),
        kappa=kappa.reshape(leading),
        alphas=(a[:, None] + x2).reshape(x.shape),
        betas=(b[:, None] + m2).reshape(x.shape),
        kappa_min=np.exp(tau_low).reshape(leading),
        kappa_max=np.exp(tau_high).reshape(leading),
        log_objective=value.reshape(leading),
        iterations=iterations,
    )


def _newton_step(
    g_e: FloatArray,
    g_t: FloatArray,
    h_ee: FloatArray,
    h_et: FloatArray,
    h_tt: FloatArray,
    tau: FloatArray,
    tau_low: FloatArray,
    tau_high: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The ascent step: Newton's ``-H^-1 g`` where ``H`` is negative definite.

    Elsewhere (thin data make the objective flat or convex in ``log kappa``) a Newton step
    in ``mu`` alone (with ``|h_ee|`` when that curvature is not negative) and a full
    ``MAX_STEP`` up the slope in ``log kappa``: an ascent direction, which the step halving
    then shortens. Where ``tau`` sits on a bound and the gradient pushes out of it, only
    ``mu`` moves. The whole step is scaled down, keeping its direction, so that neither
    component exceeds ``MAX_STEP``.
    """
    det = h_ee * h_tt - h_et * h_et
    concave = (h_ee < 0) & (det > 0)
    safe_det = np.where(concave, det, 1.0)
    newton_eta = -(h_tt * g_e - h_et * g_t) / safe_det
    newton_tau = -(h_ee * g_t - h_et * g_e) / safe_det
    curvature = np.where(h_ee < 0, h_ee, -np.maximum(1.0, np.abs(h_ee)))
    alone_eta = -g_e / curvature
    d_eta = np.where(concave, newton_eta, alone_eta)
    d_tau = np.where(concave, newton_tau, np.sign(g_t) * MAX_STEP)
    at_bound = ((tau <= tau_low) & (g_t <= 0)) | ((tau >= tau_high) & (g_t >= 0))
    d_eta = np.where(at_bound, alone_eta, d_eta)
    d_tau = np.where(at_bound, 0.0, d_tau)
    longest = np.maximum(np.abs(d_eta), np.abs(d_tau))
    factor = np.minimum(1.0, MAX_STEP / np.maximum(longest, 1e-300))
    return d_eta * factor, d_tau * factor


def pooling_weights(kappa: npt.ArrayLike, evidence: npt.ArrayLike) -> FloatArray:
    """``kappa / (kappa + n_s)``: how much of a segment's posterior mean is the arm's
    pooled ``mu`` rather than its own rate (1 = only the pool, 0 = only the segment).

    ``kappa`` has the leading shape of ``evidence`` (shape ``(..., segments)``, the
    ``n_s = x_s + m_s`` of each segment).
    """
    k = np.asarray(kappa, dtype=np.float64)
    n = np.asarray(evidence, dtype=np.float64)
    if n.ndim == 0 or k.shape != n.shape[:-1]:
        raise InvalidParameterError(
            f"kappa must have the leading shape of evidence (..., segments); got {k.shape} "
            f"and {n.shape}",
            parameter="kappa",
        )
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise InvalidParameterError("kappa must be finite and > 0", parameter="kappa")
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise InvalidParameterError("evidence must be finite and >= 0", parameter="evidence")
    weights: FloatArray = k[..., None] / (k[..., None] + n)
    return weights


def ratio_moment_increments(
    arm_exposures: npt.ArrayLike, reference_exposures: npt.ArrayLike
) -> FloatArray:
    """What one applied window adds to ``M = sum n_k^2 / n_r`` (:func:`dispersion_factors`),
    vectorised like ``bandit.update.ratio_increments``: arm exposures of shape ``(..., K)``,
    the reference's of the leading shape ``(...)``, every ``n_r`` > 0 (windows without
    reference exposures are not applied)."""
    n_k = np.asarray(arm_exposures, dtype=np.float64)
    n_r = np.asarray(reference_exposures, dtype=np.float64)
    if np.any(n_r <= 0):
        raise InvalidParameterError(
            "reference_exposures must be > 0 in an applied window", parameter="reference_exposures"
        )
    increments: FloatArray = n_k**2 / n_r[..., None]
    return increments


def dispersion_factors(
    successes: npt.ArrayLike,
    failures: npt.ArrayLike,
    exposures: npt.ArrayLike,
    ratio_moments: npt.ArrayLike,
) -> FloatArray:
    """How many times the binomial variance a segment's reference-ratio evidence has, per
    cell of same-shape arrays: ``phi = (1 - theta) + theta M / N`` (at least 1), with
    ``theta = x / (x + m)`` the cell's own estimate, ``N = sum_w n_k`` its credited
    exposures and ``M = sum_w n_k^2 / n_r`` over the windows applied to it
    (docs/segments.md, "Dispersion"). ``m = sum_w c_r n_k / n_r`` carries the noise of the
    segment's reference events scaled by ``n_k / n_r``; by the delta method
    ``Var(theta_hat) = phi theta (1 - theta) / (x + m)``. The fit divides ``x`` and ``m``
    by ``phi`` (evidence worth what it is), so that segments that agree are pooled as the
    binomial model would pool them. A cell without evidence or exposures has ``phi = 1``.
    """
    x, m, n, moments = (
        np.asarray(values, dtype=np.float64)
        for values in (successes, failures, exposures, ratio_moments)
    )
    if not x.shape == m.shape == n.shape == moments.shape:
        raise InvalidParameterError(
            f"successes, failures, exposures and ratio_moments must have one shape; got "
            f"{x.shape}, {m.shape}, {n.shape} and {moments.shape}",
            parameter="ratio_moments",
        )
    for label, values in (
        ("successes", x),
        ("failures", m),
        ("exposures", n),
        ("ratio_moments", moments),
    ):
        if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
            raise InvalidParameterError(f"{label} must be finite and >= 0", parameter=label)
    evidence = x + m
    theta = np.divide(x, evidence, out=np.zeros_like(x), where=evidence > 0)
    ratio = np.divide(moments, n, out=np.ones_like(n), where=n > 0)
    factors: FloatArray = np.maximum((1.0 - theta) + theta * ratio, 1.0)
    return factors


def traffic_weighted(
    alphas: npt.ArrayLike, betas: npt.ArrayLike, weights: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """One Beta per arm for the arm's quality in the traffic mix: moment-matched to
    ``sum_s w_s theta_s``, the segments' posteriors weighted by each segment's share of the
    traffic (``weights``, shape ``(segments,)``, or the alphas' shape for weights per arm,
    e.g. 0 where an arm is not served; normalised here over the last axis).

    ``alphas``, ``betas``: shape ``(..., segments)``, independent Beta posteriors per
    segment. Mean ``m = sum_s w_s a_s / (a_s + b_s)``; variance
    ``v = sum_s w_s^2 a_s b_s / ((a_s + b_s)^2 (a_s + b_s + 1))``; the Beta with that mean
    and variance has ``a + b = m (1 - m) / v - 1`` (floored at 1e-9, so that the Beta is
    proper; with one segment it is that segment's Beta exactly). An arm that is bad
    only in segments carrying little traffic therefore looks bad only by their share, and
    one bad where the traffic is looks bad: what the genetic step retires on.
    """
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0 or w.shape not in (a.shape[-1:], a.shape):
        raise InvalidParameterError(
            f"alphas and betas must have shape (..., segments) and weights (segments,) or "
            f"theirs; got {a.shape}, {b.shape} and {w.shape}",
            parameter="weights" if a.shape == b.shape else "betas",
        )
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and np.all(w.sum(axis=-1) > 0)):
        raise InvalidParameterError(
            "weights must be finite, >= 0 and not all 0", parameter="weights"
        )
    w = w / w.sum(axis=-1, keepdims=True)
    total = a + b
    means = a / total
    mean = (w * means).sum(axis=-1)
    variance = (w * w * means * (1.0 - means) / (total + 1.0)).sum(axis=-1)
    concentration = mean * (1.0 - mean) / np.maximum(variance, 1e-300) - 1.0
    concentration = np.maximum(concentration, 1e-9)
    result_a: FloatArray = mean * concentration
    result_b: FloatArray = (1.0 - mean) * concentration
    return result_a, result_b
