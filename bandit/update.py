"""The reference-ratio posterior update (docs/spec.md, "Updating"), with optional decay.

Why a reference group: conversion swings about 4x over a day, so a bandit fed raw conversion
rewards whichever arm happened to be drawn in a good hour.  Every tick compares each arm with
the reference group *over the same window*, so any daily factor multiplying both rates
cancels.

Request mode (each arm k has its own share of the target traffic)::

    alpha_k += c_k          beta_k += c_r * n_k / n_r

Window mode (one arm k* serves the whole target group for the window)::

    alpha_k* += c_t         beta_k* += c_r * n_t / n_r

where ``c_r, n_r`` are the reference group's target events and exposures in the window.
If target and reference events are Poisson with rates proportional to exposure, then given
their sum the arm's count is binomial with ``theta_k = lambda_k / (lambda_k + lambda_r)``, so
with equal exposures the update is exactly the conjugate Beta posterior of ``theta_k``.

A window with no reference exposure cannot be normalised: the update returns
``applied=False`` and the caller keeps the window's data for the next tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Prior:
    """The Beta prior every arm starts from (default Beta(1, 1), uniform)."""

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        for label, name, value in (
            ("prior alpha", "alpha", self.alpha),
            ("prior beta", "beta", self.beta),
        ):
            if not (np.isfinite(value) and value > 0):
                raise InvalidParameterError(
                    f"{label} must be a finite number > 0, got {value!r}", parameter=name
                )


@dataclass(frozen=True)
class WindowCounts:
    """What arrived during one tick window.

    ``arm_events[k]`` and ``arm_exposures[k]`` belong to target-group units served arm k.
    """

    reference_events: float
    reference_exposures: float
    arm_events: FloatArray
    arm_exposures: FloatArray

    @classmethod
    def of(
        cls,
        reference_events: float,
        reference_exposures: float,
        arm_events: npt.ArrayLike,
        arm_exposures: npt.ArrayLike,
    ) -> WindowCounts:
        counts = cls(
            float(reference_events),
            float(reference_exposures),
            np.asarray(arm_events, dtype=np.float64),
            np.asarray(arm_exposures, dtype=np.float64),
        )
        counts.validate()
        return counts

    def validate(self) -> None:
        if self.arm_events.shape != self.arm_exposures.shape or self.arm_events.ndim != 1:
            raise InvalidParameterError(
                "arm_events and arm_exposures must be 1-d arrays of the same length; got "
                f"{self.arm_events.shape} and {self.arm_exposures.shape}",
                parameter="arm_exposures",
            )
        scalars = (self.reference_events, self.reference_exposures)
        arrays = np.concatenate([self.arm_events, self.arm_exposures, np.asarray(scalars)])
        if not np.all(np.isfinite(arrays)) or np.any(arrays < 0):
            raise InvalidParameterError(
                "window counts must be finite and >= 0", parameter=self._first_invalid_count()
            )

    def _first_invalid_count(self) -> str:
        named = (
            ("reference_events", np.asarray([self.reference_events])),
            ("reference_exposures", np.asarray([self.reference_exposures])),
            ("arm_events", self.arm_events),
            ("arm_exposures", self.arm_exposures),
        )
        return next(
            name for name, values in named if not np.all(np.isfinite(values) & (values >= 0))
        )

    @property
    def target_events(self) -> float:
        return float(self.arm_events.sum())

    @property
    def target_exposures(self) -> float:
        return float(self.arm_exposures.sum())


@dataclass(frozen=True)
class PosteriorUpdate:
    """The result of one tick: increments and the posteriors before and after.

    ``applied`` is False when the window had no reference exposure; then the increments are
    zero, the posteriors are unchanged and the caller must carry the window's data forward.
    """

    applied: bool
    alphas_before: FloatArray
    betas_before: FloatArray
    alpha_increments: FloatArray
    beta_increments: FloatArray
    alphas_after: FloatArray
    betas_after: FloatArray


def ratio_increments(
    arm_events: npt.ArrayLike,
    arm_exposures: npt.ArrayLike,
    reference_events: npt.ArrayLike,
    reference_exposures: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """``(c_k, c_r * n_k / n_r)``, vectorised: arm counts of shape ``(..., K)``, reference
    counts of the leading shape ``(...)`` (the simulator passes many runs at once).

    Every ``n_r`` must be > 0; windows without reference exposure are the caller's to hold
    back (see :func:`reference_ratio_update`).
    """
    events = np.asarray(arm_events, dtype=np.float64)
    exposures = np.asarray(arm_exposures, dtype=np.float64)
    n_r = np.asarray(reference_exposures, dtype=np.float64)
    if np.any(n_r <= 0):
        raise InvalidParameterError(
            "reference_exposures must be > 0 to normalise a window", parameter="reference_exposures"
        )
    ratios = np.asarray(reference_events, dtype=np.float64) / n_r
    return events.copy(), ratios[..., None] * exposures


def request_mode_increments(counts: WindowCounts) -> tuple[FloatArray, FloatArray]:
    """``(c_k, c_r * n_k / n_r)`` for every arm; requires ``n_r > 0``."""
    return ratio_increments(
        counts.arm_events,
        counts.arm_exposures,
        counts.reference_events,
        counts.reference_exposures,
    )


def window_mode_increments(counts: WindowCounts, chosen_arm: int) -> tuple[FloatArray, FloatArray]:
    """All of the window's target data credited to ``chosen_arm``: ``(c_t, c_r * n_t / n_r)``."""
    if counts.reference_exposures <= 0:
        raise InvalidParameterError(
            "reference_exposures must be > 0 to normalise a window", parameter="reference_exposures"
        )
    k = counts.arm_events.shape[0]
    if not 0 <= chosen_arm < k:
        raise InvalidParameterError(
            f"chosen_arm must be in [0, {k}), got {chosen_arm}", parameter="chosen_arm"
        )
    alpha_increments = np.zeros(k)
    beta_increments = np.zeros(k)
    alpha_increments[chosen_arm] = counts.target_events
    beta_increments[chosen_arm] = (
        counts.reference_events * counts.target_exposures / counts.reference_exposures
    )
    return alpha_increments, beta_increments


def decayed(values: FloatArray, prior_value: float, decay: float) -> FloatArray:
    """``prior + decay * (value - prior)``: forget old evidence, keep the prior."""
    return prior_value + decay * (values - prior_value)


def reference_ratio_update(
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    counts: WindowCounts,
    *,
    prior: Prior = Prior(),
    decay: float = 1.0,
    chosen_arm: int | None = None,
) -> PosteriorUpdate:
    """Apply one tick of the reference-ratio update to the posteriors of the active arms.

    ``chosen_arm`` selects window mode (the arm that served the window); ``None`` is request
    mode.  ``decay`` (gamma in (0, 1]) is applied to ``(alpha - prior_alpha, beta - prior_beta)``
    before the increments are added; 1 means no decay.
    """
    counts.validate()
    alphas_before = np.asarray(alphas, dtype=np.float64).copy()
    betas_before = np.asarray(betas, dtype=np.float64).copy()
    if alphas_before.shape != counts.arm_events.shape or betas_before.shape != alphas_before.shape:
        raise InvalidParameterError(
            f"alphas, betas and window counts must have one entry per arm; got "
            f"{alphas_before.shape}, {betas_before.shape} and {counts.arm_events.shape}",
            parameter="alphas" if alphas_before.shape != counts.arm_events.shape else "betas",
        )
    if not (0.0 < decay <= 1.0):
        raise InvalidParameterError(f"decay must be in (0, 1], got {decay!r}", parameter="decay")
    if counts.reference_exposures <= 0:
        return PosteriorUpdate(
            False,
            alphas_before,
            betas_before,
            np.zeros_like(alphas_before),
            np.zeros_like(betas_before),
            alphas_before.copy(),
            betas_before.copy(),
        )
    if chosen_arm is None:
        alpha_increments, beta_increments = request_mode_increments(counts)
    else:
        alpha_increments, beta_increments = window_mode_increments(counts, chosen_arm)
    alphas_after = decayed(alphas_before, prior.alpha, decay) + alpha_increments
    betas_after = decayed(betas_before, prior.beta, decay) + beta_increments
    return PosteriorUpdate(
        True,
        alphas_before,
        betas_before,
        alpha_increments,
        beta_increments,
        alphas_after,
        betas_after,
    )
