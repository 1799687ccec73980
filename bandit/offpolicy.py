"""Off-policy estimates: the value a candidate policy would have had, from another policy's logs.

A logged sample is one exposure: the reward it earned (target events), the probability
``p`` with which the logging policy chose the arm it served (the propensity), and the
probability ``pi`` with which the candidate would have chosen that same arm. The importance
weight is ``w = pi / p``. Samples come with a multiplicity (``counts``), so that a tick
window's exposures of one arm are one row with reward 1 (its events) and one with reward 0
(the rest) instead of thousands of identical rows.

* IPS (inverse propensity scoring; Horvitz & Thompson 1952): ``mean(w r)``. Unbiased when
  every arm the candidate may choose had ``p > 0``; its variance grows with the weights.
* SNIPS (self-normalised IPS; Swaminathan & Joachims 2015): ``sum(w r) / sum(w)``. Slightly
  biased, much less variable when weights are large; the interval by the delta method.
* DR (doubly robust; Dudik, Langford & Li 2011): ``mean(m + w (r - q))`` with ``q`` a reward
  model's prediction for the logged arm and ``m`` its expectation under the candidate.
  Unbiased if either the propensities or the model are right; lower variance when the model
  is good.

Each estimate comes with a normal-approximation confidence interval from the sample
variance of its terms, the effective sample size ``(sum w)^2 / sum w^2`` (Kong 1992: how
many on-policy samples the weighted ones are worth), and warnings that say when it should
not be trusted: weights clipped (``clip``: weights above it are cut to it, which biases the
estimate toward what the logging policy did), tiny propensities, a small effective sample
size, or candidate probability mass on arms the logging policy never served (no estimator
can see those: the estimate then omits them, and says so).

Pure NumPy/SciPy; no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]

# Propensities below this are flagged: a weight of 100 or more makes one sample count as much
# as a hundred, and the interval's normal approximation poor.
TINY_PROPENSITY = 0.01
# An effective sample size below this share of the samples is flagged.
LOW_ESS_SHARE = 0.1


@dataclass(frozen=True)
class LoggedSamples:
    """Per-row arrays of the same length: ``rewards``, the logging policy's ``propensities``
    of the logged arm (> 0), the candidate's ``targets`` (probability of the same arm, in
    [0, 1]) and ``counts`` (how many identical samples the row stands for, > 0)."""

    rewards: FloatArray
    propensities: FloatArray
    targets: FloatArray
    counts: FloatArray

    @classmethod
    def of(
        cls,
        rewards: npt.ArrayLike,
        propensities: npt.ArrayLike,
        targets: npt.ArrayLike,
        counts: npt.ArrayLike | None = None,
    ) -> LoggedSamples:
        r = np.asarray(rewards, dtype=np.float64).ravel()
        p = np.asarray(propensities, dtype=np.float64).ravel()
        t = np.asarray(targets, dtype=np.float64).ravel()
        c = np.ones_like(r) if counts is None else np.asarray(counts, dtype=np.float64).ravel()
        for label, values in (("propensities", p), ("targets", t), ("counts", c)):
            if values.shape != r.shape:
                raise InvalidParameterError(
                    f"{label} must have one value per reward ({r.size}); got {values.size}",
                    parameter=label,
                )
        if r.size == 0:
            raise InvalidParameterError("no logged samples to estimate from", parameter="rewards")
        if not np.all(np.isfinite(r)):
            raise InvalidParameterError("rewards must be finite numbers", parameter="rewards")
        if not np.all((p > 0) & (p <= 1)):
            raise InvalidParameterError(
                "propensities must be in (0, 1]: a logged arm was served with positive "
                f"probability; smallest given {float(np.min(p))!r}",
                parameter="propensities",
            )
        if not np.all((t >= 0) & (t <= 1)):
            raise InvalidParameterError(
                "targets must be probabilities in [0, 1]", parameter="targets"
            )
        if not np.all((c > 0) & np.isfinite(c)):
            raise InvalidParameterError("counts must be finite numbers > 0", parameter="counts")
        return cls(r, p, t, c)

    @property
    def size(self) -> float:
        return float(np.sum(self.counts))


@dataclass(frozen=True)
class OffPolicyEstimate:
    """One estimator's estimate of the candidate's value (reward per sample), its interval at
    ``level``, and what to know before trusting it."""

    estimator: str
    value: float
    standard_error: float
    low: float
    high: float
    level: float
    samples: float
    effective_sample_size: float
    max_weight: float
    clipped: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Weights:
    """The importance weights after clipping, and how many samples were clipped."""

    values: FloatArray
    clipped: float
    max_unclipped: float


def importance_weights(samples: LoggedSamples, clip: float | None = None) -> Weights:
    raw = samples.targets / samples.propensities
    if clip is None:
        return Weights(raw, 0.0, float(np.max(raw)))
    if not (np.isfinite(clip) and clip > 0):
        raise InvalidParameterError(f"clip must be a number > 0; got {clip!r}", parameter="clip")
    over = raw > clip
    return Weights(np.minimum(raw, clip), float(np.sum(samples.counts[over])), float(np.max(raw)))


def effective_sample_size(weights: npt.ArrayLike, counts: npt.ArrayLike | None = None) -> float:
    """``(sum w)^2 / sum w^2`` over the samples (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    c = np.ones_like(w) if counts is None else np.asarray(counts, dtype=np.float64)
    squares = float(np.sum(c * w * w))
    return float(np.sum(c * w)) ** 2 / squares if squares > 0 else 0.0


def support_gap(
    targets: npt.ArrayLike, propensities: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """The share of the candidate's probability mass on arms the logging policy could not
    serve: ``targets`` and ``propensities`` are full distributions over arms, one row per
    window (shape ``(W, K)``), ``weights`` the windows' sample counts."""
    t = np.atleast_2d(np.asarray(targets, dtype=np.float64))
    p = np.atleast_2d(np.asarray(propensities, dtype=np.float64))
    if t.shape != p.shape:
        raise InvalidParameterError(
            f"targets and propensities must have the same shape; got {t.shape} and {p.shape}",
            parameter="propensities",
        )
    c = np.ones(t.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    unsupported = np.sum(np.where(p > 0, 0.0, t), axis=1)
    total = float(np.sum(c))
    return float(np.sum(c * unsupported)) / total if total > 0 else 0.0


def _mean_and_error(terms: FloatArray, counts: FloatArray) -> tuple[float, float]:
    n = float(np.sum(counts))
    mean = float(np.sum(counts * terms)) / n
    if n <= 1:
        return mean, float("inf")
    variance = float(np.sum(counts * (terms - mean) ** 2)) / (n - 1)
    return mean, float(np.sqrt(variance / n))


def _warnings(
    samples: LoggedSamples, weights: Weights, clip: float | None, ess: float, gap: float
) -> tuple[str, ...]:
    notes: list[str] = []
    if weights.clipped:
        notes.append(
            f"{weights.clipped:g} of {samples.size:g} samples had importance weights above "
            f"{clip:g} (largest {weights.max_unclipped:.3g}) and were clipped to it: the "
            "estimate is biased toward the logging policy's value"
        )
    relevant = samples.targets > 0
    if np.any(relevant):
        smallest = float(np.min(samples.propensities[relevant]))
        if smallest < TINY_PROPENSITY:
            notes.append(
                f"propensities as small as {smallest:.3g} on arms the candidate chooses: "
                "a few samples carry large weights and the interval may be too narrow"
            )
    if ess < LOW_ESS_SHARE * samples.size:
        notes.append(
            f"effective sample size {ess:.1f} is under {LOW_ESS_SHARE:.0%} of the "
            f"{samples.size:g} samples: the candidate differs much from the logging policy"
        )
    if gap > 0:
        notes.append(
            f"{gap:.1%} of the candidate's probability is on arms the logging policy never "
            "served in those windows: no estimator sees them, the value omits their share"
        )
    return tuple(notes)


def _estimate(
    name: str,
    value: float,
    error: float,
    samples: LoggedSamples,
    weights: Weights,
    clip: float | None,
    level: float,
    gap: float,
) -> OffPolicyEstimate:
    from scipy import special  # imported when used: serving needs none of scipy

    z = float(special.ndtri(0.5 + level / 2))
    ess = effective_sample_size(weights.values, samples.counts)
    return OffPolicyEstimate(
        estimator=name,
        value=value,
        standard_error=error,
        low=value - z * error,
        high=value + z * error,
        level=level,
        samples=samples.size,
        effective_sample_size=ess,
        max_weight=float(np.max(weights.values)),
        clipped=weights.clipped,
        warnings=_warnings(samples, weights, clip, ess, gap),
    )


def _check_level(level: float) -> None:
    if not (0 < level < 1):
        raise InvalidParameterError(f"level must be in (0, 1); got {level!r}", parameter="level")


def ips(
    samples: LoggedSamples,
    *,
    clip: float | None = None,
    level: float = 0.95,
    unsupported: float = 0.0,
) -> OffPolicyEstimate:
    """Inverse propensity scoring: ``mean(w r)``; ``unsupported`` is :func:`support_gap`."""
    _check_level(level)
    weights = importance_weights(samples, clip)
    value, error = _mean_and_error(weights.values * samples.rewards, samples.counts)
    return _estimate("ips", value, error, samples, weights, clip, level, unsupported)


def snips(
    samples: LoggedSamples,
    *,
    clip: float | None = None,
    level: float = 0.95,
    unsupported: float = 0.0,
) -> OffPolicyEstimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, its standard error by the delta method
    ``sqrt(sum w^2 (r - V)^2) / sum w``. Undefined (nan) when every weight is 0."""
    _check_level(level)
    weights = importance_weights(samples, clip)
    w, c = weights.values, samples.counts
    total = float(np.sum(c * w))
    if total == 0:
        value = error = float("nan")
    else:
        value = float(np.sum(c * w * samples.rewards)) / total
        error = float(np.sqrt(np.sum(c * (w * (samples.rewards - value)) ** 2))) / total
    return _estimate("snips", value, error, samples, weights, clip, level, unsupported)


def doubly_robust(
    samples: LoggedSamples,
    predicted: npt.ArrayLike,
    expected: npt.ArrayLike,
    *,
    clip: float | None = None,
    level: float = 0.95,
    unsupported: float = 0.0,
) -> OffPolicyEstimate:
    """Doubly robust: ``mean(m + w (r - q))``; ``predicted`` is the reward model's ``q`` for
    each row's logged arm, ``expected`` its ``m``: the model's reward averaged over the
    candidate's choice in the row's context (window)."""
    _check_level(level)
    q = np.asarray(predicted, dtype=np.float64).ravel()
    m = np.asarray(expected, dtype=np.float64).ravel()
    for label, values in (("predicted", q), ("expected", m)):
        if values.shape != samples.rewards.shape or not np.all(np.isfinite(values)):
            raise InvalidParameterError(
                f"{label} must have one finite value per sample row ({samples.rewards.size})",
                parameter=label,
            )
    weights = importance_weights(samples, clip)
    terms = m + weights.values * (samples.rewards - q)
    value, error = _mean_and_error(terms, samples.counts)
    return _estimate("dr", value, error, samples, weights, clip, level, unsupported)


@dataclass(frozen=True)
class Window:
    """One logged window: per arm (same order in every array) its exposures, target events
    and the probability with which the window served it (its propensity)."""

    exposures: FloatArray
    events: FloatArray
    propensities: FloatArray


@dataclass(frozen=True)
class WindowLog:
    """Windows turned into logged samples (one exposure each, reward 1 for an exposure that
    earned a target event, 0 otherwise; an arm with more events than exposures gives each
    exposure its mean), and the candidate's mass on arms the windows did not serve."""

    samples: LoggedSamples
    unsupported: float
    # Exposures counted in a window under an arm it served with probability 0 (tickets of an
    # earlier window reporting late): no propensity describes them, they are left out.
    left_out: float


def window_samples(windows: list[Window], targets: list[FloatArray]) -> WindowLog:
    """``targets[i]``: the candidate's probability of each arm in window ``i``."""
    rewards: list[float] = []
    propensities: list[float] = []
    chosen: list[float] = []
    counts: list[float] = []
    left_out = 0.0
    for window, target in zip(windows, targets, strict=True):
        served = window.propensities > 0
        left_out += float(np.sum(window.exposures[~served]))
        for k in np.flatnonzero((window.exposures > 0) & served):
            n, events = float(window.exposures[k]), float(window.events[k])
            rows = [(events / n, n)] if events > n else [(1.0, events), (0.0, n - events)]
            for reward, count in rows:
                if count > 0:
                    rewards.append(reward)
                    propensities.append(float(window.propensities[k]))
                    chosen.append(float(target[k]))
                    counts.append(count)
    return WindowLog(
        LoggedSamples.of(rewards, propensities, chosen, counts),
        _unsupported_share(windows, targets),
        left_out,
    )


def _unsupported_share(windows: list[Window], targets: list[FloatArray]) -> float:
    """:func:`support_gap` over windows whose arm sets may differ in size."""
    total = sum(float(np.sum(w.exposures)) for w in windows)
    if total == 0:
        return 0.0
    return (
        sum(
            float(np.sum(w.exposures)) * float(np.sum(np.where(w.propensities > 0, 0.0, t)))
            for w, t in zip(windows, targets, strict=True)
        )
        / total
    )
