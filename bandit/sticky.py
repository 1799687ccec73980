"""Sticky assignment: the arm at a point of [0, 1) under the allocation probabilities.

A sticky experiment serves a target unit the arm ``k`` whose slice of ``[0, 1)`` contains
the unit's point ``u`` (a hash of salt, unit and posterior version: api.serving), the slices
being the allocation probabilities laid end to end in arm order::

    arm(u) = min { k : p_0 + ... + p_k > u }

(the inverse of the allocation's distribution function). When the points of many units are
uniform on ``[0, 1)`` the arms' shares of units are the probabilities ``p_k``, the shares
per-request Thompson draws would give; a unit keeps its arm as long as ``u`` and the
probabilities do. An arm of probability 0 has an empty slice and is never served.

:func:`thompson_allocations` gives many posteriors' allocations at once (a segmented
experiment's segments): Thompson's P(argmax) of each, integrated in one vectorised pass
(bandit.propensities.argmax_probabilities), with the nursery's share.

Pure: probabilities in, an arm index out; no randomness.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.nursery import Nursery, spread_over_nursery
from bandit.propensities import argmax_probabilities


@dataclass(frozen=True)
class Allocation:
    """The allocation's distribution function over arms. Build it with :meth:`of`."""

    # cumulative[k] = (p_0 + ... + p_k) / sum(p): Python floats, for a scalar bisection.
    cumulative: tuple[float, ...]
    last: int  # the last arm with a positive probability: where rounding at u -> 1 lands

    @classmethod
    def of(cls, probabilities: npt.ArrayLike) -> Allocation:
        """From per-arm probabilities (shape ``(K,)``, finite, >= 0, positive sum); they are
        normalised, so an integration's ``1 +- 1e-8`` total is no bias."""
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 1 or p.size == 0:
            raise InvalidParameterError(
                f"probabilities must have shape (K,) with K >= 1; got {p.shape}",
                parameter="probabilities",
            )
        if not (np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0):
            raise InvalidParameterError(
                f"probabilities must be finite, >= 0 and not all 0; got {p.tolist()!r}",
                parameter="probabilities",
            )
        cumulative = np.cumsum(p) / p.sum()
        return cls(tuple(cumulative.tolist()), int(np.flatnonzero(p > 0)[-1]))

    def arm_at(self, u: float) -> int:
        """The arm whose slice holds ``u`` in ``[0, 1)``."""
        return min(bisect_right(self.cumulative, u), self.last)


def thompson_allocations(
    alphas: npt.ArrayLike, betas: npt.ArrayLike, nursery: Nursery | None
) -> list[Allocation]:
    """Per row of the ``(S, K)`` Beta parameters of the arms Thompson sampling draws among
    (``nursery.grown`` when there is a nursery, else every arm), the allocation one draw
    serves: ``share`` split over the nursery arms, the rest by Thompson's P(argmax)."""
    first = argmax_probabilities(alphas, betas)
    return [Allocation.of(spread_over_nursery(nursery, row)) for row in first]
