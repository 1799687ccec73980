"""The surrogate model's proposals (arms.surrogate) and their place in the genetic step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arms.evolution import ActiveArm, RetiredArm, evolve_step
from arms.space import Configuration, ParameterSpace
from arms.surrogate import (
    Observation,
    data_version,
    expected_improvement,
    fit,
    from_unit,
    min_observations,
    propose,
    ready,
    to_unit,
)
from bandit.evolution import EvolutionSettings, plan_additions
from bandit.update import Prior

SPACE = ParameterSpace.from_dicts(
    [
        {"name": "a", "low": 0, "high": 2},
        {"name": "b", "low": 0, "high": 1},
        {"name": "n", "type": "int", "low": 1, "high": 9},
        {"name": "lr", "low": 1e-4, "high": 1e-1, "distribution": "log_uniform"},
    ]
)
OPTIMUM = np.array([0.75, 0.25, 0.5, 0.5])  # in the unit cube


def truth(points: np.ndarray) -> np.ndarray:
    """theta of a configuration: 0.56 at the optimum, 0.5 (the reference's) far from it."""
    theta: np.ndarray = 0.5 + 0.06 * np.exp(-6.0 * ((points - OPTIMUM) ** 2).sum(axis=1))
    return theta


def observed(n: int, seed: int, strength: float = 20_000.0) -> list[Observation]:
    """``n`` random arms measured with ``strength`` pseudo-counts each, and the reference."""
    rng = np.random.default_rng(seed)
    configs = [SPACE.random(rng) for _ in range(n)]
    theta = truth(to_unit(SPACE, configs))
    arms = [
        Observation(c, t * strength, (1 - t) * strength, strength)
        for c, t in zip(configs, theta, strict=True)
    ]
    reference = SPACE.validate({"a": 1.0, "b": 0.5, "n": 5, "lr": 0.01})
    return [*arms, Observation(reference, 1.0, 1.0, 0.0, is_reference=True)]


def test_unit_cube_scaling_round_trips_with_log_and_integer_parameters() -> None:
    config = SPACE.validate({"a": 0.5, "b": 1.0, "n": 3, "lr": 0.001})
    unit = to_unit(SPACE, [config])
    expected_lr = (math.log(0.001) - math.log(1e-4)) / (math.log(0.1) - math.log(1e-4))
    assert unit[0] == pytest.approx([0.25, 1.0, 0.25, expected_lr])
    back = from_unit(SPACE, unit)[0]
    assert back == pytest.approx([0.5, 1.0, 3.0, 0.001])
    # an integer parameter is rounded, every value clipped into the bounds
    assert from_unit(SPACE, np.array([[-0.5, 1.5, 0.32, 0.0]]))[0] == pytest.approx(
        [0.0, 1.0, 4.0, 1e-4]
    )


def test_expected_improvement_matches_the_closed_form() -> None:
    mean = np.array([0.52, 0.50, 0.55, 0.53])
    sd = np.array([0.01, 0.02, 0.0, 0.0])
    best, xi = 0.51, 0.001
    got = expected_improvement(mean, sd, best, xi)
    for k in range(2):
        z = (mean[k] - best - xi) / sd[k]
        cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
        pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        assert got[k] == pytest.approx((mean[k] - best - xi) * cdf + sd[k] * pdf, rel=1e-12)
    assert got[2] == pytest.approx(0.55 - 0.511) and got[3] == pytest.approx(0.53 - 0.511)


def test_a_well_measured_arm_counts_more_than_a_young_one() -> None:
    """Two arms at the same configuration: the fit follows the precise one, as the
    precision-weighted average of the two posteriors does."""
    here = SPACE.validate({"a": 1.5, "b": 0.2, "n": 7, "lr": 0.05})
    data = [
        *observed(12, seed=1),
        Observation(here, 0.6 * 50000, 0.4 * 50000, 50000),
        Observation(here, 0.4 * 20, 0.6 * 20, 20),
    ]
    precise, young = data[-2], data[-1]
    weighted = (precise.mean / precise.variance + young.mean / young.variance) / (
        1 / precise.variance + 1 / young.variance
    )
    mean, _ = fit(SPACE, data, np.random.default_rng(0)).predict(to_unit(SPACE, [here]))
    assert abs(mean[0] - weighted) < 0.005
    assert abs(mean[0] - 0.5 * (precise.mean + young.mean)) > 0.05


def test_too_little_data_is_not_ready() -> None:
    assert min_observations(SPACE) == 5
    data = observed(5, seed=2)
    assert ready(SPACE, data)
    # the reference and arms without exposures are not data
    unserved = [Observation(o.config, 1, 1, 0) for o in data[:1]]
    assert not ready(SPACE, data[1:4] + unserved + data[-1:])


def test_proposals_are_valid_distinct_new_and_deterministic() -> None:
    data = observed(30, seed=3)
    taken = {o.config.signature for o in data}
    first = propose(SPACE, data, 4, taken, np.random.default_rng(9))
    again = propose(SPACE, data, 4, taken, np.random.default_rng(9))
    assert first == again
    assert first.data_version == data_version(data) and first.n_observations == 31
    configs = [p.config for p in first.proposals]
    assert len(configs) == 4 and len({c.signature for c in configs}) == 4
    assert not taken & {c.signature for c in configs}
    for config in configs:
        assert SPACE.validate(config.as_dict()) == config
        assert isinstance(config["n"], int)
        assert SPACE.quantize(config.as_dict()) == config  # at the space's precision
    # the batch is spread out, not one point four times over
    unit = to_unit(SPACE, configs)
    gaps = [np.linalg.norm(unit[i] - unit[j]) for i in range(4) for j in range(i)]
    assert min(gaps) > 0.01


def test_a_taken_configuration_is_never_proposed() -> None:
    data = observed(30, seed=3)
    best = propose(SPACE, data, 1, set(), np.random.default_rng(9)).proposals[0].config
    again = propose(SPACE, data, 1, {best.signature}, np.random.default_rng(9))
    assert again.proposals[0].config != best


def test_proposals_beat_the_arms_it_learnt_from() -> None:
    """On a smooth truth, over seeds: the best of a batch of three is better than the best
    measured arm in most seeds and on average, and the predictions are calibrated."""
    gains, errors = [], []
    for seed in range(4):
        data = observed(25, seed=10 + seed)
        served = truth(to_unit(SPACE, [o.config for o in data if not o.is_reference]))
        batch = propose(SPACE, data, 3, set(), np.random.default_rng(seed))
        true = truth(to_unit(SPACE, [p.config for p in batch.proposals]))
        gains.append(true.max() - served.max())
        errors += [
            abs(p.prediction.mean - t) / p.prediction.sd
            for p, t in zip(batch.proposals, true, strict=True)
        ]
    assert np.mean(gains) > 0 and sum(g > 0 for g in gains) >= 3
    # the picks are where the surrogate is most optimistic (the winner's curse): their
    # errors run above one sd, but stay within a few
    assert np.median(errors) < 3


def test_the_model_takes_its_share_of_the_mix_only_when_ready() -> None:
    settings = EvolutionSettings(
        max_arms=6, random_weight=1, mutation_weight=0, crossover_weight=0, model_weight=3
    )
    plan = plan_additions(2, 0, [1, 2], settings, np.random.default_rng(0), model_ready=True)
    assert plan.count("model") == 3 and plan.count("random") == 1
    plan = plan_additions(2, 0, [1, 2], settings, np.random.default_rng(0), model_ready=False)
    assert plan.count("model") == 0 and plan.count("random") == 4
    assert "too little data for the model: no model proposals this step" in plan.notes


def test_the_step_learns_from_retired_arms_and_records_the_model() -> None:
    data = observed(12, seed=4)
    active = [
        ActiveArm(k, o.config, o.alpha, o.beta, o.exposures, o.is_reference)
        for k, o in enumerate(data[6:])
    ]
    retired = [
        RetiredArm(100 + k, o.config, o.alpha, o.beta, o.exposures) for k, o in enumerate(data[:6])
    ]
    settings = EvolutionSettings(
        min_exposures=0,
        max_arms=len(active) + 1,
        random_weight=0,
        mutation_weight=0,
        crossover_weight=0,
        model_weight=1,
    )
    plan = evolve_step(
        SPACE,
        active,
        [],
        settings,
        Prior(),
        np.random.default_rng(1),
        generation=1,
        retired=retired,
    )
    assert plan.model is not None and plan.model.n_observations == 13
    added = [a for a in plan.additions if a.origin == "model"]
    assert len(added) == 2 and all(a.prediction is not None for a in added)
    served = {arm.config.signature for arm in active} | {arm.config.signature for arm in retired}
    assert not served & {a.config.signature for a in added}
    # without the retired arms: fewer observations, another data version
    alone = evolve_step(
        SPACE, active, [], settings, Prior(), np.random.default_rng(1), generation=1
    )
    assert alone.model is not None and alone.model.n_observations == 7
    assert alone.model.data_version != plan.model.data_version


def test_configuration_type_is_kept() -> None:
    assert isinstance(observed(1, seed=0)[0].config, Configuration)


def test_a_model_that_cannot_be_fitted_leaves_its_slots_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import arms.evolution

    def fail(*args: object, **kwargs: object) -> None:
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(arms.evolution, "propose", fail)
    data = observed(8, seed=5)
    active = [
        ActiveArm(k, o.config, o.alpha, o.beta, o.exposures, o.is_reference)
        for k, o in enumerate(data)
    ]
    settings = EvolutionSettings(
        min_exposures=0,
        max_arms=len(active) + 1,
        random_weight=0,
        mutation_weight=0,
        crossover_weight=0,
        model_weight=1,
    )
    plan = evolve_step(SPACE, active, [], settings, Prior(), np.random.default_rng(1), generation=1)
    assert plan.additions == () and plan.model is None
    assert [slot.origin for slot in plan.skipped] == ["model", "model"]
    assert "the model could not be fitted: not positive definite" in plan.notes
