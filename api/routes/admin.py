"""Admin API (bearer token; viewer tokens may call its GET routes): experiments, arms,
metrics, ticks, evolution, statistics, the report, audit log."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api import schemas
from api.enums import ExpertStatus
from api.openapi import HEAVY_READ, conflict, not_found
from api.plots import FORMATS
from api.runtime import Runtime
from api.security import AdminOrViewerReads, AdminRoute
from api.services import evolution as evolution_service
from api.services import experiments as service
from api.services import metrics as metrics_service
from api.services import offpolicy as offpolicy_service
from api.services import phases as phase_service
from api.services import report as report_service
from api.services.common import arm_out, require_experiment

router = APIRouter(
    prefix="/v1",
    dependencies=[AdminOrViewerReads],
    tags=["admin"],
    route_class=AdminRoute,
)
ExperimentName = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the experiment's name")
]
ArmId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the arm's id")]
ExpertConfigId = Annotated[
    int, Path(ge=1, le=2**31 - 1, description="the expert configuration's id (its queue entry)")
]
SnapshotId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the report snapshot's id")]
EventName = Annotated[
    str,
    Path(pattern=rf"^{schemas.EVENT_NAME_PATTERN}$", description="the metric's event type"),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many (1 to 1000)")]
# The 409 of the calls that change a running or paused experiment only.
CLOSED = "the experiment is stopped or archived"


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post(
    "/experiments",
    status_code=201,
    response_model=schemas.ExperimentOut,
    responses=conflict("an experiment with this `name` exists already"),
)
def create_experiment(request: Request, body: schemas.ExperimentCreate) -> schemas.ExperimentOut:
    """Create an experiment: its parameter space, the reference configuration, the founder
    arms and its settings. It runs at once (assignments are served from the answer on)."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        experiment = service.create_experiment(
            session,
            body,
            default_interval_s=runtime.settings.tick_interval_s,
            rng=runtime.rng,
            retention_days=runtime.settings.event_retention_days,
        )
        result = service.experiment_out(session, experiment)
    runtime.serving.refresh(runtime.read_session_factory, only=body.name)
    return result


@router.get("/experiments", response_model=list[schemas.ExperimentSummary])
def list_experiments(request: Request) -> list[schemas.ExperimentSummary]:
    """Every experiment, archived ones included, in a short form."""
    with runtime_of(request).read_transaction() as session:
        return service.experiment_summaries(session)


@router.get("/experiments/{name}", response_model=schemas.ExperimentOut)
def get_experiment(request: Request, name: ExperimentName) -> schemas.ExperimentOut:
    """One experiment with its settings in force and every arm with its posterior."""
    with runtime_of(request).read_transaction() as session:
        return service.experiment_out(session, require_experiment(session, name))


@router.patch(
    "/experiments/{name}",
    response_model=schemas.ExperimentOut,
    responses=conflict(
        "the experiment is stopped or archived; or a new phase would be past the last one a "
        "ticket can carry, or would retire the last active arm as the new reference's duplicate"
    ),
)
def update_experiment(
    request: Request, name: ExperimentName, body: schemas.ExperimentPatch
) -> schemas.ExperimentOut:
    """Change settings. `reference_config`, `reference_share` and `target_event` start a
    new phase (as a promotion does); the others take effect at once. Audited."""
    runtime = runtime_of(request)
    runtime.flush_exposures()  # a phase's final tick counts what this replica served
    with runtime.transaction() as session:
        experiment = phase_service.update_settings(
            session,
            name,
            body,
            rng=runtime.rng,
            replica=runtime.replica,
            retention_days=runtime.settings.event_retention_days,
        )
        result = service.experiment_out(session, experiment)
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return result


@router.post(
    "/experiments/{name}/promote",
    response_model=schemas.ExperimentOut,
    responses=conflict(
        "the experiment is stopped or archived; `arm_id` is not an active arm of the target "
        "group (unknown, retired, or the reference already); or the phase is the last one a "
        "ticket can carry"
    ),
)
def promote(
    request: Request, name: ExperimentName, body: schemas.PromoteIn
) -> schemas.ExperimentOut:
    """Make an arm's configuration the reference configuration: the current phase ends
    (final tick, report snapshot) and the next starts with every posterior at the prior."""
    runtime = runtime_of(request)
    runtime.flush_exposures()  # the final tick counts what this replica served
    with runtime.transaction() as session:
        experiment = phase_service.promote(
            session, name, body, rng=runtime.rng, replica=runtime.replica
        )
        result = service.experiment_out(session, experiment)
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return result


@router.get("/experiments/{name}/phases", response_model=list[schemas.PhaseOut])
def phases(request: Request, name: ExperimentName) -> list[schemas.PhaseOut]:
    """Which reference configuration (share, decision metric) held when, and how each
    phase ended."""
    with runtime_of(request).read_transaction() as session:
        return phase_service.phase_history(session, name)


def change_status(request: Request, name: str, action: str) -> schemas.ExperimentOut:
    """Pause, resume, stop or archive (``action``), as the admin API and the dashboard do
    it."""
    runtime = runtime_of(request)
    if action == "stop":
        runtime.flush_exposures()  # the final tick counts what this replica served
    with runtime.transaction() as session:
        experiment = service.change_status(
            session, name, action, rng=runtime.rng, replica=runtime.replica
        )
        result = service.experiment_out(session, experiment)
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return result


STATUS_CHANGES = {
    "pause": "Stop drawing arms: every unit gets the reference configuration, events "
    "arriving meanwhile are stored but not credited. Audited.",
    "resume": "Draw arms again after a pause. Audited.",
    "stop": "End the experiment for good: a final tick credits what has arrived, what it "
    "cannot credit is discarded (and audited); every unit gets the reference configuration.",
    "archive": "Archive a stopped experiment: its history stays readable, nothing changes "
    "it any more, clients get the reference configuration.",
}


def _status_route(action: str) -> None:
    def change(request: Request, name: ExperimentName) -> schemas.ExperimentOut:
        return change_status(request, name, action)

    change.__name__ = f"{action}_experiment"
    router.post(
        f"/experiments/{{name}}/{action}",
        response_model=schemas.ExperimentOut,
        summary=f"{action.capitalize()} an experiment",
        description=STATUS_CHANGES[action],
        responses=conflict(
            f"the experiment's status does not allow {action!r} (e.g. resuming a running one)"
        ),
    )(change)


for _action in ("pause", "resume", "stop", "archive"):
    _status_route(_action)


@router.post(
    "/experiments/{name}/arms",
    status_code=201,
    response_model=schemas.ArmOut,
    responses=conflict(f"{CLOSED}, or an active arm has this configuration already"),
)
def add_arm(request: Request, name: ExperimentName, body: schemas.ArmCreate) -> schemas.ArmOut:
    """Add an arm with the given configuration, checked against the space; it starts at
    the prior (and in the nursery, when the experiment has one)."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        arm = arm_out(service.add_arm(session, name, body.config, segments=body.segments))
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return arm


@router.delete(
    "/experiments/{name}/arms/{arm_id}",
    response_model=schemas.ArmOut,
    responses=conflict(
        "the experiment is archived, or the arm is the reference or the last active arm"
    ),
)
def retire_arm(request: Request, name: ExperimentName, arm_id: ArmId) -> schemas.ArmOut:
    """Retire an arm: it is never drawn again; its history and posterior stay."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        arm = arm_out(service.retire_arm(session, name, arm_id, rng=runtime.rng))
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return arm


@router.post(
    "/experiments/{name}/metrics",
    status_code=201,
    response_model=schemas.MetricOut,
    responses=conflict(
        "the experiment is stopped, the event is a metric already, or the experiment has "
        "the most metrics allowed (32)"
    ),
)
def add_metric(request: Request, name: ExperimentName, body: schemas.MetricIn) -> schemas.MetricOut:
    """Declare a secondary or guardrail metric; it is counted from now on (409 if it is
    declared already)."""
    with runtime_of(request).transaction() as session:
        return metrics_service.metric_out(metrics_service.add_metric(session, name, body))


@router.get("/experiments/{name}/metrics", response_model=list[schemas.MetricOut])
def list_metrics(request: Request, name: ExperimentName) -> list[schemas.MetricOut]:
    """Every declaration, removed ones included (``removed``)."""
    with runtime_of(request).read_transaction() as session:
        return metrics_service.list_metrics(session, name)


@router.delete("/experiments/{name}/metrics/{event}", response_model=schemas.MetricOut)
def remove_metric(request: Request, name: ExperimentName, event: EventName) -> schemas.MetricOut:
    """Stop reporting a metric: its counts stay, the report as it stood is kept as a
    snapshot, and it can be declared again later (counted from then)."""
    with runtime_of(request).transaction() as session:
        return metrics_service.metric_out(metrics_service.remove_metric(session, name, event))


@router.get(
    "/experiments/{name}/report",
    response_model=schemas.ReportOut,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "the report (JSON), or with ?format=csv its rows as CSV: a "
            "header line and one line per row",
        },
        **HEAVY_READ,
    },
)
def report(
    request: Request,
    name: ExperimentName,
    fmt: Annotated[
        Literal["json", "csv"], Query(alias="format", description="json, or csv (the rows)")
    ] = "json",
    phase: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="an earlier phase; default: current")
    ] = None,
    alpha: Annotated[
        float, Query(gt=0, lt=1, description="1 - the intervals' confidence level")
    ] = 0.05,
    min_detectable_effect: Annotated[
        float | None,
        Query(
            gt=0,
            le=100,
            description="time to decision: the smallest relative effect worth resolving",
        ),
    ] = None,
    segment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=schemas.MAX_SEGMENT_LENGTH,
            description="a segmented experiment's segment (one of its opened segments, "
            "'default' included): that segment's report, each arm against the segment's "
            "reference group; absent: the whole experiment",
        ),
    ] = None,
) -> schemas.ReportOut | Response:
    """Every metric, the bandit group and each arm against the reference group, with
    fixed-horizon and always-valid intervals, and the health checks (docs/statistics.md);
    for one segment of a segmented experiment with `segment` (docs/segments.md)."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        document = report_service.report_of(
            session,
            name,
            phase=phase,
            alpha=alpha,
            min_detectable_effect=min_detectable_effect,
            segment=segment,
        )
    if fmt == "csv":
        return Response(
            content=report_service.report_csv(document),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{_csv_name(document)}"'},
        )
    return schemas.ReportOut.model_validate(document)


def _csv_name(document: dict[str, Any]) -> str:
    """The CSV's file name: experiment, phase and (one segment's report) a slug of the
    segment (its name may hold any character)."""
    name = f"{document['experiment']}-report-phase-{document['phase']}"
    if document["segment"] is not None:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", document["segment"]).strip("_") or "segment"
        name += f"-segment-{slug}"
    return f"{name}.csv"


@router.get(
    "/experiments/{name}/report/snapshots",
    response_model=list[schemas.ReportSnapshotSummaryOut],
)
def report_snapshots(
    request: Request,
    name: ExperimentName,
    limit: Limit = 100,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="snapshot id")] = None,
) -> list[schemas.ReportSnapshotSummaryOut]:
    """The reports stored at decisions (guardrail trips, pauses, promotions, winners,
    removed metrics), oldest first, without their documents."""
    with runtime_of(request).read_transaction() as session:
        return report_service.snapshot_list(session, name, limit=limit, after=after)


@router.get(
    "/experiments/{name}/report/snapshots/{snapshot_id}",
    response_model=schemas.ReportSnapshotOut,
)
def report_snapshot(
    request: Request, name: ExperimentName, snapshot_id: SnapshotId
) -> schemas.ReportSnapshotOut:
    """One stored report: what was known when it was decided."""
    with runtime_of(request).read_transaction() as session:
        return report_service.snapshot_of(session, name, snapshot_id)


@router.post(
    "/experiments/{name}/tick",
    response_model=schemas.TickOut,
    responses=conflict("the experiment is archived"),
)
def tick(request: Request, name: ExperimentName) -> schemas.TickOut:
    """Apply a tick now, whatever the schedule (operations and tests); an applied tick is
    followed by the decisions (guardrails, circuit breaker, winner: docs/decisions.md)."""
    runtime = runtime_of(request)
    runtime.flush_exposures()
    started = time.perf_counter()
    with runtime.transaction() as session:
        experiment = require_experiment(session, name, lock=True)
        applied = service.tick_now(session, experiment.id, runtime.rng, runtime.replica)
        result = service.tick_history(session, name, limit=1, after=applied.number - 1)[0]
    runtime.telemetry.record_tick(experiment.id, result.applied, time.perf_counter() - started)
    if result.applied:
        # After the commit, in a transaction of its own: a failing evaluation is logged and
        # the tick stays applied.
        runtime.evaluate_decisions(experiment.id)
    runtime.serving.refresh(runtime.read_session_factory, only=name)
    return result


@router.get("/experiments/{name}/ticks", response_model=list[schemas.TickOut], responses=HEAVY_READ)
def ticks(
    request: Request,
    name: ExperimentName,
    limit: Limit = 100,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(description="oldest first (page on with `after`) or newest first (with `before`)"),
    ] = "oldest",
    after: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="only ticks numbered after this")
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="only ticks numbered before this")
    ] = None,
) -> Response:
    """The recorded ticks. Windows in which nothing at all arrived are not recorded (an
    idle experiment would write a row every interval); the next recorded tick says how many
    it follows (`empty_windows_before`)."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        content = service.tick_history_json(
            session, name, limit=limit, after=after, before=before, newest_first=order == "newest"
        )
    return Response(content=content, media_type="application/json")


@router.get(
    "/experiments/{name}/ticks/export",
    responses={
        200: {
            "description": "one row per tick and arm (the reference group's row included): "
            "counts, propensities, posteriors",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
        **HEAVY_READ,
    },
    response_class=Response,
)
def export_ticks(
    request: Request,
    name: ExperimentName,
    format: Annotated[
        Literal["csv", "jsonl"],
        Query(description="csv (`pandas.read_csv`) or JSON lines (`pandas.read_json(lines=True)`)"),
    ] = "csv",
) -> Response:
    """Every tick record of the experiment for offline analysis (docs/offpolicy.md)."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        content = offpolicy_service.export_ticks(session, name, format)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return Response(content=content, media_type=media)


@router.post(
    "/experiments/{name}/evaluate",
    response_model=schemas.OffPolicyEvaluationOut,
    responses={
        400: {
            "description": "the Content-Length header is not an integer; or the candidate "
            "names an arm that is not a target arm (`candidate.arm_id`, "
            "`candidate.weights`), or the replayed policy's constants are out of range "
            "(`candidate.policy`)"
        },
        **HEAVY_READ,
    },
)
def evaluate(
    request: Request, name: ExperimentName, body: schemas.OffPolicyEvaluationIn
) -> schemas.OffPolicyEvaluationOut:
    """Off-policy estimates (IPS, self-normalised IPS, doubly robust) of a candidate
    allocation from the experiment's recorded windows: target events per exposure, lift over
    the reference group of the same windows, intervals, effective sample size and warnings
    (docs/offpolicy.md)."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        result = offpolicy_service.evaluate(
            session,
            name,
            offpolicy_service.Candidate(**body.candidate.model_dump()),
            clip=body.clip,
            level=body.level,
        )
    return schemas.OffPolicyEvaluationOut.model_validate(result)


@router.post(
    "/experiments/{name}/evolve",
    response_model=schemas.EvolutionStepOut,
    responses=conflict(CLOSED),
)
def evolve(
    request: Request,
    name: ExperimentName,
    dry_run: Annotated[bool, Query(description="only report what the step would do")] = False,
    seed: Annotated[
        int | None, Query(ge=0, le=2**63 - 2, description="repeat the step of a dry run")
    ] = None,
) -> schemas.EvolutionStepOut:
    """Run a genetic step now, whatever the schedule; or preview it."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        result = evolution_service.evolve_now(
            session, name, rng=runtime.rng, dry_run=dry_run, seed=seed, replica=runtime.replica
        )
    if result.applied:
        served = runtime.serving.get(name)
        if served is not None:
            runtime.telemetry.record_genetic_step(served.id)
        runtime.serving.refresh(runtime.read_session_factory, only=name)
    return result


@router.post(
    "/experiments/{name}/expert-configs",
    status_code=201,
    response_model=schemas.ExpertConfigOut,
    responses=conflict(
        f"{CLOSED}, or the configuration equals an active arm or a waiting expert configuration"
    ),
)
def submit_expert_config(
    request: Request, name: ExperimentName, body: schemas.ExpertConfigCreate
) -> schemas.ExpertConfigOut:
    """Queue an expert configuration for the next genetic step."""
    with runtime_of(request).transaction() as session:
        return evolution_service.submit_expert_config(session, name, body)


@router.get("/experiments/{name}/expert-configs", response_model=list[schemas.ExpertConfigOut])
def list_expert_configs(
    request: Request,
    name: ExperimentName,
    status: Annotated[
        ExpertStatus | None, Query(description="only the entries with this status")
    ] = None,
) -> list[schemas.ExpertConfigOut]:
    """The expert queue, every entry whatever its status (or only those of `status`)."""
    with runtime_of(request).read_transaction() as session:
        return evolution_service.list_expert_configs(session, name, status=status)


@router.delete(
    "/experiments/{name}/expert-configs/{expert_config_id}",
    response_model=schemas.ExpertConfigOut,
    responses=conflict("a genetic step has consumed the entry already"),
)
def withdraw_expert_config(
    request: Request, name: ExperimentName, expert_config_id: ExpertConfigId
) -> schemas.ExpertConfigOut:
    """Withdraw a waiting expert configuration (idempotent; 409 once a step consumed it)."""
    with runtime_of(request).transaction() as session:
        return evolution_service.withdraw_expert_config(session, name, expert_config_id)


@router.get("/experiments/{name}/generations", response_model=list[schemas.GenerationOut])
def generations(
    request: Request,
    name: ExperimentName,
    limit: Limit = 100,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="generation number")] = None,
) -> list[schemas.GenerationOut]:
    """What each applied genetic step retired (and why) and added (and whence)."""
    with runtime_of(request).read_transaction() as session:
        return evolution_service.generation_history(session, name, limit=limit, after=after)


@router.get("/experiments/{name}/arms/{arm_id}/lineage", response_model=schemas.LineageOut)
def lineage(request: Request, name: ExperimentName, arm_id: ArmId) -> schemas.LineageOut:
    """An arm's ancestors back to the founders."""
    with runtime_of(request).read_transaction() as session:
        return evolution_service.lineage(session, name, arm_id)


@router.get(
    "/experiments/{name}/stats",
    summary="Per-arm statistics",
    response_model=schemas.ExperimentStats,
    responses=HEAVY_READ,
)
def stats(
    request: Request,
    name: ExperimentName,
    seed: Annotated[
        int, Query(ge=0, le=2**32 - 1, description="seed of the Monte Carlo draws behind prob_best")
    ] = 0,
    draws: Annotated[
        int,
        Query(
            ge=100,
            le=200_000,
            description="joint posterior draws behind prob_best (fewer when draws x active "
            "arms would exceed 10,000,000)",
        ),
    ] = 20_000,
    segment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=schemas.MAX_SEGMENT_LENGTH,
            description="a segmented experiment's segment (one of its opened segments, "
            "'default' included): that segment's pooled posteriors and counts; absent: the "
            "whole experiment",
        ),
    ] = None,
) -> schemas.ExperimentStats:
    """Per arm: the lift over the reference group with its 95% interval, P(beats the
    reference), P(best) (Monte Carlo, repeatable with `seed`), then the evidence; for one
    segment of a segmented experiment with `segment`."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        return service.experiment_stats(session, name, seed=seed, draws=draws, segment=segment)


@router.get(
    "/experiments/{name}/plots/posteriors.{fmt}",
    response_class=Response,
    responses={
        200: {
            "content": {media: {} for media in FORMATS.values()},
            "description": "each arm's posterior mean and 95% band over the ticks",
            "headers": {
                "X-Plot-Applied-Ticks": {"description": "applied ticks among the latest limit"},
                "X-Plot-Points-Per-Arm": {
                    "description": "ticks drawn per arm: all the applied ones, or an evenly "
                    "spaced sample of them (first and last included) for long histories"
                },
                "X-Plot-Arms": {"description": "arms drawn"},
            },
        },
        **HEAVY_READ,
    },
)
def posteriors_plot(
    request: Request,
    name: ExperimentName,
    fmt: Annotated[Literal["png", "svg"], Path(description="image format")],
    limit: Annotated[int, Query(ge=1, le=5000, description="the latest ticks to draw")] = 1000,
) -> Response:
    """Each arm's posterior mean and 95% band over the latest ticks, as PNG or SVG; with
    more than 8 arms the 8 with the highest latest mean are coloured."""
    runtime = runtime_of(request)
    with runtime.heavy_reads.slot(), runtime.read_transaction() as session:
        plot = service.posteriors_plot(session, name, fmt=fmt, limit=limit)
    headers = {
        "X-Plot-Applied-Ticks": str(plot.applied_ticks),
        "X-Plot-Points-Per-Arm": str(plot.points_per_arm),
        "X-Plot-Arms": str(plot.arms),
    }
    return Response(content=plot.content, media_type=FORMATS[fmt], headers=headers)


@router.get(
    "/audit",
    summary="Audit log",
    response_model=list[schemas.AuditOut],
    responses=not_found("no experiment is named `experiment`"),
)
def audit(
    request: Request,
    experiment: Annotated[
        str | None,
        Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="only this experiment's entries"),
    ] = None,
    limit: Limit = 100,
) -> list[schemas.AuditOut]:
    """The audit log of admin and automatic actions, newest first."""
    with runtime_of(request).read_transaction() as session:
        return service.audit_log(session, experiment, limit=limit)
