"""The simulator's one confidence interval of a mean over runs.

``mean_ci`` is the Student-t interval ``mean +- t_{1 - (1 - confidence) / 2, n - 1} sd /
sqrt(n)``. It is exact for normal data at any ``n`` and tends to the normal-approximation
interval (``1.96`` at 95%) as ``n`` grows: at 200 runs ``t`` is 1.972, 0.6% wider. The
commands' run counts start at 2, where ``t`` is 12.7 and the normal approximation would
claim a far narrower interval than the data support.

Only finite values count (a metric that is undefined in some runs, a share of zero
traffic, is left out of those runs); with fewer than two of them there is no interval and
the bounds and the standard deviation are NaN.

The arithmetic is NumPy's own ``mean`` and ``std(ddof=1)`` (sum, divide, subtract, square,
sum, divide, square root, in that order), so that the numbers are those the commands
printed before they shared this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` finite values with its confidence interval and standard deviation."""

    mean: float
    ci_low: float
    ci_high: float
    sd: float
    n: int


@dataclass(frozen=True)
class MeanCIArray:
    """:class:`MeanCI` along an axis: one mean, interval, sd and count per remaining index."""

    mean: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    sd: FloatArray
    n: IntArray


@overload
def mean_ci(
    values: npt.ArrayLike, confidence: float = CONFIDENCE, *, axis: None = None
) -> MeanCI: ...


@overload
def mean_ci(values: npt.ArrayLike, confidence: float = CONFIDENCE, *, axis: int) -> MeanCIArray: ...


def mean_ci(
    values: npt.ArrayLike, confidence: float = CONFIDENCE, *, axis: int | None = None
) -> MeanCI | MeanCIArray:
    """Mean of the finite ``values`` and its Student-t interval: over all of them
    (``axis=None``, a :class:`MeanCI` of floats) or along ``axis`` (a
    :class:`MeanCIArray`, for example one interval per checkpoint of ``(runs, T)``)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)
    if axis is None:
        x = x.reshape(-1)
    finite = np.isfinite(x)
    n = finite.sum(axis=0 if axis is None else axis, keepdims=True)
    kept = np.where(finite, x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = kept.sum(axis=0 if axis is None else axis, keepdims=True) / n
        deviations = np.where(finite, kept - mean, 0.0)
        sd = np.sqrt(
            np.sum(deviations * deviations, axis=0 if axis is None else axis, keepdims=True)
            / (n - 1)
        )
        # The t quantile is NaN for 0 degrees of freedom; below 2 values sd is NaN or inf
        # anyway. special.stdtrit is stats.t.ppf without scipy.stats, whose import costs
        # the simulator's start-up more than a second.
        sd = np.where(n >= 2, sd, np.nan)
        half = special.stdtrit(np.maximum(n - 1, 1), 0.5 + confidence / 2) * sd / np.sqrt(n)
    squeeze_axis = 0 if axis is None else axis
    mean, low, high, sd = (
        np.squeeze(a, axis=squeeze_axis) for a in (mean, mean - half, mean + half, sd)
    )
    counts = np.squeeze(n, axis=squeeze_axis).astype(np.int64)
    if axis is None:
        return MeanCI(float(mean), float(low), float(high), float(sd), int(counts))
    return MeanCIArray(mean, low, high, sd, counts)
