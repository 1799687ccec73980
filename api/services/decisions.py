"""Decisions that act on the experiment report: a guardrail retires an arm, the circuit
breaker pauses the experiment, a winner is declared, a sample ratio mismatch is notified
(docs/decisions.md has the rules).

:func:`evaluate_decisions` runs after every applied tick, the scheduler's and an admin's,
in a transaction of its own (``api.runtime.Runtime.evaluate_decisions``): a failure is
logged and never fails or rolls back the tick. It locks the experiment row as a tick does,
so of two replicas evaluating at once one waits for the other and then sees what it did
(the arm retired, the experiment paused, the winner declared, the mismatch notified):
each decision is taken once. It reads the phase's report counts, O(arms x metrics x
buckets) rows (twice after a breaker pause and a resume), and draws P(best) only when
some arm's lift already passes ``winner_min_lift``.

Each decision goes through the existing mechanism (:func:`retire_arm`,
:func:`change_status`) and is recorded where people look: the audit log (actor
"decisions"), a report snapshot of the scorecard it acted on, a notification (outbox), and
for a guardrail a generation with trigger "guardrail", so the arm set's history stays in
``GET /v1/experiments/{name}/generations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, Direction, ExperimentStatus, Group, MetricRole, NotificationKind
from api.models import Arm, Experiment, Generation
from api.services.common import decisions_in_force
from api.services.experiments import change_status, retire_arm
from api.services.notifications import notify
from api.services.report import (
    BANDIT,
    Baseline,
    CountRow,
    Scorecard,
    ScoreRow,
    check_document,
    row_document,
    sample_ratio_of,
    save_snapshot,
    scorecard,
    scorecard_document,
)
from api.serving import REPORT_BUCKETS
from arms.origins import Origin
from bandit.decisions import (
    DecisionSettings,
    WinnerCandidate,
    confidently_worse,
    next_candidate,
    passes_winner_thresholds,
    sustained,
)
from bandit.health import HealthCheck, Status
from bandit.summaries import bounded_draws, prob_beat_reference, prob_best

# Who the audit log names for these decisions.
ACTOR = "decisions"
# Snapshot triggers (and, for a guardrail, the generation's trigger).
GUARDRAIL = "guardrail"
CIRCUIT_BREAKER = "circuit_breaker"
WINNER = "winner"
SRM = "srm"
# The circuit breaker's rules (``paused_reason.rule``).
RULE_DECISION_METRIC = "decision_metric"
RULE_GUARDRAIL = "guardrail"
RULE_LAST_ARM = "guardrail_last_arm"
# P(best) of the winner rule: 10,000 draws (standard error at most 0.005, 0.0022 at 0.95),
# fewer when draws x active arms would exceed 2,000,000 samples (~0.1 s).
WINNER_P_BEST_DRAWS = 10_000
WINNER_MAX_SAMPLES = 2_000_000


@dataclass(frozen=True)
class DecisionOutcome:
    """What one evaluation did."""

    retired_arm_ids: tuple[int, ...] = ()
    paused: bool = False
    declared_winner_arm_id: int | None = None
    sample_ratio_mismatch: bool = False  # notified now (it had not failed before)

    @property
    def serving_changed(self) -> bool:
        """Whether what is served changed (replicas reload their snapshots)."""
        return bool(self.retired_arm_ids) or self.paused


@dataclass(frozen=True)
class Trip:
    """A comparison whose always-valid interval lies entirely past its tolerated loss."""

    row: ScoreRow
    max_loss: float
    counted_since: str | None = None  # the breaker after a resume: counts since then

    def evidence(self) -> dict[str, Any]:
        """The report row that tripped, with the tolerance (JSON)."""
        return {
            **row_document(self.row),
            "max_loss": self.max_loss,
            "counted_since": self.counted_since,
        }

    def sentence(self) -> str:
        """The reason in words, with the numbers."""
        result = self.row.result
        who = "the bandit group" if self.row.treatment == BANDIT else f"arm {self.row.treatment}"
        better = "higher" if self.row.metric.direction == Direction.INCREASE else "lower"
        since = f" (counted since {self.counted_since})" if self.counted_since else ""
        return (
            f"{self.row.metric.role} metric {self.row.metric.event!r} ({better} is better): "
            f"{who} {_percent(result.effect)} against the reference, always-valid "
            f"{1 - result.alpha:.0%} interval [{_percent(result.lower_anytime)}, "
            f"{_percent(result.upper_anytime)}] entirely past the tolerated loss of "
            f"{self.max_loss:.2%}; {result.treatment.events:g} events in "
            f"{result.treatment.exposures:g} exposures against {result.control.events:g} in "
            f"{result.control.exposures:g}{since}"
        )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def evaluate_decisions(
    session: Session,
    experiment_id: int,
    *,
    now: datetime,
    rng: np.random.Generator,
    replica: str | None = None,
) -> DecisionOutcome | None:
    """Evaluate the sample ratio, guardrails, the circuit breaker and the winner rule once,
    and act; None if the experiment is missing or neither running nor paused.

    Order: the sample ratio check first (it is about the data all the others read; it
    notifies and changes nothing else), then guardrails (a harmful arm is retired before
    anything else looks at the arm set), then the circuit breaker (only while running),
    then the winner among the arms still active. ``rng`` only re-draws window mode's
    pinned arm after a retirement.
    """
    experiment = repo.get_experiment(session, experiment_id, lock=True)
    if experiment is None or experiment.status not in (
        ExperimentStatus.RUNNING,
        ExperimentStatus.PAUSED,
    ):
        return None
    settings = decisions_in_force(experiment).to_settings()
    seed = [experiment.id, experiment.tick_count]
    arms = list(repo.arms_of(session, experiment.id))
    card = scorecard(session, experiment)
    report = scorecard_document(card, experiment)
    act = _Actions(session, experiment, arms, report, now, rng, replica)
    mismatch = _sample_ratio(act, card)

    retired: list[int] = []
    paused = False
    for arm, trip in _guardrail_trips(card, arms, settings):
        if len(_active_targets(arms)) > 1:
            act.retire(arm, trip)
            retired.append(arm.id)
        elif experiment.status == ExperimentStatus.RUNNING and not _overruled(experiment, arm):
            act.pause(trip, RULE_LAST_ARM, arm_id=arm.id)
            paused = True
    if settings.circuit_breaker and experiment.status == ExperimentStatus.RUNNING:
        harm = _breaker_trip(session, experiment, card, settings)
        if harm is not None:
            decision = harm.row.metric.role == MetricRole.DECISION
            act.pause(harm, RULE_DECISION_METRIC if decision else RULE_GUARDRAIL)
            paused = True
    winner = _winner(act, card, settings, seed)
    return DecisionOutcome(tuple(retired), paused, winner, mismatch)


# -- sample ratio mismatch -----------------------------------------------------------------
def _srm_alert_of_phase(experiment: Experiment) -> dict[str, Any] | None:
    alert = experiment.srm_alert
    return alert if alert is not None and alert.get("phase") == experiment.phase else None


def _sample_ratio(act: _Actions, card: Scorecard) -> bool:
    """The report's sample ratio check (:func:`sample_ratio_of`): notify when it turns to
    failed, once; when it is ok again, record that, so that the next failure is notified.
    Returns whether it notified now."""
    check = sample_ratio_of(card, act.experiment)
    alert = _srm_alert_of_phase(act.experiment)
    if check.status == Status.FAILED:
        if alert is None:
            act.sample_ratio_mismatch(check)
            return True
    elif alert is not None:
        act.sample_ratio_resolved(check, alert)
    return False


# -- guardrails ----------------------------------------------------------------------------
def _active_targets(arms: Sequence[Arm]) -> list[Arm]:
    return [a for a in arms if a.status == ArmStatus.ACTIVE and a.origin != Origin.REFERENCE]


def _trip(
    row: ScoreRow, max_loss: float, min_exposures: float, counted_since: str | None = None
) -> Trip | None:
    """The row as a trip if it has enough exposures and is confidently worse."""
    result = row.result
    if result.treatment.exposures < min_exposures:
        return None
    worse = confidently_worse(
        result.lower_anytime,
        result.upper_anytime,
        higher_is_better=row.metric.direction == Direction.INCREASE,
        max_loss=max_loss,
    )
    return Trip(row, max_loss, counted_since) if worse else None


def _max_loss(row: ScoreRow, settings: DecisionSettings) -> float | None:
    """The tolerated loss of the row's metric; None for a metric no rule protects
    (secondary). A guardrail declared without ``max_loss`` tolerates no confident loss."""
    if row.metric.role == MetricRole.DECISION:
        return settings.decision_max_loss
    if row.metric.role == MetricRole.GUARDRAIL:
        return row.metric.max_loss or 0.0
    return None


def _guardrail_trips(
    card: Scorecard, arms: Sequence[Arm], settings: DecisionSettings
) -> list[tuple[Arm, Trip]]:
    """Each active arm confidently worse on some guardrail (the first such guardrail in
    declaration order), by arm id."""
    active = {arm.id: arm for arm in _active_targets(arms)}
    trips: dict[int, Trip] = {}
    for row in card.rows:
        if row.metric.role != MetricRole.GUARDRAIL or not isinstance(row.treatment, int):
            continue
        if row.treatment not in active or row.treatment in trips:
            continue
        max_loss = _max_loss(row, settings)
        assert max_loss is not None  # a guardrail's
        trip = _trip(row, max_loss, settings.guardrail_min_exposures)
        if trip is not None:
            trips[row.treatment] = trip
    return [(active[arm_id], trips[arm_id]) for arm_id in sorted(trips)]


def _overruled(experiment: Experiment, arm: Arm) -> bool:
    """Whether an admin resumed the experiment after the breaker paused it for this arm's
    guardrail (the last active arm): that verdict is not repeated in this phase."""
    baseline = _baseline_of_phase(experiment)
    return baseline is not None and baseline.get("arm_id") == arm.id


# -- the circuit breaker -------------------------------------------------------------------
def _baseline_of_phase(experiment: Experiment) -> dict[str, Any] | None:
    baseline = experiment.breaker_baseline
    return baseline if baseline is not None and baseline.get("phase") == experiment.phase else None


def _breaker_trip(
    session: Session,
    experiment: Experiment,
    card: Scorecard,
    settings: DecisionSettings,
) -> Trip | None:
    """The first of the bandit group's rows (decision metric, then the guardrails) that is
    confidently worse beyond its tolerance; after a breaker pause and a resume, judged on
    the counts since the pause only (:func:`breaker_scorecard`)."""
    baseline = _baseline_of_phase(experiment)
    judged = breaker_scorecard(session, experiment, card)
    rows = [row for row in judged.rows if row.treatment == BANDIT]
    since = None if baseline is None else str(baseline["at"])
    for row in rows:
        max_loss = _max_loss(row, settings)
        if max_loss is None:
            continue
        trip = _trip(row, max_loss, settings.guardrail_min_exposures, since)
        if trip is not None:
            return trip
    return None


def breaker_scorecard(session: Session, experiment: Experiment, card: Scorecard) -> Scorecard:
    """The scorecard the circuit breaker judges: the phase's (``card``), or after a breaker
    pause and a resume, the scorecard of what was counted since the pause (the bandit
    group's rows only): every metric from the later of the pause and its declaration, as
    the report computes "since" for a declared metric."""
    baseline = _baseline_of_phase(experiment)
    if baseline is None:
        return card
    since = Baseline(datetime.fromisoformat(baseline["at"]), _baseline_rows(baseline, card))
    return scorecard(session, experiment, since=since, per_arm=False)


def _baseline_rows(baseline: dict[str, Any], card: Scorecard) -> tuple[CountRow, ...]:
    """The stored baseline as count rows. Baselines stored before migration 0013 hold
    each group's totals, not each arm's: the target group's are read as one served arm's,
    which gives the bandit group's rows (the sums over its arms) exactly, and only those
    are read from a baseline."""
    if "counts" in baseline:
        return tuple(
            (int(arm_id), group, kind, bucket, int(count))
            for group, kinds in baseline["counts"].items()
            for kind, by_arm in kinds.items()
            for arm_id, counts in by_arm.items()
            for bucket, count in enumerate(counts)
            if count
        )
    served = sorted(card.counts.served(Group.TARGET)) if card.counts is not None else []
    holders = {Group.REFERENCE.value: card.reference_arm_id}
    if served:
        holders[Group.TARGET.value] = served[0]
    return tuple(
        (arm_id, group, kind, bucket, int(count))
        for group, arm_id in holders.items()
        for kind, counts in baseline.get(group, {}).items()
        for bucket, count in enumerate(counts)
        if count
    )


def _baseline(
    session: Session, experiment: Experiment, now: datetime, arm_id: int | None
) -> dict[str, Any]:
    """The phase's counts as they stand, per group, type and arm (one list of per-bucket
    counts each), to judge only later counts after a resume."""
    counts: dict[str, dict[str, dict[str, list[int]]]] = {}
    for arm, group, kind, bucket, count in repo.metric_counts(
        session, experiment.id, experiment.phase
    ):
        by_arm = counts.setdefault(group, {}).setdefault(kind, {})
        by_arm.setdefault(str(arm), [0] * REPORT_BUCKETS)[bucket] += count
    return {
        "phase": experiment.phase,
        "at": now.isoformat(),
        "arm_id": arm_id,
        "buckets": REPORT_BUCKETS,
        "counts": counts,
    }


# -- the winner ----------------------------------------------------------------------------
def _candidate_of_phase(experiment: Experiment) -> WinnerCandidate | None:
    stored = experiment.winner_candidate
    if stored is None or stored.get("phase") != experiment.phase:
        return None
    return WinnerCandidate(int(stored["arm_id"]), datetime.fromisoformat(stored["since"]))


def _winner(
    act: _Actions, card: Scorecard, settings: DecisionSettings, seed: list[int]
) -> int | None:
    """Track the arm passing the winner thresholds; declare it once it has passed for
    ``winner_sustain_s``. Returns the arm declared now, if any."""
    experiment, now = act.experiment, act.now
    active = _active_targets(act.arms)
    rows = {arm.id: card.row(experiment.target_event, arm.id) for arm in active}
    hopeful = [
        arm
        for arm in active
        if (row := rows[arm.id]) is not None
        and row.result.lower_anytime is not None
        and row.result.lower_anytime > settings.winner_min_lift
    ]
    passing: Arm | None = None
    p_best = 0.0
    draws = bounded_draws(WINNER_P_BEST_DRAWS, len(active), WINNER_MAX_SAMPLES)
    if hopeful:
        probabilities = prob_best(
            [arm.alpha for arm in active],
            [arm.beta for arm in active],
            np.random.default_rng(seed),
            draws,
        )
        for index, arm in enumerate(active):
            row = rows[arm.id]
            lower = None if row is None else row.result.lower_anytime
            if arm in hopeful and passes_winner_thresholds(
                float(probabilities[index]), lower, settings
            ):
                passing, p_best = arm, float(probabilities[index])
    current = _candidate_of_phase(experiment)
    candidate = next_candidate(current, None if passing is None else passing.id, now)
    if candidate != current:
        experiment.winner_candidate = (
            None
            if candidate is None
            else {
                "arm_id": candidate.arm_id,
                "since": candidate.since.isoformat(),
                "phase": experiment.phase,
            }
        )
    if passing is None or candidate is None:
        return None
    if not sustained(candidate, now, settings.winner_sustain_s):
        return None
    declared = experiment.winner
    if declared is not None and declared.get("phase") == experiment.phase:
        if declared.get("arm_id") == passing.id:
            return None  # once per phase (until another arm replaces it)
        replaces = declared.get("arm_id")
    else:
        replaces = None
    row = rows[passing.id]
    assert row is not None  # it passed
    act.declare_winner(
        {
            "arm_id": passing.id,
            "config": passing.config,
            "phase": experiment.phase,
            "since": candidate.since.isoformat(),
            "declared_at": now.isoformat(),
            "p_best": p_best,
            "p_best_draws": draws,
            "winner_p_best": settings.winner_p_best,
            "winner_min_lift": settings.winner_min_lift,
            "winner_sustain_s": settings.winner_sustain_s,
            "replaces_arm_id": replaces,
            "lift": row_document(row),
        }
    )
    return passing.id


# -- carrying decisions out ----------------------------------------------------------------
class _Actions:
    """Carries out decisions on one experiment within the evaluation's transaction, each
    recorded in the audit log, a report snapshot and a notification."""

    def __init__(
        self,
        session: Session,
        experiment: Experiment,
        arms: list[Arm],
        report: dict[str, Any],
        now: datetime,
        rng: np.random.Generator,
        replica: str | None,
    ) -> None:
        self.session = session
        self.experiment = experiment
        self.arms = arms
        self.report = report  # the scorecard the decisions were taken on
        self.now = now
        self.rng = rng
        self.replica = replica

    def _record(
        self, trigger: str, kind: NotificationKind, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """A snapshot of the report and a notification; the notification's payload."""
        snapshot = save_snapshot(
            self.session, self.experiment, trigger=trigger, detail=detail, report=self.report
        )
        payload = {
            "experiment": self.experiment.name,
            "phase": self.experiment.phase,
            "snapshot_id": snapshot.id,
            **detail,
        }
        notify(self.session, self.experiment.id, kind, payload)
        return payload

    def retire(self, arm: Arm, trip: Trip) -> None:
        """Retire the arm (audited), record the generation, snapshot and notify."""
        experiment = self.experiment
        number = experiment.generation + 1
        n_active = sum(1 for a in self.arms if a.status == ArmStatus.ACTIVE)
        reason = f"guardrail (generation {number}): {trip.sentence()}"
        evidence = {"rule": GUARDRAIL, "generation": number, "evidence": trip.evidence()}
        retire_arm(
            self.session,
            experiment.name,
            arm.id,
            rng=self.rng,
            reason=reason,
            actor=ACTOR,
            evidence=evidence,
        )
        retired = schemas.RetiredArmOut(
            arm_id=arm.id,
            config=arm.config,
            reason="guardrail",
            score=None,
            exposures=arm.exposures,
            prob_beat_reference=float(prob_beat_reference(arm.alpha, arm.beta)),
            alpha=arm.alpha,
            beta=arm.beta,
            guardrail=trip.evidence(),
        )
        details = schemas.GenerationDetailsOut(
            score=None,
            best_arm_id=None,
            ranking=[],
            skipped=[],
            expert_outcomes=[],
            n_active_before=n_active,
            n_active_after=n_active - 1,
            notes=[reason],
            seed=None,
            settings=None,
        )
        self.session.add(
            Generation(
                experiment_id=experiment.id,
                number=number,
                created_at=self.now,
                trigger=GUARDRAIL,
                replica=self.replica,
                retired=[retired.model_dump(mode="json")],
                added=[],
                details=details.model_dump(mode="json"),
            )
        )
        experiment.generation = number
        self._record(
            GUARDRAIL,
            NotificationKind.GUARDRAIL_TRIPPED,
            {"arm_id": arm.id, "generation": number, "reason": reason, **evidence},
        )

    def pause(self, trip: Trip, rule: str, *, arm_id: int | None = None) -> None:
        """Pause through the admin's mechanism (audited), keep the counts as the breaker's
        baseline, snapshot and notify."""
        reason = {
            "by": CIRCUIT_BREAKER,
            "rule": rule,
            "at": self.now.isoformat(),
            "arm_id": arm_id,
            "message": trip.sentence(),
            "evidence": trip.evidence(),
        }
        change_status(
            self.session,
            self.experiment.name,
            "pause",
            rng=self.rng,
            replica=self.replica,
            actor=ACTOR,
            reason=reason,
        )
        self.experiment.breaker_baseline = _baseline(
            self.session, self.experiment, self.now, arm_id
        )
        self._record(CIRCUIT_BREAKER, NotificationKind.CIRCUIT_BREAKER, reason)

    def declare_winner(self, winner: dict[str, Any]) -> None:
        self.experiment.winner = winner
        repo.add_audit(
            self.session,
            at=self.now,
            action="experiment.winner",
            experiment_id=self.experiment.id,
            details=winner,
            actor=ACTOR,
        )
        self._record(WINNER, NotificationKind.WINNER, winner)

    def sample_ratio_mismatch(self, check: HealthCheck) -> None:
        """Notify the failed check (the report's, with its evidence), snapshot, audit, and
        remember it failed in this phase, so it is notified once."""
        payload = self._record(SRM, NotificationKind.SRM, check_document(check))
        self.experiment.srm_alert = {
            "phase": self.experiment.phase,
            "since": self.now.isoformat(),
            "snapshot_id": payload["snapshot_id"],
        }
        repo.add_audit(
            self.session,
            at=self.now,
            action="experiment.srm",
            experiment_id=self.experiment.id,
            details=payload,
            actor=ACTOR,
        )

    def sample_ratio_resolved(self, check: HealthCheck, alert: dict[str, Any]) -> None:
        """The check is ok again: audited (no notification), and a later failure is
        notified again."""
        self.experiment.srm_alert = None
        repo.add_audit(
            self.session,
            at=self.now,
            action="experiment.srm_resolved",
            experiment_id=self.experiment.id,
            details={
                "failed_since": alert["since"],
                "snapshot_id": alert["snapshot_id"],
                **check_document(check),
            },
            actor=ACTOR,
        )
