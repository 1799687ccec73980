"""The genetic step as a use case: lock, plan (pure), apply in one transaction, record.

:func:`run_evolution_step` is to the arm set what :func:`api.services.ticks.apply_tick` is to
the posteriors. It locks the experiment row exactly as a tick does (PostgreSQL ``FOR NO KEY
UPDATE``; SQLite's ``BEGIN IMMEDIATE``), so a step never runs concurrently with a tick or
another step of the same experiment, and "is it due?" is decided under the lock, so of two
replicas only one applies a scheduled step. The plan comes from the pure
:func:`arms.evolution.evolve_step`; applying it (retire, add, consume the expert queue,
record the generation, bump the version so that replicas reload, re-pin the window arm,
audit) only flushes into the caller's transaction, which commits or rolls back as a whole:
a crash mid-step leaves the old arm set or the new one, never half of it.

A dry run computes the same plan and changes nothing. Every step draws a seed from the
caller's generator and reports it; the same seed on the same state gives the same plan, so
``?dry_run=true&seed=S`` followed by ``?seed=S`` applies exactly what was previewed (if no
tick moved the posteriors in between).

A step that would change nothing (every arm young, nothing waiting in the queue, arm set
full) records no generation; it only moves ``last_evolved_at`` so that the schedule waits
another interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, ExperimentStatus, ExpertStatus, Mode
from api.errors import Conflict, InvalidInput, NotFound
from api.models import Arm, Experiment, ExpertConfig, Generation, as_utc
from api.services.common import (
    arm_out,
    now_utc,
    require_experiment,
    require_open,
    space_of,
    validate_config,
)
from api.services.segments import inherited_segments, traffic_weighted_posteriors
from api.services.ticks import draw_window_arm
from arms.errors import ConfigurationError
from arms.evolution import ActiveArm, EvolutionPlan, ModelRun, NewArm, RetiredArm, evolve_step
from arms.origins import Origin
from arms.space import ParameterSpace
from arms.surrogate import Prediction
from bandit import InvalidParameterError, Prior
from bandit.evolution import EvolutionSettings, Retirement

_SEED_LIMIT = 2**63 - 1


# -- settings ------------------------------------------------------------------------------
def evolution_columns(evolution: schemas.EvolutionIn | None) -> dict[str, Any]:
    """The experiment columns for the ``evolution`` object of a create request.

    Raises :class:`InvalidInput` naming ``evolution.<field>`` for settings that are valid
    one by one but not together (``max_arms < min_arms``).
    """
    if evolution is None:
        return {"evolution": None, "evolve_interval_s": None}
    try:
        evolution.to_settings()
    except InvalidParameterError as error:
        field = schemas.evolution_field(error.parameter)
        raise InvalidInput(f"{field}: {error.message}", field=field) from None
    return {
        "evolution": evolution.model_dump(mode="json"),
        "evolve_interval_s": evolution.evolve_interval_s if evolution.enabled else None,
    }


@dataclass(frozen=True)
class SettingsInForce:
    """The pure settings a step uses, and the same as the API shows them."""

    settings: EvolutionSettings
    shown: schemas.EvolutionSettingsOut


def settings_in_force(experiment: Experiment, n_active: int) -> SettingsInForce:
    """The experiment's settings with the defaults filled in.

    Without settings at creation, ``max_arms`` is the number of active arms (at least
    ``min_arms``): an on-demand step then replaces arms, it does not grow the arm set to a
    default size nobody chose. Scheduled steps are off.
    """
    if experiment.evolution is None:
        body = schemas.EvolutionIn(enabled=False)
        settings = body.to_settings(max_arms=max(n_active, body.min_arms))
    else:
        body = schemas.EvolutionIn.model_validate(experiment.evolution)
        settings = body.to_settings()
    shown = schemas.EvolutionSettingsOut.of(
        settings, enabled=body.enabled, evolve_interval_s=body.evolve_interval_s
    )
    return SettingsInForce(settings, shown)


def is_evolution_due(experiment: Experiment, now: datetime) -> bool:
    if experiment.status != ExperimentStatus.RUNNING or experiment.evolve_interval_s is None:
        return False
    since = experiment.last_evolved_at or experiment.created_at
    return now - as_utc(since) >= timedelta(seconds=experiment.evolve_interval_s)


# -- the step ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvolutionOutcome:
    """A step as planned and, unless a dry run or a no-op, as applied.

    ``retired``, ``added`` and ``details`` are what the generation row records (or would):
    ``added`` is parallel to ``plan.additions``, with arm ids once applied. ``settings``
    are the settings in force that the step used.
    """

    experiment_id: int
    plan: EvolutionPlan
    seed: int
    dry_run: bool
    applied: bool
    retired: tuple[schemas.RetiredArmOut, ...]
    added: tuple[schemas.AddedArmOut, ...]
    details: schemas.GenerationDetailsOut
    settings: schemas.EvolutionSettingsOut


def run_evolution_step(
    session: Session,
    experiment_id: int,
    *,
    now: datetime,
    rng: np.random.Generator,
    dry_run: bool = False,
    only_if_due: bool = False,
    replica: str | None = None,
    trigger: str = "schedule",
    seed: int | None = None,
) -> EvolutionOutcome | None:
    """Run one genetic step on the experiment; None if missing or (``only_if_due``) not due."""
    experiment = repo.get_experiment(session, experiment_id, lock=True)
    if experiment is None or (only_if_due and not is_evolution_due(experiment, now)):
        return None
    if seed is None:
        seed = int(rng.integers(0, _SEED_LIMIT))
    space = space_of(experiment)
    every_arm = list(repo.arms_of(session, experiment.id))
    active = [arm for arm in every_arm if arm.status == ArmStatus.ACTIVE]
    in_force = settings_in_force(experiment, len(active))
    arms_by_id = {arm.id: arm for arm in active}
    queue = list(repo.expert_configs_of(session, experiment.id, status=ExpertStatus.WAITING))
    # Segmented experiments: an arm is judged by its pooled per-segment posteriors weighted
    # by each segment's share of the traffic, so it is retired only when it is bad where
    # the traffic is (docs/segments.md).
    weighted = (
        traffic_weighted_posteriors(
            session, experiment, [arm for arm in active if arm.origin != Origin.REFERENCE]
        )
        if experiment.max_segments is not None
        else {}
    )
    plan = evolve_step(
        space,
        [
            ActiveArm(
                arm_id=arm.id,
                config=space.validate(arm.config),
                alpha=weighted.get(arm.id, (arm.alpha, arm.beta))[0],
                beta=weighted.get(arm.id, (arm.alpha, arm.beta))[1],
                exposures=arm.exposures,
                is_reference=arm.origin == Origin.REFERENCE,
            )
            for arm in active
        ],
        [entry.config for entry in queue],
        in_force.settings,
        Prior(experiment.prior_alpha, experiment.prior_beta),
        np.random.default_rng(seed),
        generation=experiment.generation + 1,
        retired=_retired_in_phase(session, experiment, every_arm, space),
    )
    retired = tuple(_retired_out(r, arms_by_id[r.arm_id]) for r in plan.retirements)
    details = _details_out(plan, queue, seed, in_force.shown)
    changes = bool(plan.retirements or plan.additions or plan.expert_outcomes)
    if dry_run or not changes:
        if not dry_run:
            experiment.last_evolved_at = now
        added = tuple(_added_out(new, None, queue) for new in plan.additions)
        return EvolutionOutcome(
            experiment.id, plan, seed, dry_run, False, retired, added, details, in_force.shown
        )

    new_arms = _apply(session, experiment, plan, arms_by_id, queue, now, rng)
    added = tuple(
        _added_out(new, arm.id, queue) for new, arm in zip(plan.additions, new_arms, strict=True)
    )
    session.add(
        Generation(
            experiment_id=experiment.id,
            number=plan.generation,
            created_at=now,
            trigger=trigger,
            replica=replica,
            retired=[r.model_dump(mode="json") for r in retired],
            added=[a.model_dump(mode="json") for a in added],
            details=details.model_dump(mode="json"),
        )
    )
    experiment.generation = plan.generation
    experiment.last_evolved_at = now
    repo.bump_version(experiment, now)
    repo.add_audit(
        session,
        at=now,
        action="experiment.evolve",
        experiment_id=experiment.id,
        actor="admin" if trigger == "admin" else "scheduler",
        details={
            "generation": plan.generation,
            "trigger": trigger,
            "seed": seed,
            "retired_arm_ids": [r.arm_id for r in retired],
            "added_arm_ids": [a.arm_id for a in added],
            "expert_config_ids": [o.expert_config_id for o in details.expert_outcomes],
        },
    )
    session.flush()
    return EvolutionOutcome(
        experiment.id, plan, seed, False, True, retired, added, details, in_force.shown
    )


def _retired_in_phase(
    session: Session, experiment: Experiment, arms: list[Arm], space: ParameterSpace
) -> list[RetiredArm]:
    """The arms retired since the current phase started: their posteriors are on the
    current reference's scale, so the surrogate model learns from them too. Arms whose
    configuration no longer fits the space (edited bounds) are left out."""
    phase = repo.get_phase(session, experiment.id, experiment.phase)
    since = as_utc(phase.started_at) if phase is not None else None
    retired: list[RetiredArm] = []
    for arm in arms:
        if arm.status == ArmStatus.ACTIVE or arm.origin == Origin.REFERENCE:
            continue
        if since is not None and (arm.retired_at is None or as_utc(arm.retired_at) < since):
            continue
        try:
            config = space.validate(arm.config)
        except ConfigurationError:
            continue
        retired.append(RetiredArm(arm.id, config, arm.alpha, arm.beta, arm.exposures))
    return retired


def _prediction_out(prediction: Prediction | None) -> schemas.ModelPredictionOut | None:
    if prediction is None:
        return None
    return schemas.ModelPredictionOut(
        mean=prediction.mean,
        sd=prediction.sd,
        ratio=prediction.ratio,
        expected_improvement=prediction.expected_improvement,
    )


def _model_run_out(run: ModelRun | None) -> schemas.ModelRunOut | None:
    if run is None:
        return None
    return schemas.ModelRunOut(
        model=run.model, data_version=run.data_version, n_observations=run.n_observations
    )


def _retired_out(retirement: Retirement, arm: Arm) -> schemas.RetiredArmOut:
    return schemas.RetiredArmOut(
        arm_id=retirement.arm_id,
        config=arm.config,
        reason=retirement.reason,
        score=retirement.score,
        exposures=retirement.exposures,
        prob_beat_reference=retirement.prob_beat_reference,
        alpha=arm.alpha,
        beta=arm.beta,
    )


def _added_out(new: NewArm, arm_id: int | None, queue: list[ExpertConfig]) -> schemas.AddedArmOut:
    index = new.expert_queue_index
    return schemas.AddedArmOut(
        arm_id=arm_id,
        config=new.config.as_dict(),
        origin=Origin(new.origin),
        parent_ids=list(new.parent_ids),
        alpha=new.alpha,
        beta=new.beta,
        expert_config_id=queue[index].id if index is not None else None,
        prediction=_prediction_out(new.prediction),
    )


def _details_out(
    plan: EvolutionPlan,
    queue: list[ExpertConfig],
    seed: int,
    settings: schemas.EvolutionSettingsOut,
) -> schemas.GenerationDetailsOut:
    return schemas.GenerationDetailsOut(
        score=plan.score,
        best_arm_id=plan.best_arm_id,
        ranking=[
            schemas.RankedArmOut(
                arm_id=arm.arm_id,
                score=arm.score,
                mean=arm.mean,
                prob_beat_reference=arm.prob_beat_reference,
                exposures=arm.exposures,
                eligible=arm.eligible,
            )
            for arm in plan.ranking
        ],
        skipped=[
            schemas.SkippedSlotOut(
                origin=Origin(slot.origin),
                parent_ids=list(slot.parent_ids),
                attempts=slot.attempts,
                reason=slot.reason,
            )
            for slot in plan.skipped
        ],
        expert_outcomes=[
            schemas.ExpertOutcomeOut(
                queue_index=outcome.queue_index,
                status=outcome.status,
                detail=outcome.detail,
                expert_config_id=queue[outcome.queue_index].id,
            )
            for outcome in plan.expert_outcomes
        ],
        n_active_before=plan.n_active_before,
        n_active_after=plan.n_active_after,
        notes=list(plan.notes),
        seed=seed,
        settings=settings,
        model=_model_run_out(plan.model),
    )


def _apply(
    session: Session,
    experiment: Experiment,
    plan: EvolutionPlan,
    arms_by_id: dict[int, Arm],
    queue: list[ExpertConfig],
    now: datetime,
    rng: np.random.Generator,
) -> list[Arm]:
    """Write the plan into the session; the new arms (flushed: they have ids), in plan order."""
    for retirement in plan.retirements:
        arm = arms_by_id[retirement.arm_id]
        arm.status = ArmStatus.RETIRED
        arm.retired_at = now
        arm.retired_reason = (
            f"generation {plan.generation}: {retirement.reason} ({plan.score} "
            f"{retirement.score:.4g} after {retirement.exposures:g} exposures)"
        )
    session.flush()
    new_arms = [
        Arm(
            experiment_id=experiment.id,
            config=new.config.as_dict(),
            signature=new.config.signature,
            origin=new.origin,
            parent_ids=list(new.parent_ids),
            generation=plan.generation,
            status=ArmStatus.ACTIVE,
            alpha=new.alpha,
            beta=new.beta,
            exposures=0.0,
            target_events=0.0,
            created_at=now,
            segments=inherited_segments([arms_by_id[i] for i in new.parent_ids if i in arms_by_id]),
        )
        for new in plan.additions
    ]
    session.add_all(new_arms)
    session.flush()
    arm_of_queue_index = {
        new.expert_queue_index: arm
        for new, arm in zip(plan.additions, new_arms, strict=True)
        if new.expert_queue_index is not None
    }
    for outcome in plan.expert_outcomes:
        entry = queue[outcome.queue_index]
        entry.resolved_at = now
        entry.generation = plan.generation
        if outcome.status == "added":
            entry.status = ExpertStatus.CONSUMED
            entry.consumed_by_arm_id = arm_of_queue_index[outcome.queue_index].id
        else:
            entry.status = ExpertStatus.REJECTED
            entry.detail = f"{outcome.status}: {outcome.detail}"
    if experiment.mode == Mode.WINDOW:
        survivors = [arm for arm in arms_by_id.values() if arm.status == ArmStatus.ACTIVE]
        targets = [arm for arm in survivors + new_arms if arm.origin != Origin.REFERENCE]
        if experiment.window_arm_id not in {arm.id for arm in targets}:
            experiment.window_arm_id = draw_window_arm(experiment, targets, rng)
    return new_arms


# -- admin use cases -----------------------------------------------------------------------
def evolve_now(
    session: Session,
    name: str,
    *,
    rng: np.random.Generator,
    dry_run: bool,
    seed: int | None,
    replica: str,
) -> schemas.EvolutionStepOut:
    """An admin-triggered step (or its preview), whatever the schedule, and audited."""
    # Under the lock: a stop committed meanwhile is seen, and steps queue behind each other.
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "run a genetic step")
    now = now_utc()
    outcome = run_evolution_step(
        session,
        experiment.id,
        now=now,
        rng=rng,
        dry_run=dry_run,
        replica=replica,
        trigger="admin",
        seed=seed,
    )
    assert outcome is not None  # the experiment exists and only_if_due is off
    if not outcome.applied:
        # Applied steps audit themselves; previews and no-ops are admin actions too.
        repo.add_audit(
            session,
            at=now,
            action="experiment.evolve_preview" if dry_run else "experiment.evolve_noop",
            experiment_id=experiment.id,
            details={
                "generation": outcome.plan.generation,
                "seed": outcome.seed,
                "would_retire_arm_ids": [r.arm_id for r in outcome.retired],
                "would_add": len(outcome.added),
            },
        )
    return step_out(name, outcome)


def step_out(name: str, outcome: EvolutionOutcome) -> schemas.EvolutionStepOut:
    details = outcome.details
    return schemas.EvolutionStepOut(
        experiment=name,
        dry_run=outcome.dry_run,
        applied=outcome.applied,
        generation=outcome.plan.generation if (outcome.applied or outcome.dry_run) else None,
        seed=outcome.seed,
        score=outcome.plan.score,
        best_arm_id=details.best_arm_id,
        retired=list(outcome.retired),
        added=list(outcome.added),
        ranking=details.ranking,
        skipped=details.skipped,
        expert_outcomes=details.expert_outcomes,
        n_active_before=details.n_active_before,
        n_active_after=details.n_active_after,
        notes=details.notes,
        settings=outcome.settings,
        model=details.model,
    )


def expert_config_out(entry: ExpertConfig) -> schemas.ExpertConfigOut:
    return schemas.ExpertConfigOut.model_validate(entry, from_attributes=True)


def submit_expert_config(
    session: Session, name: str, body: schemas.ExpertConfigCreate
) -> schemas.ExpertConfigOut:
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "queue an expert configuration")
    config = validate_config(space_of(experiment), body.config, "config")
    arm = repo.active_arm_with_signature(session, experiment.id, config.signature)
    if arm is not None:
        raise Conflict(
            f"config: equal to active arm {arm.id}; expected a new configuration", "config"
        )
    queued = repo.waiting_expert_with_signature(session, experiment.id, config.signature)
    if queued is not None:
        raise Conflict(
            f"config: equal to expert configuration {queued.id} already waiting; expected a "
            "new configuration",
            "config",
        )
    now = now_utc()
    entry = ExpertConfig(
        experiment_id=experiment.id,
        config=config.as_dict(),
        signature=config.signature,
        note=body.note,
        status=ExpertStatus.WAITING,
        submitted_at=now,
    )
    session.add(entry)
    session.flush()
    repo.add_audit(
        session,
        at=now,
        action="expert_config.submit",
        experiment_id=experiment.id,
        details={"expert_config_id": entry.id, "config": entry.config, "note": entry.note},
    )
    return expert_config_out(entry)


def list_expert_configs(
    session: Session, name: str, *, status: str | None
) -> list[schemas.ExpertConfigOut]:
    experiment = require_experiment(session, name)
    return [
        expert_config_out(entry)
        for entry in repo.expert_configs_of(session, experiment.id, status=status)
    ]


def withdraw_expert_config(
    session: Session, name: str, expert_config_id: int
) -> schemas.ExpertConfigOut:
    # The lock orders a withdrawal after a step that is consuming the queue right now.
    experiment = require_experiment(session, name, lock=True)
    entry = repo.get_expert_config(session, experiment.id, expert_config_id)
    if entry is None:
        raise NotFound(
            f"expert configuration {expert_config_id} does not exist in experiment {name!r}",
            field="expert_config_id",
        )
    if entry.status == ExpertStatus.WITHDRAWN:
        return expert_config_out(entry)
    if entry.status != ExpertStatus.WAITING:
        raise Conflict(
            f"expert configuration {entry.id} is {entry.status} (generation "
            f"{entry.generation}); expected a waiting one",
            "expert_config_id",
        )
    now = now_utc()
    entry.status = ExpertStatus.WITHDRAWN
    entry.resolved_at = now
    repo.add_audit(
        session,
        at=now,
        action="expert_config.withdraw",
        experiment_id=experiment.id,
        details={"expert_config_id": entry.id, "config": entry.config},
    )
    return expert_config_out(entry)


def generation_history(
    session: Session, name: str, *, limit: int, after: int | None
) -> list[schemas.GenerationOut]:
    experiment = require_experiment(session, name)
    return [
        schemas.GenerationOut.model_validate(row, from_attributes=True)
        for row in repo.generations_of(session, experiment.id, limit=limit, after=after)
    ]


def lineage(session: Session, name: str, arm_id: int) -> schemas.LineageOut:
    """The arm and its ancestors breadth first (each once, at its smallest depth)."""
    experiment = require_experiment(session, name)
    arm = repo.get_arm(session, experiment.id, arm_id)
    if arm is None:
        raise NotFound(f"arm {arm_id} does not exist in experiment {name!r}", field="arm_id")
    seen = {arm.id}
    ancestors: list[schemas.AncestorOut] = []
    founders = [arm.id] if not arm.parent_ids else []
    frontier = [int(i) for i in arm.parent_ids or []]
    depth = 0
    while frontier:
        depth += 1
        level = [i for i in dict.fromkeys(frontier) if i not in seen]
        seen.update(level)
        frontier = []
        for parent in repo.arms_by_ids(session, experiment.id, level):
            ancestors.append(schemas.AncestorOut(**arm_out(parent).model_dump(), depth=depth))
            if parent.parent_ids:
                frontier.extend(int(i) for i in parent.parent_ids)
            else:
                founders.append(parent.id)
    return schemas.LineageOut(
        arm=arm_out(arm),
        ancestors=ancestors,
        founder_ids=founders,
        model=_model_provenance(session, experiment.id, arm),
    )


def _model_provenance(
    session: Session, experiment_id: int, arm: Arm
) -> schemas.ModelProvenanceOut | None:
    """A model arm's model, data version and prediction, from the generation that added it."""
    if arm.origin != Origin.MODEL:
        return None
    generation = repo.get_generation(session, experiment_id, arm.generation)
    if generation is None:
        return None
    details = schemas.GenerationDetailsOut.model_validate(generation.details)
    added = [schemas.AddedArmOut.model_validate(entry) for entry in generation.added]
    prediction = next((a.prediction for a in added if a.arm_id == arm.id), None)
    if details.model is None or prediction is None:
        return None
    return schemas.ModelProvenanceOut(
        generation=generation.number, run=details.model, prediction=prediction
    )
