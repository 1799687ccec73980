"""The tick: aggregate what arrived since the previous tick and apply the reference-ratio
update (docs/spec.md, "Updating").

Exactly once: the event writer adds every stored row to ``pending_batches`` (one packed
row per experiment and transaction, ``api.pending``) in the transaction that stores it.
The tick reads (and locks) the experiment's batches, sums them by key and, if it applies,
deletes exactly the batches it read in the transaction of the posterior update,
re-inserting as one new batch the segments it does not apply (no reference exposures
there yet); if it cannot apply at all (no reference exposure) it leaves them for the next
tick. Batches committed after the read wait for the next tick; a crash rolls back the
deletion, the re-insertion and the update together. The tick reads one batch row per
writer transaction since the last applied tick, whatever the number of keys, and never the
event rows. Only one
replica applies a tick: the experiment row is locked (PostgreSQL ``FOR NO KEY UPDATE``;
SQLite's ``BEGIN IMMEDIATE``) and "is it due?" is decided under that lock, so the loser of
the race sees the winner's ``last_tick_at`` and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from api import repositories as repo
from api.enums import ArmStatus, ExperimentStatus, Group, Mode
from api.limits import (
    CREDITED,
    OVER_EXPOSURE_LIMIT,
    OVER_TICKET_LIMIT,
    PREVIOUS_PHASE,
    event_limit,
    event_limits,
)
from api.models import Arm, Experiment, Tick, as_utc, reference_of
from api.services import segments
from api.serving import policy_of
from arms.origins import Origin
from bandit import PosteriorUpdate, Prior, WindowCounts, reference_ratio_update
from bandit.nursery import choose_with_nursery, probabilities_with_nursery


@dataclass(frozen=True)
class WindowTotals:
    """A window's pending counts: what may be credited, split by group and arm, and what
    will not be (reason -> event type -> count; api.limits names the reasons)."""

    reference_exposures: float
    reference_events: float
    arm_exposures: dict[int, float]
    arm_events: dict[int, float]
    uncredited: dict[str, dict[str, float]] = field(default_factory=dict)
    # Target events beyond the limits, by arm id (the reference arm's id for its group).
    quarantined: dict[int, float] = field(default_factory=dict)


def aggregate(window: repo.PendingWindow, target_event: str) -> WindowTotals:
    """The window's totals. Each row counts once: a credited row of the reference group
    in the reference totals, of the target group in its arm's (exposures, or else events
    of ``target_event``; other types and groups in neither), an uncredited one in
    ``uncredited`` (and its target events over a ticket's limit in ``quarantined``). Sums
    of masks of the window's columns; dicts in the order their keys first appear."""
    credited = window.reason_is(CREDITED)
    exposure = window.type_is("exposure")
    target = window.type_is(target_event) & ~exposure
    reference = credited & window.group_is(Group.REFERENCE)
    targets = credited & window.group_is(Group.TARGET)
    n_types = len(window.types)
    uncredited: dict[str, dict[str, float]] = {}
    for pair, total in window.totals(~credited, window.reason * n_types + window.type).items():
        reason, event_type = divmod(pair, n_types)
        uncredited.setdefault(window.reasons[reason], {})[window.types[event_type]] = total
    return WindowTotals(
        float(window.count[reference & exposure].sum()),
        float(window.count[reference & target].sum()),
        window.totals(targets & exposure, window.arm_id),
        window.totals(targets & target, window.arm_id),
        uncredited,
        window.totals(
            window.reason_is(OVER_TICKET_LIMIT) & window.type_is(target_event), window.arm_id
        ),
    )


def of_this_phase(window: repo.PendingWindow, reference_arm_id: int) -> repo.PendingWindow:
    """The pending counts with the reference group's credited counts of any arm but the
    current reference marked ``previous_phase``.

    Only the reference arm serves the reference group, so such counts were served under
    the reference of an earlier phase: exposures a replica counted (or events it accepted)
    in the moment between a promotion's commit and its snapshot reload. Crediting them
    would mix two references in the denominator of every posterior update.
    """
    return window.with_reason(
        window.group_is(Group.REFERENCE)
        & window.reason_is(CREDITED)
        & (window.arm_id != reference_arm_id),
        PREVIOUS_PHASE,
    )


def report_counts(window: repo.PendingWindow, types: set[str]) -> repo.PendingWindow:
    """The credited pending counts of the report's event types (exposures, the decision
    metric, the declared metrics), which an applied tick appends to the report's counts
    (``repositories.add_metric_counts``: packed batches, folded into ``metric_counts`` by
    maintenance).

    Before the cumulative exposure cap (:func:`bound_by_exposures`), which works on arm
    totals, not buckets: with the per-ticket limits in force it binds only on
    client-counted exposures that clients did not report. Kept per segment (each segment
    has its report; the overall report sums them); each key is once in the read (the
    pending batches are summed by key), so once in the tick's batch.
    """
    return window.select(window.reason_is(CREDITED) & window.type_in(types))


def bound_by_exposures(
    totals: WindowTotals, arms: list[Arm], target_event: str, limit: int
) -> WindowTotals:
    """Cap each arm's credited target events by its exposures times the event limit (an
    unsegmented experiment's bound; a segmented one's is :func:`bound_by_segments`).

    Over the arm's whole history (``arm.exposures`` and ``arm.target_events`` are its
    credited totals so far): an arm never credits more than ``limit`` target events per
    exposure served under it. Cumulative rather than per window, so that legitimate late
    events (ticket served in one window, contact in the next) are not lost for an arm that
    got few exposures in the later window. The excess is quarantined (recorded, not
    credited). With per-ticket limits in force this binds only when a client reports
    target events for exposures it never reported (client-counted exposures).
    """
    reference = reference_of(arms)
    by_id = {arm.id: arm for arm in arms}
    quarantined = dict(totals.quarantined)
    over = 0.0

    def capped(arm: Arm, events: float, exposures: float) -> float:
        nonlocal over
        allowed = max(limit * (arm.exposures + exposures) - arm.target_events, 0.0)
        if events <= allowed:
            return events
        quarantined[arm.id] = quarantined.get(arm.id, 0.0) + events - allowed
        over += events - allowed
        return allowed

    reference_events = capped(reference, totals.reference_events, totals.reference_exposures)
    arm_events = {
        arm_id: capped(by_id[arm_id], events, totals.arm_exposures.get(arm_id, 0.0))
        if arm_id in by_id
        else events
        for arm_id, events in totals.arm_events.items()
    }
    uncredited = {reason: dict(by_type) for reason, by_type in totals.uncredited.items()}
    if over:
        uncredited.setdefault(OVER_EXPOSURE_LIMIT, {})[target_event] = over
    return WindowTotals(
        totals.reference_exposures,
        reference_events,
        totals.arm_exposures,
        arm_events,
        uncredited,
        quarantined,
    )


def bound_by_segments(
    totals: WindowTotals, window: segments.SegmentWindow, target_event: str
) -> WindowTotals:
    """A segmented experiment's bound: each arm credits what its segments credit (its
    target events in each segment bounded by its exposures there,
    ``segments.credit_window``), the rest is quarantined. Every credited count is then in
    exactly one segment, and as an arm's totals are its segments' sums, the arm-wide bound
    of :func:`bound_by_exposures` holds as well."""
    credited = window.by_arm(window.events)
    over = {arm_id: extra for arm_id, extra in window.by_arm(window.over).items() if extra}
    quarantined = dict(totals.quarantined)
    for arm_id, extra in over.items():
        quarantined[arm_id] = quarantined.get(arm_id, 0.0) + extra
    uncredited = {reason: dict(by_type) for reason, by_type in totals.uncredited.items()}
    if over:
        uncredited.setdefault(OVER_EXPOSURE_LIMIT, {})[target_event] = sum(over.values())
    return WindowTotals(
        totals.reference_exposures,
        credited[window.arm_ids[0]],
        totals.arm_exposures,
        # Every arm with data is a column; any other would pass, as in bound_by_exposures.
        {arm_id: credited.get(arm_id, events) for arm_id, events in totals.arm_events.items()},
        uncredited,
        quarantined,
    )


def is_due(experiment: Experiment, now: datetime) -> bool:
    if experiment.status != ExperimentStatus.RUNNING:
        return False
    since = experiment.last_tick_at or experiment.created_at
    return now - as_utc(since) >= timedelta(seconds=experiment.update_interval_s)


def apply_tick(
    session: Session,
    experiment_id: int,
    *,
    now: datetime,
    rng: np.random.Generator,
    only_if_due: bool,
    replica: str | None = None,
    prepared: PreparedPropensities | None = None,
) -> Tick | None:
    """Apply one tick to the experiment; None if it is not due (``only_if_due``) or missing.

    ``prepared``: the window's propensities computed before this transaction
    (:func:`prepare_propensities`), used if the arms are still in the state they were
    computed from, so that the experiment's lock is not held during their integral."""
    experiment = repo.get_experiment(session, experiment_id, lock=True)
    if experiment is None or (only_if_due and not is_due(experiment, now)):
        return None
    read = repo.pending_counts_for_update(session, experiment.id)
    pending = read.window
    arms = list(repo.arms_of(session, experiment.id, without_configs=True))
    every_segment = of_this_phase(pending, reference_of(arms).id)
    # Segments (always segment 0 unless segmented): only those whose window has reference
    # exposures are applied and consumed; the others' counts wait for the next tick. With
    # none ready, the whole window is carried forward, as it always was.
    ready = segments.ready_segments(every_segment)
    in_ready = np.isin(pending.segment, sorted(ready))
    counted = every_segment.select(in_ready) if ready else every_segment
    # What an applied tick does not consume: the other segments' counts, as read (a tick
    # applies only with some segment ready).
    kept = pending.select(~in_ready)
    report_types = {
        "exposure",
        experiment.target_event,
        *repo.metric_events(session, experiment.id),
    }
    limit = event_limit(event_limits(experiment.max_events_per_exposure), experiment.target_event)
    # The experiment-wide totals (aggregate sums a segmented window's rows over segments).
    unbounded = aggregate(counted, experiment.target_event)
    updated = _arms_to_update(arms, unbounded)
    by_segment = (
        segments.credit_window(
            session, experiment, reference_of(arms).id, [arm.id for arm in updated], counted, limit
        )
        if experiment.max_segments is not None and len(counted)
        else None
    )
    totals = (
        bound_by_exposures(unbounded, arms, experiment.target_event, limit)
        if by_segment is None
        else bound_by_segments(unbounded, by_segment, experiment.target_event)
    )
    update = reference_ratio_update(
        [arm.alpha for arm in updated],
        [arm.beta for arm in updated],
        WindowCounts.of(
            totals.reference_events,
            totals.reference_exposures,
            [totals.arm_events.get(arm.id, 0.0) for arm in updated],
            [totals.arm_exposures.get(arm.id, 0.0) for arm in updated],
        ),
        prior=Prior(experiment.prior_alpha, experiment.prior_beta),
        decay=experiment.decay,
        chosen_arm=_window_index(experiment, updated),
    )
    if by_segment is not None:
        update = segments.restricted_update(experiment, by_segment, updated, update)
    if only_if_due and _nothing_new(session, experiment, pending, totals, update.applied):
        # Applying this window would change nothing and record nothing new: not recorded, so
        # an idle experiment does not write a row every interval; counted, so the next
        # recorded tick says how many empty windows it follows. Admin ticks always record.
        experiment.last_tick_at = now
        experiment.empty_windows = Experiment.empty_windows + 1
        return None
    tick = Tick(
        experiment_id=experiment.id,
        number=repo.next_tick_number(session, experiment.id),
        created_at=now,
        applied=False,
        mode=experiment.mode,
        decay=experiment.decay,
        reference_exposures=0.0,
        reference_events=0.0,
        target_exposures=0.0,
        target_events=0.0,
        window_arm_id=experiment.window_arm_id if experiment.mode == Mode.WINDOW else None,
        replica=replica,
        empty_windows_before=experiment.empty_windows,
        snapshot_changed=_snapshot_changed(session, experiment),
    )
    session.add(tick)
    session.flush()
    tick.applied = update.applied
    tick.reference_exposures = totals.reference_exposures
    tick.reference_events = totals.reference_events
    tick.target_exposures = sum(totals.arm_exposures.values())
    tick.target_events = sum(totals.arm_events.values())
    if update.applied:
        # From the arms before their update: the posteriors this window was served with.
        propensities = (
            prepared.value
            if prepared is not None and prepared.state == _propensity_state(experiment, arms)
            else window_propensities(experiment, arms)
        )
        _record_update(session, tick, updated, totals, update, propensities)
        reference = reference_of(arms)
        reference.exposures += totals.reference_exposures
        reference.target_events += totals.reference_events
        reference.quarantined_events += totals.quarantined.get(reference.id, 0.0)
        updated_ids = {arm.id for arm in updated}
        for arm in arms:
            if arm.origin != Origin.REFERENCE and arm.id not in updated_ids:
                arm.quarantined_events += totals.quarantined.get(arm.id, 0.0)
        tick.quarantined_events = sum(totals.quarantined.values())
        tick.uncredited = totals.uncredited or None
        # Consumed, every type, group and reason included (what does not count is dropped,
        # as a claimed event row used to be; the uncredited part is on the tick record).
        repo.consume_pending_counts(session, experiment.id, read.batch_ids, kept)
        repo.add_metric_counts(
            session, experiment.id, experiment.phase, report_counts(counted, report_types)
        )
        if by_segment is not None:
            segments.update_segments(session, experiment, tick.id, by_segment, updated)
    # else: no reference exposure; the window cannot be normalised and its pending counts
    # stay where they are for the next tick.
    if experiment.mode == Mode.WINDOW:
        # A carried window stays open: its waiting data are credited to the pinned arm at the
        # next tick, so that arm must keep serving until then.
        if update.applied or experiment.window_arm_id is None:
            experiment.window_arm_id = draw_window_arm(experiment, arms, rng)
        tick.next_window_arm_id = experiment.window_arm_id
    experiment.last_tick_at = now
    experiment.empty_windows = 0
    # In the UPDATE itself, like the version: a counter cannot lose an increment.
    experiment.tick_count = Experiment.tick_count + 1
    repo.bump_version(experiment, now)
    session.flush()
    tick.snapshot_version = experiment.version
    return tick


@dataclass(frozen=True)
class WindowPropensities:
    """Per arm id: P(a target request of the window was served the arm), and in window mode
    the probabilities of the draw that pinned the window's arm (None in request mode)."""

    served: dict[int, float]
    drawn: dict[int, float] | None


def _candidates(arms: list[Arm]) -> list[Arm]:
    """The arms the policy chooses among: the active target arms, as the snapshot has them."""
    return [
        arm for arm in arms if arm.status == ArmStatus.ACTIVE and arm.origin != Origin.REFERENCE
    ]


def _choice_probabilities(experiment: Experiment, candidates: list[Arm]) -> dict[int, float]:
    """What one draw of the policy (nursery included) gives each candidate, from the same
    statistics as the serving snapshot (api.serving.load_snapshot) and draw_window_arm."""
    successes, failures, exposures = _policy_statistics(experiment, candidates)
    probabilities = probabilities_with_nursery(
        policy_of(experiment),
        successes,
        failures,
        exposures,
        min_exposures=experiment.nursery_exposures,
        share=experiment.nursery_share,
    )
    return {arm.id: float(p) for arm, p in zip(candidates, probabilities, strict=True)}


def window_propensities(experiment: Experiment, arms: list[Arm]) -> WindowPropensities:
    """The propensities of the window that ends now, from the arms' state before its update
    (the state it was served with, unless an admin action changed it: Tick.snapshot_changed).
    """
    candidates = _candidates(arms)
    if not candidates:
        return WindowPropensities({}, None)
    chosen = _choice_probabilities(experiment, candidates)
    if experiment.mode != Mode.WINDOW:
        return WindowPropensities(chosen, None)
    pinned = experiment.window_arm_id
    return WindowPropensities(
        {arm.id: 1.0 if arm.id == pinned else 0.0 for arm in candidates}, chosen
    )


@dataclass(frozen=True)
class PreparedPropensities:
    """A window's propensities computed outside the tick's transaction, and everything
    they were computed from (:func:`_propensity_state`)."""

    state: tuple[object, ...]
    value: WindowPropensities


def prepare_propensities(
    session: Session, experiment_id: int, now: datetime | None = None
) -> PreparedPropensities | None:
    """The propensities of the window that ends now, read without the lock (a read-only
    session), for an experiment whose window can be applied (reference exposures wait)
    and, given ``now``, is due then; None otherwise. The tick uses them
    only if its locked read finds the arms in the same state: the same numbers as
    computing them under the lock, which a tick of hundreds of overlapping arms would
    hold for most of its time (bandit.propensities' integral)."""
    experiment = repo.get_experiment(session, experiment_id)
    if experiment is None or (now is not None and not is_due(experiment, now)):
        return None
    if not repo.has_reference_exposures_pending(session, experiment_id):
        return None  # the window will be carried forward: no propensities recorded
    arms = list(repo.arms_of(session, experiment_id))
    return PreparedPropensities(
        _propensity_state(experiment, arms), window_propensities(experiment, arms)
    )


def _propensity_state(experiment: Experiment, arms: list[Arm]) -> tuple[object, ...]:
    """What :func:`window_propensities` reads: the policy and its settings, the nursery's,
    the pinned arm, and each candidate's posterior and exposures."""
    return (
        experiment.mode,
        experiment.window_arm_id,
        experiment.policy,
        sorted((experiment.policy_params or {}).items()),
        experiment.prior_alpha,
        experiment.prior_beta,
        experiment.nursery_exposures,
        experiment.nursery_share,
        [(arm.id, arm.alpha, arm.beta, arm.exposures) for arm in _candidates(arms)],
    )


def _snapshot_changed(session: Session, experiment: Experiment) -> bool | None:
    """Whether the experiment's version moved since the previous recorded tick set it: an
    admin action during the window. None when there is nothing to compare with."""
    previous = repo.latest_tick(session, experiment.id)
    if previous is None or previous.snapshot_version is None:
        return None
    return bool(experiment.version != previous.snapshot_version)


def _nothing_new(
    session: Session,
    experiment: Experiment,
    pending: repo.PendingWindow,
    totals: WindowTotals,
    applied: bool,
) -> bool:
    """Whether this window is empty: nothing arrived at all, or it can only be carried
    forward again with exactly the counts the last recorded (carried) tick already showed
    (the reference traffic stopped: the data wait, and nothing about them changed)."""
    if not len(pending):
        return True
    if applied:
        return False
    last = repo.latest_tick(session, experiment.id)
    return (
        last is not None
        and not last.applied
        and (
            last.reference_exposures,
            last.reference_events,
            last.target_exposures,
            last.target_events,
        )
        == (
            totals.reference_exposures,
            totals.reference_events,
            sum(totals.arm_exposures.values()),
            sum(totals.arm_events.values()),
        )
    )


def _arms_to_update(arms: list[Arm], totals: WindowTotals) -> list[Arm]:
    """Active target arms, plus any other arm that received data in the window (late events
    of an arm retired during the window still update its posterior)."""
    with_data = set(totals.arm_exposures) | set(totals.arm_events)
    return [
        arm
        for arm in arms
        if arm.origin != Origin.REFERENCE
        and (arm.status == ArmStatus.ACTIVE or arm.id in with_data)
    ]


def _window_index(experiment: Experiment, arms: list[Arm]) -> int | None:
    if experiment.mode != "window":
        return None
    ids = [arm.id for arm in arms]
    if experiment.window_arm_id in ids:
        return ids.index(experiment.window_arm_id)
    # No pinned arm served this window (e.g. it was retired): credit each arm its own data.
    return None


def _record_update(
    session: Session,
    tick: Tick,
    arms: list[Arm],
    totals: WindowTotals,
    update: PosteriorUpdate,
    propensities: WindowPropensities,
) -> None:
    """Record each updated arm's window in ``tick_arms`` and store its new posterior and
    totals: one INSERT and one UPDATE for all the arms (no ORM object per arm; the loaded
    arms get their new values as committed ones, so the session does not write them
    again)."""
    ids = [arm.id for arm in arms]
    exposures = [totals.arm_exposures.get(arm_id, 0.0) for arm_id in ids]
    events = [totals.arm_events.get(arm_id, 0.0) for arm_id in ids]
    quarantined = [totals.quarantined.get(arm_id, 0.0) for arm_id in ids]
    # An arm with data but no longer a candidate (retired during the window) was not
    # chosen at the window's end.
    served = propensities.served
    drawn = propensities.drawn
    alphas_after = update.alphas_after.tolist()
    betas_after = update.betas_after.tolist()
    repo.insert_tick_arms(
        session,
        list(
            zip(
                [tick.id] * len(ids),
                ids,
                exposures,
                events,
                update.alpha_increments.tolist(),
                update.beta_increments.tolist(),
                update.alphas_before.tolist(),
                update.betas_before.tolist(),
                alphas_after,
                betas_after,
                quarantined,
                [served.get(arm_id, 0.0) if served else None for arm_id in ids],
                [None if drawn is None else drawn.get(arm_id, 0.0) for arm_id in ids],
                strict=True,
            )
        ),
    )
    for index, arm in enumerate(arms):
        _set_state(
            arm,
            alpha=alphas_after[index],
            beta=betas_after[index],
            exposures=arm.exposures + exposures[index],
            target_events=arm.target_events + events[index],
            quarantined_events=arm.quarantined_events + quarantined[index],
        )
    repo.update_arm_states(session, arms)


def _set_state(arm: Arm, **values: float) -> None:
    """Set loaded attributes as the database now has them (written in bulk), not as
    changes for the session to flush."""
    for name, value in values.items():
        set_committed_value(arm, name, value)


def draw_window_arm(
    experiment: Experiment, arms: list[Arm], rng: np.random.Generator
) -> int | None:
    """Window mode: the arm that serves the whole target group until the next tick."""
    candidates = _candidates(arms)
    if not candidates:
        return None
    successes, failures, exposures = _policy_statistics(experiment, candidates)
    chosen = choose_with_nursery(
        policy_of(experiment),
        successes,
        failures,
        exposures,
        min_exposures=experiment.nursery_exposures,
        share=experiment.nursery_share,
        rng=rng,
    )
    return candidates[chosen].id


def _policy_statistics(
    experiment: Experiment, candidates: list[Arm]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Successes, failures (the posteriors less the prior) and exposures the policy reads."""
    successes = np.array([max(arm.alpha - experiment.prior_alpha, 0.0) for arm in candidates])
    failures = np.array([max(arm.beta - experiment.prior_beta, 0.0) for arm in candidates])
    exposures = np.array([arm.exposures for arm in candidates])
    return successes, failures, exposures
