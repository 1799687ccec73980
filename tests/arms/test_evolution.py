"""The whole genetic step: exact plans, distinct offspring, arm count kept in range."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arms.evolution import ActiveArm, EvolutionPlan, breed, evolve_step
from arms.space import Configuration, Parameter, ParameterSpace
from bandit.errors import InvalidParameterError
from bandit.evolution import AdditionPlan, AdditionSlot, EvolutionSettings, inherited_prior
from bandit.update import Prior

WEIGHTS = ParameterSpace.from_dicts(
    [
        {"name": "text_match", "type": "float", "low": 0.0, "high": 10.0},
        {"name": "region", "type": "int", "low": 0, "high": 100},
        {"name": "price_diff", "type": "float", "low": 0.01, "high": 100.0},
    ]
)


def config(text_match: float, region: int, price_diff: float) -> Configuration:
    return WEIGHTS.validate({"text_match": text_match, "region": region, "price_diff": price_diff})


def arm(
    arm_id: int, alpha: float, beta: float, exposures: float = 500, reference: bool = False
) -> ActiveArm:
    return ActiveArm(arm_id, config(float(arm_id), arm_id, 1.0), alpha, beta, exposures, reference)


ARMS = [
    arm(1, 1.0, 1.0, 0, reference=True),
    arm(2, 60.0, 40.0),  # mean 0.60, the best
    arm(3, 20.0, 80.0),  # 0.20
    arm(4, 40.0, 60.0),  # 0.40
    arm(5, 50.0, 50.0),  # 0.50
    arm(6, 55.0, 45.0),  # 0.55
]


def step(
    arms: list[ActiveArm],
    queue: list[Mapping[str, Any]] | None = None,
    seed: int = 0,
    space: ParameterSpace = WEIGHTS,
    prior: Prior = Prior(),
    **overrides: Any,
) -> EvolutionPlan:
    options: dict[str, Any] = {"min_exposures": 100, "min_arms": 2}
    options.update(overrides)
    return evolve_step(
        space,
        arms,
        queue or [],
        EvolutionSettings(**options),
        prior,
        np.random.default_rng(seed),
        generation=3,
    )


def test_a_step_retires_the_worst_adds_experts_then_offspring_of_the_best() -> None:
    queue: list[Mapping[str, Any]] = [
        {"text_match": 9.5, "region": 7, "price_diff": 2.0},
        dict(ARMS[4].config),  # equal to arm 5
        {"text_match": 11.0, "region": 7, "price_diff": 2.0},  # out of bounds
        {"text_match": 0.5, "region": 70, "price_diff": 20.0},
    ]
    plan = step(
        ARMS,
        queue,
        drop_count=2,
        max_arms=7,
        random_weight=0,
        crossover_weight=0,
        inherit_posterior=True,
        inherited_pseudo_count_cap=10.0,
    )
    assert plan.generation == 3
    assert plan.best_arm_id == 2
    assert plan.retired_ids == (3, 4)
    assert [(r.score, r.exposures, r.reason) for r in plan.retirements] == [
        (0.2, 500.0, "lowest_score"),
        (0.4, 500.0, "lowest_score"),
    ]
    assert [(a.origin, a.parent_ids, a.expert_queue_index) for a in plan.additions] == [
        ("expert", (), 0),
        ("expert", (), 3),
        ("mutation", (2,), None),
    ]
    experts = plan.additions[:2]
    assert [e.config for e in experts] == [WEIGHTS.validate(queue[0]), WEIGHTS.validate(queue[3])]
    assert [(e.alpha, e.beta) for e in experts] == [(1.0, 1.0), (1.0, 1.0)]
    # the mutant of Beta(60, 40) keeps its mean 0.6 with 10 pseudo-observations
    assert (plan.additions[2].alpha, plan.additions[2].beta) == pytest.approx((6.0, 4.0))
    assert [(o.queue_index, o.status) for o in plan.expert_outcomes] == [
        (0, "added"),
        (1, "duplicate"),
        (2, "invalid"),
        (3, "added"),
    ]
    assert "text_match" in plan.expert_outcomes[2].detail
    assert plan.consumed_expert_indices == (0, 1, 2, 3)
    assert (plan.n_active_before, plan.n_active_after) == (6, 7)
    assert plan.skipped == ()


def test_experts_beyond_the_free_slots_stay_in_the_queue() -> None:
    queue: list[Mapping[str, Any]] = [
        {"text_match": 9.0, "region": k, "price_diff": 5.0} for k in range(3)
    ]
    plan = step(ARMS, queue, drop_count=1, max_arms=6)
    assert plan.retired_ids == (3,)
    assert [(a.origin, a.expert_queue_index) for a in plan.additions] == [("expert", 0)]
    assert plan.consumed_expert_indices == (0,)


def test_an_expert_equal_to_an_arm_retired_in_the_same_step_is_a_duplicate() -> None:
    plan = step(ARMS, [dict(ARMS[2].config)], drop_count=1, max_arms=6)
    assert plan.retired_ids == (3,)
    assert [(o.queue_index, o.status) for o in plan.expert_outcomes] == [(0, "duplicate")]
    assert [a.origin for a in plan.additions] != ["expert"]


def test_offspring_start_from_the_prior_unless_inheritance_is_on() -> None:
    plan = step(ARMS, drop_count=1, max_arms=6, random_weight=0, crossover_weight=0, seed=1)
    assert [(a.origin, a.alpha, a.beta) for a in plan.additions] == [("mutation", 1.0, 1.0)]
    plan = step(
        ARMS,
        drop_count=1,
        max_arms=6,
        random_weight=0,
        crossover_weight=0,
        seed=1,
        prior=Prior(2.0, 3.0),
    )
    assert [(a.alpha, a.beta) for a in plan.additions] == [(2.0, 3.0)]


def test_a_crossover_child_inherits_the_average_of_its_parents_weakened_posteriors() -> None:
    arms = [
        arm(1, 1.0, 1.0, 0, reference=True),
        arm(2, 30.0, 10.0),
        arm(3, 4.0, 6.0),
        arm(4, 1.0, 30.0),
    ]
    plan = step(
        arms,
        drop_count=1,
        max_arms=4,
        random_weight=0,
        mutation_weight=0,
        inherit_posterior=True,
        inherited_pseudo_count_cap=10.0,
    )
    assert plan.retired_ids == (4,)
    (child,) = plan.additions
    assert (child.origin, child.parent_ids) == ("crossover", (2, 3))
    first = inherited_prior(30.0, 10.0, 10.0)
    second = inherited_prior(4.0, 6.0, 10.0)
    assert (child.alpha, child.beta) == pytest.approx((5.75, 4.25))
    assert child.alpha == pytest.approx((first[0] + second[0]) / 2)


def test_slots_that_only_produce_duplicates_are_given_up_and_reported() -> None:
    # three points in the whole space, two already taken: one new arm at most
    space = ParameterSpace((Parameter("k", "int", 0, 2),))  # type: ignore[arg-type]
    arms = [
        ActiveArm(1, space.validate({"k": 0}), 1.0, 1.0, 0, True),
        ActiveArm(2, space.validate({"k": 1}), 5.0, 5.0, 500),
    ]
    plan = step(arms, space=space, drop_count=0, max_arms=5, max_draw_attempts=7)
    assert [a.config["k"] for a in plan.additions] == [2]
    assert len(plan.skipped) == 2
    assert all(s.attempts == 7 and "duplicated" in s.reason for s in plan.skipped)
    assert plan.n_active_after == 3


def test_the_same_seed_gives_the_same_plan() -> None:
    options: dict[str, Any] = {"drop_count": 2, "max_arms": 8, "score": "prob_best"}
    first = step(ARMS, seed=5, **options)
    second = step(ARMS, seed=5, **options)
    assert first == second
    assert first.n_active_after == 8


def test_a_first_step_with_only_young_arms_adds_random_arms() -> None:
    arms = [arm(1, 1.0, 1.0, 0, reference=True), arm(2, 1.0, 1.0, 10), arm(3, 1.0, 1.0, 10)]
    plan = step(arms, drop_count=1, max_arms=5)
    assert plan.retirements == ()
    assert [a.origin for a in plan.additions] == ["random", "random"]
    assert any("no eligible survivor" in note for note in plan.notes)


def test_breed_rejects_a_parent_that_is_not_active() -> None:
    additions = AdditionPlan((AdditionSlot("mutation", (99,)),), 1, ())
    with pytest.raises(InvalidParameterError, match="parent arm 99"):
        breed(
            WEIGHTS,
            ARMS,
            [],
            additions,
            EvolutionSettings(),
            Prior(),
            np.random.default_rng(0),
        )


def test_evolve_step_rejects_a_negative_generation() -> None:
    with pytest.raises(InvalidParameterError, match="generation"):
        evolve_step(
            WEIGHTS, ARMS, [], EvolutionSettings(), Prior(), np.random.default_rng(0), generation=-1
        )


# ---------------------------------------------------------------- properties


@st.composite
def small_spaces(draw: st.DrawFn) -> ParameterSpace:
    """Spaces with few integer points now and then, so that duplicates really happen."""
    count = draw(st.integers(1, 3))
    parameters = []
    for k in range(count):
        if draw(st.booleans()):
            low = draw(st.integers(-3, 3))
            parameters.append(Parameter(f"p{k}", "int", low, low + draw(st.integers(0, 3))))  # type: ignore[arg-type]
        else:
            start = draw(st.floats(-5, 5))
            parameters.append(Parameter(f"p{k}", "float", start, start + draw(st.floats(0, 10))))  # type: ignore[arg-type]
    return ParameterSpace(tuple(parameters))


@settings(max_examples=150, deadline=None)
@given(
    space=small_spaces(),
    seed=st.integers(0, 2**32 - 1),
    n_arms=st.integers(1, 9),
    with_reference=st.booleans(),
    min_arms=st.integers(1, 4),
    extra=st.integers(0, 5),
    drop_count=st.integers(0, 3),
    weights=st.tuples(*(st.sampled_from([0.0, 1.0, 2.5]) for _ in range(3))),
    n_experts=st.integers(0, 4),
    inherit=st.booleans(),
    score=st.sampled_from(["mean", "prob_best"]),
)
def test_a_step_keeps_every_invariant(
    space: ParameterSpace,
    seed: int,
    n_arms: int,
    with_reference: bool,
    min_arms: int,
    extra: int,
    drop_count: int,
    weights: tuple[float, float, float],
    n_experts: int,
    inherit: bool,
    score: str,
) -> None:
    rng = np.random.default_rng(seed)
    configs = list({c.signature: c for c in (space.random(rng) for _ in range(n_arms))}.values())
    arms = [
        ActiveArm(
            arm_id=10 + k,
            config=c,
            alpha=float(rng.uniform(0.5, 60)),
            beta=float(rng.uniform(0.5, 60)),
            exposures=float(rng.choice([0, 50, 100, 1000])),
            is_reference=with_reference and k == 0,
        )
        for k, c in enumerate(configs)
    ]
    queue: list[Mapping[str, Any]] = [dict(space.random(rng)) for _ in range(n_experts)]
    evolution = EvolutionSettings(
        min_exposures=100,
        drop_count=drop_count,
        min_arms=min_arms,
        max_arms=min_arms + extra,
        score=score,  # type: ignore[arg-type]
        random_weight=weights[0],
        mutation_weight=weights[1],
        crossover_weight=weights[2],
        inherit_posterior=inherit,
        prob_best_draws=100,
        max_draw_attempts=5,
    )
    plan = evolve_step(space, arms, queue, evolution, Prior(), rng, generation=1)

    by_id = {a.arm_id: a for a in arms}
    survivors = set(by_id) - set(plan.retired_ids)
    n_before, n_after = len(arms), plan.n_active_after
    assert n_after == len(survivors) + len(plan.additions)

    # offspring are valid, integral where they must be, and never a duplicate
    taken = {a.config.signature for a in arms}
    for new in plan.additions:
        assert space.validate(new.config.as_dict()) == new.config
        for p in space.parameters:
            assert p.low <= new.config[p.name] <= p.high
            assert isinstance(new.config[p.name], int) == (p.type == "int")
        assert new.config.signature not in taken
        taken.add(new.config.signature)
        assert new.alpha > 0 and new.beta > 0
        for parent_id in new.parent_ids:
            parent = by_id[parent_id]
            assert parent_id in survivors
            assert not parent.is_reference and parent.exposures >= 100

    # the arm count never leaves [min_arms, max_arms], and moves towards it from outside
    assert n_after <= max(n_before, evolution.max_arms)
    assert n_after >= min(n_before, evolution.min_arms)
    if evolution.min_arms <= n_before <= evolution.max_arms:
        assert evolution.min_arms <= n_after <= evolution.max_arms

    # the step fills the arm set unless a slot had to be given up or nothing could be bred
    if len(survivors) <= evolution.max_arms:
        assert n_after + len(plan.skipped) == evolution.max_arms or any(
            "left empty" in note for note in plan.notes
        )

    # protected arms stay
    for retired in plan.retired_ids:
        assert not by_id[retired].is_reference
        assert by_id[retired].exposures >= 100
        assert retired != plan.best_arm_id

    # every expert addition is an "added" outcome and vice versa
    added = {o.queue_index for o in plan.expert_outcomes if o.status == "added"}
    assert added == {a.expert_queue_index for a in plan.additions if a.origin == "expert"}
