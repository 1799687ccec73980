"""Phases: promoting an arm to reference, and editing an experiment's settings.

Every posterior is relative to the reference group (docs/spec.md, "Updating") and the
report compares every arm with it, so a new reference configuration, a new reference share
(units change groups) or a new decision metric makes the evidence so far incomparable with
what follows: it starts a new **phase**. :func:`start_phase` is the one way a phase ends
and the next begins, in the caller's transaction and under the experiment's lock:

1. a final tick of the old phase (as a stop applies) credits what arrived, and what it
   cannot credit (no reference exposure in the window) is discarded and reported;
2. the old phase's final scorecard is stored as a report snapshot, and its arms' final
   posteriors and totals in its ``phases`` row, which closes;
3. the reference changes: a new reference arm with the new configuration (the old one is
   retired, "replaced as reference in phase N"; an active arm with the same configuration
   is retired as its duplicate), and/or the new reference share or decision metric;
4. every active arm restarts from the prior, and its credited totals (exposures, target
   events, quarantined events: what the nursery, the exposure cap and the genetic step's
   ``min_exposures`` read) restart from zero, as in a new experiment (the reference arm's
   too when it carries over to the next phase);
5. ``phase`` moves on: tickets carry it, so events on an older phase's ticket are stored
   but not credited (``previous_phase``), and the report counts the new phase apart.

Settings that do not change the comparison (tick interval, attribution window, event
limits, genetic step, nursery, decision settings) take effect at once, without a new
phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, Mode, NotificationKind, PhaseTrigger
from api.errors import Conflict, InvalidInput, validation_failure
from api.models import Arm, Experiment, Phase, reference_of
from api.services.common import (
    by_group_and_type,
    decisions_in_force,
    new_arm,
    now_utc,
    require_experiment,
    require_open,
    space_of,
    validate_config,
)
from api.services.evolution import evolution_columns, settings_in_force
from api.services.notifications import notify
from api.services.report import save_snapshot, scorecard, scorecard_document
from api.services.retention import check_attribution_window
from api.services.ticks import apply_tick, draw_window_arm
from api.tickets import MAX_PHASE
from arms import Configuration
from arms.origins import Origin


def first_phase(experiment: Experiment, reference: Arm, now: datetime) -> Phase:
    """The phase row of a new experiment (phase 1, its reference arm)."""
    return Phase(
        experiment_id=experiment.id,
        number=experiment.phase,
        started_at=now,
        reference_arm_id=reference.id,
        reference_config=reference.config,
        reference_share=experiment.reference_share,
        target_event=experiment.target_event,
        trigger=PhaseTrigger.CREATE,
        changes={},
    )


@dataclass(frozen=True)
class PhaseChange:
    """What the next phase changes (None: kept), why, and the phase record's ``changes``."""

    trigger: PhaseTrigger
    reason: str | None
    reference: Configuration | None = None
    promoted_arm_id: int | None = None
    reference_share: float | None = None
    target_event: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)


def start_phase(
    session: Session,
    experiment: Experiment,
    change: PhaseChange,
    *,
    rng: np.random.Generator,
    replica: str | None,
) -> dict[str, Any]:
    """End the experiment's phase and start the next (the module docstring's steps).

    The caller holds the experiment's lock and has changed nothing yet (the final tick
    reloads the row). Returns what the audit entry records of the change.
    """
    arms = list(repo.arms_of(session, experiment.id))
    _check_phase_change(experiment, arms, change)
    now = now_utc()
    old = experiment.phase
    final = apply_tick(session, experiment.id, now=now, rng=rng, only_if_due=False, replica=replica)
    assert final is not None  # the experiment exists: the caller holds its lock
    discarded = by_group_and_type(repo.discard_pending_counts(session, experiment.id))
    arms = list(repo.arms_of(session, experiment.id))  # the final tick updated them
    closing = {
        "final_tick": {"number": final.number, "applied": final.applied},
        "discarded": discarded,
        "arms": [_final_state(arm) for arm in arms if arm.status == ArmStatus.ACTIVE],
    }
    snapshot = save_snapshot(
        session,
        experiment,
        trigger=change.trigger.value,
        detail={"phase": old, "next_phase": old + 1, **change.changes, "reason": change.reason},
        report=scorecard_document(scorecard(session, experiment), experiment),
    )
    record = repo.get_phase(session, experiment.id, old)
    if record is not None:  # a row per phase since migration 0012
        record.ended_at = now
        record.summary = closing
        record.report_snapshot_id = snapshot.id

    reference = _change_reference(session, experiment, arms, change, old + 1, now)
    if change.reference_share is not None:
        experiment.reference_share = change.reference_share
    if change.target_event is not None:
        experiment.target_event = change.target_event
    # Every active arm, the reference too when it carries over: its totals are per phase.
    active = [arm for arm in arms if arm.status == ArmStatus.ACTIVE]
    for arm in active:
        _restart(arm, experiment)
    # Segmented experiments: the per-segment evidence is relative to the old reference too.
    repo.delete_arm_segments(session, [arm.id for arm in arms])
    experiment.phase = old + 1
    if experiment.mode == Mode.WINDOW:
        experiment.window_arm_id = draw_window_arm(experiment, active, rng)
    session.add(
        Phase(
            experiment_id=experiment.id,
            number=old + 1,
            started_at=now,
            reference_arm_id=reference.id,
            reference_config=reference.config,
            reference_share=experiment.reference_share,
            target_event=experiment.target_event,
            trigger=change.trigger,
            reason=change.reason,
            changes=change.changes,
        )
    )
    repo.bump_version(experiment, now)
    details = {
        "from_phase": old,
        "to_phase": old + 1,
        "reference_arm_id": reference.id,
        "reference_config": reference.config,
        **change.changes,
        "reason": change.reason,
        "final_tick": closing["final_tick"],
        "discarded": discarded,
        "report_snapshot_id": snapshot.id,
    }
    notify(
        session,
        experiment.id,
        NotificationKind.PHASE_CHANGED,
        {"experiment": experiment.name, "trigger": change.trigger.value, **details},
    )
    session.flush()
    return details


def _check_phase_change(experiment: Experiment, arms: list[Arm], change: PhaseChange) -> None:
    """409 before anything changes: a ticket holds the phase in 16 bits, and the target
    group must keep an arm when the new reference retires its duplicate."""
    if experiment.phase >= MAX_PHASE:
        raise Conflict(
            f"phase: the experiment is in phase {experiment.phase}, the last a ticket can "
            "carry; expected a new experiment for further changes",
            field="phase",
        )
    if change.reference is None:
        return
    signature = change.reference.signature
    remaining = [
        arm
        for arm in arms
        if arm.status == ArmStatus.ACTIVE
        and arm.origin != Origin.REFERENCE
        and arm.signature != signature
    ]
    if not remaining:
        field_name = "arm_id" if change.promoted_arm_id is not None else "reference_config"
        raise Conflict(
            f"{field_name}: the arm with this configuration is the last active arm, and as "
            "the reference's duplicate it would be retired; expected another active arm "
            "first (add one)",
            field=field_name,
        )


def _final_state(arm: Arm) -> dict[str, Any]:
    return {
        "arm_id": arm.id,
        "origin": arm.origin.value,
        "alpha": arm.alpha,
        "beta": arm.beta,
        "exposures": arm.exposures,
        "target_events": arm.target_events,
        "quarantined_events": arm.quarantined_events,
    }


def _change_reference(
    session: Session,
    experiment: Experiment,
    arms: list[Arm],
    change: PhaseChange,
    number: int,
    now: datetime,
) -> Arm:
    """The reference arm of phase ``number``: the current one, or a new arm with the new
    configuration (the current one retired, an active duplicate of the new one retired)."""
    current = reference_of(arms)
    if change.reference is None or change.reference.signature == current.signature:
        return current
    reference = new_arm(
        experiment,
        change.reference,
        Origin.REFERENCE,
        now,
        parent_ids=[] if change.promoted_arm_id is None else [change.promoted_arm_id],
        generation=experiment.generation,
    )
    session.add(reference)
    session.flush()
    _retire(current, f"replaced as reference in phase {number} (by arm {reference.id})", now)
    for arm in arms:
        if (
            arm.status == ArmStatus.ACTIVE
            and arm.origin != Origin.REFERENCE
            and arm.signature == reference.signature
        ):
            if arm.id == change.promoted_arm_id:
                reason = f"promoted to reference in phase {number} (arm {reference.id})"
            else:
                reason = f"duplicate of the reference of phase {number} (arm {reference.id})"
            _retire(arm, reason, now)
    return reference


def _retire(arm: Arm, reason: str, now: datetime) -> None:
    arm.status = ArmStatus.RETIRED
    arm.retired_at = now
    arm.retired_reason = reason


def _restart(arm: Arm, experiment: Experiment) -> None:
    """The arm as if just added: its posterior at the prior, its credited totals at zero
    (the old phase's are in its ``phases`` row, its ticks and the report's counts)."""
    arm.alpha = experiment.prior_alpha
    arm.beta = experiment.prior_beta
    arm.exposures = 0.0
    arm.target_events = 0.0
    arm.quarantined_events = 0.0
    arm.pool_mu = None
    arm.pool_kappa = None


# -- promote -------------------------------------------------------------------------------
def promote(
    session: Session,
    name: str,
    body: schemas.PromoteIn,
    *,
    rng: np.random.Generator,
    replica: str | None,
) -> Experiment:
    """Make an active target arm's configuration the reference: a new phase, in which the
    arm itself is retired as the new reference's duplicate (its configuration is served to
    the reference group now; comparing it with itself would only spend traffic)."""
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "promote an arm")
    arm = repo.get_arm(session, experiment.id, body.arm_id)
    if arm is None:
        raise Conflict(
            f"arm_id: arm {body.arm_id} does not exist in experiment {name!r}; expected an "
            "active arm of the target group",
            field="arm_id",
        )
    if arm.status != ArmStatus.ACTIVE:
        raise Conflict(
            f"arm_id: arm {arm.id} is retired; expected an active arm of the target group",
            field="arm_id",
        )
    if arm.origin == Origin.REFERENCE:
        raise Conflict(
            f"arm_id: arm {arm.id} is the reference already; expected an arm of the target group",
            field="arm_id",
        )
    details = start_phase(
        session,
        experiment,
        PhaseChange(
            trigger=PhaseTrigger.PROMOTE,
            reason=body.reason,
            reference=space_of(experiment).validate(arm.config),
            promoted_arm_id=arm.id,
            changes={"promoted_arm_id": arm.id},
        ),
        rng=rng,
        replica=replica,
    )
    repo.add_audit(
        session,
        at=now_utc(),
        action="experiment.promote",
        experiment_id=experiment.id,
        details=details,
    )
    return experiment


# -- settings ------------------------------------------------------------------------------
def update_settings(
    session: Session,
    name: str,
    patch: schemas.ExperimentPatch,
    *,
    rng: np.random.Generator,
    replica: str | None,
    retention_days: float | None = None,
) -> Experiment:
    """Apply the settings given; a change of a phase setting starts a new phase first.

    Values equal to those in force are no change; a request that changes nothing records
    nothing. Every change is audited with its value before and after. ``retention_days``
    (the server's event retention) bounds the attribution window, as on creation.
    """
    _refuse_other_fields(patch)
    if "attribution_window_s" in patch.model_fields_set:
        check_attribution_window(patch.attribution_window_s, retention_days, "attribution_window_s")
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "edit the settings")
    given = patch.model_dump(include=set(patch.model_fields_set) - {"reason"})
    safe = _safe_changes(session, experiment, given)
    phase_change = _phase_change(session, experiment, given, patch.reason)
    if not safe.audit and phase_change is None:
        return experiment
    details: dict[str, Any] = {"changes": dict(safe.audit), "reason": patch.reason}
    if phase_change is not None:
        details["changes"].update(phase_change.changes)
        # First, under the old settings: the final tick and snapshot close the old phase.
        details["phase"] = start_phase(session, experiment, phase_change, rng=rng, replica=replica)
    now = now_utc()
    for column, value in safe.columns.items():
        setattr(experiment, column, value)
    window = safe.audit.get("attribution_window_s")
    if window is not None and window["after"] > window["before"]:
        # A longer window does not revive tickets that had expired under the shorter one:
        # their per-ticket counts may be purged already, so they could credit past the limit.
        experiment.tickets_valid_from = max(
            experiment.tickets_valid_from, math.floor(now.timestamp() - window["before"])
        )
    repo.bump_version(experiment, now)
    repo.add_audit(
        session, at=now, action="experiment.update", experiment_id=experiment.id, details=details
    )
    return experiment


def _refuse_other_fields(patch: schemas.ExperimentPatch) -> None:
    """422 naming the first member that is not an editable setting (the model keeps them
    apart, so that the answer can say which are fixed at creation)."""
    editable = ", ".join((*schemas.SAFE_SETTINGS, *schemas.PHASE_SETTINGS))
    for key in patch.model_extra or {}:
        if key in schemas.ExperimentCreate.model_fields:
            detail = f"{key}: fixed at creation; expected only the editable settings ({editable})"
        else:
            detail = f"{key}: not a setting; expected only the editable settings ({editable})"
        raise InvalidInput(detail, field=key)


@dataclass(frozen=True)
class SafeChanges:
    """The settings that change without a new phase: what the audit shows (setting ->
    before and after) and the experiment columns to write."""

    audit: dict[str, dict[str, Any]]
    columns: dict[str, Any]


def _safe_changes(session: Session, experiment: Experiment, given: dict[str, Any]) -> SafeChanges:
    """The safe settings given that differ from those in force, validated."""
    audit: dict[str, dict[str, Any]] = {}
    columns: dict[str, Any] = {}
    for key in schemas.SAFE_SETTINGS:
        if key in ("evolution", "decisions") or key not in given:
            continue
        before, after = getattr(experiment, key), given[key]
        if after != before:
            audit[key] = {"before": before, "after": after}
            columns[key] = after
    if "evolution" in given:
        moved, evolution = _evolution_changes(session, experiment, given["evolution"])
        if moved:
            audit.update(moved)
            columns.update(evolution)
    if "decisions" in given:
        moved, decisions = _decision_changes(experiment, given["decisions"])
        if moved:
            audit.update(moved)
            columns["decisions"] = decisions
    return SafeChanges(audit, columns)


def _decision_changes(
    experiment: Experiment, given: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The decision settings given over those in force, validated as on creation (422
    naming ``decisions.<name>``). Returns each setting that moved (``decisions.<name>`` ->
    before and after) and the experiment's ``decisions`` column: every setting, as a
    create request with ``decisions`` stores them."""
    shown = decisions_in_force(experiment).model_dump()
    try:
        body = schemas.Decisions.model_validate({**shown, **given})
    except ValidationError as error:
        raise validation_failure(error, prefix=("decisions",)) from None
    after = body.model_dump()
    moved = {
        f"decisions.{key}": {"before": shown[key], "after": value}
        for key, value in after.items()
        if value != shown[key]
    }
    return moved, after


def _evolution_changes(
    session: Session, experiment: Experiment, given: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The genetic step's settings: those given over those in force (the defaults filled
    in), validated as on creation. Returns each setting that moved (``evolution.<name>``
    -> before and after) and the experiment's evolution columns."""
    active = len(repo.arms_of(session, experiment.id, active_only=True))
    shown = settings_in_force(experiment, active).shown.model_dump(mode="json")
    merged = {**shown, **given}
    if isinstance(given.get("mix"), dict):
        merged["mix"] = {**shown["mix"], **given["mix"]}
    try:
        body = schemas.EvolutionIn.model_validate(merged)
    except ValidationError as error:
        raise validation_failure(error, prefix=("evolution",)) from None
    columns = evolution_columns(body)
    after = body.model_dump(mode="json")
    flat_before, flat_after = _flat(shown), _flat(after)
    moved = {
        f"evolution.{key}": {"before": flat_before[key], "after": value}
        for key, value in flat_after.items()
        if value != flat_before[key]
    }
    return moved, columns


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """Evolution settings with the mix weights as ``mix.<name>``."""
    flat = {key: value for key, value in settings.items() if key != "mix"}
    flat.update({f"mix.{key}": value for key, value in settings["mix"].items()})
    return flat


def _phase_change(
    session: Session, experiment: Experiment, given: dict[str, Any], reason: str | None
) -> PhaseChange | None:
    """The phase settings given that differ from those in force, or None."""
    changes: dict[str, Any] = {}
    reference: Configuration | None = None
    if "reference_config" in given:
        config = validate_config(
            space_of(experiment), given["reference_config"], "reference_config"
        )
        current = reference_of(repo.arms_of(session, experiment.id))
        if config.signature != current.signature:
            reference = config
            changes["reference_config"] = {"before": current.config, "after": config.as_dict()}
    share = given.get("reference_share")
    if share is not None and share != experiment.reference_share:
        changes["reference_share"] = {"before": experiment.reference_share, "after": share}
    else:
        share = None
    target_event = given.get("target_event")
    if target_event is not None and target_event != experiment.target_event:
        changes["target_event"] = {"before": experiment.target_event, "after": target_event}
    else:
        target_event = None
    if not changes:
        return None
    return PhaseChange(
        trigger=PhaseTrigger.SETTINGS,
        reason=reason,
        reference=reference,
        reference_share=share,
        target_event=target_event,
        changes=changes,
    )


# -- read model ----------------------------------------------------------------------------
def phase_history(session: Session, name: str) -> list[schemas.PhaseOut]:
    experiment = require_experiment(session, name)
    return [
        schemas.PhaseOut.model_validate(record, from_attributes=True)
        for record in repo.phases_of(session, experiment.id)
    ]
