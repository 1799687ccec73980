"""The experiment report: every metric, the bandit group and each arm against the reference
group, from the per-bucket counts the ticks keep (``metric_counts``), and the health checks.

The statistics are :mod:`bandit.report`'s (delta method over unit buckets, fixed-horizon
and always-valid intervals) and the checks :mod:`bandit.health`'s; this module gathers the
counts of a phase into per-bucket arrays, names the comparisons and reads the recent ticks
the checks need. It reads O(arms x metrics x buckets) rows and the latest
``RECENT_TICKS`` ticks, never the events: the report stays off the hot paths.

A declared metric counts from its declaration: its events are added to ``metric_counts``
only by the ticks after it, so the exposures counted before it (its baseline,
``metric_baselines``) are subtracted, and each metric compares events and exposures of the
same period.

Segmented experiments (docs/segments.md): the ticks keep these counts per segment (and each
declaration's baseline per segment), so ``segment=`` reports one segment against its own
reference group, and the overall report reads the sum over segments (for an unsegmented
experiment, segment 0 alone: the same numbers as before segments). The overall report of
a segmented experiment also names each big segment's best arm (:func:`segment_summaries`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, Direction, ExperimentStatus, Group, MetricRole
from api.errors import InvalidInput, NotFound
from api.models import Arm, Experiment, ReportSnapshot, reference_of
from api.services import segments as segment_service
from api.services.common import now_utc, require_experiment
from api.serving import REPORT_BUCKETS
from arms.origins import Origin
from bandit.health import (
    Check,
    HealthCheck,
    decision_time_check,
    exploration_check,
    reference_traffic_check,
    sample_ratio_check,
    scheduler_check,
)
from bandit.report import (
    DEFAULT_MIN_EVENTS,
    DEFAULT_PLANNED_EXPOSURES,
    RatioEstimate,
    RelativeEffect,
    ratio_estimate,
    relative_effect,
)
from bandit.summaries import bounded_draws, summarize

# The treatment name of the whole target group (every arm the bandit served).
BANDIT = "bandit"


class Verdict:
    """How a row reads for its metric's direction, on the always-valid interval (the one to
    act on when the report is watched)."""

    BETTER = "better"
    WORSE = "worse"
    UNCLEAR = "unclear"


# The recorded ticks the health checks read (carried windows, recent traffic per arm,
# exposure rates for the time to decision).
RECENT_TICKS = 20

# The checks about the experiment as a whole, even in a segment's report: whether windows
# are applied (a tick applies every ready segment at once) and whether ticks run.
EXPERIMENT_WIDE = frozenset({Check.REFERENCE_TRAFFIC, Check.SCHEDULER})

# The overall report's segments summary: the segments with the most traffic, at most this
# many (the dashboard's heat map shows as many), each with its best arm by P(best) from
# SEGMENT_DRAWS joint draws seeded with SEGMENT_SEED (GET .../stats?segment=S gives the
# same numbers with seed=0&draws=4000).
REPORT_SEGMENTS = 20
SEGMENT_DRAWS = 4_000
SEGMENT_SEED = 0
SEGMENT_MAX_SAMPLES = 10_000_000  # draws x arms, as the statistics bound them


@dataclass(frozen=True)
class Metric:
    """A metric of the report: an event type counted per exposure, and its direction.

    ``since``: when it became a metric of the experiment (declared; the decision metric:
    the experiment's creation). ``metric_id``: its declaration (``experiment_metrics``),
    ``None`` for the decision metric.
    """

    event: str
    role: MetricRole
    direction: Direction
    max_loss: float | None = None  # guardrails: the tolerated relative loss
    since: datetime | None = None
    metric_id: int | None = None


@dataclass(frozen=True)
class ScoreRow:
    metric: Metric
    treatment: str | int  # BANDIT, or an arm id
    result: RelativeEffect

    @property
    def verdict(self) -> str:
        return verdict(self.result, self.metric.direction)


@dataclass(frozen=True)
class Scorecard:
    experiment_id: int
    phase: int
    metrics: tuple[Metric, ...]
    rows: tuple[ScoreRow, ...]
    reference_arm_id: int
    # The phase's counts as stored (no metric's baseline subtracted): the SRM check's data.
    counts: BucketCounts | None = field(default=None, compare=False, repr=False)

    def row(self, metric: str, treatment: str | int) -> ScoreRow | None:
        for row in self.rows:
            if row.metric.event == metric and row.treatment == treatment:
                return row
        return None


CountRow = tuple[int, str, str, int, int]  # (arm id, group, event type, bucket, count)


@dataclass(frozen=True)
class Baseline:
    """The phase's counts as they stood at ``at`` (rows of ``metric_counts``): a scorecard
    "since" then subtracts them, as it subtracts a metric's declaration baseline."""

    at: datetime
    rows: tuple[CountRow, ...]


def verdict(result: RelativeEffect, direction: Direction) -> str:
    if not result.significant_anytime or result.lower_anytime is None:
        return Verdict.UNCLEAR
    increased = result.lower_anytime > 0
    good = increased if direction == Direction.INCREASE else not increased
    return Verdict.BETTER if good else Verdict.WORSE


def metrics_of(
    session: Session,
    experiment: Experiment,
    *,
    target_event: str | None = None,
    since: datetime | None = None,
) -> tuple[Metric, ...]:
    """The decision metric (``target_event``, higher is better; by default the
    experiment's current one) and the declared ones."""
    declared = repo.declared_metrics(session, experiment.id)
    return (
        Metric(
            experiment.target_event if target_event is None else target_event,
            MetricRole.DECISION,
            Direction.INCREASE,
            since=experiment.created_at if since is None else since,
        ),
        *(Metric(m.event, m.role, m.direction, m.max_loss, m.added_at, m.id) for m in declared),
    )


class BucketCounts:
    """The phase's counts as per-bucket arrays, keyed by (arm id, group, event type)."""

    def __init__(self, rows: Iterable[tuple[int, str, str, int, int]]) -> None:
        self._arrays: dict[tuple[int, str, str], np.ndarray] = {}
        self._add(rows, 1.0)

    def _add(self, rows: Iterable[tuple[int, str, str, int, int]], sign: float) -> None:
        # Summed in Python lists, one array per key at the end: an item update of a NumPy
        # array costs ten times a list's, and there are O(arms x metrics x buckets) rows.
        sums: dict[tuple[int, str, str], list[float]] = {}
        for arm_id, group, kind, bucket, count in rows:
            key = (arm_id, group, kind)
            values = sums.get(key)
            if values is None:
                values = sums[key] = [0.0] * REPORT_BUCKETS
            values[bucket] += count
        for key, values in sums.items():
            array = self._arrays.get(key)
            added = sign * np.array(values)
            self._arrays[key] = added if array is None else array + added

    def minus(self, rows: Iterable[tuple[int, str, str, int, int]]) -> BucketCounts:
        """These counts less ``rows`` (a metric's baseline: the counts at its declaration,
        which the counts since include, so no entry goes below 0)."""
        result = BucketCounts(())
        result._arrays = {key: array.copy() for key, array in self._arrays.items()}
        result._add(rows, -1.0)
        return result

    def group_total(self, group: str, kind: str) -> np.ndarray:
        """Per bucket, the counts of every arm in the group."""
        total = np.zeros(REPORT_BUCKETS)
        for (_, g, k), array in self._arrays.items():
            if g == group and k == kind:
                total += array
        return total

    def of(self, arm_ids: Sequence[int], group: str, kind: str) -> np.ndarray:
        total = np.zeros(REPORT_BUCKETS)
        for arm_id in arm_ids:
            array = self._arrays.get((arm_id, group, kind))
            if array is not None:
                total += array
        return total

    def served(self, group: str) -> set[int]:
        """Arms with exposures in the group."""
        return {
            arm
            for (arm, g, kind), a in self._arrays.items()
            if g == group and kind == "exposure" and a.any()
        }

    def estimate(self, arm_ids: Sequence[int], group: str, kind: str) -> RatioEstimate:
        return ratio_estimate(self.of(arm_ids, group, kind), self.of(arm_ids, group, "exposure"))


def scorecard(
    session: Session,
    experiment: Experiment,
    *,
    phase: int | None = None,
    alpha: float = 0.05,
    since: Baseline | None = None,
    per_arm: bool = True,
    segment: int | None = None,
) -> Scorecard:
    """Every metric: the bandit group, then (``per_arm``) each arm served in the phase,
    against the reference group. A declared metric's baseline in this phase (the counts at
    its declaration) is subtracted from its counts: it compares events and exposures since.
    An earlier phase (``phase``) is read with its own reference arm and decision metric
    (``phases``), from its own counts: it reads as it did when it ended.

    ``since``: the scorecard of what was counted after it (the circuit breaker after a
    resume): each metric from the later of ``since`` and its declaration.

    ``segment``: one segment's index: that segment's counts and baselines only (None: the
    sum over segments)."""
    current = experiment.phase
    phase = current if phase is None else phase
    arms = list(repo.arms_of(session, experiment.id))
    counts = BucketCounts(repo.metric_counts(session, experiment.id, phase, segment))
    record = repo.get_phase(session, experiment.id, phase)
    reference_id = reference_of(arms).id if record is None else record.reference_arm_id
    metrics = metrics_of(
        session,
        experiment,
        target_event=None if record is None else record.target_event,
        since=None if record is None else record.started_at,
    )
    baselines: dict[int, list[CountRow]] = {}
    declared = [m.metric_id for m in metrics if m.metric_id is not None]
    for metric_id, arm_id, group, kind, bucket, count in repo.metric_baselines(
        session, declared, phase, segment
    ):
        baselines.setdefault(metric_id, []).append((arm_id, group, kind, bucket, count))
    treatments = [a.id for a in _treatment_arms(arms, counts, current=phase == current)]
    rows: list[ScoreRow] = []
    for metric in metrics:
        at_declaration = None if metric.metric_id is None else baselines.get(metric.metric_id)
        start = _start_of(metric, at_declaration, since)
        counted = counts.minus(start) if start else counts
        # The control's estimate once per metric, then each treatment against it.
        control = counted.estimate([reference_id], Group.REFERENCE, metric.event)
        compared: list[tuple[str | int, list[int]]] = [(BANDIT, treatments)]
        if per_arm:
            compared += [(arm_id, [arm_id]) for arm_id in treatments]
        for treatment, arm_ids in compared:
            estimate = counted.estimate(arm_ids, Group.TARGET, metric.event)
            rows.append(ScoreRow(metric, treatment, relative_effect(estimate, control, alpha)))
    return Scorecard(experiment.id, phase, metrics, tuple(rows), reference_id, counts)


def _start_of(
    metric: Metric, declared: Sequence[CountRow] | None, since: Baseline | None
) -> Sequence[CountRow] | None:
    """The counts a metric's numbers start from: its declaration's baseline, or ``since``
    when that is later than the declaration (it then holds the metric's counts too: a
    declaration before ``since`` was counted by it)."""
    if since is not None and (metric.since is None or metric.since <= since.at):
        return since.rows
    return declared


def _treatment_arms(arms: Sequence[Arm], counts: BucketCounts, *, current: bool) -> list[Arm]:
    """The target arms served in the phase and, in the current phase, the active ones
    (with no data yet), by id."""
    served = counts.served(Group.TARGET)
    return [
        arm
        for arm in sorted(arms, key=lambda a: a.id)
        if arm.origin != Origin.REFERENCE
        and (arm.id in served or (current and arm.status == ArmStatus.ACTIVE))
    ]


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such values (huge counts' overflow) become null."""
    return value if value is None or math.isfinite(value) else None


def row_document(row: ScoreRow) -> dict[str, Any]:
    """One scorecard row as the report's JSON shows it (docs/statistics.md names each field)."""
    result = row.result
    return {
        "metric": row.metric.event,
        "role": row.metric.role.value,
        "direction": row.metric.direction.value,
        "treatment": row.treatment,
        "control_mean": _number(result.control_mean),
        "treatment_mean": _number(result.treatment_mean),
        "effect": _number(result.effect),
        "lower": _number(result.lower),
        "upper": _number(result.upper),
        "p_value": _number(result.p_value),
        "significant": result.significant,
        "lower_anytime": _number(result.lower_anytime),
        "upper_anytime": _number(result.upper_anytime),
        "significant_anytime": result.significant_anytime,
        "verdict": row.verdict,
        "control_events": result.control.events,
        "control_exposures": result.control.exposures,
        "treatment_events": result.treatment.events,
        "treatment_exposures": result.treatment.exposures,
        "reason": None if result.reason is None else result.reason.value,
    }


def scorecard_document(card: Scorecard, experiment: Experiment) -> dict[str, Any]:
    """The scorecard's JSON: metrics and rows (the report adds its health checks). Plain
    JSON values only (times as ISO 8601 text): snapshots store it as it is."""
    return {
        "experiment": experiment.name,
        "phase": card.phase,
        "reference_arm_id": card.reference_arm_id,
        "metrics": [
            {
                "event": metric.event,
                "role": metric.role.value,
                "direction": metric.direction.value,
                "max_loss": metric.max_loss,
                "since": None if metric.since is None else metric.since.isoformat(),
            }
            for metric in card.metrics
        ],
        "rows": [row_document(row) for row in card.rows],
    }


# -- the report: scorecard, arms, health ---------------------------------------------------
def report_document(
    session: Session,
    experiment: Experiment,
    *,
    phase: int | None = None,
    alpha: float = 0.05,
    min_detectable_effect: float | None = None,
    now: datetime | None = None,
    segment: str | None = None,
    with_segments: bool = True,
) -> dict[str, Any]:
    """The report as ``GET .../report`` answers it (``schemas.ReportOut``), in plain JSON
    values, so that a snapshot can store it as it is.

    ``phase`` defaults to the current one; an earlier phase's report has the checks its
    counts allow (sample ratio) and none of the live ones (ticks, scheduler, exploration,
    time to decision), which are about the experiment as it runs now.

    ``segment``: an opened segment's name: that segment's report (422 naming ``segment``
    for an unsegmented experiment or a segment not opened, as the statistics answer).
    ``with_segments``: whether to add the segments summary (the dashboard's list of
    experiments, which shows only the headline and the checks, does without).
    """
    now = now_utc() if now is None else now
    if phase is not None and not 1 <= phase <= experiment.phase:
        raise InvalidInput(
            f"phase: expected a phase of the experiment, from 1 to {experiment.phase}; got {phase}",
            field="phase",
        )
    index = (
        None if segment is None else segment_service.require_segment(session, experiment, segment)
    )
    card = scorecard(session, experiment, phase=phase, alpha=alpha, segment=index)
    arms = {arm.id: arm for arm in repo.arms_of(session, experiment.id)}
    shown = [
        card.reference_arm_id,
        *(r.treatment for r in card.rows if isinstance(r.treatment, int)),
    ]
    checks = health_checks(
        session,
        experiment,
        card,
        now=now,
        min_detectable_effect=min_detectable_effect,
        segment=index,
    )
    summary = (
        segment_summaries(session, experiment, segment=index)
        if with_segments and card.phase == experiment.phase
        else None
    )
    return {
        **scorecard_document(card, experiment),
        "current_phase": experiment.phase,
        "status": experiment.status.value,
        "generated_at": now.isoformat(),
        "alpha": alpha,
        "min_events": DEFAULT_MIN_EVENTS,
        "planned_exposures": DEFAULT_PLANNED_EXPOSURES,
        "arms": [_arm_document(arms[arm_id]) for arm_id in dict.fromkeys(shown)],
        "health": [check_document(check, segmented=index is not None) for check in checks],
        "segment": segment,
        "segments": summary,
    }


def _arm_document(arm: Arm) -> dict[str, Any]:
    """What a reader of the report wants to know of an arm besides its numbers."""
    return {
        "id": arm.id,
        "origin": arm.origin.value,
        "status": arm.status.value,
        "reference": arm.origin == Origin.REFERENCE,
        "config": arm.config,
        "generation": arm.generation,
        "parent_ids": list(arm.parent_ids or []),
        "created_at": arm.created_at.isoformat(),
        "retired_at": None if arm.retired_at is None else arm.retired_at.isoformat(),
        "retired_reason": arm.retired_reason,
    }


def check_document(check: HealthCheck, *, segmented: bool = False) -> dict[str, Any]:
    """A health check as the report's ``health`` shows it (plain JSON values); ``segmented``:
    in a segment's report, where only the EXPERIMENT_WIDE checks are the whole
    experiment's."""
    return {
        "check": check.check.value,
        "status": check.status.value,
        "detail": check.detail,
        "action": check.action,
        "evidence": {key: _plain(value) for key, value in check.evidence.items()},
        "scope": "segment" if segmented and check.check not in EXPERIMENT_WIDE else "experiment",
    }


def _plain(value: float | int | str | bool | None) -> float | int | str | bool | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def health_checks(
    session: Session,
    experiment: Experiment,
    card: Scorecard,
    *,
    now: datetime,
    min_detectable_effect: float | None = None,
    segment: int | None = None,
) -> list[HealthCheck]:
    """The report's checks (:mod:`bandit.health`) on the scorecard's phase: the sample
    ratio from its counts; for the current phase also the live ones, from the latest
    ``RECENT_TICKS`` ticks and the experiment's clock.

    ``segment``: the scorecard is that segment's; the sample ratio, exploration and time to
    decision are then the segment's (its counts, and its traffic in the recent ticks'
    ``tick_segment_windows``); the EXPERIMENT_WIDE checks stay the experiment's."""
    checks = [sample_ratio_of(card, experiment)]
    if card.phase != experiment.phase:
        return checks
    ticks = repo.recent_ticks(session, experiment.id, limit=RECENT_TICKS)
    applied = [tick for tick in ticks if tick.applied]
    since_applied = (now - applied[-1].created_at).total_seconds() if applied else None
    checks.append(reference_traffic_check([tick.applied for tick in ticks], since_applied))
    last_tick = experiment.last_tick_at or experiment.created_at
    checks.append(
        scheduler_check(
            experiment.status == ExperimentStatus.RUNNING,
            (now - last_tick).total_seconds(),
            experiment.update_interval_s,
        )
    )
    arm_rows, reference_rows = _recent_rows(session, applied, segment, card.reference_arm_id)
    recent, rates, reference_rate = _recent_traffic(applied, arm_rows, reference_rows)
    active = [
        arm.id
        for arm in repo.arms_of(session, experiment.id, active_only=True)
        if arm.origin != Origin.REFERENCE
    ]
    decision: dict[int, RelativeEffect] = {}
    for arm_id in active:
        row = card.row(experiment.target_event, arm_id)
        if row is not None:
            decision[arm_id] = row.result
    checks.append(exploration_check(recent, len(active), decision))
    checks.append(
        decision_time_check(
            decision, rates, reference_rate, min_detectable_effect=min_detectable_effect
        )
    )
    return checks


def sample_ratio_of(card: Scorecard, experiment: Experiment) -> HealthCheck:
    """The sample ratio check of the scorecard's phase: the reference group's exposures
    against the target group's, all counted in the phase (no metric's baseline subtracted),
    and the experiment's ``reference_share``. The report shows it; the decisions notify
    when it fails."""
    counts = card.counts if card.counts is not None else BucketCounts(())
    return sample_ratio_check(
        counts.of([card.reference_arm_id], Group.REFERENCE, "exposure"),
        counts.group_total(Group.TARGET, "exposure"),
        experiment.reference_share,
    )


def _recent_rows(
    session: Session,
    applied: Sequence[repo.RecentTick],
    segment: int | None,
    reference_id: int,
) -> tuple[list[tuple[int, int, float]], dict[int, float]]:
    """(tick id, arm id, target exposures) of the recent applied ticks, and each tick's
    reference exposures: the experiment's (``tick_arms``, the ticks), or one segment's
    (``tick_segment_windows``, whose reference arm's pairs hold its group's exposures)."""
    ids = [tick.id for tick in applied]
    if segment is None:
        return repo.tick_arm_exposures(session, ids), {
            tick.id: tick.reference_exposures for tick in applied
        }
    rows = repo.tick_segment_exposures(session, ids, segment)
    reference = {tick.id: 0.0 for tick in applied}
    for tick_id, arm_id, exposures in rows:
        if arm_id == reference_id:
            reference[tick_id] += exposures
    return [row for row in rows if row[1] != reference_id], reference


def _recent_traffic(
    applied: Sequence[repo.RecentTick],
    arm_rows: Sequence[tuple[int, int, float]],
    reference_rows: dict[int, float],
) -> tuple[dict[int, float], dict[int, float], float | None]:
    """Target exposures per arm over the recent applied ticks, and the exposure rates (per
    second) of each arm and of the reference group between the first and the last of them
    (:func:`_recent_rows` gives the ticks' counts).

    Rates count the exposures credited by the ticks after the first, over the time since
    the first: what arrived in that span (carried windows included, since an applied tick
    credits them). ``None`` (no rates) with fewer than two applied ticks.
    """
    by_tick: dict[int, dict[int, float]] = {}
    for tick_id, arm_id, exposures in arm_rows:
        by_tick.setdefault(tick_id, {})[arm_id] = exposures
    recent: dict[int, float] = {}
    for tick in applied:
        for arm_id, exposures in by_tick.get(tick.id, {}).items():
            recent[arm_id] = recent.get(arm_id, 0.0) + exposures
    if len(applied) < 2:
        return recent, {}, None
    span = (applied[-1].created_at - applied[0].created_at).total_seconds()
    if span <= 0:
        return recent, {}, None
    rates: dict[int, float] = {}
    for tick in applied[1:]:
        for arm_id, exposures in by_tick.get(tick.id, {}).items():
            rates[arm_id] = rates.get(arm_id, 0.0) + exposures / span
    reference_rate = sum(reference_rows.get(tick.id, 0.0) for tick in applied[1:]) / span
    return recent, rates, reference_rate


# -- which arm is best in each segment ---------------------------------------------------
def segment_summaries(
    session: Session, experiment: Experiment, *, segment: int | None = None
) -> dict[str, Any] | None:
    """A segmented experiment's segments (``schemas.SegmentsSummaryOut``; None when it is
    not segmented): the REPORT_SEGMENTS with the most credited exposures (ties by index),
    or only ``segment``, each with its traffic and its best active target arm by P(best)
    among the active target arms of its pooled posteriors, with that arm's lift (the
    statistics' numbers for ``?segment=S&seed=0&draws=4000``)."""
    if experiment.max_segments is None:
        return None
    arms = list(repo.arms_of(session, experiment.id))
    posteriors = segment_service.segment_posteriors(session, experiment, arms)
    traffic = posteriors.traffic()
    if segment is None:
        with_traffic = np.flatnonzero(traffic > 0)
        by_traffic = with_traffic[np.argsort(-traffic[with_traffic], kind="stable")]
        shown = [int(index) for index in by_traffic[:REPORT_SEGMENTS]]
        left_out = int(by_traffic.size) - len(shown)
    else:
        shown = [segment]
        left_out = int(np.count_nonzero(traffic > 0)) - int(traffic[segment] > 0)
    targets = [k for k, arm in enumerate(arms) if arm.origin != Origin.REFERENCE]
    active = [arms[k].status == ArmStatus.ACTIVE for k in targets]
    draws = bounded_draws(SEGMENT_DRAWS, sum(active), SEGMENT_MAX_SAMPLES)
    total = float(traffic.sum())
    return {
        "opened": len(posteriors.names),
        "shown": [
            {
                "segment": posteriors.names[index],
                "exposures": float(traffic[index]),
                "share": float(traffic[index]) / total if total > 0 else None,
                **_best_arm(
                    posteriors.alphas[index, targets],
                    posteriors.betas[index, targets],
                    [arms[k].id for k in targets],
                    [
                        is_active and segment_service.served_in(arms[k], posteriors.names[index])
                        for k, is_active in zip(targets, active, strict=True)
                    ],
                    draws,
                ),
            }
            for index in shown
        ],
        "left_out": left_out,
        "seed": SEGMENT_SEED,
        "draws": draws,
    }


def _best_arm(
    alphas: np.ndarray, betas: np.ndarray, arm_ids: list[int], active: list[bool], draws: int
) -> dict[str, Any]:
    """One segment's best active target arm by P(best) (ties: the first, in id order) and
    its lift, as ``summarize`` gives them for the statistics (same seed, same draws)."""
    if not any(active):
        return dict.fromkeys(_BEST_FIELDS)
    summary = summarize(
        alphas,
        betas,
        np.random.default_rng(SEGMENT_SEED),
        draws=draws,
        seed=SEGMENT_SEED,
        contenders=np.array(active),
    )
    best = int(np.argmax(np.where(active, summary.prob_best, -1.0)))
    return {
        "best_arm_id": arm_ids[best],
        "prob_best": float(summary.prob_best[best]),
        "lift": _number(float(summary.lift_medians[best])),
        "lift_ci_low": _number(float(summary.lift_ci_lows[best])),
        "lift_ci_high": _number(float(summary.lift_ci_highs[best])),
        "prob_beat_reference": float(summary.prob_beat_reference[best]),
    }


_BEST_FIELDS = (
    "best_arm_id",
    "prob_best",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "prob_beat_reference",
)


# The CSV's columns: the rows' fields, in the JSON's order.
CSV_COLUMNS = tuple(schemas.ReportRowOut.model_fields)


def report_csv(document: dict[str, Any]) -> str:
    """The report's rows as CSV: a header line, then one line per row. Empty cells are
    nulls, booleans are ``true``/``false``, numbers are written with every digit (Python's
    shortest round-trip form), so the CSV reads back to the JSON's values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in document["rows"]:
        writer.writerow([_csv_cell(row[column]) for column in CSV_COLUMNS])
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def report_of(
    session: Session,
    name: str,
    *,
    phase: int | None = None,
    alpha: float = 0.05,
    min_detectable_effect: float | None = None,
    segment: str | None = None,
) -> dict[str, Any]:
    """``GET .../report``: the named experiment's report (:func:`report_document`), or one
    segment's."""
    return report_document(
        session,
        require_experiment(session, name),
        phase=phase,
        alpha=alpha,
        min_detectable_effect=min_detectable_effect,
        segment=segment,
    )


# -- snapshots -----------------------------------------------------------------------------
def snapshot_list(
    session: Session, name: str, *, limit: int, after: int | None = None
) -> list[schemas.ReportSnapshotSummaryOut]:
    experiment = require_experiment(session, name)
    return [
        schemas.ReportSnapshotSummaryOut.model_validate(summary._asdict())
        for summary in repo.report_snapshots(session, experiment.id, limit=limit, after=after)
    ]


def snapshot_of(session: Session, name: str, snapshot_id: int) -> schemas.ReportSnapshotOut:
    experiment = require_experiment(session, name)
    snapshot = repo.get_report_snapshot(session, experiment.id, snapshot_id)
    if snapshot is None:
        raise NotFound(
            f"snapshot_id: no report snapshot {snapshot_id} in experiment {name!r}",
            field="snapshot_id",
        )
    return schemas.ReportSnapshotOut(
        id=snapshot.id,
        phase=snapshot.phase,
        created_at=snapshot.created_at,
        trigger=snapshot.trigger,
        detail=snapshot.detail,
        report=snapshot.report,
    )


def save_snapshot(
    session: Session,
    experiment: Experiment,
    *,
    trigger: str,
    detail: dict[str, Any],
    report: dict[str, Any],
) -> ReportSnapshot:
    """Store the report as it stands at a decision, in the decision's transaction."""
    snapshot = ReportSnapshot(
        experiment_id=experiment.id,
        phase=experiment.phase,
        created_at=now_utc(),
        trigger=trigger,
        detail=detail,
        report=report,
    )
    session.add(snapshot)
    session.flush()
    return snapshot
