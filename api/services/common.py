"""What the use cases share: the clock, finding an experiment, its space, validation, the
arm read model. Services import this module, never each other's helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import CLOSED_STATUSES, ArmStatus, ExperimentStatus
from api.errors import Conflict, InvalidInput, NotFound
from api.models import Arm, Experiment
from arms import Configuration, ConfigurationError, ParameterSpace


def now_utc() -> datetime:
    return datetime.now(UTC)


def decisions_in_force(experiment: Experiment) -> schemas.Decisions:
    """The experiment's decision settings with the defaults filled in (NULL: all defaults)."""
    return schemas.Decisions.model_validate(experiment.decisions or {})


def require_experiment(session: Session, name: str, *, lock: bool = False) -> Experiment:
    experiment = repo.get_experiment_by_name(session, name, lock=lock)
    if experiment is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    return experiment


def require_open(
    experiment: Experiment, action: str, closed: frozenset[ExperimentStatus] = CLOSED_STATUSES
) -> None:
    """409 if the experiment's status is one of ``closed`` (by default: stopped or archived,
    whose arms and settings are final; their history stays readable)."""
    if experiment.status in closed:
        expected = " or ".join(sorted(set(ExperimentStatus) - closed))
        raise Conflict(
            f"cannot {action}: the experiment is {experiment.status}; expected status {expected}",
            field="status",
        )


def new_arm(
    experiment: Experiment, config: Configuration, origin: str, now: datetime, **extra: Any
) -> Arm:
    """An active arm of ``config`` with the experiment's prior and no data yet."""
    return Arm(
        experiment_id=experiment.id,
        config=config.as_dict(),
        signature=config.signature,
        origin=origin,
        parent_ids=extra.get("parent_ids", []),
        generation=extra.get("generation", 0),
        status=ArmStatus.ACTIVE,
        alpha=extra.get("alpha", experiment.prior_alpha),
        beta=extra.get("beta", experiment.prior_beta),
        exposures=0.0,
        target_events=0.0,
        created_at=now,
    )


def space_of(experiment: Experiment) -> ParameterSpace:
    return ParameterSpace.from_dicts(experiment.parameters)


def validate_config(space: ParameterSpace, values: dict[str, Any], field: str) -> Configuration:
    try:
        return space.validate(values)
    except ConfigurationError as error:
        name = f"{field}.{error.field}" if error.field != "config" else field
        raise InvalidInput(f"{name}: {error.message}", field=name) from None


def by_group_and_type(window: repo.PendingWindow) -> dict[str, dict[str, int]]:
    """Pending counts as group -> type -> total (what an audit entry shows of them)."""
    n_types = len(window.types)
    totals: dict[str, dict[str, int]] = {}
    pairs = window.group * n_types + window.type
    for pair, total in window.totals(np.ones(len(window), dtype=bool), pairs).items():
        group, event_type = divmod(pair, n_types)
        totals.setdefault(window.groups[group], {})[window.types[event_type]] = int(total)
    return totals


def arm_out(arm: Arm) -> schemas.ArmOut:
    return schemas.ArmOut(
        id=arm.id,
        config=arm.config,
        origin=arm.origin,
        parent_ids=list(arm.parent_ids or []),
        generation=arm.generation,
        status=arm.status,
        alpha=arm.alpha,
        beta=arm.beta,
        exposures=arm.exposures,
        target_events=arm.target_events,
        quarantined_events=arm.quarantined_events,
        created_at=arm.created_at,
        retired_at=arm.retired_at,
        retired_reason=arm.retired_reason,
        segments=arm.segments,
    )
