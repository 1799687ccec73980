"""What the use cases share: the clock, finding an experiment, its space, validation, the
arm read model. Services import this module, never each other's helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.errors import InvalidInput, NotFound
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


def space_of(experiment: Experiment) -> ParameterSpace:
    return ParameterSpace.from_dicts(experiment.parameters)


def validate_config(space: ParameterSpace, values: dict[str, Any], field: str) -> Configuration:
    try:
        return space.validate(values)
    except ConfigurationError as error:
        name = f"{field}.{error.field}" if error.field != "config" else field
        raise InvalidInput(f"{name}: {error.message}", field=name) from None


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
    )
