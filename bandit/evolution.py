"""Selection logic of the genetic step (docs/spec.md) on arrays and arm ids.

This module decides *which* arms retire and *how many* arms of each origin are added, and
from which parents; :mod:`arms.evolution` turns that plan into concrete configurations.  It
knows nothing of parameter spaces: arms are integer ids with Beta posteriors and exposure
counts.

Retirement (:func:`select_retirements`)
    Eligible arms are the active, non-reference arms with ``exposures >= min_exposures``.
    They are ranked by a score: the posterior mean ``alpha / (alpha + beta)``, or the Monte
    Carlo probability of being the best of the active non-reference arms.  The worst
    ``drop_count`` retire (more when the experiment holds more than ``max_arms`` arms), but
    never the reference, never the best eligible arm, never a young arm, never so many that
    fewer than ``min_arms`` active arms remain, and, when
    ``retire_below_prob_beat_reference`` is set, only arms with
    ``P(theta > 1/2) < threshold`` (under the reference-ratio update an arm beats the
    reference exactly when ``theta > 1/2``).

    Ties are broken exactly and deterministically.  Best first means: higher score, then
    more exposures (more evidence behind the same score), then the older arm (smaller id).
    Worst first is the exact reverse: lower score, then fewer exposures, then the newer arm
    (larger id).  So of two identical arms the one the experiment has known longer stays.

Additions (:func:`plan_additions`)
    The step fills the arm set up to ``max_arms``; in the steady state (a full arm set) that
    is the contract's "as many as retired".  Waiting expert configurations come first; the
    remaining slots are split between random draws, mutations, crossovers and model
    proposals in proportion to the mix weights by systematic sampling, so that the expected
    number of each origin is exactly ``slots * weight / total`` and the realised number is
    its floor or ceiling.
    Parents are the best eligible survivors (``parent_pool_size`` of them, best first).

Inheritance (:func:`inherited_prior`)
    A child may start from a weakened copy of its parent's posterior instead of the prior,
    so that a promising offspring is not starved of traffic while it is young.

Randomness only from the injected :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.summaries import prob_best
from bandit.update import Prior

FloatArray = npt.NDArray[np.float64]

ScoreKind = Literal["mean", "prob_best"]
Origin = Literal["expert", "random", "mutation", "crossover", "model"]
RetirementReason = Literal["lowest_score", "over_max_arms"]

SCORE_KINDS: tuple[str, ...] = get_args(ScoreKind)
ORIGINS: tuple[str, ...] = get_args(Origin)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(
            f"{name} must be an integer >= {low}, got {value!r}", parameter=name
        )


def _check_real(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not ok:
        left = "(" if low_open else "["
        right = "]" if math.isfinite(high) else ")"
        raise InvalidParameterError(
            f"{name} must be a finite number in {left}{low}, {high}{right}, got {value!r}",
            parameter=name,
        )


@dataclass(frozen=True)
class EvolutionSettings:
    """How an experiment's genetic step behaves; validated at construction.

    ``min_arms`` and ``max_arms`` count every active arm, the reference included.
    ``random_weight``, ``mutation_weight``, ``crossover_weight`` and ``model_weight`` are
    relative weights of the non-expert additions; all zero means only expert configurations
    are ever added.  ``model_weight`` (0 by default: the step as it always was) gives slots
    to the surrogate model's proposals (:mod:`arms.surrogate`).
    ``mutation_scale`` is the standard deviation of a mutation as a fraction of each
    parameter's span.  ``inherited_pseudo_count_cap`` bounds ``alpha + beta`` of a child that
    inherits its parent's posterior (``inherit_posterior``).  ``max_draw_attempts`` bounds how
    often a slot is re-drawn when it produced a duplicate configuration.
    """

    min_exposures: float = 100.0
    drop_count: int = 1
    min_arms: int = 2
    max_arms: int = 10
    score: ScoreKind = "mean"
    retire_below_prob_beat_reference: float | None = None
    random_weight: float = 1.0
    mutation_weight: float = 1.0
    crossover_weight: float = 1.0
    model_weight: float = 0.0
    parent_pool_size: int = 3
    mutation_scale: float = 0.1
    crossover_blend: bool = False
    inherit_posterior: bool = False
    inherited_pseudo_count_cap: float = 10.0
    prob_best_draws: int = 10_000
    max_draw_attempts: int = 20

    def __post_init__(self) -> None:
        _check_real("min_exposures", self.min_exposures, low=0.0)
        _check_int("drop_count", self.drop_count, 0)
        _check_int("min_arms", self.min_arms, 1)
        _check_int("max_arms", self.max_arms, 1)
        if self.max_arms < self.min_arms:
            raise InvalidParameterError(
                f"max_arms must be >= min_arms ({self.min_arms}), got {self.max_arms}",
                parameter="max_arms",
            )
        if self.score not in SCORE_KINDS:
            raise InvalidParameterError(
                f"score must be one of {', '.join(SCORE_KINDS)}, got {self.score!r}",
                parameter="score",
            )
        if self.retire_below_prob_beat_reference is not None:
            _check_real(
                "retire_below_prob_beat_reference",
                self.retire_below_prob_beat_reference,
                low=0.0,
                high=1.0,
                low_open=True,
            )
        for name in ("random_weight", "mutation_weight", "crossover_weight", "model_weight"):
            _check_real(name, getattr(self, name), low=0.0)
        _check_int("parent_pool_size", self.parent_pool_size, 1)
        _check_real("mutation_scale", self.mutation_scale, low=0.0, high=1.0, low_open=True)
        for name in ("crossover_blend", "inherit_posterior"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"{name} must be a boolean, got {getattr(self, name)!r}", parameter=name
                )
        _check_real(
            "inherited_pseudo_count_cap", self.inherited_pseudo_count_cap, low=0.0, low_open=True
        )
        _check_int("prob_best_draws", self.prob_best_draws, 1)
        _check_int("max_draw_attempts", self.max_draw_attempts, 1)


@dataclass(frozen=True)
class ScoredArm:
    """One active non-reference arm as the step saw it.

    ``score`` is the ranking score (posterior mean or P(best)); ``eligible`` is False for a
    young arm (fewer than ``min_exposures`` exposures), which is never ranked nor retired.
    """

    arm_id: int
    score: float
    mean: float
    prob_beat_reference: float
    exposures: float
    eligible: bool


@dataclass(frozen=True)
class Retirement:
    """One retired arm and why: its score, evidence, and the rule that retired it."""

    arm_id: int
    score: float
    exposures: float
    prob_beat_reference: float
    reason: RetirementReason


@dataclass(frozen=True)
class RetirementPlan:
    """The outcome of :func:`select_retirements`.

    ``ranking`` lists the eligible arms best first, then the young arms in the same order.
    ``survivor_ids`` are all arms that stay active (the reference included), in input
    order; ``ranked_survivor_ids`` are the eligible survivors best first (the parent pool).
    ``requested`` is how many retirements the rules asked for (``drop_count``, or more when
    over ``max_arms``); ``notes`` explain any shortfall.
    """

    score: ScoreKind
    ranking: tuple[ScoredArm, ...]
    best_arm_id: int | None
    retirements: tuple[Retirement, ...]
    survivor_ids: tuple[int, ...]
    ranked_survivor_ids: tuple[int, ...]
    requested: int
    notes: tuple[str, ...]

    @property
    def retired_ids(self) -> tuple[int, ...]:
        return tuple(r.arm_id for r in self.retirements)


def _best_first_key(arm: ScoredArm) -> tuple[float, float, int]:
    return (-arm.score, -arm.exposures, arm.arm_id)


def _first_misshapen(
    n_ids: int,
    alphas: FloatArray,
    betas: FloatArray,
    exposures: FloatArray,
    is_reference: npt.NDArray[np.bool_],
) -> str:
    """The first of the parallel arrays that is not 1-d with one entry per arm id."""
    for name, values in (
        ("alphas", alphas),
        ("betas", betas),
        ("exposures", exposures),
        ("is_reference", is_reference),
    ):
        if np.ndim(values) != 1 or np.shape(values)[0] != n_ids:
            return name
    return "arm_ids"


def select_retirements(
    arm_ids: Sequence[int],
    alphas: npt.ArrayLike,
    betas: npt.ArrayLike,
    exposures: npt.ArrayLike,
    is_reference: npt.ArrayLike,
    settings: EvolutionSettings,
    rng: np.random.Generator,
) -> RetirementPlan:
    """Choose the arms to retire among the active arms given as parallel arrays.

    The number retired is ``min(requested, candidates, n_active - min_arms)`` where
    ``requested = max(drop_count, n_active - max_arms)`` and the candidates are the eligible
    arms other than the best (and, with the threshold set, with
    ``P(theta > 1/2) < retire_below_prob_beat_reference``), taken worst first.

    ``P(best)`` is estimated from ``prob_best_draws`` joint posterior draws of the active
    non-reference arms (young ones included: they compete for being best, they just cannot
    be retired); ``rng`` is used only for it.
    """
    from scipy import stats

    ids = [int(i) for i in arm_ids]
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    ref = np.asarray(is_reference, dtype=bool)
    if not (len(ids) == a.shape[0] == b.shape[0] == n.shape[0] == ref.shape[0]) or a.ndim != 1:
        raise InvalidParameterError(
            "arm_ids, alphas, betas, exposures and is_reference must have one entry per arm; "
            f"got {len(ids)}, {a.shape}, {b.shape}, {n.shape}, {ref.shape}",
            parameter=_first_misshapen(len(ids), a, b, n, ref),
        )
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("arm_ids must be unique", parameter="arm_ids")
    for name, values in (("alphas", a), ("betas", b)):
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise InvalidParameterError("alphas and betas must be finite and > 0", parameter=name)
    if not (np.all(np.isfinite(n)) and np.all(n >= 0)):
        raise InvalidParameterError("exposures must be finite and >= 0", parameter="exposures")

    candidates_idx = np.flatnonzero(~ref)
    means = a / (a + b)
    beat_reference = stats.beta.sf(0.5, a, b)
    if settings.score == "mean":
        scores = means
    else:
        scores = np.full(a.shape, np.nan)
        if candidates_idx.size:
            scores[candidates_idx] = prob_best(
                a[candidates_idx], b[candidates_idx], rng, settings.prob_best_draws
            )

    arms = [
        ScoredArm(
            arm_id=ids[k],
            score=float(scores[k]),
            mean=float(means[k]),
            prob_beat_reference=float(beat_reference[k]),
            exposures=float(n[k]),
            eligible=bool(n[k] >= settings.min_exposures),
        )
        for k in candidates_idx
    ]
    eligible = sorted((arm for arm in arms if arm.eligible), key=_best_first_key)
    young = sorted((arm for arm in arms if not arm.eligible), key=_best_first_key)
    best = eligible[0] if eligible else None

    worst_first = list(reversed(eligible[1:]))
    threshold = settings.retire_below_prob_beat_reference
    if threshold is not None:
        worst_first = [arm for arm in worst_first if arm.prob_beat_reference < threshold]

    n_active = len(ids)
    requested = max(settings.drop_count, n_active - settings.max_arms)
    room = max(0, n_active - settings.min_arms)
    n_retire = min(requested, len(worst_first), room)

    notes: list[str] = []
    if n_retire < requested:
        if room < requested and room <= len(worst_first):
            notes.append(
                f"retired {n_retire} of {requested}: min_arms={settings.min_arms} leaves room "
                f"for {room}"
            )
        else:
            why = "the reference, the best arm and young arms are protected"
            if threshold is not None:
                why += f"; only arms with P(beat reference) < {threshold} may retire"
            notes.append(
                f"retired {n_retire} of {requested}: {len(worst_first)} candidate(s) ({why})"
            )

    retirements = tuple(
        Retirement(
            arm_id=arm.arm_id,
            score=arm.score,
            exposures=arm.exposures,
            prob_beat_reference=arm.prob_beat_reference,
            reason="lowest_score" if rank < settings.drop_count else "over_max_arms",
        )
        for rank, arm in enumerate(worst_first[:n_retire])
    )
    retired = {r.arm_id for r in retirements}
    return RetirementPlan(
        score=settings.score,
        ranking=tuple(eligible + young),
        best_arm_id=best.arm_id if best else None,
        retirements=retirements,
        survivor_ids=tuple(i for i in ids if i not in retired),
        ranked_survivor_ids=tuple(arm.arm_id for arm in eligible if arm.arm_id not in retired),
        requested=requested,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class AdditionSlot:
    """One arm to add: its origin and the ids of its parents (none for expert, random and
    model)."""

    origin: Origin
    parent_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class AdditionPlan:
    """How many arms of each origin to add, in order: experts, random, mutation, crossover,
    model."""

    slots: tuple[AdditionSlot, ...]
    free_slots: int
    notes: tuple[str, ...]

    def count(self, origin: Origin) -> int:
        return sum(1 for slot in self.slots if slot.origin == origin)


def apportion(total: int, weights: Sequence[float], rng: np.random.Generator) -> tuple[int, ...]:
    """Split ``total`` items among categories in proportion to ``weights``, unbiasedly.

    Systematic sampling: quota ``q_i = total * w_i / sum(w)``; category i gets
    ``floor(q_i)`` plus one more when one of the points ``u, u + 1, ...`` (``u ~ U[0, 1)``)
    falls in its slice of the cumulated fractional parts.  Each slice is shorter than one,
    so category i gets ``ceil(q_i)`` with probability exactly ``frac(q_i)``: the expected
    count is ``q_i`` and the spread is the smallest possible.  All-zero weights give zeros.
    """
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or w.ndim != 1 or np.any(~np.isfinite(w)) or np.any(w < 0):
        raise InvalidParameterError(
            "total must be >= 0 and weights finite and >= 0",
            parameter="total" if total < 0 else "weights",
        )
    if total == 0 or w.sum() == 0:
        return tuple(0 for _ in w)
    quotas = total * w / w.sum()
    counts = np.floor(quotas).astype(np.int64)
    remaining = total - int(counts.sum())
    if remaining > 0:
        fractions = quotas - counts
        upper = np.cumsum(fractions)
        lower = upper - fractions
        points = rng.uniform() + np.arange(remaining)
        for point in points:
            # floating error can leave the last point just past the total: give it to the
            # last category with a fractional part.
            hit = np.flatnonzero((lower <= point) & (point < upper))
            k = int(hit[0]) if hit.size else int(np.flatnonzero(fractions > 0)[-1])
            counts[k] += 1
    return tuple(int(c) for c in counts)


def plan_additions(
    n_active: int,
    n_experts_waiting: int,
    ranked_parent_ids: Sequence[int],
    settings: EvolutionSettings,
    rng: np.random.Generator,
    *,
    model_ready: bool = False,
) -> AdditionPlan:
    """Decide the new arms of a step: ``max(0, max_arms - n_active)`` slots.

    ``n_active`` counts the arms active after the retirements.  Experts take the first
    ``min(n_experts_waiting, free)`` slots; the rest are apportioned by the mix weights (see
    :func:`apportion`).  Origins that lack parents drop out of the mix before apportioning:
    mutation needs one parent, crossover two distinct ones.  Parents come from the first
    ``parent_pool_size`` of ``ranked_parent_ids`` (best first): the j-th mutation mutates
    pool[j mod size], the j-th crossover crosses the j-th pair of
    ``itertools.combinations(pool, 2)`` (cyclically), so the best arms breed most.  Model
    proposals need a fitted surrogate: without enough data (``model_ready`` False) the
    model drops out of the mix too, and its share goes to the other origins.
    """
    _check_int("n_active", n_active, 0)
    _check_int("n_experts_waiting", n_experts_waiting, 0)
    free = max(0, settings.max_arms - n_active)
    n_expert = min(n_experts_waiting, free)
    rest = free - n_expert

    pool = list(dict.fromkeys(int(i) for i in ranked_parent_ids))[: settings.parent_pool_size]
    pairs = list(itertools.combinations(pool, 2))
    weights = [
        settings.random_weight,
        settings.mutation_weight if pool else 0.0,
        settings.crossover_weight if pairs else 0.0,
        settings.model_weight if model_ready else 0.0,
    ]
    notes: list[str] = []
    if rest and not pool and settings.mutation_weight + settings.crossover_weight > 0:
        notes.append("no eligible survivor to breed from: no mutation or crossover this step")
    elif rest and len(pool) == 1 and settings.crossover_weight > 0:
        notes.append("a single eligible survivor: no crossover this step")
    if rest and not model_ready and settings.model_weight > 0:
        notes.append("too little data for the model: no model proposals this step")
    if rest and sum(weights) == 0:
        notes.append(f"{rest} free slot(s) left empty: no origin of the mix is available")
    n_random, n_mutation, n_crossover, n_model = apportion(rest, weights, rng)

    slots = [AdditionSlot("expert") for _ in range(n_expert)]
    slots += [AdditionSlot("random") for _ in range(n_random)]
    slots += [AdditionSlot("mutation", (pool[j % len(pool)],)) for j in range(n_mutation)]
    slots += [AdditionSlot("crossover", pairs[j % len(pairs)]) for j in range(n_crossover)]
    slots += [AdditionSlot("model") for _ in range(n_model)]
    return AdditionPlan(slots=tuple(slots), free_slots=free, notes=tuple(notes))


def inherited_prior(
    parent_alpha: float, parent_beta: float, cap: float, prior: Prior = Prior()
) -> tuple[float, float]:
    """A weakened copy of a parent's posterior for its child: mean kept, evidence capped.

    With ``m = a / (a + b)`` and ``s = a + b`` the child starts at
    ``(m * s', (1 - m) * s')`` where ``s' = max(min(s, cap), prior.alpha + prior.beta)``.
    The cap keeps the child's own data in charge after a few ticks.  The floor at the
    prior's pseudo-count means a child never starts *less* certain than a fresh arm (a cap
    below it would otherwise give extreme Beta shapes such as Beta(1.98, 0.02)).  Posteriors
    only grow from the prior, so in practice the floor binds only when
    ``cap < prior.alpha + prior.beta``.
    """
    for label, value in (("parent_alpha", parent_alpha), ("parent_beta", parent_beta)):
        _check_real(label, value, low=0.0, low_open=True)
    _check_real("cap", cap, low=0.0, low_open=True)
    strength = parent_alpha + parent_beta
    mean = parent_alpha / strength
    kept = max(min(strength, cap), prior.alpha + prior.beta)
    return mean * kept, (1.0 - mean) * kept
