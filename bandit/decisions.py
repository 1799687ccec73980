"""The rules by which the experiment report acts: guardrails, the circuit breaker, winners.

Pure functions of the report's numbers (:mod:`bandit.report`) and of the posteriors'
P(best) (:mod:`bandit.summaries`); the service (``api.services.decisions``) gathers the
numbers after each applied tick and carries out what these rules decide. docs/decisions.md
explains each rule and its thresholds.

Why the always-valid interval: the rules are evaluated after every tick, that is, the
report is looked at continuously and the first look that crosses the line acts. A
fixed-horizon interval checked that way excludes the truth far more often than its 5%
(docs/statistics.md measures it); the always-valid one (a confidence sequence) covers the
effect at all times at once, so acting on its first crossing keeps the 5% error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from bandit.errors import InvalidParameterError
from bandit.evolution import _check_real

# Above 1/2, at most one arm can pass the winner's P(best) threshold at a time.
MIN_WINNER_P_BEST = 0.5
# The longest sustained period (30 days) and the largest minimum lift (+10,000%) accepted.
MAX_WINNER_SUSTAIN_S = 30 * 86_400.0
MAX_WINNER_MIN_LIFT = 100.0
MAX_MIN_EXPOSURES = 1e12


@dataclass(frozen=True)
class DecisionSettings:
    """When an experiment's decisions act; validated at construction.

    * ``guardrail_min_exposures``: an arm (or the bandit group, for the circuit breaker)
      is judged only once it has this many exposures in the phase;
    * ``circuit_breaker``: pause the experiment when the bandit group as a whole is
      confidently worse than the reference beyond the tolerance;
    * ``decision_max_loss``: the tolerated relative loss on the decision metric (0.05: the
      bandit group may be up to 5% worse before the breaker pauses);
    * ``winner_p_best``, ``winner_min_lift``, ``winner_sustain_s``: an arm is declared the
      winner once its P(best) is at least ``winner_p_best`` and the lower end of its
      always-valid lift interval exceeds ``winner_min_lift``, at every evaluation for
      ``winner_sustain_s`` seconds.
    """

    guardrail_min_exposures: float = 1000.0
    circuit_breaker: bool = True
    decision_max_loss: float = 0.05
    winner_p_best: float = 0.95
    winner_min_lift: float = 0.0
    winner_sustain_s: float = 3600.0

    def __post_init__(self) -> None:
        _check_real(
            "guardrail_min_exposures",
            self.guardrail_min_exposures,
            low=0.0,
            high=MAX_MIN_EXPOSURES,
        )
        if not isinstance(self.circuit_breaker, bool):
            raise InvalidParameterError(
                f"circuit_breaker must be a boolean, got {self.circuit_breaker!r}",
                parameter="circuit_breaker",
            )
        _check_real("decision_max_loss", self.decision_max_loss, low=0.0, high=1.0)
        _check_real(
            "winner_p_best", self.winner_p_best, low=MIN_WINNER_P_BEST, high=1.0, low_open=True
        )
        _check_real("winner_min_lift", self.winner_min_lift, low=-1.0, high=MAX_WINNER_MIN_LIFT)
        _check_real("winner_sustain_s", self.winner_sustain_s, low=0.0, high=MAX_WINNER_SUSTAIN_S)


def confidently_worse(
    lower_anytime: float | None,
    upper_anytime: float | None,
    *,
    higher_is_better: bool,
    max_loss: float,
) -> bool:
    """Whether the always-valid interval of a relative effect lies entirely past the
    tolerated loss: for a metric where higher is better, ``upper < -max_loss`` (even the
    most favourable value the data allow is a loss larger than tolerated); where lower is
    better, ``lower > +max_loss``. No interval (too little data): not worse."""
    if not (math.isfinite(max_loss) and max_loss >= 0):
        raise InvalidParameterError(
            f"max_loss must be a finite number >= 0, got {max_loss!r}", parameter="max_loss"
        )
    if higher_is_better:
        return upper_anytime is not None and upper_anytime < -max_loss
    return lower_anytime is not None and lower_anytime > max_loss


def passes_winner_thresholds(
    p_best: float, lift_lower_anytime: float | None, settings: DecisionSettings
) -> bool:
    """One evaluation of the winner rule: P(best) at least ``winner_p_best`` and the lift's
    always-valid lower bound above ``winner_min_lift`` (both strictly needed)."""
    return (
        p_best >= settings.winner_p_best
        and lift_lower_anytime is not None
        and lift_lower_anytime > settings.winner_min_lift
    )


@dataclass(frozen=True)
class WinnerCandidate:
    """The arm that has passed the winner thresholds at every evaluation since ``since``."""

    arm_id: int
    since: datetime


def next_candidate(
    current: WinnerCandidate | None, passing_arm_id: int | None, now: datetime
) -> WinnerCandidate | None:
    """The candidate after an evaluation at ``now`` in which ``passing_arm_id`` (or no arm)
    passed: the same arm keeps its ``since``; another arm starts afresh; none clears it."""
    if passing_arm_id is None:
        return None
    if current is not None and current.arm_id == passing_arm_id:
        return current
    return WinnerCandidate(passing_arm_id, now)


def sustained(candidate: WinnerCandidate, now: datetime, sustain_s: float) -> bool:
    """Whether the candidate has passed for at least ``sustain_s`` seconds by ``now``."""
    return (now - candidate.since).total_seconds() >= sustain_s
