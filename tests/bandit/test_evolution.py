"""Selection logic of the genetic step: exact retirements, additions and inheritance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.errors import InvalidParameterError
from bandit.evolution import (
    EvolutionSettings,
    RetirementPlan,
    apportion,
    inherited_prior,
    plan_additions,
    select_retirements,
)
from bandit.update import Prior


def retire(
    arms: Sequence[tuple[int, float, float, float, bool]], seed: int = 0, **overrides: Any
) -> RetirementPlan:
    """``arms`` as rows ``(id, alpha, beta, exposures, is_reference)``."""
    options: dict[str, Any] = {"min_exposures": 100, "drop_count": 1, "min_arms": 2}
    options.update(overrides)
    ids, alphas, betas, exposures, refs = zip(*arms, strict=True)
    return select_retirements(
        list(ids),
        alphas,
        betas,
        exposures,
        refs,
        EvolutionSettings(**options),
        np.random.default_rng(seed),
    )


# ---------------------------------------------------------------- settings validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_exposures", -1),
        ("min_exposures", float("nan")),
        ("drop_count", -1),
        ("drop_count", 1.5),
        ("drop_count", True),
        ("min_arms", 0),
        ("max_arms", 0),
        ("score", "median"),
        ("retire_below_prob_beat_reference", 0.0),
        ("retire_below_prob_beat_reference", 1.5),
        ("random_weight", -0.1),
        ("mutation_weight", float("inf")),
        ("crossover_weight", "1"),
        ("parent_pool_size", 0),
        ("mutation_scale", 0.0),
        ("mutation_scale", 2.0),
        ("crossover_blend", 1),
        ("inherit_posterior", "yes"),
        ("inherited_pseudo_count_cap", 0.0),
        ("prob_best_draws", 0),
        ("max_draw_attempts", 0),
    ],
)
def test_settings_reject_out_of_range_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidParameterError, match=f"^{field} ") as error:
        EvolutionSettings(**{field: value})
    assert error.value.parameter == field


def test_settings_max_arms_below_min_arms_is_rejected() -> None:
    with pytest.raises(
        InvalidParameterError, match=r"max_arms must be >= min_arms \(5\), got 4"
    ) as error:
        EvolutionSettings(min_arms=5, max_arms=4)
    assert error.value.parameter == "max_arms"


def test_settings_defaults_are_valid() -> None:
    defaults = EvolutionSettings()
    assert defaults.score == "mean"
    assert defaults.retire_below_prob_beat_reference is None


# ---------------------------------------------------------------- retirements


def test_the_worst_drop_count_eligible_arms_retire_worst_first() -> None:
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),  # reference
            (2, 6.0, 4.0, 500, False),  # mean 0.6
            (3, 2.0, 8.0, 500, False),  # mean 0.2
            (4, 4.0, 6.0, 500, False),  # mean 0.4
            (5, 5.0, 5.0, 500, False),  # mean 0.5
        ],
        drop_count=2,
    )
    assert plan.best_arm_id == 2
    assert plan.retired_ids == (3, 4)
    assert [r.score for r in plan.retirements] == [0.2, 0.4]
    assert [r.exposures for r in plan.retirements] == [500.0, 500.0]
    assert {r.reason for r in plan.retirements} == {"lowest_score"}
    assert plan.survivor_ids == (1, 2, 5)
    assert plan.ranked_survivor_ids == (2, 5)
    assert [arm.arm_id for arm in plan.ranking] == [2, 5, 4, 3]
    assert plan.notes == ()


def test_ties_retire_fewer_exposures_first_then_the_newer_arm() -> None:
    # all means 0.5: arm 4 has fewest exposures; 3 and 5 tie on exposures, 5 is newer
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),
            (2, 5.0, 5.0, 900, False),
            (3, 5.0, 5.0, 300, False),
            (4, 5.0, 5.0, 200, False),
            (5, 5.0, 5.0, 300, False),
            (6, 5.0, 5.0, 300, False),
        ],
        drop_count=3,
    )
    assert plan.retired_ids == (4, 6, 5)
    # best first is the exact reverse: more exposures, then the older arm
    assert [arm.arm_id for arm in plan.ranking] == [2, 3, 5, 6, 4]
    assert plan.best_arm_id == 2


def test_young_arms_are_never_retired_nor_ranked_as_eligible() -> None:
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),
            (2, 6.0, 4.0, 500, False),
            (3, 1.0, 30.0, 99, False),  # terrible but young (99 < 100)
            (4, 4.0, 6.0, 100, False),  # exactly at the threshold: eligible
        ],
        drop_count=2,
    )
    assert plan.retired_ids == (4,)
    young = [arm for arm in plan.ranking if not arm.eligible]
    assert [arm.arm_id for arm in young] == [3]
    assert plan.ranking[-1].arm_id == 3
    assert "retired 1 of 2: 1 candidate(s)" in plan.notes[0]


def test_the_reference_is_never_retired_even_when_it_scores_worst() -> None:
    plan = retire(
        [
            (1, 1.0, 50.0, 10_000, True),
            (2, 6.0, 4.0, 500, False),
            (3, 5.0, 5.0, 500, False),
        ],
        drop_count=5,
        min_arms=1,
    )
    assert plan.retired_ids == (3,)
    assert all(arm.arm_id != 1 for arm in plan.ranking)


def test_the_best_eligible_arm_is_never_retired() -> None:
    plan = retire(
        [(1, 1.0, 1.0, 0, True), (2, 6.0, 4.0, 500, False)],
        drop_count=3,
        min_arms=1,
    )
    assert plan.retirements == ()
    assert plan.best_arm_id == 2
    assert plan.requested == 3


def test_retirements_never_go_below_min_arms() -> None:
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),
            (2, 6.0, 4.0, 500, False),
            (3, 2.0, 8.0, 500, False),
            (4, 3.0, 7.0, 500, False),
        ],
        drop_count=3,
        min_arms=3,
    )
    assert plan.retired_ids == (3,)
    assert len(plan.survivor_ids) == 3
    assert plan.notes == ("retired 1 of 3: min_arms=3 leaves room for 1",)


def test_already_at_min_arms_nothing_retires() -> None:
    plan = retire(
        [(1, 1.0, 1.0, 0, True), (2, 6.0, 4.0, 500, False), (3, 1.0, 9.0, 500, False)],
        drop_count=1,
        min_arms=3,
    )
    assert plan.retirements == ()


def test_only_arms_unlikely_to_beat_the_reference_retire_with_the_threshold() -> None:
    # P(theta > 1/2) is exact: Beta(2, 1) -> 0.75, Beta(1, 1) -> 0.5, Beta(1, 2) -> 0.25,
    # Beta(1, 3) -> 0.125
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),
            (2, 2.0, 1.0, 500, False),
            (3, 1.0, 1.0, 500, False),
            (4, 1.0, 2.0, 500, False),
            (5, 1.0, 3.0, 500, False),
        ],
        drop_count=3,
        retire_below_prob_beat_reference=0.3,
    )
    assert plan.retired_ids == (5, 4)
    assert [r.prob_beat_reference for r in plan.retirements] == pytest.approx([0.125, 0.25])
    assert "P(beat reference) < 0.3" in plan.notes[0]


def test_without_the_threshold_the_same_arms_retire_by_score_alone() -> None:
    plan = retire(
        [
            (1, 1.0, 1.0, 0, True),
            (2, 2.0, 1.0, 500, False),
            (3, 1.0, 1.0, 500, False),
            (4, 1.0, 2.0, 500, False),
            (5, 1.0, 3.0, 500, False),
        ],
        drop_count=3,
    )
    assert plan.retired_ids == (5, 4, 3)


def test_above_max_arms_the_excess_retires_too() -> None:
    arms = [(1, 1.0, 1.0, 0, True)] + [(k, float(k), 10.0, 500, False) for k in range(2, 8)]
    plan = retire(arms, drop_count=1, max_arms=4)
    # 7 active, max 4: three must go, the first counted as the drop_count
    assert plan.requested == 3
    assert plan.retired_ids == (2, 3, 4)
    assert [r.reason for r in plan.retirements] == [
        "lowest_score",
        "over_max_arms",
        "over_max_arms",
    ]


def test_drop_count_zero_retires_nothing() -> None:
    plan = retire(
        [(1, 1.0, 1.0, 0, True), (2, 6.0, 4.0, 500, False), (3, 1.0, 9.0, 500, False)],
        drop_count=0,
    )
    assert plan.retirements == ()
    assert plan.notes == ()


def test_prob_best_ranks_a_wide_posterior_above_a_narrow_one_with_the_same_mean() -> None:
    # Beta(2, 2) and Beta(200, 200) share mean 1/2; against Beta(100, 100.5) the wide one
    # is much more often the largest draw.  Scores are P(best) among non-reference arms.
    arms = [
        (1, 1.0, 1.0, 0, True),
        (2, 200.0, 200.0, 500, False),
        (3, 2.0, 2.0, 500, False),
        (4, 100.0, 100.5, 500, False),
    ]
    by_mean = retire(arms, drop_count=1, score="mean")
    by_best = retire(arms, drop_count=1, score="prob_best", seed=7)
    assert by_mean.retired_ids == (4,)
    assert by_mean.best_arm_id == 2  # tie on the mean: same exposures, older arm wins
    assert by_best.best_arm_id == 3
    scores = {arm.arm_id: arm.score for arm in by_best.ranking}
    assert sum(scores.values()) == pytest.approx(1.0)
    assert scores[3] > 0.4
    assert by_best.retired_ids in {(2,), (4,)}


def test_prob_best_is_reproducible_with_the_same_seed() -> None:
    arms = [(1, 1.0, 1.0, 0, True)] + [(k, 5.0 + k, 10.0, 500, False) for k in range(2, 7)]
    first = retire(arms, seed=3, score="prob_best", prob_best_draws=500)
    second = retire(arms, seed=3, score="prob_best", prob_best_draws=500)
    assert first == second


def test_no_reference_and_no_eligible_arm_is_a_defined_result() -> None:
    plan = retire([(1, 1.0, 1.0, 0, False), (2, 1.0, 1.0, 0, False)], score="prob_best")
    assert plan.best_arm_id is None
    assert plan.retirements == ()
    assert plan.ranked_survivor_ids == ()


@pytest.mark.parametrize(
    ("ids", "alphas", "betas", "exposures", "refs", "message"),
    [
        ([1, 2], [1.0], [1.0, 1.0], [0, 0], [False, False], "one entry per arm"),
        ([1, 1], [1.0, 1.0], [1.0, 1.0], [0, 0], [False, False], "unique"),
        ([1, 2], [0.0, 1.0], [1.0, 1.0], [0, 0], [False, False], "alphas and betas"),
        ([1, 2], [1.0, 1.0], [1.0, 1.0], [-1, 0], [False, False], "exposures"),
    ],
)
def test_select_retirements_rejects_bad_arrays(
    ids: list[int],
    alphas: list[float],
    betas: list[float],
    exposures: list[float],
    refs: list[bool],
    message: str,
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        select_retirements(
            ids, alphas, betas, exposures, refs, EvolutionSettings(), np.random.default_rng(0)
        )


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(0.5, 50),
            st.floats(0.5, 50),
            st.sampled_from([0, 50, 100, 500]),
        ),
        min_size=1,
        max_size=10,
    ),
    reference=st.integers(0, 9),
    drop_count=st.integers(0, 5),
    min_arms=st.integers(1, 6),
    extra=st.integers(0, 4),
    score=st.sampled_from(["mean", "prob_best"]),
    threshold=st.none() | st.floats(0.05, 1.0),
)
def test_retirement_rules_hold_for_any_arm_set(
    rows: list[tuple[float, float, int]],
    reference: int,
    drop_count: int,
    min_arms: int,
    extra: int,
    score: str,
    threshold: float | None,
) -> None:
    ids = list(range(10, 10 + len(rows)))
    refs = [k == reference for k in range(len(rows))]
    config = EvolutionSettings(
        min_exposures=100,
        drop_count=drop_count,
        min_arms=min_arms,
        max_arms=min_arms + extra,
        score=score,  # type: ignore[arg-type]
        retire_below_prob_beat_reference=threshold,
        prob_best_draws=200,
    )
    alphas, betas, exposures = zip(*rows, strict=True)
    plan = select_retirements(ids, alphas, betas, exposures, refs, config, np.random.default_rng(0))
    by_id = dict(zip(ids, zip(rows, refs, strict=True), strict=True))
    for retirement in plan.retirements:
        (_, _, n), is_reference = by_id[retirement.arm_id]
        assert not is_reference
        assert n >= 100
        assert retirement.arm_id != plan.best_arm_id
        if threshold is not None:
            assert retirement.prob_beat_reference < threshold
    n_after = len(plan.survivor_ids)
    assert n_after >= min(len(ids), min_arms)
    assert len(plan.retirements) <= max(drop_count, len(ids) - config.max_arms)
    assert set(plan.survivor_ids) | set(plan.retired_ids) == set(ids)
    # a retired arm never outranks a surviving arm that was a retirement candidate too
    kept_candidates = [
        a
        for a in plan.ranking
        if a.eligible
        and a.arm_id in plan.ranked_survivor_ids
        and a.arm_id != plan.best_arm_id
        and (threshold is None or a.prob_beat_reference < threshold)
    ]
    for retirement in plan.retirements:
        for kept in kept_candidates:
            assert (retirement.score, retirement.exposures, -retirement.arm_id) < (
                kept.score,
                kept.exposures,
                -kept.arm_id,
            )


# ---------------------------------------------------------------- additions


def test_apportion_gives_exact_quotas_when_they_are_integers() -> None:
    rng = np.random.default_rng(0)
    assert apportion(4, [1.0, 1.0, 0.0], rng) == (2, 2, 0)
    assert apportion(6, [1.0, 2.0, 3.0], rng) == (1, 2, 3)
    assert apportion(0, [1.0, 1.0, 1.0], rng) == (0, 0, 0)
    assert apportion(3, [0.0, 0.0, 0.0], rng) == (0, 0, 0)


def test_apportion_matches_the_quotas_on_average() -> None:
    # one slot, weights 1:1:2 -> expected shares 1/4, 1/4, 1/2
    rng = np.random.default_rng(11)
    totals = np.sum([apportion(1, [1.0, 1.0, 2.0], rng) for _ in range(4000)], axis=0)
    assert totals.sum() == 4000
    # binomial sd is at most ~32 out of 4000 draws: 5 sd tolerance
    assert abs(totals[0] - 1000) < 160
    assert abs(totals[1] - 1000) < 160
    assert abs(totals[2] - 2000) < 160


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 30),
    weights=st.lists(st.floats(0, 10), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_apportion_counts_are_floor_or_ceiling_of_the_quotas(
    total: int, weights: list[float], seed: int
) -> None:
    counts = apportion(total, weights, np.random.default_rng(seed))
    if sum(weights) == 0:
        assert counts == tuple(0 for _ in weights)
        return
    assert sum(counts) == total
    quotas = [total * w / sum(weights) for w in weights]
    for count, quota in zip(counts, quotas, strict=True):
        assert np.floor(quota) - 1e-9 <= count <= np.ceil(quota) + 1e-9
        if quota == 0:
            assert count == 0


def test_additions_fill_up_to_max_arms_experts_first() -> None:
    config = EvolutionSettings(max_arms=8, random_weight=1, mutation_weight=2, crossover_weight=1)
    plan = plan_additions(4, 1, [7, 3, 9, 5], config, np.random.default_rng(0))
    assert plan.free_slots == 4
    origins = [slot.origin for slot in plan.slots]
    assert len(origins) == 4
    # experts first, then the mix in a fixed order; three mix slots at 1:2:1 are quotas
    # 0.75, 1.5, 0.75, so each origin gets the floor or the ceiling of its quota
    assert origins == sorted(origins, key=["expert", "random", "mutation", "crossover"].index)
    assert plan.count("expert") == 1
    assert plan.count("random") in (0, 1)
    assert plan.count("mutation") in (1, 2)
    assert plan.count("crossover") in (0, 1)


def test_experts_take_every_free_slot_before_the_mix() -> None:
    plan = plan_additions(5, 9, [1, 2], EvolutionSettings(max_arms=8), np.random.default_rng(0))
    assert [slot.origin for slot in plan.slots] == ["expert"] * 3


def test_parents_are_the_best_survivors_round_robin() -> None:
    config = EvolutionSettings(
        max_arms=12,
        random_weight=0,
        mutation_weight=1,
        crossover_weight=1,
        parent_pool_size=3,
    )
    plan = plan_additions(2, 0, [7, 3, 9, 5], config, np.random.default_rng(0))
    mutations = [slot.parent_ids for slot in plan.slots if slot.origin == "mutation"]
    crossovers = [slot.parent_ids for slot in plan.slots if slot.origin == "crossover"]
    assert mutations == [(7,), (3,), (9,), (7,), (3,)]
    assert crossovers == [(7, 3), (7, 9), (3, 9), (7, 3), (7, 9)]
    assert all(5 not in parents for parents in mutations + crossovers)


def test_without_parents_every_mix_slot_is_random() -> None:
    plan = plan_additions(2, 0, [], EvolutionSettings(max_arms=6), np.random.default_rng(0))
    assert [slot.origin for slot in plan.slots] == ["random"] * 4
    assert plan.notes == ("no eligible survivor to breed from: no mutation or crossover this step",)


def test_a_single_parent_allows_mutation_but_not_crossover() -> None:
    config = EvolutionSettings(max_arms=6, random_weight=0, crossover_weight=1)
    plan = plan_additions(2, 0, [4], config, np.random.default_rng(0))
    assert [slot for slot in plan.slots] == [plan.slots[0]] * 4
    assert plan.slots[0].origin == "mutation"
    assert plan.slots[0].parent_ids == (4,)
    assert plan.notes == ("a single eligible survivor: no crossover this step",)


def test_slots_stay_empty_when_no_origin_is_available() -> None:
    config = EvolutionSettings(max_arms=6, random_weight=0)
    plan = plan_additions(3, 0, [], config, np.random.default_rng(0))
    assert plan.slots == ()
    assert plan.free_slots == 3
    assert "3 free slot(s) left empty" in plan.notes[-1]


def test_a_full_arm_set_gets_no_additions() -> None:
    plan = plan_additions(12, 2, [1, 2], EvolutionSettings(max_arms=10), np.random.default_rng(0))
    assert plan.slots == ()
    assert plan.free_slots == 0


# ---------------------------------------------------------------- inheritance


def test_inherited_prior_keeps_the_mean_and_caps_the_pseudo_count() -> None:
    assert inherited_prior(30.0, 10.0, 10.0) == pytest.approx((7.5, 2.5))


def test_inherited_prior_of_a_weak_parent_is_the_parent() -> None:
    assert inherited_prior(3.0, 1.0, 10.0) == pytest.approx((3.0, 1.0))


def test_inherited_prior_is_never_weaker_than_the_prior() -> None:
    assert inherited_prior(30.0, 10.0, 1.0, Prior(1.0, 1.0)) == pytest.approx((1.5, 0.5))
    assert inherited_prior(30.0, 10.0, 1.0, Prior(2.0, 2.0)) == pytest.approx((3.0, 1.0))


@pytest.mark.parametrize(
    ("alpha", "beta", "cap", "field"),
    [(0.0, 1.0, 5.0, "parent_alpha"), (1.0, -1.0, 5.0, "parent_beta"), (1.0, 1.0, 0.0, "cap")],
)
def test_inherited_prior_rejects_bad_input(
    alpha: float, beta: float, cap: float, field: str
) -> None:
    with pytest.raises(InvalidParameterError, match=f"^{field} ") as error:
        inherited_prior(alpha, beta, cap)
    assert error.value.parameter == field
