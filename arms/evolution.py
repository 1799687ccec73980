"""The genetic step (docs/spec.md, "Evolving the arm set") as one pure function,
:func:`evolve_step`.

:mod:`bandit.evolution` chooses the arms to retire and the origins and parents of the arms
to add; this module turns that plan into configurations (:func:`breed`) and bundles the
whole step into a frozen :class:`EvolutionPlan`.  Nothing here touches storage: the
service persists the plan in one transaction, or only reports it for a dry run.

Duplicates.  A new configuration is never equal (same ``Configuration.signature``) to an
arm active before the step, retired ones included (re-adding the arm just retired would
undo the step), nor to another new arm.  A slot whose draws keep producing duplicates is
re-drawn up to ``settings.max_draw_attempts`` times, then left empty and reported in
``EvolutionPlan.skipped``.

Expert queue.  Entries are taken in queue order.  An entry that is invalid for the space,
or equal to an active arm or to an earlier entry, can never be added and is consumed with
that status; valid entries beyond the free slots stay in the queue for a later step.

Arm count.  Retirement never leaves fewer than ``min_arms`` active arms and additions
never go past ``max_arms``, so a step that starts inside ``[min_arms, max_arms]`` ends
inside it; one that starts above ``max_arms`` retires the excess as far as the protection
rules allow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from arms.errors import ConfigurationError
from arms.generators import crossover, mutate, random_configuration
from arms.space import Configuration, ParameterSpace
from arms.surrogate import Observation, Prediction, Proposal, ProposalBatch, propose, ready
from bandit.errors import InvalidParameterError
from bandit.evolution import (
    AdditionPlan,
    AdditionSlot,
    EvolutionSettings,
    Origin,
    Retirement,
    ScoredArm,
    ScoreKind,
    inherited_prior,
    plan_additions,
    select_retirements,
)
from bandit.update import Prior

ExpertStatus = Literal["added", "duplicate", "invalid"]


@dataclass(frozen=True)
class ActiveArm:
    """An active arm as the genetic step needs it."""

    arm_id: int
    config: Configuration
    alpha: float
    beta: float
    exposures: float
    is_reference: bool = False


@dataclass(frozen=True)
class RetiredArm:
    """An arm retired earlier in the current phase: data for the surrogate model."""

    arm_id: int
    config: Configuration
    alpha: float
    beta: float
    exposures: float


@dataclass(frozen=True)
class NewArm:
    """An arm the step adds, with its starting posterior Beta(alpha, beta).

    ``expert_queue_index`` is the position of its entry in the expert queue given to the
    step (expert arms only); ``prediction`` is what the surrogate expected of it (model
    arms only).
    """

    config: Configuration
    origin: Origin
    parent_ids: tuple[int, ...]
    alpha: float
    beta: float
    expert_queue_index: int | None = None
    prediction: Prediction | None = None


@dataclass(frozen=True)
class ModelRun:
    """The surrogate a step fitted: which model, on which data (see
    :class:`arms.surrogate.ProposalBatch`)."""

    model: str
    data_version: str
    n_observations: int


@dataclass(frozen=True)
class ExpertOutcome:
    """What the step did with one expert-queue entry it consumed."""

    queue_index: int
    status: ExpertStatus
    detail: str = ""


@dataclass(frozen=True)
class SkippedSlot:
    """A planned addition that produced no arm, and why."""

    origin: Origin
    parent_ids: tuple[int, ...]
    attempts: int
    reason: str


@dataclass(frozen=True)
class BreedResult:
    """The concrete additions of a step, the slots given up, and the experts consumed."""

    new_arms: tuple[NewArm, ...]
    skipped: tuple[SkippedSlot, ...]
    expert_outcomes: tuple[ExpertOutcome, ...]


@dataclass(frozen=True)
class EvolutionPlan:
    """Everything one genetic step decided; frozen, so a dry run and a real run agree.

    ``generation`` is the number given to the step (the new arms' generation).
    ``ranking`` holds every active non-reference arm with its score (eligible ones best
    first, then young ones).  ``expert_outcomes`` are the expert-queue entries consumed,
    by queue index; entries not listed stay waiting.
    """

    generation: int
    score: ScoreKind
    ranking: tuple[ScoredArm, ...]
    best_arm_id: int | None
    retirements: tuple[Retirement, ...]
    additions: tuple[NewArm, ...]
    skipped: tuple[SkippedSlot, ...]
    expert_outcomes: tuple[ExpertOutcome, ...]
    n_active_before: int
    n_active_after: int
    notes: tuple[str, ...]
    model: ModelRun | None = None

    @property
    def retired_ids(self) -> tuple[int, ...]:
        return tuple(r.arm_id for r in self.retirements)

    @property
    def consumed_expert_indices(self) -> tuple[int, ...]:
        return tuple(o.queue_index for o in self.expert_outcomes)


def screen_expert_queue(
    space: ParameterSpace,
    expert_queue: Sequence[Mapping[str, Any]],
    taken_signatures: set[str] | frozenset[str],
) -> tuple[tuple[tuple[int, Configuration], ...], tuple[ExpertOutcome, ...]]:
    """Split the queue into usable entries ``(index, config)`` and entries that never will be.

    An entry is unusable when it fails validation against the space or when its signature
    is taken (an active arm, or an earlier entry of the queue).
    """
    taken = set(taken_signatures)
    usable: list[tuple[int, Configuration]] = []
    rejected: list[ExpertOutcome] = []
    for index, entry in enumerate(expert_queue):
        try:
            config = space.validate(entry)
        except ConfigurationError as error:
            rejected.append(ExpertOutcome(index, "invalid", str(error)))
            continue
        if config.signature in taken:
            rejected.append(
                ExpertOutcome(index, "duplicate", "equal to an active arm or an earlier entry")
            )
            continue
        taken.add(config.signature)
        usable.append((index, config))
    return tuple(usable), tuple(rejected)


def breed(
    space: ParameterSpace,
    active_arms: Sequence[ActiveArm],
    expert_queue: Sequence[Mapping[str, Any]],
    plan: AdditionPlan,
    settings: EvolutionSettings,
    prior: Prior,
    rng: np.random.Generator,
    proposals: Sequence[Proposal] = (),
) -> BreedResult:
    """Fill the slots of ``plan`` with concrete, distinct configurations.

    Model slots take ``proposals`` in order (those that became taken meanwhile are passed
    over); a model slot left without one is skipped.

    ``active_arms`` are the arms active before the step (retired ones included: their
    configurations may not come back, and parents are looked up here).  Expert and random
    arms start from ``prior``; offspring start from ``prior`` too, or, with
    ``settings.inherit_posterior``, from :func:`~bandit.evolution.inherited_prior` of their
    parent (the average of both parents' inherited priors for a crossover).
    """
    arms_by_id = {arm.arm_id: arm for arm in active_arms}
    taken = {arm.config.signature for arm in active_arms}
    usable, rejected = screen_expert_queue(space, expert_queue, frozenset(taken))
    waiting = list(usable)
    new_arms: list[NewArm] = []
    skipped: list[SkippedSlot] = []
    added: list[ExpertOutcome] = []
    proposed = list(proposals)

    for slot in plan.slots:
        parents = [_parent(arms_by_id, arm_id) for arm_id in slot.parent_ids]
        if slot.origin == "expert":
            if not waiting:
                skipped.append(SkippedSlot("expert", (), 0, "no usable expert entry left"))
                continue
            index, config = waiting.pop(0)
            taken.add(config.signature)
            new_arms.append(NewArm(config, "expert", (), prior.alpha, prior.beta, index))
            added.append(ExpertOutcome(index, "added"))
            continue
        if slot.origin == "model":
            while proposed and proposed[0].config.signature in taken:
                proposed.pop(0)
            if not proposed:
                skipped.append(
                    SkippedSlot("model", (), 0, "the model proposed no configuration not taken")
                )
                continue
            proposal = proposed.pop(0)
            taken.add(proposal.config.signature)
            new_arms.append(
                NewArm(
                    proposal.config,
                    "model",
                    (),
                    prior.alpha,
                    prior.beta,
                    prediction=proposal.prediction,
                )
            )
            continue
        child = _draw_distinct(slot, parents, space, settings, rng, taken)
        if child is None:
            skipped.append(
                SkippedSlot(
                    slot.origin,
                    slot.parent_ids,
                    settings.max_draw_attempts,
                    f"every draw duplicated an existing configuration "
                    f"({settings.max_draw_attempts} attempts)",
                )
            )
            continue
        taken.add(child.signature)
        alpha, beta = _starting_posterior(slot, parents, settings, prior)
        new_arms.append(NewArm(child, slot.origin, slot.parent_ids, alpha, beta))

    outcomes = sorted((*rejected, *added), key=lambda o: o.queue_index)
    return BreedResult(tuple(new_arms), tuple(skipped), tuple(outcomes))


def _parent(arms_by_id: Mapping[int, ActiveArm], arm_id: int) -> ActiveArm:
    try:
        return arms_by_id[arm_id]
    except KeyError:
        raise InvalidParameterError(
            f"parent arm {arm_id} is not an active arm", parameter="parent_ids"
        ) from None


def _draw_distinct(
    slot: AdditionSlot,
    parents: Sequence[ActiveArm],
    space: ParameterSpace,
    settings: EvolutionSettings,
    rng: np.random.Generator,
    taken: set[str],
) -> Configuration | None:
    for _ in range(settings.max_draw_attempts):
        if slot.origin == "random":
            child = random_configuration(space, rng)
        elif slot.origin == "mutation":
            child = mutate(parents[0].config, space, rng, settings.mutation_scale)
        else:
            child = crossover(
                parents[0].config, parents[1].config, space, rng, blend=settings.crossover_blend
            )
        if child.signature not in taken:
            return child
    return None


def _starting_posterior(
    slot: AdditionSlot,
    parents: Sequence[ActiveArm],
    settings: EvolutionSettings,
    prior: Prior,
) -> tuple[float, float]:
    if not (settings.inherit_posterior and parents):
        return prior.alpha, prior.beta
    inherited = [
        inherited_prior(p.alpha, p.beta, settings.inherited_pseudo_count_cap, prior)
        for p in parents
    ]
    return (
        sum(a for a, _ in inherited) / len(inherited),
        sum(b for _, b in inherited) / len(inherited),
    )


def evolve_step(
    space: ParameterSpace,
    active_arms: Sequence[ActiveArm],
    expert_queue: Sequence[Mapping[str, Any]],
    settings: EvolutionSettings,
    prior: Prior,
    rng: np.random.Generator,
    *,
    generation: int,
    retired: Sequence[RetiredArm] = (),
) -> EvolutionPlan:
    """One genetic step: rank, retire, plan the additions, breed them; no side effects.

    ``retired`` are the arms retired earlier in the current phase: with ``model_weight``
    set, the surrogate learns from them and from the active arms (:mod:`arms.surrogate`),
    and proposes none of their configurations again.

    The generator is consumed in a fixed order (P(best) draws, the mix apportioning, the
    surrogate's fit and candidates when it has slots, then the slots in order), so the same
    inputs and seed give the same plan, which is what makes a dry run honest.
    """
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise InvalidParameterError(
            f"generation must be an integer >= 0, got {generation!r}", parameter="generation"
        )
    retirement = select_retirements(
        [arm.arm_id for arm in active_arms],
        [arm.alpha for arm in active_arms],
        [arm.beta for arm in active_arms],
        [arm.exposures for arm in active_arms],
        [arm.is_reference for arm in active_arms],
        settings,
        rng,
    )
    taken = frozenset(arm.config.signature for arm in active_arms)
    usable, _ = screen_expert_queue(space, expert_queue, taken)
    observations = _observations(active_arms, retired)
    additions = plan_additions(
        len(retirement.survivor_ids),
        len(usable),
        retirement.ranked_survivor_ids,
        settings,
        rng,
        model_ready=settings.model_weight > 0 and ready(space, observations),
    )
    batch: ProposalBatch | None = None
    model_notes: tuple[str, ...] = ()
    if additions.count("model"):
        # Served configurations (retired ones included) and the experts about to be added
        # are not proposed again.
        excluded = taken | {arm.config.signature for arm in retired}
        excluded |= {config.signature for _, config in usable}
        try:
            batch = propose(space, observations, additions.count("model"), excluded, rng)
        except (np.linalg.LinAlgError, ValueError) as error:
            # A numerically degenerate fit leaves the model slots empty (reported as
            # skipped) rather than failing the whole step.
            model_notes = (f"the model could not be fitted: {error}",)
    proposals = batch.proposals if batch is not None else ()
    bred = breed(space, active_arms, expert_queue, additions, settings, prior, rng, proposals)
    return EvolutionPlan(
        generation=generation,
        score=retirement.score,
        ranking=retirement.ranking,
        best_arm_id=retirement.best_arm_id,
        retirements=retirement.retirements,
        additions=bred.new_arms,
        skipped=bred.skipped,
        expert_outcomes=bred.expert_outcomes,
        n_active_before=len(active_arms),
        n_active_after=len(retirement.survivor_ids) + len(bred.new_arms),
        notes=retirement.notes + additions.notes + model_notes,
        model=(
            None
            if batch is None
            else ModelRun(batch.model, batch.data_version, batch.n_observations)
        ),
    )


def _observations(
    active_arms: Sequence[ActiveArm], retired: Sequence[RetiredArm]
) -> list[Observation]:
    """Every arm served in the phase, as the surrogate's data."""
    return [
        Observation(arm.config, arm.alpha, arm.beta, arm.exposures, arm.is_reference)
        for arm in active_arms
    ] + [Observation(arm.config, arm.alpha, arm.beta, arm.exposures) for arm in retired]
