"""The statistics of the experiment report: treatment versus control on ratio metrics.

A metric's mean is events per exposure, ``R = sum(y) / sum(n)``.  Groups are randomised by
unit, and one unit makes many exposures and events, so exposures are not independent: the
variance has to come from independent clusters of units.  The platform keeps, per group
and metric, the sums of events ``y_b`` and exposures ``n_b`` of the units hashed to each of
``B`` buckets; a unit's bucket is a hash of the unit, so the buckets are iid clusters and
their spread gives the variance of ``R`` (delta method, :func:`ratio_estimate`).

What is here (docs/statistics.md has the derivations, the assumptions and the measured
coverage and false-positive rates):

* :func:`ratio_estimate`: ``R`` and its delta-method variance over buckets;
* :func:`relative_effect`: ``R_t / R_c - 1`` with a fixed-horizon interval and p-value, and
  an always-valid interval (asymptotic confidence sequence) for a report watched
  continuously;
* :func:`sample_ratio_mismatch`: chi-square test of the observed split of units or
  exposures against the configured shares;
* :func:`clustered_share_test`: the same question on exposures clustered by unit: the
  share of one group's exposures, its variance over unit buckets, a Student-t test;
* :func:`time_to_decision`: at current traffic, roughly when the always-valid interval
  excludes zero (or becomes narrower than a minimum detectable effect).

The array functions (:func:`ratio_moments`, :func:`relative_moments`,
:func:`fixed_half_width`, :func:`confidence_sequence_half_width`) are the same formulas,
vectorised over leading axes: the report calls them for one group, the coverage simulation
for thousands of runs at once.

Data that leave something undefined (no exposures, no control events, one bucket, too few
events for the normal approximation, zero variance) give a result whose undefined fields
are ``None`` and whose ``reason`` says why; only arguments outside their documented range
(negative counts, ``alpha`` outside (0, 1), mismatched shapes) raise
:class:`~bandit.errors.InvalidParameterError`.

Sources:

* A. Deng, J. Lu, J. Litz (2017). "Trustworthy analysis of online A/B tests: pitfalls,
  challenges and solutions". WSDM 2017. (Ratio metrics whose analysis unit is not the
  randomisation unit; the delta method.)
* A. Deng, U. Knoblich, J. Lu (2018). "Applying the delta method in metric analytics: a
  practical guide with novel ideas". KDD 2018. (Variance of a ratio of means; of a
  relative difference.)
* I. Waudby-Smith, D. Arbour, R. Sinha, E. H. Kennedy, A. Ramdas (2021-2024).
  "Time-uniform central limit theory and asymptotic confidence sequences".
  arXiv:2103.06476. (The Gaussian-mixture asymptotic confidence sequence and its tuning;
  GrowthBook's sequential testing uses the same boundary.)
* S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon (2021). "Time-uniform, nonparametric,
  nonasymptotic confidence sequences". Annals of Statistics 49(2). (The normal-mixture
  boundary and the choice of rho for a planned sample size.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]

# GrowthBook's default SRM threshold (and the usual one elsewhere): at p < 0.001 the split
# is flagged. Strict because the check runs on every report view.
SRM_P_VALUE_THRESHOLD = 0.001
# Where the confidence sequence is tightest unless the caller plans otherwise, in exposures
# of the smaller group. Validity does not depend on it, only the width at each time does.
DEFAULT_PLANNED_EXPOSURES = 100_000.0
# Below this many events in either group, no interval or p-value: the normal approximation
# of a ratio of a few events fails (the A/A simulation in tests/bandit/test_report.py and
# docs/statistics.md measure what it buys).
DEFAULT_MIN_EVENTS = 50.0
# Beyond this, time_to_decision says "underpowered": four whole weeks, so that the weekly
# cycle is covered and experiments do not run for ever.
DEFAULT_DECISION_HORIZON_SECONDS = 28 * 24 * 3600.0
# Grid on which time_to_decision brackets the first crossing before refining it.
_DECISION_GRID_POINTS = 200


class Reason(StrEnum):
    """Why part of a result is undefined (the values are what a report shows)."""

    NO_EXPOSURES = "no exposures"
    NO_TREATMENT_EXPOSURES = "no exposures in the treatment group"
    NO_CONTROL_EXPOSURES = "no exposures in the control group"
    NO_CONTROL_EVENTS = "no control events: a relative effect over a control mean of 0 is undefined"
    TOO_FEW_BUCKETS = "fewer than 2 buckets: no spread to estimate a variance from"
    TOO_FEW_EVENTS = "too few events in a group for the normal approximation: no interval yet"
    ZERO_VARIANCE = "the buckets show no spread (zero variance): no interval"
    NO_OBSERVATIONS = "no observations"
    ONE_GROUP = "a single group with a positive share: nothing to compare"
    NO_TRAFFIC = "no traffic in either group"
    NO_TARGET = "observed effect is 0 and no minimum detectable effect was given"
    UNDERPOWERED = "underpowered: not decided within the horizon at current traffic"


@dataclass(frozen=True)
class RatioEstimate:
    """One group's metric: ``mean = events / exposures`` and its variance over buckets.

    ``mean`` is ``None`` without exposures; ``variance`` is ``None`` without exposures or
    with fewer than 2 buckets (``reason`` says which).
    """

    events: float
    exposures: float
    buckets: int
    mean: float | None
    variance: float | None
    reason: Reason | None = None


@dataclass(frozen=True)
class RelativeEffect:
    """Treatment versus control: ``effect = R_t / R_c - 1`` and its intervals.

    ``lower, upper, p_value`` are fixed-horizon (valid at one pre-planned look);
    ``lower_anytime, upper_anytime`` form an always-valid interval, valid however often the
    report is looked at.  ``significant`` is ``p_value < alpha``; ``significant_anytime``
    is "the always-valid interval excludes 0", the one to act on when the report is
    watched.  ``anytime_sample_size`` is the ``t`` of the confidence sequence (exposures of
    the smaller group).  Undefined fields are ``None`` and ``reason`` says why; ``variance``
    (of ``effect``) is given whenever defined, also when the intervals are withheld (too
    few events, zero variance).
    """

    control_mean: float | None
    treatment_mean: float | None
    effect: float | None
    variance: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    significant: bool
    lower_anytime: float | None
    upper_anytime: float | None
    significant_anytime: bool
    alpha: float
    planned_exposures: float
    min_events: float
    anytime_sample_size: float
    treatment: RatioEstimate
    control: RatioEstimate
    reason: Reason | None = None


@dataclass(frozen=True)
class SampleRatioMismatch:
    """Chi-square goodness of fit of the observed split against the expected shares."""

    statistic: float
    p_value: float
    flagged: bool
    threshold: float
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    reason: Reason | None = None


@dataclass(frozen=True)
class ShareTest:
    """Is one group's share of the exposures the expected one, exposures clustered by unit?

    ``share = sum(a) / sum(n)`` over the buckets, ``statistic = (share - expected) /
    sqrt(variance)`` compared with Student's t on ``B - 1`` degrees of freedom; ``flagged``
    when ``p_value < threshold``.  Undefined parts are ``None`` (``p_value`` then 1, not
    flagged) and ``reason`` says why.
    """

    share: float | None
    expected: float
    variance: float | None
    statistic: float | None
    p_value: float
    flagged: bool
    threshold: float
    degrees_of_freedom: int
    group_exposures: float
    exposures: float
    reason: Reason | None = None


@dataclass(frozen=True)
class DecisionTime:
    """Roughly how long until a decision at current traffic (``None`` with a reason if not
    within the horizon).

    ``target_half_width`` is what the always-valid half-width must fall below:
    ``max(|effect|, min_detectable_effect)``; ``half_width_now`` is today's.
    """

    seconds: float | None
    target_half_width: float | None
    half_width_now: float | None
    horizon_seconds: float
    reason: Reason | None = None


# ---------------------------------------------------------------------------------------
# Vectorised formulas
# ---------------------------------------------------------------------------------------


def ratio_moments(events: npt.ArrayLike, exposures: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Ratio of sums and its delta-method variance, buckets on the last axis.

    With ``B`` buckets, ``R = sum(y) / sum(n)``, ``nbar = sum(n) / B`` and sample
    (co)variances over buckets (``ddof=1``)::

        Var(R) ~= (s_y^2 - 2 R s_yn + R^2 s_n^2) / (B nbar^2)

    (Deng, Knoblich & Lu 2018; Deng, Lu & Litz 2017: a ratio of two means of iid clusters,
    by the delta method).  The numerator is exactly the sample variance of the residuals
    ``d_b = y_b - R n_b``, which is how it is computed: the expanded form subtracts numbers
    of size ``(R s_n)^2`` and loses every digit when the buckets' rates are nearly equal and
    their sizes are large (1e12 counts), the residual form does not.  Counts are converted
    to float64 before any arithmetic, so integer inputs cannot overflow.

    Returns ``(ratio, variance)`` over the leading axes: ratio NaN where there is no
    exposure, variance NaN there and wherever ``B < 2``.
    """
    y = np.asarray(events, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    buckets = y.shape[-1]
    total_n = n.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total_n > 0, y.sum(axis=-1) / total_n, np.nan)
    if buckets < 2:
        return ratio, np.full_like(ratio, np.nan)
    residuals = y - ratio[..., np.newaxis] * n
    # B * s_d^2 / sum(n)^2 is s_d^2 / (B nbar^2) with nbar = sum(n) / B.
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = buckets * np.var(residuals, axis=-1, ddof=1) / total_n**2
    return ratio, variance


def relative_moments(
    treatment_mean: npt.ArrayLike,
    treatment_variance: npt.ArrayLike,
    control_mean: npt.ArrayLike,
    control_variance: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Relative effect ``R_t / R_c - 1`` and its delta-method variance, independent groups.

    With ``g(R_t, R_c) = R_t / R_c``, the gradient is ``(1 / R_c, -R_t / R_c^2)``, so::

        Var(R_t / R_c - 1) ~= Var(R_t) / R_c^2 + R_t^2 Var(R_c) / R_c^4
                           = (Var(R_t) + (R_t / R_c)^2 Var(R_c)) / R_c^2

    (Deng, Knoblich & Lu 2018; the same as GrowthBook's relative test).  The
    second form is what is computed: no fourth power of a small control mean.  NaN where
    ``R_c`` is 0 or undefined.
    """
    rt = np.asarray(treatment_mean, dtype=np.float64)
    vt = np.asarray(treatment_variance, dtype=np.float64)
    rc = np.asarray(control_mean, dtype=np.float64)
    vc = np.asarray(control_variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rc > 0, rt / rc, np.nan)
        variance = (vt + ratio**2 * vc) / rc**2
    return ratio - 1.0, np.where(rc > 0, variance, np.nan)


def fixed_half_width(variance: npt.ArrayLike, alpha: float) -> FloatArray:
    """Fixed-horizon half-width ``z_{1 - alpha/2} sqrt(V)`` (normal approximation)."""
    from scipy import special

    _check_alpha(alpha)
    # -ndtri(p) is norm.isf(p) without the distribution object's argument handling (the
    # report calls this for every row).
    z = -float(special.ndtri(alpha / 2.0))
    result: FloatArray = z * np.sqrt(np.asarray(variance, dtype=np.float64))
    return result


def mixture_rho2(planned_sample_size: float, alpha: float) -> float:
    """The mixing variance that makes the confidence sequence tightest at ``t_planned``::

        rho^2 = (-2 log(alpha) + log(-2 log(alpha) + 1)) / t_planned

    (Howard et al. 2021; Waudby-Smith et al.: the approximate minimiser of the boundary's
    width at ``t = t_planned`` for standardised data.)
    """
    _check_alpha(alpha)
    if not (math.isfinite(planned_sample_size) and planned_sample_size > 0):
        raise InvalidParameterError(
            f"planned sample size must be a finite number > 0, got {planned_sample_size!r}",
            parameter="planned_exposures",
        )
    minus_two_log_alpha = -2.0 * math.log(alpha)
    return (minus_two_log_alpha + math.log(minus_two_log_alpha + 1.0)) / planned_sample_size


def confidence_sequence_half_width(
    variance: npt.ArrayLike, sample_size: npt.ArrayLike, rho2: float, alpha: float
) -> FloatArray:
    """Half-width of the Gaussian-mixture asymptotic confidence sequence::

        sqrt( V * 2 (t rho^2 + 1) / (t rho^2) * log( sqrt(t rho^2 + 1) / alpha ) )

    where ``V`` is the estimator's variance at time ``t`` (about ``sigma^2 / t``).  This is
    the Gaussian-mixture asymptotic confidence sequence of Waudby-Smith et al.,
    ``sqrt(2 (t rho'^2 s^2 + 1) / (t^2 rho'^2) log(sqrt(t rho'^2 s^2 + 1) / alpha))`` with
    ``s^2`` the per-observation variance, rewritten with ``V = s^2 / t`` and the
    scale-free ``rho^2 = rho'^2 s^2``: ``estimate +- half_width`` covers the true value at
    *all* times ``t`` simultaneously with probability about ``1 - alpha``.  ``t`` enters
    only through ``t rho^2`` (= ``c t / t_planned`` with :func:`mixture_rho2`), so any unit
    proportional to the number of iid observations gives the same interval as long as
    ``t`` and ``t_planned`` use it.  NaN where ``t <= 0``.
    """
    _check_alpha(alpha)
    v = np.asarray(variance, dtype=np.float64)
    u = rho2 * np.asarray(sample_size, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        squared = v * 2.0 * (u + 1.0) / u * (0.5 * np.log1p(u) - math.log(alpha))
    result: FloatArray = np.where(u > 0, np.sqrt(squared), np.nan)
    return result


# ---------------------------------------------------------------------------------------
# The report's results
# ---------------------------------------------------------------------------------------


def ratio_estimate(
    events_by_bucket: npt.ArrayLike, exposures_by_bucket: npt.ArrayLike
) -> RatioEstimate:
    """One group's mean events per exposure and its variance over the ``B`` buckets.

    Both arrays hold one entry per bucket, *all* ``B`` of them: a bucket without units is
    an observation (a cluster that drew no unit), so leaving empty buckets out would bias
    the variance.  See :func:`ratio_moments` for the formula.

    Assumes units are iid and hashed uniformly to buckets, so that bucket totals are iid
    (exactly: exchangeable, a fixed number of units being split multinomially, which the
    delta method ignores) and that the number of buckets is large enough for the sample
    variance (B - 1 degrees of freedom; 64 buckets give a normal quantile 2% too small).
    """
    y = np.asarray(events_by_bucket, dtype=np.float64)
    n = np.asarray(exposures_by_bucket, dtype=np.float64)
    if y.ndim != 1 or y.shape != n.shape:
        raise InvalidParameterError(
            f"events and exposures must be 1-d arrays with one entry per bucket; got shapes "
            f"{y.shape} and {n.shape}",
            parameter="events_by_bucket",
        )
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(n))):
        raise InvalidParameterError(
            "events and exposures must be finite", parameter="events_by_bucket"
        )
    if np.any(y < 0) or np.any(n < 0):
        raise InvalidParameterError(
            "events and exposures must be >= 0", parameter="events_by_bucket"
        )
    events, exposures, buckets = float(y.sum()), float(n.sum()), int(y.size)
    if exposures == 0:
        return RatioEstimate(events, exposures, buckets, None, None, Reason.NO_EXPOSURES)
    ratio, variance = ratio_moments(y, n)
    if buckets < 2:
        return RatioEstimate(events, exposures, buckets, float(ratio), None, Reason.TOO_FEW_BUCKETS)
    return RatioEstimate(events, exposures, buckets, float(ratio), float(variance))


def relative_effect(
    treatment: RatioEstimate,
    control: RatioEstimate,
    alpha: float = 0.05,
    *,
    planned_exposures: float = DEFAULT_PLANNED_EXPOSURES,
    min_events: float = DEFAULT_MIN_EVENTS,
) -> RelativeEffect:
    """Relative effect of the treatment on the metric, with fixed-horizon and always-valid
    intervals.

    * ``effect = R_t / R_c - 1``; its variance ``V`` by the delta method
      (:func:`relative_moments`), the groups being independent (disjoint units).
    * Fixed horizon: ``effect +- z_{1-alpha/2} sqrt(V)``; ``p_value = 2 (1 - Phi(|z|))``
      with ``z = effect / sqrt(V)`` (Wald test of ``effect = 0``).  Valid at one look
      planned in advance; looking repeatedly and stopping at the first ``p < alpha``
      inflates false positives (measured in docs/statistics.md).
    * Always valid: ``effect +- confidence_sequence_half_width(V, t, rho^2, alpha)``
      (Waudby-Smith et al.) with ``t`` the exposures of the smaller group and
      ``rho^2 = mixture_rho2(planned_exposures, alpha)``.  Why ``t`` = exposures of the
      smaller group: ``V`` is dominated by the smaller group, and the boundary uses ``t``
      only relative to ``planned_exposures`` (how far the experiment is through its plan),
      which exposures measure without needing a unit count the buckets do not keep.
    * Intervals and p-value are withheld (``None``, reason given) while either group has
      fewer than ``min_events`` events: both rest on a normal approximation, which fails
      for a ratio of a few events.  Measured (docs/statistics.md): looking every ~5 events
      from the first, the always-valid interval wrongly excluded 0 in 6.7% of A/A runs
      without this rule and in 3.2% with 50 events.
    * ``variance`` is reported whenever it is defined, even when the intervals are withheld.

    Assumptions and limits: units are iid and assigned independently of their outcomes;
    the normal approximation holds for the relative effect (the delta method ignores the
    skew of a ratio, small once both groups have some hundreds of events); the confidence
    sequence is *asymptotic*: its time-uniform guarantee holds as the sample grows, not for
    the first handful of units, and it assumes a unit's data are complete when counted
    (a unit still accruing exposures contributes a partial cluster).  A drift in the
    effect over time (novelty, weekly cycles) is averaged, not modelled.
    """
    from scipy import special

    _check_alpha(alpha)
    rho2 = mixture_rho2(planned_exposures, alpha)
    if not (math.isfinite(min_events) and min_events >= 0):
        raise InvalidParameterError(
            f"min_events must be a finite number >= 0, got {min_events!r}", parameter="min_events"
        )
    sample_size = min(treatment.exposures, control.exposures)

    def result(
        effect: float | None = None,
        variance: float | None = None,
        reason: Reason | None = None,
    ) -> RelativeEffect:
        lower = upper = p_value = lower_anytime = upper_anytime = None
        if effect is not None and variance is not None and reason is None:
            half = float(fixed_half_width(variance, alpha))
            half_anytime = float(confidence_sequence_half_width(variance, sample_size, rho2, alpha))
            lower, upper = effect - half, effect + half
            lower_anytime, upper_anytime = effect - half_anytime, effect + half_anytime
            # ndtr(-x) is norm.sf(x), as a plain ufunc.
            p_value = float(2.0 * special.ndtr(-abs(effect) / math.sqrt(variance)))
        return RelativeEffect(
            control_mean=control.mean,
            treatment_mean=treatment.mean,
            effect=effect,
            variance=variance,
            lower=lower,
            upper=upper,
            p_value=p_value,
            significant=p_value is not None and p_value < alpha,
            lower_anytime=lower_anytime,
            upper_anytime=upper_anytime,
            significant_anytime=lower_anytime is not None
            and upper_anytime is not None
            and (lower_anytime > 0 or upper_anytime < 0),
            alpha=alpha,
            planned_exposures=planned_exposures,
            min_events=min_events,
            anytime_sample_size=sample_size,
            treatment=treatment,
            control=control,
            reason=reason,
        )

    if treatment.mean is None:
        return result(reason=Reason.NO_TREATMENT_EXPOSURES)
    if control.mean is None:
        return result(reason=Reason.NO_CONTROL_EXPOSURES)
    if control.mean == 0:
        return result(reason=Reason.NO_CONTROL_EVENTS)
    effect = treatment.mean / control.mean - 1.0
    if treatment.variance is None or control.variance is None:
        return result(effect, reason=Reason.TOO_FEW_BUCKETS)
    _, moments_variance = relative_moments(
        treatment.mean, treatment.variance, control.mean, control.variance
    )
    variance = float(moments_variance)
    if min(treatment.events, control.events) < min_events:
        return result(effect, variance, Reason.TOO_FEW_EVENTS)
    if not variance > 0:
        return result(effect, variance, Reason.ZERO_VARIANCE)
    return result(effect, variance)


def sample_ratio_mismatch(
    observed_counts: npt.ArrayLike,
    expected_shares: npt.ArrayLike,
    *,
    threshold: float = SRM_P_VALUE_THRESHOLD,
) -> SampleRatioMismatch:
    """Pearson's chi-square goodness of fit of the observed split to the expected shares.

    ``expected_b = total * share_b / sum(share)``, ``X^2 = sum((observed - expected)^2 /
    expected)`` over the groups with a positive share, ``p = P(chi2_{k-1} > X^2)`` with
    ``k`` those groups; flagged when ``p < threshold`` (0.001 by default, GrowthBook's).
    Count units (or exposures, if units are not kept) per group: a mismatch means the
    assignment or the logging is broken and the effects cannot be trusted.

    Defined for every count: no observations gives ``p = 1``; a group with share 0 is left
    out when it observed nothing and is a certain mismatch (``X^2 = inf``, ``p = 0``) when
    it observed something; a single group with a positive share has nothing to compare
    (``p = 1``).  The chi-square approximation wants expected counts of about 5 or more.
    """
    from scipy import stats

    observed = np.asarray(observed_counts, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    if observed.ndim != 1 or observed.shape != shares.shape or observed.size == 0:
        raise InvalidParameterError(
            f"observed counts and expected shares must be non-empty 1-d arrays of the same "
            f"length; got shapes {observed.shape} and {shares.shape}",
            parameter="observed",
        )
    if not (np.all(np.isfinite(observed)) and np.all(observed >= 0)):
        raise InvalidParameterError("observed counts must be finite and >= 0", parameter="observed")
    if not (np.all(np.isfinite(shares)) and np.all(shares >= 0) and shares.sum() > 0):
        raise InvalidParameterError(
            "expected shares must be finite, >= 0 and not all 0", parameter="expected_shares"
        )
    if not (0.0 < threshold < 1.0):
        raise InvalidParameterError(
            f"threshold must be in (0, 1), got {threshold!r}", parameter="threshold"
        )
    total = float(observed.sum())
    expected = total * shares / shares.sum()

    def result(
        statistic: float, p_value: float, reason: Reason | None = None
    ) -> SampleRatioMismatch:
        return SampleRatioMismatch(
            statistic=statistic,
            p_value=p_value,
            flagged=p_value < threshold,
            threshold=threshold,
            observed=tuple(float(x) for x in observed),
            expected=tuple(float(x) for x in expected),
            reason=reason,
        )

    if total == 0:
        return result(0.0, 1.0, Reason.NO_OBSERVATIONS)
    positive = shares > 0
    if np.any(observed[~positive] > 0):
        return result(math.inf, 0.0)
    if int(positive.sum()) < 2:
        return result(0.0, 1.0, Reason.ONE_GROUP)
    statistic = float(np.sum((observed[positive] - expected[positive]) ** 2 / expected[positive]))
    return result(statistic, float(stats.chi2.sf(statistic, int(positive.sum()) - 1)))


def clustered_share_test(
    group_by_bucket: npt.ArrayLike,
    total_by_bucket: npt.ArrayLike,
    expected_share: float,
    *,
    threshold: float = SRM_P_VALUE_THRESHOLD,
) -> ShareTest:
    """Sample ratio mismatch on exposures that are clustered by unit.

    Units, not exposures, are assigned to groups, and one unit makes many exposures: the
    plain chi-square on exposure counts (:func:`sample_ratio_mismatch`) assumes each
    exposure was assigned on its own, so its variance is too small by about
    ``E[n^2] / E[n]`` (``n`` a unit's exposures) and it flags healthy experiments (measured
    in docs/statistics.md).  Here the group's share of the exposures is a ratio of sums over
    the ``B`` unit buckets, ``share = sum(a_b) / sum(n_b)`` (``a_b`` the group's exposures in
    bucket ``b``, ``n_b`` all of them), whose delta-method variance over buckets
    (:func:`ratio_moments`) accounts for the clustering, and::

        T = (share - expected_share) / sqrt(Var(share)),   p = 2 P(T_{B-1} > |T|)

    Student's t with ``B - 1`` degrees of freedom because the variance comes from ``B``
    buckets (at ``p = 0.001`` a normal quantile would flag 1.7 times too often with 64).
    Assumes the group assignment is independent of the bucket (two different parts of the
    unit's hash) and that the treatment does not change how many exposures a unit makes: a
    treatment that does shows here as a mismatch too, which counting units would not.

    Defined for all data: no exposures or fewer than 2 buckets give ``p_value = 1`` with a
    reason; zero variance (every bucket at the same share) gives ``p_value = 1`` at the
    expected share and ``0`` (a certain mismatch, ``statistic`` infinite) elsewhere.  The
    t approximation wants a few hundred units; the caller decides how much data to require.
    """
    from scipy import stats

    a = np.asarray(group_by_bucket, dtype=np.float64)
    n = np.asarray(total_by_bucket, dtype=np.float64)
    if a.ndim != 1 or a.shape != n.shape:
        raise InvalidParameterError(
            f"group and total exposures must be 1-d arrays with one entry per bucket; got "
            f"shapes {a.shape} and {n.shape}",
            parameter="group_by_bucket",
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
        raise InvalidParameterError("exposures must be finite", parameter="group_by_bucket")
    if np.any(a < 0) or np.any(a > n):
        raise InvalidParameterError(
            "a group's exposures must be >= 0 and at most the bucket's total",
            parameter="group_by_bucket",
        )
    if not (0.0 < expected_share < 1.0):
        raise InvalidParameterError(
            f"expected share must be in (0, 1), got {expected_share!r}", parameter="expected_share"
        )
    if not (0.0 < threshold < 1.0):
        raise InvalidParameterError(
            f"threshold must be in (0, 1), got {threshold!r}", parameter="threshold"
        )
    buckets = int(a.size)

    def result(
        share: float | None = None,
        variance: float | None = None,
        statistic: float | None = None,
        p_value: float = 1.0,
        reason: Reason | None = None,
    ) -> ShareTest:
        return ShareTest(
            share=share,
            expected=expected_share,
            variance=variance,
            statistic=statistic,
            p_value=p_value,
            flagged=p_value < threshold,
            threshold=threshold,
            degrees_of_freedom=max(buckets - 1, 0),
            group_exposures=float(a.sum()),
            exposures=float(n.sum()),
            reason=reason,
        )

    if float(n.sum()) == 0:
        return result(reason=Reason.NO_OBSERVATIONS)
    share, variance = (float(x) for x in ratio_moments(a, n))
    if buckets < 2:
        return result(share, reason=Reason.TOO_FEW_BUCKETS)
    if not variance > 0:
        if share == expected_share:
            return result(share, variance, 0.0, 1.0, Reason.ZERO_VARIANCE)
        # Every bucket at the same share, and not the expected one (typically: one group
        # has no exposures at all): a certain mismatch.
        return result(share, variance, math.copysign(math.inf, share - expected_share), 0.0)
    statistic = (share - expected_share) / math.sqrt(variance)
    p_value = float(2.0 * stats.t.sf(abs(statistic), buckets - 1))
    return result(share, variance, statistic, p_value)


def time_to_decision(
    result: RelativeEffect,
    treatment_exposures_per_second: float,
    control_exposures_per_second: float,
    *,
    min_detectable_effect: float | None = None,
    horizon_seconds: float = DEFAULT_DECISION_HORIZON_SECONDS,
) -> DecisionTime:
    """Roughly how long, at current traffic, until the always-valid interval decides.

    The target is ``max(|effect|, min_detectable_effect)``: when the always-valid
    half-width falls below ``|effect|`` the interval excludes 0 (if the effect holds);
    when the observed effect is below the minimum detectable effect, the question becomes
    when the interval is narrower than that effect.  After ``s`` more seconds each group
    has ``n_g + r_g s`` exposures, and its ratio variance shrinks in proportion
    (``Var_g(s) = Var_g n_g / (n_g + r_g s)``: the bucket variance scales as 1 / exposures
    for a fixed mix of units); the means are held at today's values.  The half-width at
    ``s`` is evaluated on a geometric grid up to the horizon, and the first crossing is
    refined by root finding.

    A projection, not a promise: it holds today's effect, rates and variance per exposure
    fixed.  The variance really shrinks with the number of *units*; when new exposures come
    from returning units rather than new ones, it shrinks slower than assumed and the
    projection is optimistic.  ``seconds`` is ``None`` (with a reason) when the result has
    no always-valid interval (its reason is passed on), there is no traffic, or the target
    is not reached within ``horizon_seconds`` ("underpowered").
    """
    from scipy import optimize

    rates = (treatment_exposures_per_second, control_exposures_per_second)
    if not all(math.isfinite(r) and r >= 0 for r in rates):
        raise InvalidParameterError(
            f"exposure rates must be finite and >= 0, got {rates!r}", parameter="treatment_rate"
        )
    if min_detectable_effect is not None and not (
        math.isfinite(min_detectable_effect) and min_detectable_effect > 0
    ):
        raise InvalidParameterError(
            f"min_detectable_effect must be a finite number > 0, got {min_detectable_effect!r}",
            parameter="min_detectable_effect",
        )
    if not (math.isfinite(horizon_seconds) and horizon_seconds > 0):
        raise InvalidParameterError(
            f"horizon_seconds must be > 0, got {horizon_seconds!r}", parameter="horizon_seconds"
        )

    def undecided(
        reason: Reason | None, target: float | None = None, now: float | None = None
    ) -> DecisionTime:
        return DecisionTime(None, target, now, horizon_seconds, reason)

    treatment, control = result.treatment, result.control
    if (
        result.effect is None
        or result.variance is None
        or result.lower_anytime is None
        or treatment.mean is None
        or control.mean is None
        or treatment.variance is None
        or control.variance is None
    ):
        return undecided(result.reason)
    target = max(abs(result.effect), min_detectable_effect or 0.0)
    if target == 0:
        return undecided(Reason.NO_TARGET)
    rho2 = mixture_rho2(result.planned_exposures, result.alpha)
    rt, rc = treatment_exposures_per_second, control_exposures_per_second
    mean_t, var_t, exposures_t = treatment.mean, treatment.variance, treatment.exposures
    mean_c, var_c, exposures_c = control.mean, control.variance, control.exposures

    def half_width(seconds: FloatArray) -> FloatArray:
        nt = exposures_t + rt * seconds
        nc = exposures_c + rc * seconds
        _, variance = relative_moments(
            mean_t, var_t * exposures_t / nt, mean_c, var_c * exposures_c / nc
        )
        return confidence_sequence_half_width(variance, np.minimum(nt, nc), rho2, result.alpha)

    now = float(half_width(np.zeros(1))[0])
    if now < target:
        return DecisionTime(0.0, target, now, horizon_seconds)
    if rt == 0 and rc == 0:
        return undecided(Reason.NO_TRAFFIC, target, now)
    grid = np.geomspace(min(1.0, horizon_seconds), horizon_seconds, _DECISION_GRID_POINTS)
    below = np.flatnonzero(half_width(grid) < target)
    if below.size == 0:
        return undecided(Reason.UNDERPOWERED, target, now)
    first = int(below[0])
    low = 0.0 if first == 0 else float(grid[first - 1])
    seconds = optimize.brentq(
        lambda s: float(half_width(np.array([s]))[0]) - target, low, float(grid[first])
    )
    return DecisionTime(float(seconds), target, now, horizon_seconds)


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        raise InvalidParameterError(f"alpha must be in (0, 1), got {alpha!r}", parameter="alpha")
