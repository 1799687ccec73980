"""The experiment report's scorecard: every metric, the bandit group and each arm against
the reference group, from the per-bucket counts the ticks keep (``metric_counts``).

The statistics are :mod:`bandit.report`'s (delta method over unit buckets, fixed-horizon
and always-valid intervals); this module only gathers the counts of the experiment's
current phase into per-bucket arrays and names the comparisons. It reads
O(arms x metrics x buckets) rows, never the events: the report stays off the hot paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api.enums import ArmStatus, Direction, Group, MetricRole
from api.models import Arm, Experiment, ReportSnapshot, reference_of
from api.services.common import now_utc
from api.serving import REPORT_BUCKETS
from arms.origins import Origin
from bandit.report import RatioEstimate, RelativeEffect, ratio_estimate, relative_effect

# The treatment name of the whole target group (every arm the bandit served).
BANDIT = "bandit"


class Verdict:
    """How a row reads for its metric's direction, on the always-valid interval (the one to
    act on when the report is watched)."""

    BETTER = "better"
    WORSE = "worse"
    UNCLEAR = "unclear"


@dataclass(frozen=True)
class Metric:
    """A metric of the report: an event type counted per exposure, and its direction."""

    event: str
    role: MetricRole
    direction: Direction
    max_loss: float | None = None  # guardrails: the tolerated relative loss


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

    def row(self, metric: str, treatment: str | int) -> ScoreRow | None:
        for row in self.rows:
            if row.metric.event == metric and row.treatment == treatment:
                return row
        return None


def verdict(result: RelativeEffect, direction: Direction) -> str:
    if not result.significant_anytime or result.lower_anytime is None:
        return Verdict.UNCLEAR
    increased = result.lower_anytime > 0
    good = increased if direction == Direction.INCREASE else not increased
    return Verdict.BETTER if good else Verdict.WORSE


def metrics_of(
    session: Session, experiment: Experiment, *, target_event: str | None = None
) -> tuple[Metric, ...]:
    """The decision metric (``target_event``, higher is better; by default the
    experiment's current one) and the declared ones."""
    declared = repo.declared_metrics(session, experiment.id)
    return (
        Metric(
            experiment.target_event if target_event is None else target_event,
            MetricRole.DECISION,
            Direction.INCREASE,
        ),
        *(Metric(m.event, m.role, m.direction, m.max_loss) for m in declared),
    )


class BucketCounts:
    """The phase's counts as per-bucket arrays, keyed by (arm id, group, event type)."""

    def __init__(self, rows: Sequence[tuple[int, str, str, int, int]]) -> None:
        self._arrays: dict[tuple[int, str, str], np.ndarray] = {}
        for arm_id, group, kind, bucket, count in rows:
            key = (arm_id, group, kind)
            array = self._arrays.get(key)
            if array is None:
                array = self._arrays[key] = np.zeros(REPORT_BUCKETS)
            array[bucket] += count

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


def compare(
    counts: BucketCounts,
    metric: Metric,
    treatment_arms: Sequence[int],
    reference_arm_id: int,
    *,
    alpha: float = 0.05,
) -> RelativeEffect:
    """The target group's ``treatment_arms`` against the reference group on ``metric``."""
    return relative_effect(
        counts.estimate(treatment_arms, Group.TARGET, metric.event),
        counts.estimate([reference_arm_id], Group.REFERENCE, metric.event),
        alpha,
    )


def scorecard(session: Session, experiment: Experiment, *, phase: int | None = None) -> Scorecard:
    """Every metric: the bandit group, then each arm served in the phase, against the
    reference group. An earlier phase (``phase``) is read with its own reference arm and
    decision metric (``phases``), from its own counts: it reads as it did when it ended."""
    current = experiment.phase
    phase = current if phase is None else phase
    arms = list(repo.arms_of(session, experiment.id))
    counts = BucketCounts(repo.metric_counts(session, experiment.id, phase))
    record = repo.get_phase(session, experiment.id, phase)
    reference_id = reference_of(arms).id if record is None else record.reference_arm_id
    metrics = metrics_of(
        session, experiment, target_event=None if record is None else record.target_event
    )
    treatments = _treatment_arms(arms, counts, current=phase == current)
    rows: list[ScoreRow] = []
    for metric in metrics:
        rows.append(
            ScoreRow(
                metric, BANDIT, compare(counts, metric, [a.id for a in treatments], reference_id)
            )
        )
        rows.extend(
            ScoreRow(metric, arm.id, compare(counts, metric, [arm.id], reference_id))
            for arm in treatments
        )
    return Scorecard(experiment.id, phase, metrics, tuple(rows), reference_id)


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
    """The scorecard's JSON: metrics and rows (the report adds its health checks)."""
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
            }
            for metric in card.metrics
        ],
        "rows": [row_document(row) for row in card.rows],
    }


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
