"""The experiment report's health checks: is the experiment able to answer its question?

Each check is a pure function of numbers the service gathers (per-bucket exposures, the
recent ticks, the scorecard's results, clocks as seconds) and returns a
:class:`HealthCheck`: a ``status`` (ok, warning, failed), the evidence in words
(``detail``) and as numbers (``evidence``), and what to do about it (``action``).
docs/statistics.md describes every check, its thresholds and why.

* :func:`sample_ratio_check`: is the reference group's share of the exposures the
  configured ``reference_share``?  Decided by the clustered test
  (:func:`bandit.report.clustered_share_test`); the plain chi-square on exposures is shown
  beside it.  Units are not kept, so both are on exposures, and the detail says so.
* :func:`reference_traffic_check`: windows carried forward because the reference group had
  no exposure (the posteriors cannot move without it).
* :func:`scheduler_check`: no tick for several update intervals while running.
* :func:`exploration_check`: nearly all recent target traffic on one arm whose lift over
  the reference is not established.
* :func:`decision_time_check`: roughly when the best arm's lift is resolved at current
  traffic (:func:`bandit.report.time_to_decision`), "underpowered" beyond the horizon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from bandit.report import (
    DEFAULT_DECISION_HORIZON_SECONDS,
    SRM_P_VALUE_THRESHOLD,
    Reason,
    RelativeEffect,
    clustered_share_test,
    sample_ratio_mismatch,
    time_to_decision,
)

Evidence = dict[str, float | int | str | bool | None]

# The SRM test runs once the smaller group expects this many exposures: below it, the
# t approximation over buckets (and the chi-square's) is not to be trusted.
SRM_MIN_EXPECTED_EXPOSURES = 100.0
# Carried-forward ticks in a row (the newest ones) that make a warning, and a failure.
CARRIED_WARNING = 1
CARRIED_FAILED = 3
# Update intervals without any tick (applied, carried or empty) that make a warning, and a
# failure, while the experiment runs; plus a grace for the scheduler's poll.
SCHEDULER_WARNING_INTERVALS = 2.0
SCHEDULER_FAILED_INTERVALS = 5.0
SCHEDULER_GRACE_S = 5.0
# Exploration collapse: this share of the recent target exposures on one arm...
COLLAPSE_SHARE = 0.95
# ...out of at least this many recent target exposures (fewer say nothing).
COLLAPSE_MIN_EXPOSURES = 200.0

NO_ACTION = "nothing to do"


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"


class Check(StrEnum):
    """The names of the checks, as the report shows them."""

    SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
    REFERENCE_TRAFFIC = "reference_traffic"
    SCHEDULER = "scheduler"
    EXPLORATION = "exploration"
    TIME_TO_DECISION = "time_to_decision"


@dataclass(frozen=True)
class HealthCheck:
    check: Check
    status: Status
    detail: str
    action: str = NO_ACTION
    evidence: Evidence = field(default_factory=dict)


def sample_ratio_check(
    reference_by_bucket: npt.ArrayLike,
    target_by_bucket: npt.ArrayLike,
    reference_share: float,
    *,
    threshold: float = SRM_P_VALUE_THRESHOLD,
) -> HealthCheck:
    """The reference group's share of the exposures against ``reference_share``.

    Units are not kept (only exposures per unit bucket), so the test is on exposures, and
    the detail says so. The clustered test over the unit buckets decides the status: the
    plain chi-square treats every exposure as assigned on its own and flags healthy
    experiments whose units make several exposures each (docs/statistics.md measures it);
    it is shown beside for comparison. Not tested (ok) until the smaller group expects
    ``SRM_MIN_EXPECTED_EXPOSURES`` exposures.
    """
    reference = np.asarray(reference_by_bucket, dtype=np.float64)
    target = np.asarray(target_by_bucket, dtype=np.float64)
    reference_total, target_total = float(reference.sum()), float(target.sum())
    total = reference_total + target_total
    expected_smaller = total * min(reference_share, 1.0 - reference_share)
    evidence: Evidence = {
        "basis": "exposures",
        "reference_exposures": reference_total,
        "target_exposures": target_total,
        "expected_share": reference_share,
        "observed_share": reference_total / total if total else None,
        "buckets": int(reference.size),
        "threshold": threshold,
    }
    if expected_smaller < SRM_MIN_EXPECTED_EXPOSURES:
        return HealthCheck(
            Check.SAMPLE_RATIO_MISMATCH,
            Status.OK,
            f"not tested yet: {total:,.0f} exposures, the smaller group expects "
            f"{expected_smaller:,.1f} (the test needs {SRM_MIN_EXPECTED_EXPOSURES:,.0f})",
            evidence=evidence,
        )
    clustered = clustered_share_test(reference, reference + target, reference_share)
    plain = sample_ratio_mismatch(
        [reference_total, target_total],
        [reference_share, 1.0 - reference_share],
        threshold=threshold,
    )
    evidence.update(
        statistic=_finite_or_none(clustered.statistic),
        p_value=clustered.p_value,
        degrees_of_freedom=clustered.degrees_of_freedom,
        chi_square=_finite_or_none(plain.statistic),
        chi_square_p_value=plain.p_value,
    )
    statistic = "-" if clustered.statistic is None else f"{clustered.statistic:.2f}"
    detail = (
        f"on exposures; units are not kept. The reference group has {reference_total:,.0f} "
        f"of {total:,.0f} exposures ({reference_total / total:.2%}; expected "
        f"{reference_share:.2%}). Clustered test over {reference.size} unit buckets, which "
        f"decides: t = {statistic}, p = {clustered.p_value:.3g} (flagged below "
        f"{threshold:g}). Plain chi-square on exposures, shown for comparison (it counts "
        f"each exposure as assigned on its own and over-flags): p = {plain.p_value:.3g}."
    )
    if not clustered.flagged:
        return HealthCheck(Check.SAMPLE_RATIO_MISMATCH, Status.OK, detail, evidence=evidence)
    return HealthCheck(
        Check.SAMPLE_RATIO_MISMATCH,
        Status.FAILED,
        detail,
        "Do not trust the effects until the cause is found. Check that every client asks "
        "for the assignment and serves what it gets, that both groups count exposures the "
        "same way (exposure_source, bots filtered alike, no cached pages for one group), "
        "and whether the treatment changes how many exposures a user makes: on exposures "
        "that shows as a mismatch too.",
        evidence,
    )


def reference_traffic_check(
    applied: Sequence[bool], seconds_since_applied: float | None
) -> HealthCheck:
    """Windows carried forward for lack of reference exposures, from the recent ticks.

    ``applied`` is the applied flag of the recent recorded ticks, oldest first;
    ``seconds_since_applied`` the age of the latest applied tick (``None``: none yet). A
    window without any reference exposure cannot be normalised: the tick records it but
    leaves its counts for the next one (carried forward), and the posteriors stand still.
    """
    in_a_row = len(applied) - _last_true(applied) - 1
    carried = sum(1 for flag in applied if not flag)
    evidence: Evidence = {
        "recent_ticks": len(applied),
        "carried_in_a_row": in_a_row,
        "carried_recent": carried,
        "seconds_since_applied": seconds_since_applied,
    }
    if not applied:
        return HealthCheck(Check.REFERENCE_TRAFFIC, Status.OK, "no ticks yet", evidence=evidence)
    since = (
        "no tick has been applied yet"
        if seconds_since_applied is None
        else f"the last applied tick was {_duration(seconds_since_applied)} ago"
    )
    detail = (
        f"no window carried forward in the last {len(applied)} ticks; {since}"
        if carried == 0
        else f"carried forward for lack of a reference exposure: {carried} of the last "
        f"{len(applied)} ticks, the newest {in_a_row} in a row; {since}"
    )
    if in_a_row < CARRIED_WARNING:
        return HealthCheck(Check.REFERENCE_TRAFFIC, Status.OK, detail, evidence=evidence)
    status = Status.FAILED if in_a_row >= CARRIED_FAILED else Status.WARNING
    return HealthCheck(
        Check.REFERENCE_TRAFFIC,
        status,
        detail,
        "The posteriors and the report stand still until the reference group has exposures "
        "again; the waiting counts are kept for that tick. Check that reference units are "
        "served and their exposures counted (with exposure_source 'client', that clients "
        "report them), and that traffic reaches the experiment at all.",
        evidence,
    )


def scheduler_check(
    running: bool, seconds_since_tick: float, update_interval_s: float
) -> HealthCheck:
    """No tick (applied, carried or an empty window) for several update intervals while
    the experiment runs: no replica is applying ticks (scheduler disabled everywhere,
    stuck, or failing: the replicas' logs say which)."""
    intervals = seconds_since_tick / update_interval_s
    evidence: Evidence = {
        "running": running,
        "seconds_since_tick": seconds_since_tick,
        "update_interval_s": update_interval_s,
        "intervals": intervals,
    }
    if not running:
        return HealthCheck(
            Check.SCHEDULER, Status.OK, "not running: no ticks are due", evidence=evidence
        )
    detail = (
        f"the last tick was {_duration(seconds_since_tick)} ago, {intervals:.1f} update "
        f"intervals of {_duration(update_interval_s)}"
    )
    late = seconds_since_tick - SCHEDULER_GRACE_S
    if late <= SCHEDULER_WARNING_INTERVALS * update_interval_s:
        return HealthCheck(Check.SCHEDULER, Status.OK, detail, evidence=evidence)
    status = (
        Status.FAILED if late > SCHEDULER_FAILED_INTERVALS * update_interval_s else Status.WARNING
    )
    return HealthCheck(
        Check.SCHEDULER,
        status,
        detail,
        "No replica is applying ticks: check that at least one runs with "
        "RANKTUNE_SCHEDULER_ENABLED=true and look in its log for failing ticks. "
        "POST /v1/experiments/{name}/tick applies one now.",
        evidence,
    )


def exploration_check(
    recent_exposures: Mapping[int, float],
    active_arms: int,
    decision_results: Mapping[int, RelativeEffect],
) -> HealthCheck:
    """Exploration collapse: at least ``COLLAPSE_SHARE`` of the recent target exposures on
    one arm whose lift over the reference on the decision metric is not established (its
    always-valid interval does not lie above 0).

    ``recent_exposures``: target exposures per arm over the recent applied ticks;
    ``decision_results``: each arm's result on the decision metric. Concentrating on an arm
    that is shown to beat the reference is the bandit doing its job; concentrating on one
    that is not means it stopped exploring before the evidence was in.
    """
    total = float(sum(recent_exposures.values()))
    evidence: Evidence = {"recent_target_exposures": total, "active_arms": active_arms}
    if active_arms < 2:
        return HealthCheck(
            Check.EXPLORATION,
            Status.OK,
            f"{active_arms} active arm: nothing to explore",
            evidence=evidence,
        )
    if total < COLLAPSE_MIN_EXPOSURES:
        return HealthCheck(
            Check.EXPLORATION,
            Status.OK,
            f"too little recent target traffic to judge ({total:,.0f} exposures; "
            f"{COLLAPSE_MIN_EXPOSURES:,.0f} needed)",
            evidence=evidence,
        )
    arm_id, top = max(recent_exposures.items(), key=lambda item: (item[1], -item[0]))
    share = top / total
    result = decision_results.get(arm_id)
    shown_better = (
        result is not None and result.lower_anytime is not None and result.lower_anytime > 0
    )
    evidence.update(top_arm_id=arm_id, top_share=share, top_arm_beats_reference=shown_better)
    detail = f"arm {arm_id} had {share:.1%} of the recent target exposures ({total:,.0f})"
    if share < COLLAPSE_SHARE:
        return HealthCheck(Check.EXPLORATION, Status.OK, detail, evidence=evidence)
    if shown_better:
        assert result is not None and result.effect is not None
        return HealthCheck(
            Check.EXPLORATION,
            Status.OK,
            f"{detail}, and it beats the reference on the decision metric (effect "
            f"{result.effect:+.1%}, always-valid interval above 0)",
            evidence=evidence,
        )
    lift = (
        "no estimate yet"
        if result is None or result.effect is None
        else f"effect {result.effect:+.1%}"
        + (
            ""
            if result.lower_anytime is None or result.upper_anytime is None
            else f", always-valid interval {result.lower_anytime:+.1%} to "
            f"{result.upper_anytime:+.1%}"
        )
    )
    return HealthCheck(
        Check.EXPLORATION,
        Status.WARNING,
        f"{detail}, but its lift over the reference on the decision metric is not "
        f"established ({lift})",
        "The bandit stopped exploring before the evidence was in; the other arms get too "
        "little traffic to catch up. Consider the nursery (nursery_exposures), an "
        "exploring policy (egreedy, edecay), decay < 1 if the effects drift, or retiring "
        "the arm by hand if the report shows it is not better.",
        evidence,
    )


def decision_time_check(
    decision_results: Mapping[int, RelativeEffect],
    arm_rates: Mapping[int, float],
    reference_rate: float | None,
    *,
    min_detectable_effect: float | None = None,
    horizon_seconds: float = DEFAULT_DECISION_HORIZON_SECONDS,
) -> HealthCheck:
    """Roughly how long until the best arm's lift over the reference is resolved.

    The best arm is the one with the highest relative effect on the decision metric among
    ``decision_results`` (the active arms); its exposure rate (``arm_rates``, per second)
    and the reference group's (``reference_rate``; ``None``: not measurable yet) come from
    the recent ticks. :func:`bandit.report.time_to_decision` projects when its always-valid
    interval excludes 0 (or becomes narrower than ``min_detectable_effect``). Beyond
    ``horizon_seconds`` it is "underpowered": a warning.
    """
    estimated = {
        arm: result for arm, result in decision_results.items() if result.effect is not None
    }
    evidence: Evidence = {"horizon_seconds": horizon_seconds}
    if not estimated:
        return HealthCheck(
            Check.TIME_TO_DECISION,
            Status.OK,
            "no arm has an estimate on the decision metric yet",
            evidence=evidence,
        )
    arm_id, best = max(estimated.items(), key=lambda item: (item[1].effect or 0.0, -item[0]))
    assert best.effect is not None
    evidence.update(best_arm_id=arm_id, effect=best.effect)
    name = f"{arm_id} (effect {best.effect:+.1%})"
    rate = arm_rates.get(arm_id)
    if rate is None or reference_rate is None:
        return HealthCheck(
            Check.TIME_TO_DECISION,
            Status.OK,
            f"best arm {name}: not projected yet, the traffic rates need two applied ticks",
            evidence=evidence,
        )
    evidence.update(arm_exposures_per_s=rate, reference_exposures_per_s=reference_rate)
    decision = time_to_decision(
        best,
        rate,
        reference_rate,
        min_detectable_effect=min_detectable_effect,
        horizon_seconds=horizon_seconds,
    )
    evidence.update(
        seconds=decision.seconds,
        target_half_width=decision.target_half_width,
        half_width_now=decision.half_width_now,
        reason=None if decision.reason is None else decision.reason.value,
    )
    if decision.seconds == 0:
        return HealthCheck(
            Check.TIME_TO_DECISION,
            Status.OK,
            f"best arm {name}: decided, its always-valid half-width "
            f"{decision.half_width_now:.1%} is below the target {decision.target_half_width:.1%}",
            evidence=evidence,
        )
    if decision.seconds is not None:
        return HealthCheck(
            Check.TIME_TO_DECISION,
            Status.OK,
            f"best arm {name}: about {_duration(decision.seconds)} more at current traffic "
            f"(always-valid half-width {decision.half_width_now:.1%} now, "
            f"{decision.target_half_width:.1%} needed)",
            evidence=evidence,
        )
    if decision.reason in (Reason.UNDERPOWERED, Reason.NO_TRAFFIC):
        return HealthCheck(
            Check.TIME_TO_DECISION,
            Status.WARNING,
            f"best arm {name}: underpowered, not resolved within "
            f"{_duration(horizon_seconds)} at current traffic ({decision.reason.value})",
            "At this traffic and effect size the report will not settle the question: send "
            "more traffic to the experiment, raise reference_share, or accept a larger "
            "minimum detectable effect (?min_detectable_effect=).",
            evidence,
        )
    reason = "undefined" if decision.reason is None else decision.reason.value
    return HealthCheck(
        Check.TIME_TO_DECISION,
        Status.OK,
        f"best arm {name}: not projected yet ({reason})",
        evidence=evidence,
    )


def _last_true(flags: Sequence[bool]) -> int:
    """Index of the last True, -1 if none."""
    for index in range(len(flags) - 1, -1, -1):
        if flags[index]:
            return index
    return -1


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _duration(seconds: float) -> str:
    """A rough human duration: "45 s", "12 min", "3.5 h", "2.1 days"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
