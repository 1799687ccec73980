"""Segments (issue 12, docs/segments.md): one posterior per (arm, segment), each shrunk
toward the arm's behaviour across segments.

- A segmented experiment has ``max_segments``. Segment 0 is the default segment, named
  ``default``: requests without a segment, and those of segments beyond the maximum, go
  there. Any other string (1 to 64 characters) opens a segment on first sight: the replica
  that sees it serves the request from the default segment and queues the name; its next
  exposure flush registers it (:func:`register_segments`, under the experiment's lock, so
  replicas agree on the index), which bumps the version, and every replica serves the
  segment from its own posteriors from the next snapshot reload on (within a second).
- The tick (``api.services.ticks.apply_tick``, in its transaction) bounds each arm's target
  events per segment (:func:`credit_window`; the arm credits the sum of its segments'),
  then (:func:`update_segments`) applies the reference-ratio rule within each segment that
  had reference exposures in the window (the others' counts wait for the next tick, as a
  whole window without reference traffic does), then fits every arm's hierarchical prior
  across the segments (``bandit.hierarchy.fit_hierarchy``) and stores it on the arm.
- What assignment draws from, for segment ``s`` and arm ``k``, is
  ``Beta(mu_k kappa_k + x_sk, (1 - mu_k) kappa_k + m_sk)``: the segment's own evidence on
  the arm's pooled prior (:func:`pooled`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from api import repositories as repo
from api.enums import Group
from api.errors import InvalidInput
from api.limits import CREDITED, OVER_TICKET_LIMIT
from api.models import Arm, Experiment, Segment
from api.schemas import DEFAULT_SEGMENT
from bandit import Prior
from bandit.hierarchy import (
    dispersion_factors,
    fit_hierarchy,
    ratio_moment_increments,
    traffic_weighted,
)
from bandit.update import PosteriorUpdate, decayed

FloatArray = npt.NDArray[np.float64]

DEFAULT_INDEX = 0


def add_default_segment(session: Session, experiment: Experiment, now: datetime) -> None:
    """Segment 0 of a new segmented experiment."""
    session.add(
        Segment(
            experiment_id=experiment.id, index=DEFAULT_INDEX, name=DEFAULT_SEGMENT, created_at=now
        )
    )


def register_segments(
    session: Session, experiment_id: int, names: Iterable[str], now: datetime
) -> list[str]:
    """Open the segments first seen by a replica, in order, up to the experiment's
    ``max_segments`` (the rest stay in the default segment); the names opened.

    The experiment row is locked (as by a tick), so two replicas registering at once take
    turns and the second sees the first's segments: one index per name, everywhere.
    """
    experiment = repo.get_experiment(session, experiment_id, lock=True)
    if experiment is None or experiment.max_segments is None:
        return []
    known = repo.segment_names(session, experiment_id)
    seen = set(known)
    opened: list[str] = []
    for name in names:
        if len(known) + len(opened) >= experiment.max_segments:
            break
        if name in seen:
            continue
        seen.add(name)
        session.add(
            Segment(
                experiment_id=experiment_id,
                index=len(known) + len(opened),
                name=name,
                created_at=now,
            )
        )
        opened.append(name)
    if opened:
        repo.bump_version(experiment, now)
        session.flush()
    return opened


# -- evidence ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentEvidence:
    """The stored per-segment state of some arms, as arrays of shape (segments, arms)."""

    alphas: FloatArray
    betas: FloatArray
    exposures: FloatArray
    target_events: FloatArray
    quarantined: FloatArray
    ratio_moments: FloatArray


def load_evidence(
    session: Session, arm_ids: Sequence[int], n_segments: int, prior: Prior
) -> SegmentEvidence:
    """The packed state of these arms (``arm_segment_states``) by (segment, arm); segments
    an arm has no data in (beyond its arrays, or no row at all) hold the prior."""
    states = repo.arm_segment_states(session, arm_ids)
    rows = max([n_segments, *(state.alphas.size for state in states.values())])
    shape = (rows, len(arm_ids))
    alphas = np.full(shape, prior.alpha)
    betas = np.full(shape, prior.beta)
    exposures = np.zeros(shape)
    events = np.zeros(shape)
    quarantined = np.zeros(shape)
    moments = np.zeros(shape)
    for k, arm_id in enumerate(arm_ids):
        state = states.get(arm_id)
        if state is not None:
            n = state.alphas.size
            alphas[:n, k], betas[:n, k] = state.alphas, state.betas
            exposures[:n, k], events[:n, k] = state.exposures, state.target_events
            quarantined[:n, k], moments[:n, k] = state.quarantined_events, state.ratio_moments
    return SegmentEvidence(alphas, betas, exposures, events, quarantined, moments)


def pooled(
    evidence: SegmentEvidence, arms: Sequence[Arm], prior: Prior
) -> tuple[FloatArray, FloatArray]:
    """What assignment draws from: each segment's evidence on the arm's pooled prior
    ``Beta(mu kappa, (1 - mu) kappa)`` (the experiment's prior before the arm's first fit)."""
    mu = np.array(
        [prior.alpha / (prior.alpha + prior.beta) if a.pool_mu is None else a.pool_mu for a in arms]
    )
    kappa = np.array(
        [prior.alpha + prior.beta if a.pool_kappa is None else a.pool_kappa for a in arms]
    )
    x = np.maximum(evidence.alphas - prior.alpha, 0.0)
    m = np.maximum(evidence.betas - prior.beta, 0.0)
    alphas: FloatArray = mu * kappa + x
    betas: FloatArray = (1.0 - mu) * kappa + m
    return alphas, betas


def served_in(arm: Arm, segment: str | None) -> bool:
    """Whether the arm is served in ``segment`` (None: anywhere): its restriction names it."""
    return arm.segments is None or segment is None or segment in arm.segments


def inherited_segments(parents: Sequence[Arm]) -> list[str] | None:
    """A genetic step's child's segments: where any of its ``parents`` is served (the union
    of their restrictions, the first parent's names first); None, every segment, when a
    parent is unrestricted or it has no parent."""
    if not parents or any(parent.segments is None for parent in parents):
        return None
    union: dict[str, None] = {}
    for parent in parents:
        union.update(dict.fromkeys(parent.segments or ()))
    return list(union)


def allowed_weights(names: Sequence[str], arms: Sequence[Arm], traffic: FloatArray) -> FloatArray:
    """Per arm (rows) and segment (columns, ``names`` by index), the segment's ``traffic``
    where the arm is served and 0 where its restriction excludes it."""
    weights = np.tile(traffic[: len(names)], (len(arms), 1))
    for k, arm in enumerate(arms):
        if arm.segments is not None:
            allowed = set(arm.segments)
            weights[k] = [
                w if name in allowed else 0.0 for name, w in zip(names, weights[k], strict=True)
            ]
    return weights


def traffic_weights(session: Session, experiment_id: int, arms: Sequence[Arm]) -> FloatArray:
    """Each segment's share of the credited exposures (every arm, the reference included)."""
    n_segments = len(repo.segment_names(session, experiment_id))
    evidence = load_evidence(session, [arm.id for arm in arms], n_segments, Prior())
    weights: FloatArray = evidence.exposures.sum(axis=1)
    return weights


def traffic_weighted_posteriors(
    session: Session, experiment: Experiment, arms: Sequence[Arm]
) -> dict[int, tuple[float, float]]:
    """The genetic step's view of a segmented experiment's target arms: per arm one Beta,
    the pooled per-segment posteriors weighted by each segment's share of the traffic
    (``bandit.hierarchy.traffic_weighted``). Empty before any segment has traffic (the
    caller then keeps the arms' overall posteriors)."""
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    every = list(repo.arms_of(session, experiment.id))
    weights = traffic_weights(session, experiment.id, every)
    if not arms or weights.sum() <= 0:
        return {}
    evidence = load_evidence(session, [arm.id for arm in arms], weights.shape[0], prior)
    alphas, betas = pooled(evidence, arms, prior)
    names = repo.segment_names(session, experiment.id)
    by_arm = allowed_weights(names, arms, weights)
    # An arm restricted to segments without traffic yet is left out (the caller keeps its
    # overall posterior, its prior: it has no exposures).
    judged = np.flatnonzero(by_arm.sum(axis=1) > 0).tolist()
    if not judged:
        return {}
    rows = len(names)
    alpha, beta = traffic_weighted(alphas[:rows, judged].T, betas[:rows, judged].T, by_arm[judged])
    return {arms[k].id: (float(alpha[i]), float(beta[i])) for i, k in enumerate(judged)}


@dataclass(frozen=True)
class SegmentPosteriors:
    """Every opened segment's view of some arms: arrays of shape (segments, arms), rows in
    index order (``names``), columns in the arms' order. ``alphas``/``betas`` are the pooled
    posteriors assignment draws from; the counts are the segment's credited ones (the
    reference arm's: its group's), and the target events quarantined there."""

    names: list[str]
    alphas: FloatArray
    betas: FloatArray
    exposures: FloatArray
    target_events: FloatArray
    quarantined: FloatArray

    def traffic(self) -> FloatArray:
        """Each segment's credited exposures, these arms summed."""
        total: FloatArray = self.exposures.sum(axis=1)
        return total


def segment_posteriors(
    session: Session, experiment: Experiment, arms: Sequence[Arm]
) -> SegmentPosteriors:
    """The pooled posteriors and counts of these arms in every opened segment (what
    ``?segment=`` statistics and the dashboard's heat map read). 422 naming ``segment`` for
    an unsegmented experiment."""
    _require_segmented(experiment)
    names = repo.segment_names(session, experiment.id)
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    evidence = load_evidence(session, [arm.id for arm in arms], len(names), prior)
    alphas, betas = pooled(evidence, arms, prior)
    rows = len(names)  # rows beyond the opened segments cannot exist: indexes come from them
    return SegmentPosteriors(
        names,
        alphas[:rows],
        betas[:rows],
        evidence.exposures[:rows],
        evidence.target_events[:rows],
        evidence.quarantined[:rows],
    )


def _require_segmented(experiment: Experiment) -> None:
    if experiment.max_segments is None:
        raise InvalidInput(
            f"segment: experiment {experiment.name!r} is not segmented; expected no segment",
            field="segment",
        )


def _index_of(names: Sequence[str], experiment: Experiment, name: str) -> int:
    if name not in names:
        raise InvalidInput(
            f"segment: {name!r} is not one of experiment {experiment.name!r}'s "
            f"{len(names)} opened segments; expected one of them ('default' included)",
            field="segment",
        )
    return names.index(name)


def require_segment(session: Session, experiment: Experiment, name: str) -> int:
    """The index of an opened segment of a segmented experiment; 422 naming ``segment``
    otherwise (as :func:`segment_view` answers)."""
    _require_segmented(experiment)
    return _index_of(repo.segment_names(session, experiment.id), experiment, name)


def segment_view(
    session: Session, experiment: Experiment, arms: Sequence[Arm], name: str
) -> list[Arm]:
    """The arms as seen in one segment, for the statistics: detached copies holding the
    segment's pooled posterior and its credited counts (the reference's: its group's). 422
    naming ``segment`` for an unsegmented experiment or a segment not opened."""
    posteriors = segment_posteriors(session, experiment, arms)
    index = _index_of(posteriors.names, experiment, name)
    views = []
    for column, arm in enumerate(arms):
        view = Arm(
            id=arm.id,
            experiment_id=arm.experiment_id,
            config=arm.config,
            signature=arm.signature,
            origin=arm.origin,
            parent_ids=arm.parent_ids,
            generation=arm.generation,
            status=arm.status,
            alpha=float(posteriors.alphas[index, column]),
            beta=float(posteriors.betas[index, column]),
            exposures=float(posteriors.exposures[index, column]),
            target_events=float(posteriors.target_events[index, column]),
            quarantined_events=float(posteriors.quarantined[index, column]),
            created_at=arm.created_at,
            retired_at=arm.retired_at,
            retired_reason=arm.retired_reason,
            segments=arm.segments,
        )
        views.append(view)
    return views


# -- the tick ------------------------------------------------------------------------------
def ready_segments(window: repo.PendingWindow) -> set[int]:
    """The segments whose window has credited reference exposures (only they can be
    normalised; the others carry forward)."""
    ready = (
        window.group_is(Group.REFERENCE)
        & window.reason_is(CREDITED)
        & window.type_is("exposure")
        & (window.count > 0)
    )
    return set(np.unique(window.segment[ready]).tolist())


@dataclass(frozen=True)
class SegmentWindow:
    """One window's credited counts by segment (rows) and arm (columns; column 0 is the
    reference arm, whose group's counts it holds), and the stored state they add to.
    ``events`` are the target events that may be credited, each (segment, arm)'s bounded
    by its exposures there (:func:`credit_window`); ``over`` the rest, quarantined;
    ``over_ticket`` the target events over their ticket's limit, quarantined before the
    tick; ``names``, the experiment's opened segments by index."""

    arm_ids: tuple[int, ...]
    exposures: FloatArray
    events: FloatArray
    over: FloatArray
    over_ticket: FloatArray
    state: SegmentEvidence
    names: list[str]

    def by_arm(self, counts: FloatArray) -> dict[int, float]:
        """``counts`` (one of these arrays) summed over the segments, by arm id."""
        return dict(zip(self.arm_ids, counts.sum(axis=0).tolist(), strict=True))


def _window_counts(
    window: repo.PendingWindow,
    reference_id: int,
    target_ids: Sequence[int],
    target_event: str,
    n_segments: int,
) -> tuple[tuple[int, ...], FloatArray, FloatArray, FloatArray]:
    """The arm ids of the columns, and the window's credited exposures, credited target
    events and target events over their ticket's limit by (segment, arm): the reference
    group's in column 0, the target group's of an arm of the columns in its column; the
    rest left out."""
    arm_ids = (reference_id, *target_ids)
    column = {arm_id: index for index, arm_id in enumerate(arm_ids)}
    # Each distinct arm id of the window, its column (-1: not a column).
    present, arm_index = np.unique(window.arm_id, return_inverse=True)
    column_of = np.array([column.get(arm_id, -1) for arm_id in present.tolist()], np.intp)
    index = np.where(window.group_is(Group.REFERENCE), 0, column_of[arm_index])
    is_exposure = window.type_is("exposure")
    in_column = window.group_is(Group.REFERENCE) | (window.group_is(Group.TARGET) & (index >= 0))
    credited = window.reason_is(CREDITED) & (is_exposure | window.type_is(target_event)) & in_column
    over_ticket = (
        window.reason_is(OVER_TICKET_LIMIT)
        & window.type_is(target_event)
        & ~is_exposure
        & in_column
    )
    # Summed into the arrays at once by cell (a window may hold segments x arms x types rows).
    width = len(arm_ids)
    size = max(n_segments, int(window.segment.max()) + 1 if len(window) else 0)

    def by_cell(mask: npt.NDArray[np.bool_]) -> FloatArray:
        cell = window.segment[mask] * width + index[mask]
        summed = np.bincount(cell, window.count[mask].astype(np.float64), size * width)
        return summed.reshape(size, width).astype(np.float64)

    return (
        arm_ids,
        by_cell(credited & is_exposure),
        by_cell(credited & ~is_exposure),
        by_cell(over_ticket),
    )


def credit_window(
    session: Session,
    experiment: Experiment,
    reference_id: int,
    target_ids: Sequence[int],
    window: repo.PendingWindow,
    limit: int,
) -> SegmentWindow:
    """The window by (segment, arm), each arm's target events in a segment bounded by its
    exposures there times ``limit``, cumulatively: at most
    ``limit (n_stored + n) - x_stored`` are credited, the rest is quarantined. The
    arm-wide bound (``api.services.ticks.bound_by_exposures``), applied per segment: the
    tick credits each arm the sum of what its segments credit, so that every credited
    count is in exactly one segment (``api.services.ticks.bound_by_segments``)."""
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    names = repo.segment_names(session, experiment.id)
    arm_ids, exposures, events, over_ticket = _window_counts(
        window, reference_id, target_ids, experiment.target_event, len(names)
    )
    state = load_evidence(session, arm_ids, exposures.shape[0], prior)
    pad = state.alphas.shape[0] - exposures.shape[0]
    if pad > 0:  # stored segments beyond the window's
        exposures, events, over_ticket = (
            np.vstack([counts, np.zeros((pad, len(arm_ids)))])
            for counts in (exposures, events, over_ticket)
        )
    allowed = np.maximum(limit * (state.exposures + exposures) - state.target_events, 0.0)
    credited = np.minimum(events, allowed)
    return SegmentWindow(arm_ids, exposures, credited, events - credited, over_ticket, state, names)


def restricted_update(
    experiment: Experiment,
    window: SegmentWindow,
    arms: Sequence[Arm],
    update: PosteriorUpdate,
) -> PosteriorUpdate:
    """The overall update (``arms``' columns of ``update``) with each restricted arm's
    failures measured against the reference group of its allowed segments only:
    ``beta += c_rA n_k / n_rA``, ``c_rA``, ``n_rA`` the reference's credited events and
    exposures in the window's segments the arm is served in, instead of the whole window's
    ``c_r n_k / n_r`` (the segment mix would otherwise bias the arm's overall posterior by
    the ratio of its segments' reference rate to the experiment's). Unrestricted arms keep
    theirs."""
    restricted = [k for k, arm in enumerate(arms) if arm.segments is not None]
    if not update.applied or not restricted:
        return update
    names = window.names
    rows = min(len(names), window.exposures.shape[0])
    column = {arm_id: index for index, arm_id in enumerate(window.arm_ids)}
    beta_increments = update.beta_increments.copy()
    for k in restricted:
        allowed = set(arms[k].segments or ())
        mask = np.array([name in allowed for name in names[:rows]], dtype=bool)
        exposures = float(window.exposures[:rows, 0][mask].sum())
        events = float(window.events[:rows, 0][mask].sum())
        own = window.exposures[:rows, column[arms[k].id]].sum() if arms[k].id in column else 0.0
        beta_increments[k] = events * float(own) / exposures if exposures > 0 else 0.0
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    betas_after = decayed(update.betas_before, prior.beta, experiment.decay) + beta_increments
    return replace(update, beta_increments=beta_increments, betas_after=betas_after)


def update_segments(
    session: Session,
    experiment: Experiment,
    tick_id: int,
    window: SegmentWindow,
    updated: Sequence[Arm],
) -> None:
    """Apply the window (:func:`credit_window` of the reference and ``updated``) to every
    ready segment's posteriors, record it, refit the pools.

    Per segment ``s`` with reference exposures ``n_rs > 0`` and arm ``k``:
    ``alpha_sk = prior + decay (alpha_sk - prior) + c_sk``,
    ``beta_sk = prior + decay (beta_sk - prior) + c_rs n_sk / n_rs`` (bandit.update), with
    the credited target events. Each arm whose state changed is written whole (one row of
    arrays over the segments), and the pairs with data recorded (one row for the tick).
    """
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    state, exposures, events = window.state, window.exposures, window.events
    ready = exposures[:, 0] > 0
    ratio = np.divide(events[:, 0], exposures[:, 0], out=np.zeros(ready.shape), where=ready)
    alpha_inc = np.where(ready[:, None], events, 0.0)
    beta_inc = np.where(ready[:, None], ratio[:, None] * exposures, 0.0)
    alpha_inc[:, 0] = beta_inc[:, 0] = 0.0  # the reference arm has no posterior of its own
    decay = experiment.decay
    alphas = np.where(
        ready[:, None], decayed(state.alphas, prior.alpha, decay) + alpha_inc, state.alphas
    )
    betas = np.where(
        ready[:, None], decayed(state.betas, prior.beta, decay) + beta_inc, state.betas
    )
    alphas[:, 0], betas[:, 0] = prior.alpha, prior.beta
    with_data = ready[:, None] & ((exposures > 0) | (events > 0))
    totals_exposures = state.exposures + np.where(with_data, exposures, 0.0)
    totals_events = state.target_events + np.where(with_data, events, 0.0)
    # What the tick quarantines on the arms (api.services.ticks.bound_by_segments), by
    # segment: every segment of an applied window is ready.
    totals_quarantined = state.quarantined + window.over + window.over_ticket
    # sum n_sk^2 / n_rs over the applied windows: the fit's dispersion factors.
    totals_moments = state.ratio_moments.copy()
    totals_moments[ready] += np.where(
        with_data[ready], ratio_moment_increments(exposures[ready], exposures[ready, 0]), 0.0
    )
    changed = (
        (alphas != state.alphas)
        | (betas != state.betas)
        | (totals_exposures != state.exposures)
        | (totals_events != state.target_events)
        | (totals_quarantined != state.quarantined)
        | (totals_moments != state.ratio_moments)
    ).any(axis=0)
    repo.write_arm_segment_states(
        session,
        {
            window.arm_ids[k]: repo.ArmSegmentArrays(
                alphas[:, k],
                betas[:, k],
                totals_exposures[:, k],
                totals_events[:, k],
                totals_quarantined[:, k],
                totals_moments[:, k],
            )
            for k in np.flatnonzero(changed).tolist()
        },
    )
    s_rec, k_rec = np.nonzero(with_data)
    repo.insert_tick_segment_records(
        session,
        tick_id,
        repo.TickSegmentRecords(
            s_rec,
            np.asarray(window.arm_ids, dtype=np.int64)[k_rec],
            exposures[s_rec, k_rec],
            events[s_rec, k_rec],
            alpha_inc[s_rec, k_rec],
            beta_inc[s_rec, k_rec],
            alphas[s_rec, k_rec],
            betas[s_rec, k_rec],
        ),
    )
    refit(
        updated,
        SegmentEvidence(
            alphas[:, 1:],
            betas[:, 1:],
            totals_exposures[:, 1:],
            totals_events[:, 1:],
            totals_quarantined[:, 1:],
            totals_moments[:, 1:],
        ),
        prior,
    )


def refit(arms: Sequence[Arm], evidence: SegmentEvidence, prior: Prior) -> None:
    """Fit each arm's hierarchical prior over the segments (``evidence`` of shape
    (segments, arms), the arms' columns in order) and store it on the arm. Each segment's
    evidence ``x``, ``m`` is divided by its dispersion factor
    (``bandit.hierarchy.dispersion_factors``: the reference-ratio evidence is noisier than
    binomial evidence, docs/segments.md "Dispersion"). Newton's method starts from the
    arms' previous fits when they all have one (the evidence grew by one window: a few
    iterations instead of the cold start's grid; the same maximum)."""
    if not arms:
        return
    mus = [arm.pool_mu for arm in arms]
    kappas = [arm.pool_kappa for arm in arms]
    start = (
        None
        if None in mus or None in kappas
        else (np.array(mus, dtype=np.float64), np.array(kappas, dtype=np.float64))
    )
    successes = np.maximum(evidence.alphas - prior.alpha, 0.0)
    failures = np.maximum(evidence.betas - prior.beta, 0.0)
    phi = dispersion_factors(successes, failures, evidence.exposures, evidence.ratio_moments)
    fit = fit_hierarchy((successes / phi).T, (failures / phi).T, prior=prior, start=start)
    for index, arm in enumerate(arms):
        arm.pool_mu = float(fit.mu[index])
        arm.pool_kappa = float(fit.kappa[index])
