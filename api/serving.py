"""The hot path: in-memory snapshots of every experiment and the assignment they serve.

Assignment never touches the database. Each replica keeps a snapshot of every experiment
(active arms with their posteriors, pre-serialised configurations) and reloads an
experiment when its ``version`` column moves, which every tick and admin change bumps; the
refresher polls that cheap column every ``snapshot_refresh_s`` (0.25 s by default).
Server-counted exposures accumulate in memory and are flushed by the event writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api import repositories as repo
from api.enums import ArmStatus, ExperimentStatus, ExposureSource, Group, Mode
from api.limits import event_limits
from api.models import Arm, Experiment, reference_of
from api.services.segments import load_evidence, pooled
from api.tickets import TicketSigner
from arms.origins import Origin
from bandit import (
    Nursery,
    Policy,
    PolicyParameters,
    Prior,
    ThompsonSampling,
    make_policy,
    nursery_of,
)
from bandit.nursery import probabilities_with_nursery
from bandit.policies import ThompsonDraws, thompson_choice
from bandit.sticky import Allocation, thompson_allocations

logger = logging.getLogger("ranktune.serving")


def policy_of(experiment: Experiment) -> Policy:
    params = PolicyParameters(**(experiment.policy_params or {}))
    return make_policy(
        experiment.policy,
        prior_alpha=experiment.prior_alpha,
        prior_beta=experiment.prior_beta,
        epsilon=params.epsilon,
        c=params.c,
        ucb_alpha=params.ucb_alpha,
    )


def reference_fraction(salt: str, unit: str) -> float:
    """Where a unit falls in [0, 1): the first 8 bytes of SHA-256(salt NUL unit) in UTF-8."""
    return unit_fraction(salt.encode("utf-8") + b"\x00", unit)


def unit_fraction(prefix: bytes, unit: str) -> float:
    """The first 8 bytes of SHA-256(prefix unit), unit in UTF-8, as a fraction of [0, 1)."""
    digest = hashlib.sha256(prefix + unit.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def sticky_prefix(salt: str, version: int) -> bytes:
    """The hash prefix of a sticky experiment's arm choice at this version: ``salt NUL
    sticky NUL version NUL`` (the group's prefix is ``salt NUL``: the unit's arm point is
    independent of its group, and moves with every version)."""
    return f"{salt}\x00sticky\x00{version}\x00".encode()


# Units are hashed to this many report buckets (the report's variance comes from their
# spread: bandit.report). 64 keeps the intervals' degrees of freedom high (docs/statistics.md)
# and the report's rows few. Changing it would split existing counts: it is fixed.
REPORT_BUCKETS = 64


def _group_and_bucket(salted: bytes, reference_share: float, unit: str) -> tuple[bool, int]:
    """(group_of(...) == "reference", the unit's report bucket) from one hash, with the
    salt's ``salt NUL`` bytes prepared once. The bucket is byte 8 of the SHA-256 whose first
    8 bytes choose the group, so bucket and group are independent and every bucket holds
    both groups."""
    digest = hashlib.sha256(salted + unit.encode("utf-8")).digest()
    in_reference = int.from_bytes(digest[:8], "big") / 2.0**64 < reference_share
    return in_reference, digest[8] % REPORT_BUCKETS


def group_of(salt: str, reference_share: float, unit: str) -> str:
    return Group.REFERENCE if reference_fraction(salt, unit) < reference_share else Group.TARGET


@dataclass(frozen=True)
class ExperimentSnapshot:
    id: int
    name: str
    status: str
    version: int
    tick_count: int
    salt: str
    reference_share: float
    mode: str
    exposure_source: str
    policy: Policy
    reference_arm_id: int
    reference_config_json: str
    arm_ids: tuple[int, ...]
    arm_config_jsons: tuple[str, ...]
    alphas: np.ndarray
    betas: np.ndarray
    successes: np.ndarray
    failures: np.ndarray
    exposures: np.ndarray  # credited exposures per arm (the applied ticks' totals)
    window_index: int | None
    loaded_at: datetime
    # The arms in the nursery (bandit.nursery), or None when the policy draws every arm.
    nursery: Nursery | None
    # The arms the policy draws among (indices into arm_ids): all of them, or the grown ones
    # while there is a nursery. policy_successes/failures and thompson_params are theirs.
    policy_arms: tuple[int, ...]
    policy_successes: np.ndarray
    policy_failures: np.ndarray
    # Thompson sampling's Beta parameters (prior + successes, prior + failures) per policy
    # arm as Python floats, or None for the other policies; see ServingState._choose.
    thompson_params: tuple[tuple[float, float], ...] | None
    salted: bytes  # salt in UTF-8 + NUL, the prefix of every unit's hash
    attribution_window_s: float
    event_limits: dict[str, int]  # event type (or "*") -> events credited per ticket
    retired_arm_ids: frozenset[int]
    phase: int  # tickets carry it: events of an earlier phase are not credited
    tickets_valid_from: int  # unix seconds: tickets issued earlier are expired
    # Segmented experiments (api.services.segments): segment name -> index, and per segment
    # index Thompson's Beta parameters of the policy arms (the segment's pooled
    # posteriors). None and () when the experiment is not segmented.
    segments: dict[str, int] | None = None
    segment_params: tuple[tuple[tuple[float, float], ...], ...] = ()
    max_segments: int = 0
    # Sticky experiments (docs/design.md "Sticky assignment"): the hash prefix of the arm
    # points at this version (None: a draw per request), and the allocation the points are
    # inverted through: the policy's probabilities with the nursery's share. A segmented
    # sticky experiment has neither but one SegmentPlacement per segment index instead.
    sticky_prefix: bytes | None = None
    allocation: Allocation | None = None
    segment_placements: tuple[SegmentPlacement | None, ...] = ()
    # Thompson sampling over ALLOCATION_MIN_ARMS policy arms or more: the allocation one
    # draw serves (P(arm is the argmax), bandit.propensities.argmax_probabilities), inverted
    # at a uniform per request, so that a request costs the same whatever the arm count;
    # per segment index in a segmented experiment. None and (): block draws (_thompson).
    thompson_allocation: Allocation | None = None
    segment_allocations: tuple[Allocation | None, ...] = ()
    # A segmented experiment with an arm restricted to some segments (Arm.segments): per
    # segment index, the arms served there (SegmentArms); segment_params, the allocations
    # and the placements of a segment are then over its policy arms, and its indices local.
    # (): no arm is restricted, every segment draws among policy_arms.
    segment_arms: tuple[SegmentArms, ...] = ()


@dataclass(frozen=True)
class SegmentArms:
    """The target arms served in one segment of an experiment with restricted arms:
    ``arms``, indices into the snapshot's ``arm_ids`` (those allowed there, in order; empty:
    the segment's target units get the reference configuration on an inactive ticket);
    ``nursery``, the experiment's nursery among them, indices into ``arms`` (None: the
    policy draws among all of them, as when the experiment has no nursery or none of its
    nursery or none of its grown arms is allowed here); ``policy``, the indices into
    ``arms`` the policy draws among (the segment's row of ``segment_params``)."""

    arms: tuple[int, ...]
    nursery: Nursery | None
    policy: tuple[int, ...]


@dataclass(frozen=True)
class SegmentPlacement:
    """How a segmented sticky experiment places a segment's target units: the allocation of
    the segment's pooled posteriors ``params`` (what a Thompson draw there serves, the
    nursery's share included), inverted at the units' points hashed with ``prefix``, the
    prefix of the ``version`` at which that allocation was computed. A later snapshot whose
    segment has the same parameters, arms and nursery keeps the placement (a new segment's
    registration moves the version, not the others' units)."""

    version: int
    prefix: bytes
    allocation: Allocation
    params: tuple[tuple[float, float], ...]
    arms: SegmentArms | None = None  # the segment's arms when some arm is restricted


def load_snapshot(
    session: Session, experiment: Experiment, previous: ExperimentSnapshot | None = None
) -> ExperimentSnapshot:
    """The experiment as it is served; ``previous``, the snapshot it replaces, lends a
    segmented sticky experiment the placements of its unchanged segments."""
    every_arm = repo.arms_of(session, experiment.id)
    reference = reference_of(every_arm)
    targets = [
        arm
        for arm in every_arm
        if arm.origin != Origin.REFERENCE and arm.status == ArmStatus.ACTIVE
    ]
    alphas = np.array([arm.alpha for arm in targets], dtype=np.float64)
    betas = np.array([arm.beta for arm in targets], dtype=np.float64)
    ids = tuple(arm.id for arm in targets)
    policy = policy_of(experiment)
    successes = np.maximum(alphas - experiment.prior_alpha, 0.0)
    failures = np.maximum(betas - experiment.prior_beta, 0.0)
    exposures = np.array([arm.exposures for arm in targets], dtype=np.float64)
    nursery = nursery_of(exposures, experiment.nursery_exposures, experiment.nursery_share)
    policy_arms = nursery.grown if nursery is not None else tuple(range(len(targets)))
    policy_successes = successes[list(policy_arms)]
    policy_failures = failures[list(policy_arms)]
    thompson_params = None
    if isinstance(policy, ThompsonSampling):
        thompson_params = policy.posterior_parameters(policy_successes, policy_failures)
    window_index = (
        ids.index(experiment.window_arm_id)
        if experiment.mode == Mode.WINDOW and experiment.window_arm_id in ids
        else None
    )
    segment_fields = (
        _segment_fields(session, experiment, targets, (policy_arms, nursery))
        if experiment.max_segments is not None
        else {}
    )
    sticky_fields: dict[str, Any] = {}
    if experiment.sticky and targets and experiment.mode == Mode.REQUEST and segment_fields:
        placements = segment_placements(
            experiment.salt,
            experiment.version,
            (ids, nursery),
            (segment_fields["segment_params"], segment_fields.get("segment_arms", ())),
            previous,
        )
        sticky_fields = {"segment_placements": placements}
    elif experiment.sticky and targets and experiment.mode == Mode.REQUEST:
        sticky_fields = _sticky_fields(experiment, policy, (successes, failures, exposures))
    elif experiment.mode == Mode.REQUEST:
        sticky_fields = _allocation_fields(
            thompson_params, segment_fields.get("segment_params", ()), previous
        )
    return ExperimentSnapshot(
        id=experiment.id,
        name=experiment.name,
        status=experiment.status,
        version=experiment.version,
        tick_count=experiment.tick_count,
        salt=experiment.salt,
        reference_share=experiment.reference_share,
        mode=experiment.mode,
        exposure_source=experiment.exposure_source,
        policy=policy,
        reference_arm_id=reference.id,
        reference_config_json=json.dumps(reference.config, separators=(",", ":")),
        arm_ids=ids,
        arm_config_jsons=tuple(json.dumps(a.config, separators=(",", ":")) for a in targets),
        alphas=alphas,
        betas=betas,
        successes=successes,
        failures=failures,
        exposures=exposures,
        window_index=window_index,
        loaded_at=datetime.now(UTC),
        nursery=nursery,
        policy_arms=policy_arms,
        policy_successes=policy_successes,
        policy_failures=policy_failures,
        thompson_params=thompson_params,
        salted=experiment.salt.encode("utf-8") + b"\x00",
        attribution_window_s=experiment.attribution_window_s,
        event_limits=event_limits(experiment.max_events_per_exposure),
        retired_arm_ids=frozenset(arm.id for arm in every_arm if arm.status == ArmStatus.RETIRED),
        phase=experiment.phase,
        tickets_valid_from=experiment.tickets_valid_from,
        **segment_fields,
        **sticky_fields,
    )


def _segment_fields(
    session: Session,
    experiment: Experiment,
    targets: list[Arm],
    policy: tuple[tuple[int, ...], Nursery | None],
) -> dict[str, Any]:
    """A segmented experiment's segments and, per segment, the pooled Beta parameters of the
    arms the policy draws among there (what :meth:`ServingState.assign` draws from): the
    ``policy`` arms (with the experiment's nursery), or, when an arm is restricted to some
    segments, each segment's own (:func:`segment_arms`)."""
    policy_arms, nursery = policy
    names = repo.segment_names(session, experiment.id)
    prior = Prior(experiment.prior_alpha, experiment.prior_beta)
    evidence = load_evidence(session, [arm.id for arm in targets], len(names), prior)
    alphas, betas = pooled(evidence, targets, prior)
    fields: dict[str, Any] = {
        "segments": {name: index for index, name in enumerate(names)},
        "max_segments": experiment.max_segments or 0,
    }
    if any(arm.segments is not None for arm in targets):
        views = segment_arms(names, [arm.segments for arm in targets], policy_arms, nursery)
        columns = [[view.arms[j] for j in view.policy] for view in views]
        fields["segment_arms"] = views
    else:
        columns = [list(policy_arms)] * len(names)
    fields["segment_params"] = tuple(
        tuple(zip(alphas[s, cols].tolist(), betas[s, cols].tolist(), strict=True))
        for s, cols in enumerate(columns)
    )
    return fields


def segment_arms(
    names: list[str],
    restrictions: list[list[Any] | None],
    policy_arms: tuple[int, ...],
    nursery: Nursery | None,
) -> tuple[SegmentArms, ...]:
    """Per opened segment (``names``, by index), the target arms served there: those whose
    restriction (``restrictions``, per target arm: segment names, or None for every
    segment) names it; the nursery and the policy arms among them."""
    allowed = [None if only is None else frozenset(only) for only in restrictions]
    drawn = frozenset(policy_arms)
    views = []
    for name in names:
        arms = tuple(k for k, only in enumerate(allowed) if only is None or name in only)
        grown = tuple(j for j, k in enumerate(arms) if k in drawn)
        young = tuple(j for j, k in enumerate(arms) if k not in drawn)
        if nursery is not None and grown and young:
            views.append(SegmentArms(arms, Nursery(young, grown, nursery.share), grown))
        else:
            views.append(SegmentArms(arms, None, tuple(range(len(arms)))))
    return tuple(views)


def _sticky_fields(
    experiment: Experiment, policy: Policy, statistics: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """A sticky experiment's hash prefix and its allocation: what one draw of
    :meth:`ServingState._choose` serves each arm, the nursery's share included, computed
    once per snapshot (``statistics``: every target arm's successes, failures and
    exposures). A segmented experiment's are per segment: :func:`segment_placements`."""
    successes, failures, exposures = statistics
    probabilities = probabilities_with_nursery(
        policy,
        successes,
        failures,
        exposures,
        min_exposures=experiment.nursery_exposures,
        share=experiment.nursery_share,
    )
    return {
        "sticky_prefix": sticky_prefix(experiment.salt, experiment.version),
        "allocation": Allocation.of(probabilities),
    }


# From this many policy arms on, Thompson sampling is served by inverting its allocation
# (computed once per snapshot, off the event loop) rather than from blocks of Beta draws,
# whose cost grows with the arms: about 40 ns per arm per request against about 1 us for
# the inversion (benchmarks/arm_count.py).
ALLOCATION_MIN_ARMS = 32


def _allocation_fields(
    params: tuple[tuple[float, float], ...] | None,
    segment_params: tuple[tuple[tuple[float, float], ...], ...],
    previous: ExperimentSnapshot | None,
) -> dict[str, Any]:
    """A Thompson experiment's allocations when it has ALLOCATION_MIN_ARMS policy arms or
    more: the experiment's, or each segment's (a segment whose parameters did not move keeps
    the ``previous`` snapshot's). Exact to the integration's error, under 1e-6
    (tests/bandit/test_propensities.py): the same distribution as a draw per request."""
    if segment_params:
        return _segment_allocations(segment_params, previous)
    if params is None or len(params) < ALLOCATION_MIN_ARMS:
        return {}
    return {"thompson_allocation": _allocations([params], None)[0]}


def _segment_allocations(
    segment_params: tuple[tuple[tuple[float, float], ...], ...],
    previous: ExperimentSnapshot | None,
) -> dict[str, Any]:
    """Each segment's allocation when it has ALLOCATION_MIN_ARMS policy arms or more (None
    for the others, drawn from blocks; with restricted arms the counts differ by segment),
    a segment whose parameters did not move keeping the ``previous`` snapshot's; the
    changed segments integrated together, one vectorised pass per arm count."""
    kept: dict[tuple[tuple[float, float], ...], Allocation] = {}
    if previous is not None and previous.segment_allocations:
        pairs_before = zip(previous.segment_params, previous.segment_allocations, strict=True)
        kept = {row: allocation for row, allocation in pairs_before if allocation is not None}
    changed = list({row for row in segment_params if len(row) >= ALLOCATION_MIN_ARMS} - kept.keys())
    kept.update(zip(changed, _allocations(changed, None), strict=True))
    allocations = tuple(kept.get(row) for row in segment_params)
    if all(allocation is None for allocation in allocations):
        return {}
    return {"segment_allocations": allocations}


def segment_placements(
    salt: str,
    version: int,
    arms: tuple[tuple[int, ...], Nursery | None],
    segments: tuple[tuple[tuple[tuple[float, float], ...], ...], tuple[SegmentArms, ...]],
    previous: ExperimentSnapshot | None,
) -> tuple[SegmentPlacement | None, ...]:
    """Every segment's placement at this ``version``: the ``previous`` snapshot's when the
    segment's params (the policy arms' pooled Beta parameters), the target ``arms`` (ids),
    the nursery and the segment's arms (``segments``: the params and, with restricted
    arms, the SegmentArms by segment) are unchanged, else a new one from the segment's
    Thompson allocation, the changed segments with the same arms and nursery integrated
    together in one vectorised pass (bandit.sticky.thompson_allocations: about a
    millisecond per segment of 20 arms, benchmarks/sticky.py). With restricted arms a
    placement's arms are the segment's (indices into its SegmentArms.arms), and a segment
    without arms has None. Run where snapshots load, in the refresher's thread: a request
    only reads the placement."""
    arm_ids, nursery = arms
    params, views = segments
    kept: tuple[SegmentPlacement | None, ...] = ()
    if previous is not None and previous.arm_ids == arm_ids and previous.nursery == nursery:
        kept = previous.segment_placements
    placements = dict(enumerate(kept[: len(params)]))
    groups: dict[Nursery | None, list[int]] = {}
    for s, row in enumerate(params):
        placement, view = placements.get(s), views[s] if views else None
        if view is not None and not view.arms:
            placements[s] = None
        elif placement is None or placement.params != row or placement.arms != view:
            groups.setdefault(view.nursery if view is not None else nursery, []).append(s)
    prefix = sticky_prefix(salt, version)
    for group_nursery, changed in groups.items():
        fresh = _allocations([params[s] for s in changed], group_nursery)
        for s, allocation in zip(changed, fresh, strict=True):
            view = views[s] if views else None
            placements[s] = SegmentPlacement(version, prefix, allocation, params[s], view)
    return tuple(placements[s] for s in range(len(params)))


def _allocations(
    rows: list[tuple[tuple[float, float], ...]], nursery: Nursery | None
) -> list[Allocation]:
    """Each row's Thompson allocation (its policy arms' Beta parameters; ``nursery``: see
    bandit.sticky.thompson_allocations), in order, the rows of one arm count integrated
    together in one vectorised pass."""
    out: list[Allocation | None] = [None] * len(rows)
    for count in {len(row) for row in rows}:
        same = [i for i, row in enumerate(rows) if len(row) == count]
        pairs = np.array([rows[i] for i in same], dtype=np.float64)  # (S, K, 2)
        fresh = thompson_allocations(pairs[:, :, 0], pairs[:, :, 1], nursery)
        for i, allocation in zip(same, fresh, strict=True):
            out[i] = allocation
    return [allocation for allocation in out if allocation is not None]


def sticky_choice(snapshot: ExperimentSnapshot, unit: str, segment: int | None = None) -> int:
    """A sticky experiment's arm for a target unit: the allocation's inverse at the unit's
    point (bandit.sticky), the same for every request until the version moves; in a
    segmented experiment, segment index ``segment``'s placement, until the segment's
    allocation moves."""
    if snapshot.segment_placements:
        placement = snapshot.segment_placements[segment or 0]
        assert placement is not None  # a segment without arms is served the reference
        index = placement.allocation.arm_at(unit_fraction(placement.prefix, unit))
        if snapshot.segment_arms:
            return snapshot.segment_arms[segment or 0].arms[index]
        return index
    assert snapshot.sticky_prefix is not None and snapshot.allocation is not None
    return snapshot.allocation.arm_at(unit_fraction(snapshot.sticky_prefix, unit))


@dataclass(frozen=True)
class Served:
    group: str  # "target" or "reference"
    arm_id: int
    config_json: str
    ticket: str
    active: bool


class ServingState:
    """Snapshots of all experiments plus the server-side exposure counters of this replica."""

    def __init__(self, signer: TicketSigner, rng: np.random.Generator | None = None) -> None:
        self.signer = signer
        # Public so that a test (or a reproducible run) can seed the draws of a live replica.
        self.rng = rng if rng is not None else np.random.default_rng()
        self._by_name: dict[str, ExperimentSnapshot] = {}
        self._by_id: dict[int, ExperimentSnapshot] = {}
        self._refresh_lock = threading.Lock()
        self._exposure_lock = threading.Lock()
        # (experiment id, arm id, group, report bucket, segment) -> exposures not yet flushed.
        self._exposures: dict[tuple[int, int, str, int, int], int] = {}
        # Segmented experiments: experiment id -> segment names first seen here, in order,
        # waiting for the exposure flush to register them (api.services.segments).
        self._new_segments: dict[int, dict[str, None]] = {}
        # (experiment id, segment index or None) -> the posterior's Thompson parameters and
        # its block of draws (_thompson). Used on the event loop only: no lock.
        self._draws: dict[
            tuple[int, int | None], tuple[tuple[tuple[float, float], ...], ThompsonDraws]
        ] = {}
        # (experiment id, arm id, ticket group) -> assignments served by this replica, for
        # /metrics (api.observability). Updated on the event loop only: no lock.
        self.assigned: dict[tuple[int, int, str], int] = {}
        # time.monotonic() of the last refresh that read the database without failing
        # (None before the first), for /ready and /metrics.
        self.refreshed_at: float | None = None

    # -- snapshots -------------------------------------------------------------------------
    def snapshots(self) -> list[ExperimentSnapshot]:
        return list(self._by_name.values())

    def get(self, name: str) -> ExperimentSnapshot | None:
        return self._by_name.get(name)

    def get_by_id(self, experiment_id: int) -> ExperimentSnapshot | None:
        return self._by_id.get(experiment_id)

    def refresh(self, session_factory: Callable[[], Session], *, only: str | None = None) -> None:
        """Reload the experiments whose version moved (or just ``only``, unconditionally).

        One experiment that fails to load keeps its previous snapshot (and is logged); it
        does not stop the others from being refreshed.
        """
        with self._refresh_lock, session_factory() as session:
            current = {snap.id: snap.version for snap in self._by_name.values()}
            by_name = dict(self._by_name)
            for experiment_id, name, version in repo.experiment_versions(session):
                if only is None and current.get(experiment_id) == version:
                    continue
                if only is not None and name != only:
                    continue
                experiment = repo.get_experiment(session, experiment_id)
                if experiment is None:
                    continue
                try:
                    by_name[name] = load_snapshot(session, experiment, by_name.get(name))
                except Exception:
                    logger.exception(
                        "experiment %r could not be loaded; serving its last snapshot", name
                    )
            self._by_name = by_name
            self._by_id = {snapshot.id: snapshot for snapshot in by_name.values()}
            self.refreshed_at = time.monotonic()

    # -- assignment ------------------------------------------------------------------------
    def assign(self, snapshot: ExperimentSnapshot, unit: str, segment: str | None = None) -> Served:
        """Serve the unit; ``segment`` matters only for a segmented experiment (absent, or
        not open yet, or beyond ``max_segments``: the default segment)."""
        in_reference, bucket = _group_and_bucket(snapshot.salted, snapshot.reference_share, unit)
        group = Group.REFERENCE if in_reference else Group.TARGET
        active = snapshot.status == ExperimentStatus.RUNNING and bool(snapshot.arm_ids)
        index_of_segment = None if snapshot.segments is None else 0
        if segment is not None and snapshot.segments is not None:
            known = snapshot.segments.get(segment)
            if known is None:
                self._note_new_segment(snapshot, segment)
            else:
                index_of_segment = known
        if (
            snapshot.segment_arms
            and group == Group.TARGET
            and not snapshot.segment_arms[index_of_segment or 0].arms
        ):
            # No target arm is served in this segment: the reference configuration on an
            # inactive ticket, nothing counted (its reference units are counted as ever).
            active = False
        if not active or group == Group.REFERENCE:
            arm_id, config_json = snapshot.reference_arm_id, snapshot.reference_config_json
        else:
            index = snapshot.window_index
            if index is None and (
                snapshot.sticky_prefix is not None or snapshot.segment_placements
            ):
                index = sticky_choice(snapshot, unit, index_of_segment)
            elif index is None:
                index = self._choose(snapshot, index_of_segment)
            arm_id, config_json = snapshot.arm_ids[index], snapshot.arm_config_jsons[index]
        ticket_group = group if active else Group.INACTIVE
        counted = (snapshot.id, arm_id, ticket_group)
        self.assigned[counted] = self.assigned.get(counted, 0) + 1
        if active and snapshot.exposure_source == ExposureSource.SERVER:
            self.count_exposure(snapshot.id, arm_id, group, bucket, index_of_segment or 0)
        ticket = self.signer.issue(
            snapshot.id,
            arm_id,
            ticket_group,
            bucket=bucket,
            phase=snapshot.phase,
            segment=index_of_segment,
        )
        return Served(group, arm_id, config_json, ticket, active)

    def _choose(self, snapshot: ExperimentSnapshot, segment: int | None = None) -> int:
        """The arm for one target request, with the probabilities of
        ``bandit.choose_with_nursery`` (tested): a nursery arm on the nursery's schedule, else
        the policy's pick among ``policy_arms`` (Thompson: from the posterior's block of
        draws, :meth:`_thompson`; in a segmented experiment, the segment's pooled
        posteriors)."""
        if segment is not None and snapshot.segment_arms:
            return self._choose_restricted(snapshot, segment)
        nursery = snapshot.nursery
        if nursery is not None:
            picked = nursery.pick(self.rng)
            if picked is not None:
                return picked
        if segment is not None:
            index = self._segment_pick(snapshot, segment)
        elif snapshot.thompson_allocation is not None:
            index = snapshot.thompson_allocation.arm_at(self.rng.random())
        elif snapshot.thompson_params is None:
            index = snapshot.policy.choose_one(
                snapshot.policy_successes, snapshot.policy_failures, self.rng
            )
        else:
            index = self._thompson((snapshot.id, None), snapshot.thompson_params)
        return snapshot.policy_arms[index]

    def _choose_restricted(self, snapshot: ExperimentSnapshot, segment: int) -> int:
        """:meth:`_choose` in a segment of an experiment with restricted arms: the same
        draw among the arms allowed there (SegmentArms), with their nursery."""
        view = snapshot.segment_arms[segment]
        if view.nursery is not None:
            picked = view.nursery.pick(self.rng)
            if picked is not None:
                return view.arms[picked]
        return view.arms[view.policy[self._segment_pick(snapshot, segment)]]

    def _segment_pick(self, snapshot: ExperimentSnapshot, segment: int) -> int:
        """Thompson's pick in the segment: an index into its row of ``segment_params``."""
        allocation = snapshot.segment_allocations[segment] if snapshot.segment_allocations else None
        if allocation is not None:
            return allocation.arm_at(self.rng.random())
        return self._thompson((snapshot.id, segment), snapshot.segment_params[segment])

    def _thompson(
        self, key: tuple[int, int | None], params: tuple[tuple[float, float], ...]
    ) -> int:
        """A Thompson choice among ``params`` (one experiment's, or one of its segments'),
        served from that posterior's block of draws (bandit.policies.ThompsonDraws: exact
        Thompson sampling, one vectorised draw per block instead of K scalar draws per
        request). A block belongs to one posterior: a new snapshot brings new parameter
        tuples, and a block drawn from other parameters than the ones asked for is dropped
        (an identity check: cheaper than comparing, and the cache keeps the tuple alive)."""
        cached = self._draws.get(key)
        if cached is None or cached[0] is not params:
            if not params:
                return thompson_choice(params, self.rng)
            cached = self._draws[key] = (params, ThompsonDraws(params))
        return cached[1].next(self.rng)

    # -- segments --------------------------------------------------------------------------
    def _note_new_segment(self, snapshot: ExperimentSnapshot, segment: str) -> None:
        """Queue a segment seen for the first time, while the experiment has room for it
        (the queue is bounded by ``max_segments``: a client sending endless names adds
        nothing past it)."""
        with self._exposure_lock:
            queued = self._new_segments.setdefault(snapshot.id, {})
            if segment not in queued and len(snapshot.segments or ()) + len(queued) < (
                snapshot.max_segments
            ):
                queued[segment] = None

    def drain_new_segments(self) -> dict[int, list[str]]:
        with self._exposure_lock:
            drained, self._new_segments = self._new_segments, {}
        return {experiment_id: list(names) for experiment_id, names in drained.items() if names}

    def restore_new_segments(self, pending: dict[int, list[str]]) -> None:
        """Put back segments whose registration failed (they are tried at the next flush)."""
        with self._exposure_lock:
            for experiment_id, names in pending.items():
                queued = self._new_segments.setdefault(experiment_id, {})
                for name in names:
                    queued[name] = None

    # -- exposures -------------------------------------------------------------------------
    def count_exposure(
        self, experiment_id: int, arm_id: int, group: str, bucket: int = 0, segment: int = 0
    ) -> None:
        key = (experiment_id, arm_id, group, bucket, segment)
        with self._exposure_lock:
            self._exposures[key] = self._exposures.get(key, 0) + 1

    def drain_exposures(self) -> dict[tuple[int, int, str, int, int], int]:
        with self._exposure_lock:
            drained, self._exposures = self._exposures, {}
        return drained

    def restore_exposures(self, counts: dict[tuple[int, int, str, int, int], int]) -> None:
        """Put back counts whose flush failed, so that a database hiccup loses nothing."""
        with self._exposure_lock:
            for key, count in counts.items():
                self._exposures[key] = self._exposures.get(key, 0) + count
