"""What the dashboard shows: read models gathered from the use cases the admin API serves.

Every number on a page comes from the same functions as the admin API's answers (the
experiment, its statistics, the scorecard, generations, the expert queue, the audit log);
this module only puts them side by side, adds what a page needs besides (each arm's share
of the latest window, an arm's ancestry as a tree) and prepares the charts' history.

The history is **downsampled by age**, so that a page costs about the same after a week as
after an hour: the last hour keeps every tick (up to ``SEGMENTS``' bound), older history a
bounded number of points per segment. A segment's ticks are taken in groups of consecutive
ticks; a group contributes its summed counts to the cumulative chart (so the gain so far is
exact at every point), and the arms' posteriors after its last applied tick to the share
and lift charts (a posterior is a state: a sampled point is an exact value of the curve).
Shares are those of the sampled tick's window.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import CLOSED_STATUSES, ArmStatus
from api.models import Arm, Experiment, Tick
from api.services import evolution as evolution_service
from api.services import experiments as experiment_service
from api.services import metrics as metric_service
from api.services import phases as phase_service
from api.services import report as report_service
from api.services import webhooks as webhook_service
from api.services.common import require_experiment
from api.services.segments import FloatArray, segment_posteriors, served_in
from arms.origins import Origin
from bandit.summaries import lift_bands, lift_medians

# The recent history at full resolution: every tick of the last hour (at most this many
# points; fewer, grouped, if the ticks are faster than one per 10 s).
RECENT = timedelta(hours=1)
RECENT_POINTS = 360
# Older history in blocks of BLOCK consecutive ticks (5 minutes at the default 10 s),
# merged into at most this many points per age: (age covered, points), newest first.
BLOCK = 30
OLDER_SEGMENTS: tuple[tuple[timedelta | None, int], ...] = (
    (timedelta(days=1), 240),  # the rest of the last day: a block or two per point
    (timedelta(days=7), 168),  # the rest of the week: about one point an hour
    (None, 100),  # everything before
)
# Ticks whose times a search for a segment's first tick reads at once.
_SEARCH_POINTS = 64
# Arms drawn in colour (with their band); the others are grey until hovered.
HIGHLIGHTED_ARMS = 5
# What the page lists of the logs.
AUDIT_SHOWN = 50
GENERATIONS_SHOWN = 20
LINEAGE_DEPTH = 6
# Audit actions drawn as markers on the charts: action -> (kind, label).
MARKER_ACTIONS: dict[str, tuple[str, str]] = {
    "experiment.create": ("created", "created"),
    "experiment.pause": ("paused", "paused"),
    "experiment.resume": ("resumed", "resumed"),
    "experiment.stop": ("stopped", "stopped"),
    "experiment.winner": ("winner", "winner declared"),
    "experiment.promote": ("phase", "new phase"),
    "experiment.update": ("phase", "new phase"),  # a marker only when it started a phase
    "experiment.archive": ("stopped", "archived"),
}
# Generations that were not a genetic step: their trigger is their marker's kind.
GENERATION_MARKERS = {"guardrail": "guardrail"}
# The heat map of lift by segment: the segments with the most traffic, at most this many
# (columns), and colour levels on each side of 0 (a diverging scale of 2 x HEAT_LEVELS + 1).
HEATMAP_SEGMENTS = 20
HEAT_LEVELS = 4
# What the page shows of the webhook delivery log (admins only).
DELIVERIES_SHOWN = 20
# P(best) of the leaderboard: 5,000 joint draws, a standard error under 0.0071 (the API's
# default of 20,000 costs four times as much for a third decimal the page does not show).
_STATS_DRAWS = 5_000


# -- the experiments list -------------------------------------------------------------------
@dataclass(frozen=True)
class Headline:
    """The bandit group against the reference on the decision metric (the report's row)."""

    metric: str
    effect: float | None
    lower: float | None
    upper: float | None
    lower_anytime: float | None
    upper_anytime: float | None
    verdict: str
    treatment_exposures: float
    control_exposures: float
    reason: str | None  # why the report withholds part of the row (an interval, say)


@dataclass(frozen=True)
class ExperimentRow:
    name: str
    status: str
    mode: str
    policy: str
    phase: int
    active_arms: int
    tick_count: int
    last_tick_at: datetime | None
    headline: Headline | None
    health: list[dict[str, Any]]

    @property
    def health_status(self) -> str:
        """The worst status among the report's health checks (ok without any)."""
        statuses = {check["status"] for check in self.health}
        return next((s for s in ("failed", "warning") if s in statuses), "ok")


def _headline(report: dict[str, Any], metric: str) -> Headline | None:
    """The report's row of the bandit group on the decision metric."""
    row = next(
        (
            row
            for row in report["rows"]
            if row["metric"] == metric and row["treatment"] == report_service.BANDIT
        ),
        None,
    )
    if row is None:
        return None
    return Headline(
        metric=metric,
        effect=row["effect"],
        lower=row["lower"],
        upper=row["upper"],
        lower_anytime=row["lower_anytime"],
        upper_anytime=row["upper_anytime"],
        verdict=row["verdict"],
        treatment_exposures=row["treatment_exposures"],
        control_exposures=row["control_exposures"],
        reason=row["reason"],
    )


def experiment_rows(session: Session) -> list[ExperimentRow]:
    """Every experiment, newest first, with its headline lift and health (the report's)."""
    summaries = {s.name: s for s in experiment_service.experiment_summaries(session)}
    rows = []
    for experiment in reversed(repo.list_experiments(session)):
        summary = summaries[experiment.name]
        report = report_service.report_document(session, experiment, with_segments=False)
        rows.append(
            ExperimentRow(
                name=experiment.name,
                status=experiment.status,
                mode=experiment.mode,
                policy=experiment.policy,
                phase=experiment.phase,
                active_arms=summary.active_arms,
                tick_count=experiment.tick_count,
                last_tick_at=experiment.last_tick_at,
                headline=_headline(report, experiment.target_event),
                health=report["health"],
            )
        )
    return rows


def parameters_of(session: Session, name: str) -> list[dict[str, Any]]:
    """The experiment's parameter space as stored (what its forms are generated from)."""
    return list(require_experiment(session, name).parameters)


def versions(session: Session, name: str | None = None) -> dict[str, int]:
    """What the pages poll to know when to refresh: each experiment's version."""
    return dict(repo.experiment_versions_of(session, name))


# -- one experiment ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaderRow:
    """One arm of the leaderboard: its statistics, its share of the latest window, and its
    report row on the decision metric (when it was served in the phase)."""

    stats: schemas.ArmStats
    share_now: float | None
    score: dict[str, Any] | None
    highlighted: bool
    parent_ids: list[int]
    retired_reason: str | None


@dataclass(frozen=True)
class LineageNode:
    arm_id: int
    origin: str
    status: str
    generation: int
    parents: list[LineageNode] = field(default_factory=list)


@dataclass(frozen=True)
class MetricScores:
    """The scorecard of one metric: the bandit group's row, then each active arm's by
    effect (best first); the rows of arms retired during the phase apart."""

    event: str
    role: str
    direction: str
    max_loss: float | None
    rows: list[dict[str, Any]]
    retired_rows: list[dict[str, Any]]


@dataclass(frozen=True)
class ExperimentPage:
    experiment: schemas.ExperimentOut
    phase: int
    version: int
    stats: schemas.ExperimentStats
    leaderboard: list[LeaderRow]
    scorecard: list[MetricScores]  # the selected segment's, or the whole experiment's
    generations: list[schemas.GenerationOut]
    lineages: dict[int, LineageNode]
    experts: list[schemas.ExpertConfigOut]
    audit: list[schemas.AuditOut]
    highlighted: list[int]
    health: list[dict[str, Any]]  # the report's checks: check, status, detail, action, scope
    phases: list[schemas.PhaseOut]
    metrics: list[schemas.MetricOut]
    segments: SegmentsPanel | None  # a segmented experiment's selector and heat map
    # The bandit group's row on the decision metric over all traffic: the number people
    # ask for (the summary shows it whichever segment the scorecard shows).
    headline: Headline | None
    # The segment whose report the scorecard and the checks show (None: all traffic).
    report_segment: str | None = None

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return self.experiment.parameters

    @property
    def active_target_arms(self) -> int:
        return sum(
            1
            for arm in self.experiment.arms
            if arm.status == ArmStatus.ACTIVE and arm.origin != Origin.REFERENCE
        )

    @property
    def steerable(self) -> bool:
        """Whether the experiment still takes arms, experts, steps, promotions and metrics
        (neither stopped nor archived)."""
        return self.experiment.status not in CLOSED_STATUSES


def experiment_page(session: Session, name: str, segment: str | None = None) -> ExperimentPage:
    """Everything the experiment page shows but the charts (:func:`chart_history`); with
    ``segment``, a segmented experiment's segment panel shows that segment (422 naming
    ``segment`` when the experiment is not segmented or has not opened it)."""
    experiment = require_experiment(session, name)
    shown = experiment_service.experiment_out(session, experiment)
    stats = _stats(session, name)
    report = report_service.report_document(session, experiment, with_segments=False)
    # A segment's report for the scorecard and the checks (422 naming segment first, if
    # the experiment is not segmented or has not opened it).
    selected = (
        report
        if segment is None
        else report_service.report_document(
            session, experiment, segment=segment, with_segments=False
        )
    )
    decision_rows = {
        row["treatment"]: row for row in report["rows"] if row["metric"] == experiment.target_event
    }
    shares = _latest_shares(session, experiment.id)
    highlighted = _highlighted(stats)
    arms = {arm.id: arm for arm in shown.arms}
    leaderboard = [
        LeaderRow(
            stats=arm,
            share_now=shares.get(arm.arm_id),
            score=decision_rows.get(arm.arm_id),
            highlighted=arm.arm_id in highlighted,
            parent_ids=arms[arm.arm_id].parent_ids,
            retired_reason=arms[arm.arm_id].retired_reason,
        )
        for arm in sorted(stats.arms, key=_leaderboard_order)
    ]
    after = max(0, experiment.generation - GENERATIONS_SHOWN)
    return ExperimentPage(
        experiment=shown,
        phase=experiment.phase,
        version=experiment.version,
        stats=stats,
        leaderboard=leaderboard,
        scorecard=_scorecard_by_metric(selected, shown.arms),
        health=selected["health"],
        phases=phase_service.phase_history(session, name),
        metrics=metric_service.list_metrics(session, name),
        generations=evolution_service.generation_history(
            session, name, limit=GENERATIONS_SHOWN, after=after
        )[::-1],
        lineages=_lineages(shown.arms),
        experts=evolution_service.list_expert_configs(session, name, status=None)[::-1],
        audit=experiment_service.audit_log(session, name, limit=AUDIT_SHOWN),
        highlighted=highlighted,
        segments=_segments_panel(session, experiment, stats, segment),
        headline=_headline(report, experiment.target_event),
        report_segment=segment,
    )


def _leaderboard_order(arm: schemas.ArmStats) -> tuple[int, int, float, int]:
    """The reference first, then active arms by P(best), then retired ones, newest first."""
    if arm.origin == Origin.REFERENCE:
        return (0, 0, 0.0, 0)
    if arm.status == ArmStatus.ACTIVE:
        return (1, 0, -(arm.prob_best or 0.0), arm.arm_id)
    return (2, 0, 0.0, -arm.arm_id)


def _highlighted(stats: schemas.ExperimentStats) -> list[int]:
    """The active arms most likely to be the best (drawn in colour), best first."""
    active = [
        arm
        for arm in stats.arms
        if arm.origin != Origin.REFERENCE and arm.status == ArmStatus.ACTIVE
    ]
    active.sort(key=lambda arm: (-(arm.prob_best or 0.0), arm.arm_id))
    return [arm.arm_id for arm in active[:HIGHLIGHTED_ARMS]]


def _stats(session: Session, name: str) -> schemas.ExperimentStats:
    """The leaderboard's statistics: the admin API's, with a fixed seed, so that the page
    and the charts highlight the same arms."""
    return experiment_service.experiment_stats(session, name, seed=0, draws=_STATS_DRAWS)


# -- segments -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeatCell:
    """One (arm, segment) of the heat map: the lift over the segment's reference group (the
    pooled posterior's median, as ``?segment=`` statistics give it), its colour level."""

    lift: float | None  # None when not finite
    level: int | None  # -HEAT_LEVELS..HEAT_LEVELS; None without a lift
    exposures: float  # the arm's credited exposures in the segment
    best: bool  # the highest lift of the segment's column
    served: bool = True  # False: the arm is restricted to other segments (no lift shown)


@dataclass(frozen=True)
class SegmentHeatmap:
    """Lift over the reference by active arm (rows, in the leaderboard's order) and segment
    (columns: the most traffic first)."""

    segments: list[str]
    traffic: list[float]  # each column's credited exposures, every arm and the reference
    arm_ids: list[int]
    cells: list[list[HeatCell]]  # cells[row][column]
    step: float  # the lift one colour level stands for
    left_out: int  # opened segments with traffic not shown (beyond HEATMAP_SEGMENTS)

    @property
    def legend(self) -> list[tuple[int, float]]:
        """Each colour level a lift can reach (none is below -100%) with the lift at its
        centre, most negative first."""
        return [
            (level, level * self.step)
            for level in range(-HEAT_LEVELS, HEAT_LEVELS + 1)
            if (level + 0.5) * self.step > -1.0
        ]

    @property
    def digits(self) -> int:
        """The decimals of a percentage that show the legend's labels exactly."""
        return next(
            d
            for d in range(4)
            if abs(round(self.step * 10 ** (2 + d)) - self.step * 10 ** (2 + d)) < 1e-6
        )


@dataclass(frozen=True)
class SegmentsPanel:
    options: list[str]  # the opened segments, by index ('default' first)
    selected: str | None  # None: all traffic
    stats: schemas.ExperimentStats  # the selected segment's statistics (the page's without)
    heatmap: SegmentHeatmap | None  # None while no segment has traffic or no arm is active


def _segments_panel(
    session: Session,
    experiment: Experiment,
    overall: schemas.ExperimentStats,
    segment: str | None,
) -> SegmentsPanel | None:
    """A segmented experiment's segment panel (None for an unsegmented one, unless a segment
    was asked for: then the statistics' 422 naming ``segment``)."""
    if experiment.max_segments is None and segment is None:
        return None
    stats = overall
    if segment is not None:
        stats = experiment_service.experiment_stats(
            session, experiment.name, seed=0, draws=_STATS_DRAWS, segment=segment
        )
    order = {
        arm.arm_id: index for index, arm in enumerate(sorted(overall.arms, key=_leaderboard_order))
    }
    arms = sorted(repo.arms_of(session, experiment.id), key=lambda arm: order.get(arm.id, 0))
    posteriors = segment_posteriors(session, experiment, arms)
    rows = [
        column
        for column, arm in enumerate(arms)
        if arm.origin != Origin.REFERENCE and arm.status == ArmStatus.ACTIVE
    ]
    return SegmentsPanel(
        options=posteriors.names,
        selected=segment,
        stats=stats,
        heatmap=segment_heatmap(
            posteriors.names,
            posteriors.traffic(),
            [arms[column].id for column in rows],
            posteriors.alphas[:, rows],
            posteriors.betas[:, rows],
            posteriors.exposures[:, rows],
            np.array(
                [[served_in(arms[c], name) for c in rows] for name in posteriors.names],
                dtype=bool,
            ).reshape(len(posteriors.names), len(rows)),
        ),
    )


def segment_heatmap(
    names: Sequence[str],
    traffic: FloatArray,
    arm_ids: Sequence[int],
    alphas: FloatArray,
    betas: FloatArray,
    exposures: FloatArray,
    served: npt.NDArray[np.bool_] | None = None,
) -> SegmentHeatmap | None:
    """The heat map of these arms (arrays of shape (segments, arms) of pooled posteriors and
    counts): the HEATMAP_SEGMENTS segments with the most traffic (ties by index), each
    cell's lift at its posterior median, the best arm of each column marked, and colour
    levels of a step from {1, 2, 5} x 10^k so that the largest |lift| is within 4 levels.
    ``served`` (same shape; None: everywhere): False where an arm is restricted to other
    segments, a cell without a lift that cannot be the column's best."""
    with_traffic = np.flatnonzero(traffic > 0)
    if with_traffic.size == 0 or not arm_ids:
        return None
    by_traffic = with_traffic[np.argsort(-traffic[with_traffic], kind="stable")]
    shown = by_traffic[:HEATMAP_SEGMENTS]
    lifts = lift_medians(alphas[shown], betas[shown]).T  # (arms, shown segments)
    allowed = np.ones_like(lifts, dtype=bool) if served is None else served[shown].T
    lifts = np.where(allowed, lifts, np.nan)
    finite = np.isfinite(lifts)
    step = _nice_step(float(np.abs(lifts[finite]).max()) / HEAT_LEVELS if finite.any() else 0.0)
    levels = np.clip(np.rint(np.where(finite, lifts, 0.0) / step), -HEAT_LEVELS, HEAT_LEVELS)
    best = np.argmax(np.where(finite, lifts, -np.inf), axis=0)
    cells = [
        [
            HeatCell(
                lift=float(lifts[row, column]) if finite[row, column] else None,
                level=int(levels[row, column]) if finite[row, column] else None,
                exposures=float(exposures[segment, row]),
                best=bool(best[column] == row and finite[row, column]),
                served=bool(allowed[row, column]),
            )
            for column, segment in enumerate(shown)
        ]
        for row in range(len(arm_ids))
    ]
    return SegmentHeatmap(
        segments=[names[segment] for segment in shown],
        traffic=[float(traffic[segment]) for segment in shown],
        arm_ids=list(arm_ids),
        cells=cells,
        step=step,
        left_out=int(by_traffic.size - shown.size),
    )


# What one colour level of the heat map may stand for: these x 10^k.
_STEP_MANTISSAS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _nice_step(at_least: float) -> float:
    """The smallest of ``_STEP_MANTISSAS`` x 10^k (k >= -3) not below ``at_least``: 0.1%
    at the least."""
    exponent = math.floor(math.log10(at_least)) if at_least > 1e-3 else -3
    return next(
        mantissa * 10.0**exponent
        for mantissa in _STEP_MANTISSAS
        if mantissa * 10.0**exponent >= at_least * (1.0 - 1e-12)
    )


def _latest_shares(session: Session, experiment_id: int) -> dict[int, float]:
    """Each arm's share of the target group's exposures in the latest applied window."""
    applied = repo.latest_applied_tick_number(session, experiment_id)
    if applied is None:
        return {}
    points = repo.arm_points(session, experiment_id, [applied])
    total = sum(exposures for _, _, exposures, _, _ in points)
    if total <= 0:
        return {}
    return {arm_id: exposures / total for _, arm_id, exposures, _, _ in points}


def _scorecard_by_metric(
    report: dict[str, Any], arms: Sequence[schemas.ArmOut]
) -> list[MetricScores]:
    retired = {arm.id for arm in arms if arm.status == ArmStatus.RETIRED}
    grouped: list[MetricScores] = []
    for metric in report["metrics"]:
        rows = [row for row in report["rows"] if row["metric"] == metric["event"]]
        bandit = [row for row in rows if row["treatment"] == report_service.BANDIT]
        per_arm = sorted(
            (row for row in rows if row["treatment"] != report_service.BANDIT),
            key=lambda row: math.inf if row["effect"] is None else -row["effect"],
        )
        grouped.append(
            MetricScores(
                event=metric["event"],
                role=metric["role"],
                direction=metric["direction"],
                max_loss=metric["max_loss"],
                rows=bandit + [row for row in per_arm if row["treatment"] not in retired],
                retired_rows=[row for row in per_arm if row["treatment"] in retired],
            )
        )
    return grouped


def _lineages(arms: Sequence[schemas.ArmOut]) -> dict[int, LineageNode]:
    """Each bred or mutated arm's ancestry as a tree (parents, their parents, ...), from the
    arms' parent ids (no query per arm); a tree stops at LINEAGE_DEPTH generations."""
    by_id = {arm.id: arm for arm in arms}

    def node(arm_id: int, depth: int) -> LineageNode:
        arm = by_id.get(arm_id)
        if arm is None:
            return LineageNode(arm_id, "unknown", "unknown", 0)
        parents = (
            [node(parent, depth + 1) for parent in arm.parent_ids] if depth < LINEAGE_DEPTH else []
        )
        return LineageNode(arm.id, arm.origin, arm.status, arm.generation, parents)

    return {arm.id: node(arm.id, 0) for arm in arms if arm.parent_ids}


# -- the charts' history --------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    at: datetime
    kind: str
    label: str


def _first_numbers(
    session: Session, experiment_id: int, latest: int, moments: Sequence[datetime]
) -> list[int]:
    """For each moment, the number of the first tick recorded at or after it (``latest +
    1`` if none). Ticks are numbered in time order, so this is a search: the times of
    ``_SEARCH_POINTS`` evenly spaced ticks bracket each moment, and one query per moment
    finds it within its bracket (no scan of a long history)."""
    probes = sorted({int(n) for n in np.linspace(1, latest, min(latest, _SEARCH_POINTS))})
    times = repo.tick_times(session, experiment_id, probes)
    known = [(n, times[n]) for n in probes if n in times]
    found = []
    for moment in moments:
        high = next((n for n, at in known if at >= moment), None)
        if high is None:
            found.append(latest + 1)
            continue
        low = max((n for n, at in known if at < moment), default=0) + 1
        first = repo.first_tick_number_since(session, experiment_id, moment, low, high)
        found.append(high if first is None else first)
    return found


class TickBlocks:
    """Sums of the complete blocks of ``BLOCK`` consecutive ticks of each experiment,
    computed once: a recorded tick never changes and ticks are numbered 1, 2, ... without
    gaps, so a complete block's sums never change either. The first chart of a long
    history reads every tick once (one grouped scan); later ones read only the blocks
    completed since and the last hour's ticks. One per application (``app.state``): it
    belongs to one database. Bounded: the most recently used ``max_experiments``.
    """

    def __init__(self, max_experiments: int = 256) -> None:
        self._blocks: dict[int, list[repo.TickWindows]] = {}
        self._lock = threading.Lock()
        self.max_experiments = max_experiments

    def complete(self, session: Session, experiment_id: int, upto: int) -> list[repo.TickWindows]:
        """The blocks covering ticks ``1..upto`` (a multiple of ``BLOCK``)."""
        wanted = upto // BLOCK
        with self._lock:
            have = self._blocks.pop(experiment_id, [])
            self._blocks[experiment_id] = have  # most recently used last
        if len(have) < wanted:
            first = len(have) * BLOCK + 1
            have = have + repo.tick_windows(session, experiment_id, first, wanted * BLOCK, BLOCK)
            with self._lock:
                known = self._blocks.get(experiment_id, [])
                if len(have) > len(known):
                    self._blocks[experiment_id] = have
                while len(self._blocks) > self.max_experiments:
                    self._blocks.pop(next(iter(self._blocks)))
        return have[:wanted]


def _merge(blocks: Sequence[repo.TickWindows]) -> repo.TickWindows:
    applied = [b.last_applied_number for b in blocks if b.last_applied_number is not None]
    return repo.TickWindows(
        last_number=blocks[-1].last_number,
        last_applied_number=applied[-1] if applied else None,
        ended_at=blocks[-1].ended_at,
        target_exposures=sum(b.target_exposures for b in blocks),
        target_events=sum(b.target_events for b in blocks),
        expected_events=sum(b.expected_events for b in blocks),
    )


def _history_windows(
    session: Session, experiment_id: int, latest: Tick, blocks: TickBlocks
) -> list[repo.TickWindows]:
    """The whole history as consecutive windows, oldest first: complete blocks merged
    into at most ``OLDER_SEGMENTS``' points per age, then every tick (or group of ticks)
    from the block holding the first tick of the last hour on."""
    ages = [age for age, _ in OLDER_SEGMENTS if age is not None]
    moments = [latest.created_at - RECENT, *(latest.created_at - age for age in ages)]
    firsts = _first_numbers(session, experiment_id, latest.number, moments)
    recent_start = (firsts[0] - 1) // BLOCK * BLOCK + 1  # its block's first tick
    old = blocks.complete(session, experiment_id, recent_start - 1)
    windows: list[repo.TickWindows] = []
    # Block index ranges of each older age, oldest first.
    bounds = [(first - 1) // BLOCK for first in firsts[1:]]  # first block of each age
    end = len(old)
    ranges = []
    for (_, points), start in zip(OLDER_SEGMENTS, [*bounds, 0], strict=True):
        start = max(0, min(start, end))
        ranges.append((start, end, points))
        end = start
    for start, stop, points in reversed(ranges):
        size = max(1, math.ceil((stop - start) / points))
        windows += [_merge(old[i : min(i + size, stop)]) for i in range(start, stop, size)]
    count = latest.number - recent_start + 1
    step = max(1, math.ceil(count / RECENT_POINTS))
    windows += repo.tick_windows(session, experiment_id, recent_start, latest.number, step)
    return windows


def chart_history(session: Session, name: str, *, blocks: TickBlocks) -> dict[str, Any]:
    """The charts' data as JSON-ready lists, times in Unix seconds (the browser shows them
    in the viewer's time zone).

    ``t``: the sampled ticks' times; ``arms``: per arm its share of its window and its lift
    median (with the band for highlighted arms), null where the arm was not updated;
    ``gain``: cumulative target events of the bandit group and what the reference group's
    rate of each window would have given, at the end of every window; ``markers``: genetic
    steps, pauses, resumes, stops (and guardrail trips, phase changes) from the logs.
    """
    experiment = require_experiment(session, name)
    arms = {arm.id: arm for arm in repo.arms_of(session, experiment.id)}
    latest = repo.latest_tick(session, experiment.id)
    windows = [] if latest is None else _history_windows(session, experiment.id, latest, blocks)
    samples = [
        (window.last_applied_number, window.ended_at)
        for window in windows
        if window.last_applied_number is not None
    ]
    return {
        "experiment": experiment.name,
        "version": experiment.version,
        "t": [moment.timestamp() for _, moment in samples],
        "arms": _arm_series(
            session, experiment.id, samples, arms, _highlighted(_stats(session, name))
        ),
        "gain": {
            "t": [window.ended_at.timestamp() for window in windows],
            "actual": np.round(np.cumsum([w.target_events for w in windows]), 3).tolist(),
            "expected": np.round(np.cumsum([w.expected_events for w in windows]), 3).tolist(),
        },
        "markers": [
            {"t": marker.at.timestamp(), "kind": marker.kind, "label": marker.label}
            for marker in markers(session, experiment)
        ],
        "highlighted": HIGHLIGHTED_ARMS,
    }


def _chart_order(arms: dict[int, Arm], highlighted: Sequence[int]) -> list[int]:
    """Arm ids as the charts list them: the highlighted ones (colour) best first, then the
    other active arms, then the retired ones."""
    rest = sorted(
        (
            arm
            for arm in arms.values()
            if arm.origin != Origin.REFERENCE and arm.id not in highlighted
        ),
        key=lambda arm: (arm.status != ArmStatus.ACTIVE, arm.id),
    )
    return [*highlighted, *(arm.id for arm in rest)]


def _arm_series(
    session: Session,
    experiment_id: int,
    samples: Sequence[tuple[int, datetime]],
    arms: dict[int, Arm],
    highlighted: Sequence[int],
) -> list[dict[str, Any]]:
    """Per arm, in chart order: its share of each sampled window and its lift (NaN where
    the arm was not updated: the JSON rendering makes it null), and the lift's 95% band
    for the highlighted arms. Samples are in tick number order."""
    numbers_sampled = np.array([number for number, _ in samples], dtype=np.int64)
    points = repo.arm_points(session, experiment_id, numbers_sampled.tolist())
    if not points:
        return []
    table = np.array(points, dtype=np.float64)  # number, arm id, exposures, alpha, beta
    arm_ids = table[:, 1].astype(np.int64)
    updated = set(np.unique(arm_ids).tolist())
    order = [arm_id for arm_id in _chart_order(arms, highlighted) if arm_id in updated]
    by_id = np.array(sorted(order))
    row_of = np.array([order.index(arm_id) for arm_id in by_id.tolist()])
    rows = row_of[np.searchsorted(by_id, arm_ids)]  # each point's row in chart order
    columns = np.searchsorted(numbers_sampled, table[:, 0].astype(np.int64))
    exposures = table[:, 2]
    totals = np.bincount(columns, weights=exposures, minlength=len(samples))
    medians, lows, highs = lift_bands(table[:, 3], table[:, 4])
    grid = np.full((4, len(order), len(samples)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        grid[0, rows, columns] = exposures / totals[columns]
    grid[1, rows, columns] = medians
    grid[2, rows, columns] = lows
    grid[3, rows, columns] = highs
    grid = np.round(grid, 4)
    banded = sum(
        1 for arm_id in order[:HIGHLIGHTED_ARMS] if arms[arm_id].status == ArmStatus.ACTIVE
    )
    series = []
    for row, arm_id in enumerate(order):
        arm = arms[arm_id]
        series.append(
            {
                "id": arm_id,
                "origin": str(arm.origin),
                "status": str(arm.status),
                "retired_at": None if arm.retired_at is None else arm.retired_at.timestamp(),
                "share": grid[0, row].tolist(),
                "lift": grid[1, row].tolist(),
                "lo": grid[2, row].tolist() if row < banded else None,
                "hi": grid[3, row].tolist() if row < banded else None,
            }
        )
    return series


def markers(session: Session, experiment: Experiment) -> list[Marker]:
    """Genetic steps and guardrail trips (from the generations), status changes (the
    circuit breaker's pauses among them) and winners (from the audit log), oldest first."""
    found = []
    for generation in repo.generations_of(session, experiment.id, limit=500):
        kind = GENERATION_MARKERS.get(generation.trigger, "genetic")
        if kind == "guardrail":
            label = "; ".join(generation.details.get("notes") or []) or "guardrail trip"
        else:
            label = (
                f"generation {generation.number}: -{len(generation.retired)} "
                f"+{len(generation.added)} arms ({generation.trigger})"
            )
        found.append(Marker(generation.created_at, kind, label))
    for entry in repo.audit_entries_with_actions(session, experiment.id, MARKER_ACTIONS, limit=500):
        kind, label = MARKER_ACTIONS[entry.action]
        marker = _audit_marker(kind, label, entry.actor, entry.details)
        if marker is not None:
            found.append(Marker(entry.at, *marker))
    return sorted(found, key=lambda marker: marker.at)


def _audit_marker(kind: str, label: str, actor: str, details: Any) -> tuple[str, str] | None:
    """(kind, label) of an audit entry's marker, None for none: a pause by the circuit
    breaker is a "breaker" marker with its message; a winner names its arm; a new phase
    names its reference (a settings change that started no phase is no marker)."""
    details = details if isinstance(details, dict) else {}
    if kind == "phase":
        if "to_phase" not in details:
            return None
        promoted = details.get("promoted_arm_id")
        how = f"arm {promoted} promoted to reference" if promoted else "new reference settings"
        return kind, f"phase {details['to_phase']}: {how}"
    reason = details.get("reason")
    if kind == "paused" and isinstance(reason, dict) and reason.get("by") == "circuit_breaker":
        return "breaker", f"circuit breaker: {reason.get('message', 'paused')}"
    if kind == "winner" and "arm_id" in details:
        return kind, f"winner declared: arm {details['arm_id']}"
    if isinstance(reason, str) and reason:
        return kind, f"{label} ({actor}): {reason}"
    return kind, f"{label} ({actor})" if actor != "admin" else label


def deliveries(session: Session, name: str) -> list[schemas.DeliveryOut]:
    """The experiment's latest webhook deliveries (the admin API's delivery log)."""
    return webhook_service.delivery_log(
        session, webhook_id=None, experiment=name, status=None, before=None, limit=DELIVERIES_SHOWN
    )
