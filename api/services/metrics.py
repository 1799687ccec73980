"""Admin use cases of an experiment's secondary and guardrail metrics: declare, remove, list.

A metric is an event type that clients report like the decision metric's (nothing changes
on ``/v1/events``); the ticks add its credited counts to the report's ``metric_counts``
from its declaration on. A declaration copies the phase's counts as they stand to its
baseline (``metric_baselines``), which the report subtracts, so a metric declared while
the experiment runs compares its events with the exposures since. Removing a metric sets
``removed_at``: its rows and counts stay, the report as it stood is kept as a snapshot
(trigger ``metric_removed``), and the event can be declared again (a new declaration,
counted from then). Every change is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ExperimentStatus, MetricRole
from api.errors import Conflict, InvalidInput, NotFound
from api.models import Experiment, ExperimentMetric
from api.services.common import now_utc, require_experiment
from api.services.report import report_document, save_snapshot

# The trigger of the snapshot a removal keeps.
METRIC_REMOVED = "metric_removed"


def metric_out(metric: ExperimentMetric) -> schemas.MetricOut:
    return schemas.MetricOut(
        id=metric.id,
        event=metric.event,
        role=metric.role,
        direction=metric.direction,
        max_loss=metric.max_loss,
        added_at=metric.added_at,
        removed_at=metric.removed_at,
        removed=metric.removed_at is not None,
    )


def check_new_metrics(metrics: Sequence[schemas.MetricIn], target_event: str) -> None:
    """What the create request's ``metrics`` must satisfy together: no event twice, none
    the decision metric (422 naming ``metrics[i].event``)."""
    seen: dict[str, int] = {}
    for index, metric in enumerate(metrics):
        field = f"metrics[{index}].event"
        if metric.event == target_event:
            raise InvalidInput(
                f"{field}: {metric.event!r} is the target_event (the decision metric, always "
                "reported); expected another event type",
                field=field,
            )
        if metric.event in seen:
            raise InvalidInput(
                f"{field}: duplicate of metrics[{seen[metric.event]}]; expected each event "
                "at most once",
                field=field,
            )
        seen[metric.event] = index


def declare(
    session: Session, experiment: Experiment, metric: schemas.MetricIn, now: datetime
) -> ExperimentMetric:
    """Add the declaration and its baseline; the caller holds the experiment's lock (a tick
    cannot add to the counts in between) and has checked the request."""
    declared = ExperimentMetric(
        experiment_id=experiment.id,
        event=metric.event,
        role=MetricRole(metric.role),
        direction=metric.direction,
        max_loss=metric.max_loss,
        added_at=now,
    )
    session.add(declared)
    session.flush()
    repo.copy_metric_baseline(session, declared, experiment.phase)
    return declared


def add_metric(session: Session, name: str, metric: schemas.MetricIn) -> ExperimentMetric:
    """``POST .../metrics``: declare one more metric, counted from now."""
    experiment = require_experiment(session, name, lock=True)
    if experiment.status == ExperimentStatus.STOPPED:
        raise Conflict(
            "the experiment is stopped: no more counts; expected a running or paused one",
            field="status",
        )
    if metric.event == experiment.target_event:
        raise InvalidInput(
            f"event: {metric.event!r} is the target_event (the decision metric, always "
            "reported); expected another event type",
            field="event",
        )
    if repo.declared_metric(session, experiment.id, metric.event) is not None:
        raise Conflict(
            f"event: {metric.event!r} is already a metric of the experiment; remove it "
            "first to declare it again",
            field="event",
        )
    if len(repo.declared_metrics(session, experiment.id)) >= schemas.MAX_METRICS:
        raise Conflict(
            f"event: the experiment already has {schemas.MAX_METRICS} metrics, the most "
            "allowed; remove one first",
            field="event",
        )
    now = now_utc()
    declared = declare(session, experiment, metric, now)
    repo.add_audit(
        session,
        at=now,
        action="metric.add",
        experiment_id=experiment.id,
        details={"metric_id": declared.id, **metric.model_dump(mode="json")},
    )
    return declared


def remove_metric(session: Session, name: str, event: str) -> ExperimentMetric:
    """``DELETE .../metrics/{event}``: stop reporting it. The report as it stood is kept
    (a snapshot), its counts stay; idempotent (a removed metric is answered as it is)."""
    experiment = require_experiment(session, name, lock=True)
    declared = repo.declared_metric(session, experiment.id, event)
    if declared is None:
        latest = repo.latest_metric_declaration(session, experiment.id, event)
        if latest is not None:
            return latest
        raise NotFound(
            f"event: {event!r} is not a declared metric of experiment {name!r}", field="event"
        )
    now = now_utc()
    snapshot = save_snapshot(
        session,
        experiment,
        trigger=METRIC_REMOVED,
        detail={"event": event, "metric_id": declared.id},
        report=report_document(session, experiment, now=now),
    )
    declared.removed_at = now
    repo.add_audit(
        session,
        at=now,
        action="metric.remove",
        experiment_id=experiment.id,
        details={"metric_id": declared.id, "event": event, "snapshot_id": snapshot.id},
    )
    session.flush()
    return declared


def list_metrics(session: Session, name: str) -> list[schemas.MetricOut]:
    """Every declaration, removed ones included, in the order they were made."""
    experiment = require_experiment(session, name)
    return [
        metric_out(metric)
        for metric in repo.declared_metrics(session, experiment.id, with_removed=True)
    ]
