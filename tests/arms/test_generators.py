"""Configuration generators: random draws, mutation and crossover stay valid and vary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arms.generators import crossover, mutate, random_configuration
from arms.space import Configuration, Parameter, ParameterSpace
from bandit.errors import InvalidParameterError


@st.composite
def parameters(draw: st.DrawFn, name: str) -> Parameter:
    kind = draw(st.sampled_from(["float", "int", "log_float", "log_int", "fixed"]))
    if kind == "float":
        low = draw(st.floats(-100, 100))
        return Parameter(name, "float", low, low + draw(st.floats(1e-3, 100)))  # type: ignore[arg-type]
    if kind == "int":
        low = draw(st.integers(-20, 20))
        return Parameter(name, "int", low, low + draw(st.integers(1, 30)))  # type: ignore[arg-type]
    if kind == "log_float":
        low = draw(st.floats(1e-3, 10))
        return Parameter(name, "float", low, low * draw(st.floats(1.5, 1e3)), "log_uniform")  # type: ignore[arg-type]
    if kind == "log_int":
        low = draw(st.integers(1, 10))
        return Parameter(name, "int", low, low + draw(st.integers(1, 100)), "log_uniform")  # type: ignore[arg-type]
    value = draw(st.floats(-10, 10))
    return Parameter(name, "float", value, value)  # type: ignore[arg-type]


@st.composite
def spaces(draw: st.DrawFn) -> ParameterSpace:
    count = draw(st.integers(1, 5))
    return ParameterSpace(tuple(draw(parameters(f"p{k}")) for k in range(count)))


def can_change(space: ParameterSpace) -> bool:
    return any(
        math.ceil(p.low) < math.floor(p.high) if p.type == "int" else p.high > p.low
        for p in space.parameters
    )


def assert_valid(config: Configuration, space: ParameterSpace) -> None:
    """Inside the bounds, integral where it should be, and exactly what validation returns."""
    assert space.validate(config.as_dict()) == config
    for p in space.parameters:
        value = config[p.name]
        assert p.low <= value <= p.high
        assert isinstance(value, int) == (p.type == "int")


WEIGHTS = ParameterSpace.from_dicts(
    [
        {"name": "text_match", "type": "float", "low": 0.0, "high": 10.0},
        {"name": "region", "type": "int", "low": 0, "high": 100},
        {"name": "price_diff", "type": "float", "low": 0.01, "high": 100.0},
    ]
)


@st.composite
def stepped_parameters(draw: st.DrawFn, name: str) -> Parameter:
    """Parameters as in ``parameters``, half of them with a step (a round one or any)."""
    plain = draw(parameters(name))
    span = plain.high - plain.low
    if span == 0 or draw(st.booleans()):
        return plain
    if plain.type == "int":
        step: float = draw(st.integers(1, math.floor(plain.high) - math.ceil(plain.low)))
    else:
        round_steps = [s for s in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0) if s < span]
        any_step = st.floats(span / 1000, span * (1 - 1e-9))
        step = draw(st.sampled_from(round_steps) | any_step if round_steps else any_step)
    return Parameter(name, plain.type, plain.low, plain.high, plain.distribution, step)


@st.composite
def stepped_spaces(draw: st.DrawFn) -> ParameterSpace:
    count = draw(st.integers(1, 4))
    return ParameterSpace(tuple(draw(stepped_parameters(f"p{k}")) for k in range(count)))


def on_grid(value: float, unit: float) -> bool:
    """``value`` is a multiple of ``unit`` up to float rounding."""
    multiple = value / unit
    return abs(multiple - round(multiple)) <= 1e-9 * max(1.0, abs(multiple))


def assert_generated(config: Configuration, space: ParameterSpace) -> None:
    """Valid, and at the parameter's precision: a multiple of its step, or, without one, of
    a tenth of the resolution (5 significant digits of the range, or of a log-uniform value;
    a tenth because the span in floats may sit just below a power of ten)."""
    assert_valid(config, space)
    for p in space.parameters:
        value = config[p.name]
        if p.step is not None:
            assert on_grid(value, p.step), (p, value)
        elif p.type == "float" and p.high > p.low:
            unit = 10.0 ** (math.floor(math.log10(p.span)) - 5)
            if p.distribution == "log_uniform":
                unit = min(unit, 10.0 ** (math.floor(math.log10(value)) - 5))
            assert on_grid(value, unit), (p, value)


@settings(max_examples=200, deadline=None)
@given(space=stepped_spaces(), seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1.0))
def test_every_generated_value_is_in_bounds_and_at_the_parameter_precision(
    space: ParameterSpace, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    a, b = space.random(rng), space.random(rng)
    assert_generated(a, space)
    assert_generated(b, space)
    assert_generated(mutate(a, space, rng, scale), space)
    assert_generated(crossover(a, b, space, rng), space)
    assert_generated(crossover(a, b, space, rng, blend=True), space)


@settings(max_examples=100, deadline=None)
@given(space=stepped_spaces(), seed=st.integers(0, 2**32 - 1))
def test_a_mutant_differs_from_its_parent_even_on_a_coarse_grid(
    space: ParameterSpace, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    parent = space.random(rng)
    child = mutate(parent, space, rng, 1e-3)  # far below every step: rounds back unless forced
    changeable = any(p.quantize(p.low) != p.quantize(p.high) for p in space.parameters)
    assert (child != parent) == changeable


def test_off_grid_parents_give_children_on_the_grid() -> None:
    space = ParameterSpace.from_dicts([{"name": "w", "low": 0.0, "high": 1.0, "step": 0.25}])
    founder = space.validate({"w": 0.3})  # a configuration given by hand may sit off the grid
    rng = np.random.default_rng(0)
    assert {mutate(founder, space, rng, 0.01)["w"] for _ in range(20)} <= {0.25, 0.5}
    other = space.validate({"w": 0.9})
    children = {crossover(founder, other, space, rng, blend=True)["w"] for _ in range(50)}
    assert children <= {0.25, 0.5, 0.75, 1.0}


def test_uniform_draws_with_a_step_cover_the_grid_evenly() -> None:
    parameter = Parameter("w", low=0.0, high=1.0, step=0.25)
    rng = np.random.default_rng(8)
    draws = [parameter.sample(rng) for _ in range(5_000)]
    counts = {value: draws.count(value) for value in sorted(set(draws))}
    assert list(counts) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # the end points as likely as the others (rounding a continuous draw would halve them)
    assert all(abs(count - 1_000) < 4 * math.sqrt(1_000 * 0.8) for count in counts.values())


# ---------------------------------------------------------------- random


@settings(max_examples=100, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1))
def test_random_configurations_are_valid(space: ParameterSpace, seed: int) -> None:
    assert_valid(random_configuration(space, np.random.default_rng(seed)), space)


def test_random_configuration_is_the_space_draw() -> None:
    assert random_configuration(WEIGHTS, np.random.default_rng(5)) == WEIGHTS.random(
        np.random.default_rng(5)
    )


# ---------------------------------------------------------------- mutation


@settings(max_examples=200, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1.0))
def test_mutants_are_valid_and_differ_from_the_parent(
    space: ParameterSpace, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    parent = space.random(rng)
    child = mutate(parent, space, rng, scale)
    assert_valid(child, space)
    if can_change(space):
        assert child.signature != parent.signature
    else:
        assert child == parent


@settings(max_examples=100, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1), corner=st.sampled_from(["low", "high"]))
def test_mutants_of_a_corner_move_into_the_space(
    space: ParameterSpace, seed: int, corner: str
) -> None:
    parent = space.clip({p.name: getattr(p, corner) for p in space.parameters})
    child = mutate(parent, space, np.random.default_rng(seed), 1e-3)
    assert_valid(child, space)
    assert (child != parent) == can_change(space)


def test_a_tiny_integer_mutation_still_changes_something() -> None:
    # sd = 0.01 * span 1: the Gaussian step rounds to zero nearly always, the forced
    # one-unit move keeps the mutation from being a copy
    space = ParameterSpace.from_dicts([{"name": "k", "type": "int", "low": 0, "high": 1}])
    rng = np.random.default_rng(0)
    zero = space.validate({"k": 0})
    assert {mutate(zero, space, rng, 0.01)["k"] for _ in range(20)} == {1}


def test_mutation_step_has_sd_scale_times_span() -> None:
    rng = np.random.default_rng(42)
    parent = WEIGHTS.validate({"text_match": 5.0, "region": 50, "price_diff": 50.0})
    children = [mutate(parent, WEIGHTS, rng, 0.05) for _ in range(2000)]
    steps = np.array([c["text_match"] - 5.0 for c in children])
    # sd 0.05 * 10 = 0.5, far from the bounds (10 sd): no clipping.  The sample sd of 2000
    # normals is within 5% of the truth with overwhelming probability (its sd is ~1.6%).
    assert np.std(steps) == pytest.approx(0.5, rel=0.05)
    assert abs(np.mean(steps)) < 0.05
    region_steps = np.array([c["region"] - 50 for c in children])
    assert np.std(region_steps) == pytest.approx(5.0, rel=0.06)


def test_log_uniform_parameters_mutate_in_log_space() -> None:
    space = ParameterSpace.from_dicts(
        [{"name": "w", "low": 0.001, "high": 1000.0, "distribution": "log_uniform"}]
    )
    rng = np.random.default_rng(1)
    parent = space.validate({"w": 1.0})
    logs = np.log([mutate(parent, space, rng, 0.05)["w"] for _ in range(2000)])
    # sd in log space: 0.05 * log(1e6) ~= 0.69; symmetric around log(1) = 0
    assert np.std(logs) == pytest.approx(0.05 * math.log(1e6), rel=0.05)
    assert abs(np.mean(logs)) < 0.06


def test_a_log_uniform_mutation_past_a_huge_bound_is_clipped_not_an_overflow() -> None:
    # found by this suite: exp(log(value) + step) overflowed for bounds near 1e253
    space = ParameterSpace.from_dicts(
        [{"name": "w", "low": 1.0, "high": 2.0e253, "distribution": "log_uniform"}]
    )
    parent = space.validate({"w": 1.0e253})
    rng = np.random.default_rng(0)
    children = [mutate(parent, space, rng, 1.0)["w"] for _ in range(50)]
    assert all(1.0 <= w <= 2.0e253 for w in children)
    assert 2.0e253 in children  # half the moves overshoot: clipped onto the bound


def test_mutation_is_reproducible_from_the_seed() -> None:
    parent = WEIGHTS.validate({"text_match": 5.0, "region": 50, "price_diff": 50.0})
    first = mutate(parent, WEIGHTS, np.random.default_rng(9))
    assert first == mutate(parent, WEIGHTS, np.random.default_rng(9))


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan")])
def test_mutation_rejects_a_non_positive_scale(scale: float) -> None:
    parent = WEIGHTS.random(np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="scale") as error:
        mutate(parent, WEIGHTS, np.random.default_rng(0), scale)
    assert error.value.parameter == "scale"


# ---------------------------------------------------------------- crossover


@settings(max_examples=200, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1), blend=st.booleans())
def test_crossover_children_are_valid_and_take_values_from_their_parents(
    space: ParameterSpace, seed: int, blend: bool
) -> None:
    rng = np.random.default_rng(seed)
    a, b = space.random(rng), space.random(rng)
    child = crossover(a, b, space, rng, blend=blend)
    assert_valid(child, space)
    for p in space.parameters:
        low, high = sorted((a[p.name], b[p.name]))
        if blend and p.type == "float":
            assert low <= child[p.name] <= high
        else:
            assert child[p.name] in (a[p.name], b[p.name])
    differing = [p.name for p in space.parameters if a[p.name] != b[p.name]]
    if not blend and len(differing) >= 2:
        assert child != a
        assert child != b


def test_uniform_crossover_takes_each_parameter_from_either_parent_half_the_time() -> None:
    space = ParameterSpace.from_dicts([{"name": f"w{k}", "low": 0, "high": 1} for k in range(4)])
    a = space.validate({f"w{k}": 0.0 for k in range(4)})
    b = space.validate({f"w{k}": 1.0 for k in range(4)})
    rng = np.random.default_rng(3)
    children = np.array([list(crossover(a, b, space, rng).values()) for _ in range(4000)])
    # no child is a copy of a parent, and every parameter is symmetric between a and b
    assert not np.any(np.all(children == 0, axis=1))
    assert not np.any(np.all(children == 1, axis=1))
    assert children.mean(axis=0) == pytest.approx([0.5] * 4, abs=0.04)


def test_blend_crossover_draws_floats_between_the_parents_and_keeps_ints() -> None:
    a = WEIGHTS.validate({"text_match": 2.0, "region": 10, "price_diff": 1.0})
    b = WEIGHTS.validate({"text_match": 4.0, "region": 20, "price_diff": 3.0})
    rng = np.random.default_rng(4)
    children = [crossover(a, b, WEIGHTS, rng, blend=True) for _ in range(2000)]
    text = np.array([c["text_match"] for c in children])
    assert text.min() >= 2.0 and text.max() <= 4.0
    assert text.mean() == pytest.approx(3.0, abs=0.05)
    assert {c["region"] for c in children} == {10, 20}


def test_crossover_of_identical_parents_is_the_parent() -> None:
    a = WEIGHTS.random(np.random.default_rng(0))
    assert crossover(a, a, WEIGHTS, np.random.default_rng(1)) == a
