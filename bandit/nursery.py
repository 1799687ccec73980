"""The nursery: a new arm is served on a schedule of its own until it has enough exposures.

An experiment may keep new arms in a nursery (docs/spec.md, "Choosing an arm"): until an
arm has a minimum number of exposures its draws do not count as exploitation. An arm added
to a long-running experiment starts from the prior while the arms it competes with have
sharp posteriors, so what the policy gives it at first depends on the prior, not on the
arm. The nursery gives it a known share instead: while an active arm has fewer than
``min_exposures`` exposures, the nursery arms together get ``share`` of the draws, split
uniformly among them, and the policy chooses among the other ("grown") arms for the rest.
The nursery arms' posteriors learn from their data meanwhile, as every arm's do; once an
arm has its exposures, the policy draws it.

When every arm is in the nursery (a new experiment) or none is, there is nothing to set
apart: the policy chooses among all arms, exactly as without a nursery, and no random
number is spent on the nursery.

Pure: per-arm arrays in, an arm index out; randomness only from the injected generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.policies import Policy


@dataclass(frozen=True)
class Nursery:
    """Which arms are in the nursery, which are grown, and the share of the draws the
    nursery gets. Build it with :func:`nursery_of`."""

    arms: tuple[int, ...]  # indices of the nursery arms, in arm order
    grown: tuple[int, ...]  # indices of the other arms: the policy chooses among these
    share: float

    def pick(self, rng: np.random.Generator) -> int | None:
        """The nursery arm this draw serves, or None: the policy chooses among ``grown``.

        One uniform variate ``u`` decides both: ``u < share`` serves nursery arm
        ``floor(u / share * n)``, which is uniform over the ``n`` nursery arms given
        ``u < share``. One scalar draw, so a request costs the same with a nursery as
        without one (the policy then draws over fewer arms).
        """
        u = rng.random()
        if u >= self.share:
            return None
        count = len(self.arms)
        # min(): a guard against floating-point rounding up to ``count`` for u near share.
        return self.arms[min(int(u / self.share * count), count - 1)]


def validate_nursery(min_exposures: float, share: float) -> None:
    if not (np.isfinite(min_exposures) and min_exposures >= 0):
        raise InvalidParameterError(
            f"min_exposures must be a finite number >= 0, got {min_exposures!r}",
            parameter="min_exposures",
        )
    if not (0.0 < share < 1.0):
        raise InvalidParameterError(f"share must be in (0, 1), got {share!r}", parameter="share")


def nursery_of(exposures: npt.ArrayLike, min_exposures: float, share: float) -> Nursery | None:
    """The nursery of arms with these ``exposures`` (shape ``(K,)``), or None when the
    policy chooses among all arms: ``min_exposures`` 0 (no nursery), or no arm or every arm
    below it."""
    validate_nursery(min_exposures, share)
    counts = np.asarray(exposures, dtype=np.float64)
    if counts.ndim != 1:
        raise InvalidParameterError(
            f"exposures must have shape (K,); got {counts.shape}", parameter="exposures"
        )
    young = counts < min_exposures
    if not young.any() or young.all():
        return None
    return Nursery(
        arms=tuple(int(i) for i in np.flatnonzero(young)),
        grown=tuple(int(i) for i in np.flatnonzero(~young)),
        share=float(share),
    )


def choose_with_nursery(
    policy: Policy,
    successes: npt.ArrayLike,
    failures: npt.ArrayLike,
    exposures: npt.ArrayLike,
    *,
    min_exposures: float,
    share: float,
    rng: np.random.Generator,
) -> int:
    """The arm (index into the ``(K,)`` arrays) for one draw: a nursery arm with
    probability ``share`` (uniform among them), else the policy's choice among the grown
    arms; the policy's choice among all arms when there is no nursery to set apart."""
    nursery = nursery_of(exposures, min_exposures, share)
    if nursery is None:
        return policy.choose_one(successes, failures, rng)
    picked = nursery.pick(rng)
    if picked is not None:
        return picked
    grown = np.array(nursery.grown)
    chosen = policy.choose_one(
        np.asarray(successes, dtype=np.float64)[grown],
        np.asarray(failures, dtype=np.float64)[grown],
        rng,
    )
    return nursery.grown[chosen]


def probabilities_with_nursery(
    policy: Policy,
    successes: npt.ArrayLike,
    failures: npt.ArrayLike,
    exposures: npt.ArrayLike,
    *,
    min_exposures: float,
    share: float,
) -> npt.NDArray[np.float64]:
    """The probability that one draw of :func:`choose_with_nursery` serves each arm: ``share``
    split uniformly over the nursery arms, the rest as the policy splits it among the grown
    ones (:meth:`Policy.probabilities`); the policy's probabilities over all arms when there is
    no nursery to set apart."""
    s = np.asarray(successes, dtype=np.float64)
    f = np.asarray(failures, dtype=np.float64)
    nursery = nursery_of(exposures, min_exposures, share)
    if nursery is None:
        return policy.probabilities(s, f)
    grown = list(nursery.grown)
    return spread_over_nursery(nursery, policy.probabilities(s[grown], f[grown]))


def spread_over_nursery(
    nursery: Nursery | None, grown_probabilities: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Per arm, the probability that one draw serves it, from the probabilities the policy
    gives the grown arms (in ``nursery.grown`` order): ``share`` split uniformly over the
    nursery arms, ``1 - share`` times the policy's over the grown ones. Without a nursery
    (None) the policy's probabilities are every arm's."""
    policy = np.asarray(grown_probabilities, dtype=np.float64)
    if nursery is None:
        return policy
    probabilities = np.zeros(len(nursery.arms) + len(nursery.grown))
    probabilities[list(nursery.arms)] = nursery.share / len(nursery.arms)
    probabilities[list(nursery.grown)] = (1.0 - nursery.share) * policy
    return probabilities
