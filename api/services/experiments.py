"""Admin use cases: experiments, their arms, statistics, tick history and the audit log."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic_core import to_json
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, ExperimentStatus, Mode
from api.errors import Conflict, InvalidInput, NotFound
from api.limits import event_limits
from api.models import Arm, Experiment, Tick, reference_of
from api.plots import (
    HIGHLIGHTED_ARMS,
    ArmSeries,
    downsample,
    points_per_arm,
    posteriors_figure,
)
from api.services.common import (
    arm_out,
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
from api.services.metrics import check_new_metrics, declare, metric_out
from api.services.phases import first_phase
from api.services.retention import check_attribution_window
from api.services.segments import add_default_segment, segment_view, served_in
from api.services.ticks import apply_tick, draw_window_arm
from arms import Configuration, ConfigurationError, Parameter, ParameterSpace
from arms.origins import Origin
from bandit import summarize
from bandit.summaries import bounded_draws

# Monte Carlo samples (draws x active arms) a stats call may make: 0.7 to 2 s of Beta draws
# (measured); 256 arms still get 39,062 draws, a standard error of P(best) under 0.0026.
STATS_MAX_SAMPLES = 10_000_000

STATUS_TRANSITIONS = {
    "pause": ({ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED),
    "resume": ({ExperimentStatus.PAUSED}, ExperimentStatus.RUNNING),
    "stop": ({ExperimentStatus.RUNNING, ExperimentStatus.PAUSED}, ExperimentStatus.STOPPED),
    # Archiving is final and only follows a stop, whose final tick has closed the books.
    "archive": ({ExperimentStatus.STOPPED}, ExperimentStatus.ARCHIVED),
}
# Archived experiments are not ticked, not even on an admin's request.
ARCHIVED_ONLY = frozenset({ExperimentStatus.ARCHIVED})


def build_space(parameters: list[schemas.ParameterIn]) -> ParameterSpace:
    built = []
    for index, spec in enumerate(parameters):
        try:
            built.append(Parameter(**spec.model_dump()))
        except ConfigurationError as error:
            field = f"parameters[{index}].{error.field.split('.')[-1]}"
            raise InvalidInput(f"{field}: {error.message}", field=field) from None
    try:
        return ParameterSpace(tuple(built))
    except ConfigurationError as error:
        raise InvalidInput(f"parameters: {error}", field="parameters") from None


def create_experiment(
    session: Session,
    request: schemas.ExperimentCreate,
    *,
    default_interval_s: float,
    rng: np.random.Generator,
    retention_days: float | None = None,
) -> Experiment:
    """Create the experiment; ``rng`` (the caller's, so a seeded run repeats) draws window
    mode's first pinned arm. ``retention_days`` (the server's event retention) bounds the
    attribution window (``api.services.retention``); None: only the schema's bound."""
    check_attribution_window(request.attribution_window_s, retention_days, "attribution_window_s")
    space = build_space(request.parameters)
    evolution = evolution_columns(request.evolution)
    reference = validate_config(space, request.reference_config, "reference_config")
    configs: list[Configuration] = []
    signatures = {reference.signature: "reference_config"}
    for index, values in enumerate(request.arms):
        config = validate_config(space, values, f"arms[{index}]")
        if config.signature in signatures:
            field = f"arms[{index}]"
            raise InvalidInput(
                f"{field}: duplicate of {signatures[config.signature]}; expected distinct "
                "configurations",
                field=field,
            )
        signatures[config.signature] = f"arms[{index}]"
        configs.append(config)
    check_new_metrics(request.metrics, request.target_event)
    check_segmentable(request)
    check_sticky(request)
    if repo.get_experiment_by_name(session, request.name) is not None:
        raise Conflict(f"experiment {request.name!r} already exists", field="name")
    now = now_utc()
    experiment = Experiment(
        name=request.name,
        parameters=space.to_dicts(),
        reference_share=request.reference_share,
        salt=request.salt or secrets.token_hex(8),
        mode=request.mode,
        policy=request.policy,
        policy_params=request.policy_params.model_dump(),
        prior_alpha=request.prior_alpha,
        prior_beta=request.prior_beta,
        update_interval_s=request.update_interval_s or default_interval_s,
        decay=request.decay,
        target_event=request.target_event,
        exposure_source=request.exposure_source,
        attribution_window_s=request.attribution_window_s,
        max_events_per_exposure=request.max_events_per_exposure,
        nursery_exposures=request.nursery_exposures,
        nursery_share=request.nursery_share,
        decisions=None if request.decisions is None else request.decisions.model_dump(),
        status=ExperimentStatus.RUNNING,
        created_at=now,
        updated_at=now,
        tick_count=0,
        version=1,
        generation=0,
        max_segments=None if request.segments is None else request.segments.max_segments,
        sticky=request.assignment.sticky,
        **evolution,
    )
    session.add(experiment)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"experiment {request.name!r} already exists", field="name") from None
    reference_arm = new_arm(experiment, reference, Origin.REFERENCE, now)
    session.add(reference_arm)
    arms = [new_arm(experiment, config, Origin.EXPERT, now) for config in configs]
    session.add_all(arms)
    session.flush()
    session.add(first_phase(experiment, reference_arm, now))
    if experiment.mode == Mode.WINDOW:
        experiment.window_arm_id = draw_window_arm(experiment, arms, rng)
    if experiment.max_segments is not None:
        add_default_segment(session, experiment, now)
    for metric in request.metrics:
        declare(session, experiment, metric, now)
    repo.add_audit(
        session,
        at=now,
        action="experiment.create",
        experiment_id=experiment.id,
        details=request.model_dump(mode="json"),
    )
    return experiment


def change_status(
    session: Session,
    name: str,
    action: str,
    *,
    rng: np.random.Generator,
    replica: str | None = None,
    actor: str = "admin",
    reason: dict[str, Any] | None = None,
) -> Experiment:
    """Pause, resume, stop or archive. Stopping closes the last window first: a final tick
    credits what arrived while the experiment ran, and what it cannot credit (a window
    without reference exposures) is discarded and audited, so no pending count outlives the
    run. Archiving (only from stopped) discards what stale replicas flushed since.

    A pause records why in ``paused_reason`` (``reason``, e.g. the circuit breaker's rule
    and numbers; an admin's pause says so); a resume clears it."""
    experiment = require_experiment(session, name, lock=True)
    allowed, target = STATUS_TRANSITIONS[action]
    if experiment.status == target:
        return experiment  # idempotent: pausing a paused experiment changes nothing
    if experiment.status not in allowed:
        raise Conflict(
            f"cannot {action} an experiment that is {experiment.status}; expected status "
            f"{' or '.join(sorted(allowed))}",
            field="status",
        )
    now = now_utc()
    before = experiment.status
    details: dict[str, Any] = {"from": before, "to": target}
    if action == "stop":
        final = apply_tick(
            session, experiment.id, now=now, rng=rng, only_if_due=False, replica=replica
        )
        assert final is not None  # the experiment exists: we hold its lock
        details["final_tick"] = {"number": final.number, "applied": final.applied}
    if action in ("stop", "archive"):
        details["discarded"] = by_group_and_type(
            repo.discard_pending_counts(session, experiment.id)
        )
    if action == "pause":
        experiment.paused_reason = reason or {
            "by": actor,
            "at": now.isoformat(),
            "message": f"paused by {actor}",
        }
        if reason is not None:
            details["reason"] = reason
    elif action == "resume":
        if experiment.paused_reason and experiment.paused_reason.get("by") != "admin":
            details["paused_reason"] = experiment.paused_reason  # what the admin overrode
        experiment.paused_reason = None
    experiment.status = target
    repo.bump_version(experiment, now)
    repo.add_audit(
        session,
        at=now,
        action=f"experiment.{action}",
        experiment_id=experiment.id,
        details=details,
        actor=actor,
    )
    return experiment


def discard_pending_of_stopped(session: Session) -> dict[str, dict[str, dict[str, int]]]:
    """Drop the pending counts of stopped experiments (events reported to a replica that had
    not yet seen the stop, exposures it counted then): no tick will consume them. Audited
    per experiment; the answer is experiment name -> group -> type -> count."""
    discarded: dict[str, dict[str, dict[str, int]]] = {}
    now = now_utc()
    for experiment in repo.stopped_experiments_with_pending_counts(session):
        totals = by_group_and_type(repo.discard_pending_counts(session, experiment.id))
        discarded[experiment.name] = totals
        repo.add_audit(
            session,
            at=now,
            action="experiment.discard_pending",
            experiment_id=experiment.id,
            actor="scheduler",
            details={"discarded": totals},
        )
    return discarded


def add_arm(
    session: Session,
    name: str,
    values: dict[str, Any],
    *,
    origin: Origin = Origin.MANUAL,
    segments: list[str] | None = None,
) -> Arm:
    """Add an arm; ``segments``: the segments it is served in (None: every one)."""
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "add an arm")
    config = validate_config(space_of(experiment), values, "config")
    restriction = arm_segments(experiment, segments)
    duplicate = repo.active_arm_with_signature(session, experiment.id, config.signature)
    if duplicate is not None:
        raise Conflict(
            f"config: equal to active arm {duplicate.id}; expected a new configuration", "config"
        )
    now = now_utc()
    arm = new_arm(experiment, config, origin, now)
    arm.segments = restriction
    session.add(arm)
    session.flush()
    if experiment.mode == Mode.WINDOW and experiment.window_arm_id is None:
        experiment.window_arm_id = arm.id
    repo.bump_version(experiment, now)
    repo.add_audit(
        session,
        at=now,
        action="arm.add",
        experiment_id=experiment.id,
        details={
            "arm_id": arm.id,
            "config": arm.config,
            "origin": origin,
            **({"segments": restriction} if restriction is not None else {}),
        },
    )
    return arm


def arm_segments(experiment: Experiment, segments: list[str] | None) -> list[str] | None:
    """A new arm's segment restriction, checked (the names' lengths and the list's being
    non-empty are the schema's): a segmented experiment's, distinct, at most its
    ``max_segments``. 422 naming ``segments`` or ``segments[i]`` otherwise."""
    if segments is None:
        return None
    if experiment.max_segments is None:
        raise InvalidInput(
            f"segments: experiment {experiment.name!r} is not segmented; expected no segments",
            field="segments",
        )
    if len(segments) > experiment.max_segments:
        raise InvalidInput(
            f"segments: {len(segments)} names; expected at most the experiment's max_segments "
            f"({experiment.max_segments})",
            field="segments",
        )
    for index, segment in enumerate(segments):
        if segment in segments[:index]:
            raise InvalidInput(
                f"segments[{index}]: {segment!r} is listed twice; expected distinct names",
                field=f"segments[{index}]",
            )
    return list(segments)


def retire_arm(
    session: Session,
    name: str,
    arm_id: int,
    *,
    rng: np.random.Generator,
    reason: str = "retired by admin",
    actor: str = "admin",
    evidence: dict[str, Any] | None = None,
) -> Arm:
    """Retire the arm; in window mode, ``rng`` draws the next pinned arm if it was this one.
    ``evidence`` (what a decision saw) goes into the audit entry with the reason."""
    experiment = require_experiment(session, name, lock=True)
    require_open(experiment, "retire an arm", ARCHIVED_ONLY)
    arm = repo.get_arm(session, experiment.id, arm_id)
    if arm is None:
        raise NotFound(f"arm {arm_id} does not exist in experiment {name!r}", field="arm_id")
    if arm.origin == Origin.REFERENCE:
        raise Conflict("the reference arm cannot be retired; it is the baseline", "arm_id")
    if arm.status == ArmStatus.RETIRED:
        return arm
    active_targets = [
        a
        for a in repo.arms_of(session, experiment.id, active_only=True)
        if a.origin != Origin.REFERENCE
    ]
    if len(active_targets) <= 1:
        raise Conflict(
            "cannot retire the last active arm; add another arm first or stop the experiment",
            "arm_id",
        )
    now = now_utc()
    arm.status = ArmStatus.RETIRED
    arm.retired_at = now
    arm.retired_reason = reason
    if experiment.window_arm_id == arm.id:
        rest = [a for a in active_targets if a.id != arm.id]
        experiment.window_arm_id = draw_window_arm(experiment, rest, rng)
    repo.bump_version(experiment, now)
    repo.add_audit(
        session,
        at=now,
        action="arm.retire",
        experiment_id=experiment.id,
        details={"arm_id": arm.id, "reason": reason, **(evidence or {})},
        actor=actor,
    )
    return arm


# -- read models ---------------------------------------------------------------------------
def check_segmentable(request: schemas.ExperimentCreate) -> None:
    """Segments draw per request from each segment's posteriors with Thompson sampling: a
    window pins one arm for all traffic, and the other policies have no posterior to pool."""
    if request.segments is None:
        return
    if request.mode != Mode.REQUEST:
        raise InvalidInput(
            "segments: a segmented experiment draws an arm per request; expected mode "
            f"'request', got {request.mode.value!r}",
            field="segments",
        )
    if request.policy != "thompson":
        raise InvalidInput(
            "segments: a segmented experiment draws from each segment's pooled posteriors; "
            f"expected policy 'thompson', got {request.policy!r}",
            field="segments",
        )


def check_sticky(request: schemas.ExperimentCreate) -> None:
    """A sticky unit keeps its arm within a posterior version; a window already pins one
    arm for all traffic, so there is nothing to make sticky."""
    if request.assignment.sticky and request.mode != Mode.REQUEST:
        raise InvalidInput(
            "assignment.sticky: sticky assignment chooses a target unit's arm per unit; "
            f"expected mode 'request', got {request.mode.value!r}",
            field="assignment.sticky",
        )


def segments_out(session: Session, experiment: Experiment) -> schemas.SegmentsOut | None:
    if experiment.max_segments is None:
        return None
    return schemas.SegmentsOut(
        max_segments=experiment.max_segments, opened=repo.segment_names(session, experiment.id)
    )


def experiment_out(session: Session, experiment: Experiment) -> schemas.ExperimentOut:
    arms = repo.arms_of(session, experiment.id)
    reference = reference_of(arms)
    return schemas.ExperimentOut(
        id=experiment.id,
        name=experiment.name,
        status=experiment.status,
        parameters=experiment.parameters,
        reference_config=reference.config,
        reference_arm_id=reference.id,
        reference_share=experiment.reference_share,
        mode=experiment.mode,
        policy=experiment.policy,
        policy_params=experiment.policy_params,
        prior_alpha=experiment.prior_alpha,
        prior_beta=experiment.prior_beta,
        update_interval_s=experiment.update_interval_s,
        decay=experiment.decay,
        target_event=experiment.target_event,
        exposure_source=experiment.exposure_source,
        created_at=experiment.created_at,
        last_tick_at=experiment.last_tick_at,
        tick_count=experiment.tick_count,
        window_arm_id=experiment.window_arm_id,
        arms=[arm_out(arm) for arm in arms],
        evolution=settings_in_force(experiment, _active_count(arms)).shown,
        evolve_interval_s=experiment.evolve_interval_s,
        last_evolved_at=experiment.last_evolved_at,
        generation=experiment.generation,
        attribution_window_s=experiment.attribution_window_s,
        max_events_per_exposure=event_limits(experiment.max_events_per_exposure),
        nursery_exposures=experiment.nursery_exposures,
        nursery_share=experiment.nursery_share,
        decisions=decisions_in_force(experiment),
        paused_reason=experiment.paused_reason,
        winner=_of_phase(experiment.winner, experiment.phase),
        winner_candidate=_of_phase(experiment.winner_candidate, experiment.phase),
        metrics=[metric_out(m) for m in repo.declared_metrics(session, experiment.id)],
        phase=experiment.phase,
        segments=segments_out(session, experiment),
        assignment=schemas.AssignmentOut(sticky=experiment.sticky),
    )


def _of_phase(state: dict[str, Any] | None, phase: int) -> dict[str, Any] | None:
    """A decision's state if it belongs to the current phase (a new reference configuration
    starts the winner search afresh)."""
    return state if state is not None and state.get("phase") == phase else None


def _active_count(arms: Sequence[Arm]) -> int:
    return sum(1 for arm in arms if arm.status == ArmStatus.ACTIVE)


def experiment_summaries(session: Session) -> list[schemas.ExperimentSummary]:
    summaries = []
    for experiment in repo.list_experiments(session):
        active = [
            a
            for a in repo.arms_of(session, experiment.id, active_only=True)
            if a.origin != Origin.REFERENCE
        ]
        summaries.append(
            schemas.ExperimentSummary(
                id=experiment.id,
                name=experiment.name,
                status=experiment.status,
                mode=experiment.mode,
                policy=experiment.policy,
                active_arms=len(active),
                tick_count=experiment.tick_count,
                created_at=experiment.created_at,
                phase=experiment.phase,
            )
        )
    return summaries


def _rate(events: float, exposures: float) -> float | None:
    return events / exposures if exposures > 0 else None


def experiment_stats(
    session: Session, name: str, *, seed: int, draws: int, segment: str | None = None
) -> schemas.ExperimentStats:
    """Per-arm statistics. ``prob_best`` is among the active target arms (Monte Carlo with
    ``seed``, at most ``STATS_MAX_SAMPLES`` draws x arms); lift and P(beat reference) follow
    from each arm's posterior (bandit.summaries). With ``segment``: one segment's, from its
    pooled posteriors and its counts (api.services.segments)."""
    experiment = require_experiment(session, name)
    arms = list(repo.arms_of(session, experiment.id))
    if segment is not None:
        arms = segment_view(session, experiment, arms, segment)
    targets = [arm for arm in arms if arm.origin != Origin.REFERENCE]
    # In one segment, an arm restricted to others is not served there: no contender.
    active = [arm.status == ArmStatus.ACTIVE and served_in(arm, segment) for arm in targets]
    draws_used = bounded_draws(draws, sum(active), STATS_MAX_SAMPLES)
    summary = summarize(
        [arm.alpha for arm in targets] or [1.0],
        [arm.beta for arm in targets] or [1.0],
        np.random.default_rng(seed),
        draws=draws_used,
        seed=seed,
        contenders=active or [False],
    )
    stats = []
    for arm in arms:
        if arm.origin == Origin.REFERENCE:
            stats.append(
                _arm_stats(
                    arm,
                    posterior_mean=None,
                    lift=0.0,
                    lift_ci_low=None,
                    lift_ci_high=None,
                    prob_beat_reference=None,
                    prob_best=None,
                    segment=segment,
                )
            )
            continue
        i = targets.index(arm)
        stats.append(
            _arm_stats(
                arm,
                posterior_mean=float(summary.means[i]),
                lift=_finite(summary.lift_medians[i]),
                lift_ci_low=_finite(summary.lift_ci_lows[i]),
                lift_ci_high=_finite(summary.lift_ci_highs[i]),
                prob_beat_reference=float(summary.prob_beat_reference[i]),
                prob_best=float(summary.prob_best[i]) if active[i] else None,
                segment=segment,
            )
        )
    reference = reference_of(arms)
    return schemas.ExperimentStats(
        experiment=experiment.name,
        segment=segment,
        tick_count=experiment.tick_count,
        reference_rate=_rate(reference.target_events, reference.exposures),
        arms=stats,
        prob_best_draws=draws_used,
        prob_best_draws_requested=draws,
        seed=seed,
    )


def _arm_stats(
    arm: Arm,
    *,
    posterior_mean: float | None,
    lift: float | None,
    lift_ci_low: float | None,
    lift_ci_high: float | None,
    prob_beat_reference: float | None,
    prob_best: float | None,
    segment: str | None = None,
) -> schemas.ArmStats:
    """An arm's stored counts and configuration, with the posterior summary given."""
    return schemas.ArmStats(
        arm_id=arm.id,
        origin=arm.origin,
        generation=arm.generation,
        status=arm.status,
        config=arm.config,
        exposures=arm.exposures,
        target_events=arm.target_events,
        quarantined_events=arm.quarantined_events,
        rate=_rate(arm.target_events, arm.exposures),
        alpha=arm.alpha,
        beta=arm.beta,
        posterior_mean=posterior_mean,
        lift=lift,
        lift_ci_low=lift_ci_low,
        lift_ci_high=lift_ci_high,
        prob_beat_reference=prob_beat_reference,
        prob_best=prob_best,
        segments=arm.segments,
        served=served_in(arm, segment),
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# Ticks per query of a tick history: bounds the rows held at once (x arms per tick).
_HISTORY_TICKS_PER_QUERY = 100


def _ticks(
    session: Session,
    name: str,
    limit: int,
    after: int | None,
    before: int | None,
    newest_first: bool,
) -> Sequence[Tick]:
    experiment = require_experiment(session, name)
    return repo.ticks_of(
        session, experiment.id, limit=limit, after=after, before=before, newest_first=newest_first
    )


def tick_history(
    session: Session,
    name: str,
    *,
    limit: int,
    after: int | None,
    before: int | None = None,
    newest_first: bool = False,
) -> list[schemas.TickOut]:
    ticks = _ticks(session, name, limit, after, before, newest_first)
    arms_by_tick = repo.tick_arm_values_of(session, [tick.id for tick in ticks])
    return [
        _tick_out(tick, [schemas.TickArmOut.model_validate(v) for v in arms_by_tick[tick.id]])
        for tick in ticks
    ]


def tick_history_json(
    session: Session,
    name: str,
    *,
    limit: int,
    after: int | None,
    before: int | None = None,
    newest_first: bool = False,
) -> bytes:
    """:func:`tick_history` as the JSON array the route answers, for long histories: 1,000
    ticks of 256 arms are 256,000 per-arm rows, which go from the database's columns to
    JSON as plain values (a model each cost 10-15 us, and the framework's rendering held
    several copies of all of them), a chunk of ticks at a time."""
    ticks = _ticks(session, name, limit, after, before, newest_first)
    pieces: list[bytes] = []
    for start in range(0, len(ticks), _HISTORY_TICKS_PER_QUERY):
        chunk = ticks[start : start + _HISTORY_TICKS_PER_QUERY]
        arms_by_tick = repo.tick_arm_values_of(session, [tick.id for tick in chunk])
        documents = [
            {**_tick_out(tick, []).model_dump(mode="json"), "arms": arms_by_tick[tick.id]}
            for tick in chunk
        ]
        pieces.append(to_json(documents)[1:-1])
    return b"[" + b",".join(pieces) + b"]"


def _tick_out(tick: Tick, arms: list[schemas.TickArmOut]) -> schemas.TickOut:
    return schemas.TickOut(
        id=tick.id,
        number=tick.number,
        created_at=tick.created_at,
        applied=tick.applied,
        mode=tick.mode,
        decay=tick.decay,
        reference_exposures=tick.reference_exposures,
        reference_events=tick.reference_events,
        target_exposures=tick.target_exposures,
        target_events=tick.target_events,
        window_arm_id=tick.window_arm_id,
        next_window_arm_id=tick.next_window_arm_id,
        empty_windows_before=tick.empty_windows_before,
        quarantined_events=tick.quarantined_events,
        uncredited=tick.uncredited or {},
        arms=arms,
    )


def audit_log(session: Session, name: str | None, *, limit: int) -> list[schemas.AuditOut]:
    experiment_id = require_experiment(session, name).id if name else None
    return [
        schemas.AuditOut.model_validate(entry, from_attributes=True)
        for entry in repo.audit_entries(session, experiment_id=experiment_id, limit=limit)
    ]


def tick_now(session: Session, experiment_id: int, rng: np.random.Generator, replica: str) -> Tick:
    """An admin-triggered tick, applied whatever the schedule (not to an archived
    experiment), and audited."""
    experiment = repo.get_experiment(session, experiment_id, lock=True)
    assert experiment is not None  # the route found it under the same lock
    require_open(experiment, "tick", ARCHIVED_ONLY)
    tick = apply_tick(
        session, experiment_id, now=now_utc(), rng=rng, only_if_due=False, replica=replica
    )
    assert tick is not None  # only_if_due=False and the experiment exists
    repo.add_audit(
        session,
        at=tick.created_at,
        action="experiment.tick",
        experiment_id=experiment_id,
        details={"tick": tick.number, "applied": tick.applied},
    )
    return tick


@dataclass(frozen=True)
class PlotImage:
    """A rendered plot and what it shows: the applied ticks in the range, the ticks drawn per
    arm (a sample of them when there are more than the plot's bound) and the arms drawn."""

    content: bytes
    applied_ticks: int
    points_per_arm: int
    arms: int


# Tick ids per query of a plot: bounds the rows held at once (x arms) and the bound
# parameters of a statement (SQLite allows 32,766).
_PLOT_TICKS_PER_QUERY = 100


def posteriors_plot(session: Session, name: str, *, fmt: str, limit: int) -> PlotImage:
    """Each arm's posterior over the last ``limit`` ticks, as an image (``api.plots``).

    Cost and memory are bounded whatever the history: the posteriors are read only at the
    ticks :func:`api.plots.downsample` keeps (``points_per_arm`` of the experiment's arm
    count), as columns, never as ORM objects.
    """
    experiment = require_experiment(session, name)
    labels = {
        arm_id: f"arm {arm_id} ({origin})"
        for arm_id, origin in repo.arm_origins(session, experiment.id)
    }
    applied = [
        (tick_id, number)
        for tick_id, number, ok in repo.latest_ticks(session, experiment.id, limit=limit)
        if ok
    ]
    kept = [applied[index][0] for index in downsample(len(applied), points_per_arm(len(labels)))]
    points: dict[int, tuple[list[int], list[float], list[float]]] = {}
    for start in range(0, len(kept), _PLOT_TICKS_PER_QUERY):
        chunk = kept[start : start + _PLOT_TICKS_PER_QUERY]
        for number, arm_id, alpha, beta in repo.posterior_points(session, chunk):
            numbers, alphas, betas = points.setdefault(arm_id, ([], [], []))
            numbers.append(number)
            alphas.append(alpha)
            betas.append(beta)
    series = [
        ArmSeries(labels.get(arm_id, f"arm {arm_id}"), *_by_tick(*values))
        for arm_id, values in sorted(points.items())
    ]
    subtitle = f"{len(applied)} applied ticks"
    if len(kept) < len(applied):
        subtitle += f", {len(kept)} of them drawn (evenly spaced)"
    if len(series) > HIGHLIGHTED_ARMS:
        subtitle += f"; the {HIGHLIGHTED_ARMS} arms with the highest latest mean in colour"
    content = posteriors_figure(
        f"{experiment.name}: posteriors over ticks", series, fmt, subtitle=subtitle
    )
    return PlotImage(content, len(applied), len(kept), len(series))


def _by_tick(
    numbers: list[int], alphas: list[float], betas: list[float]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    order = np.argsort(numbers, kind="stable")
    return (
        np.asarray(numbers, dtype=np.int64)[order],
        np.asarray(alphas, dtype=np.float64)[order],
        np.asarray(betas, dtype=np.float64)[order],
    )
