"""Parameter spaces and configurations: validation that names the field, generation in bounds."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from arms.errors import ConfigurationError
from arms.space import (
    Configuration,
    Distribution,
    Parameter,
    ParameterSpace,
    ParameterType,
)

RANKER = ParameterSpace.from_dicts(
    [
        {"name": "text_match", "type": "float", "low": 0.0, "high": 10.0},
        {"name": "distance", "type": "float", "low": 0.0, "high": 5.0},
        {
            "name": "price_diff",
            "type": "float",
            "low": 0.01,
            "high": 100.0,
            "distribution": "log_uniform",
        },
        {"name": "region", "type": "int", "low": 0, "high": 3},
    ]
)
REFERENCE = {"text_match": 1.0, "distance": 0.5, "price_diff": 2.0, "region": 1}

# int parameters are limited to the integers that floats and JSON numbers hold exactly
MAX_EXACT_INT = 2**53


# --- examples -----------------------------------------------------------------------------------


def test_validate_returns_an_ordered_immutable_configuration() -> None:
    config = RANKER.validate({"region": 1.0, "price_diff": 2, "distance": 0.5, "text_match": 1})
    assert list(config) == ["text_match", "distance", "price_diff", "region"]
    assert config.as_dict() == REFERENCE
    assert type(config["region"]) is int
    assert type(config["price_diff"]) is float
    assert config["text_match"] == 1.0 and len(config) == 4
    assert hash(config) == hash(RANKER.validate(REFERENCE))
    with pytest.raises(KeyError):
        config["nope"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"text_match": 10.5}, "text_match", r"expected a value in \[0.0, 10.0\], got 10.5"),
        ({"distance": -0.1}, "distance", r"expected a value in \[0.0, 5.0\]"),
        ({"distance": math.nan}, "distance", "expected a finite number"),
        ({"distance": math.inf}, "distance", "expected a finite number"),
        ({"region": 1.5}, "region", "expected an integer, got 1.5"),
        ({"region": True}, "region", "expected a number, got True"),
        ({"region": "1"}, "region", "expected a number, got '1'"),
        ({"region": None}, "region", "expected a number"),
        ({"colour": 1.0}, "colour", "unknown parameter; expected one of text_match, distance"),
    ],
)
def test_invalid_values_name_the_parameter(
    change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as error:
        RANKER.validate({**REFERENCE, **change})
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")


def test_missing_parameter_is_named() -> None:
    values = dict(REFERENCE)
    del values["price_diff"]
    with pytest.raises(ConfigurationError, match="missing parameter") as error:
        RANKER.validate(values)
    assert error.value.field == "price_diff"


def test_a_configuration_must_be_an_object() -> None:
    with pytest.raises(ConfigurationError, match="expected an object, got list") as error:
        RANKER.validate([1.0, 0.5, 2.0, 1])  # type: ignore[arg-type]
    assert error.value.field == "config"


def test_huge_integers_are_out_of_bounds_not_a_crash() -> None:
    # found by this suite: a JSON integer too large for a float raised OverflowError (a 500)
    with pytest.raises(ConfigurationError, match=r"expected a value in \[0.0, 10.0\]") as error:
        RANKER.validate({**REFERENCE, "text_match": 10**400})
    assert error.value.field == "text_match"
    with pytest.raises(ConfigurationError) as error:
        RANKER.validate({**REFERENCE, "region": -(10**400)})
    assert error.value.field == "region"


def test_numpy_scalars_are_numbers() -> None:
    # found by this suite: generators that draw with numpy produced np.int64 values that were
    # rejected as "expected a number"
    config = RANKER.validate({**REFERENCE, "region": np.int64(2), "distance": np.float32(0.5)})
    assert config["region"] == 2 and type(config["region"]) is int
    assert config["distance"] == 0.5 and type(config["distance"]) is float
    with pytest.raises(ConfigurationError, match="expected a number"):
        RANKER.validate({**REFERENCE, "region": np.bool_(True)})


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"name": "1x"}, "name", "expected an identifier"),
        ({"name": ""}, "name", "expected an identifier"),
        ({"name": "w", "type": "str"}, "w.type", "expected 'float' or 'int'"),
        ({"name": "w", "distribution": "normal"}, "w.distribution", "expected 'uniform' or"),
        ({"name": "w", "low": "0"}, "w.low", "expected a number"),
        ({"name": "w", "high": math.inf}, "w.high", "expected a finite number"),
        ({"name": "w", "low": 2.0, "high": 1.0}, "w.low", "expected low <= high"),
        ({"name": "w", "type": "int", "low": 0.2, "high": 0.8}, "w.low", "needs an integer"),
        ({"name": "w", "distribution": "log_uniform", "low": 0.0}, "w.low", "needs low > 0"),
        ({"name": "w", "type": "int", "high": 2**60}, "w.high", r"within \[-2\*\*53, 2\*\*53\]"),
        ({"name": "w", "type": "int", "low": -1e300}, "w.low", r"within \[-2\*\*53, 2\*\*53\]"),
        ({"name": "w", "step": "0.1"}, "w.step", "expected a number"),
        ({"name": "w", "step": True}, "w.step", "expected a number"),
        ({"name": "w", "step": 0.0}, "w.step", r"expected a finite number > 0"),
        ({"name": "w", "step": -0.1}, "w.step", r"expected a finite number > 0"),
        ({"name": "w", "step": math.nan}, "w.step", r"expected a finite number > 0"),
        ({"name": "w", "step": math.inf}, "w.step", r"expected a finite number > 0"),
        ({"name": "w", "step": 1.5}, "w.step", r"no larger than high - low \(1\.0\)"),
        ({"name": "w", "low": 0.1, "high": 0.1, "step": 0.1}, "w.step", "no larger than"),
        ({"name": "w", "type": "int", "high": 9, "step": 1.5}, "w.step", "an integer >= 1"),
        ({"name": "w", "type": "int", "high": 9, "step": 0.5}, "w.step", "an integer >= 1"),
        ({"name": "w", "type": "int", "low": 0.5, "high": 9.5, "step": 9}, "w.step", r"\(8\)"),
    ],
)
def test_invalid_parameters_name_the_attribute(
    spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as error:
        Parameter(**spec)
    assert error.value.field == field


def test_invalid_spaces_are_rejected() -> None:
    with pytest.raises(ConfigurationError) as error:
        ParameterSpace(())
    assert error.value.field == "parameters"
    with pytest.raises(ConfigurationError, match="unique") as error:
        ParameterSpace((Parameter("w"), Parameter("w")))
    assert error.value.field == "w"
    with pytest.raises(ConfigurationError) as error:
        ParameterSpace.from_dicts([{"name": "w"}, {"name": "v", "lo": 1}])
    assert error.value.field == "parameters[1]"


def test_a_step_is_kept_normalised_and_only_when_given() -> None:
    assert "step" not in Parameter("w").to_dict()
    step = Parameter("w", low=0.1, high=0.3, step=0.2)  # high - low is 0.19999999999999998
    assert step.to_dict()["step"] == 0.2
    integral = Parameter("k", type="int", low=0, high=10, step=2.0)  # type: ignore[arg-type]
    assert integral.step == 2 and type(integral.step) is int
    space = ParameterSpace((step, integral))
    assert ParameterSpace.from_dicts(space.to_dicts()) == space


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        # to the step: multiples of it, the nearest one inside the bounds
        (Parameter("w", low=0.0, high=1.0, step=0.1), 0.34, 0.3),
        (Parameter("w", low=0.0, high=1.0, step=0.1), 0.36, 0.4),
        (Parameter("w", low=0.0, high=1.0, step=0.1), 0.7000000000000001, 0.7),
        (Parameter("w", low=0.05, high=0.95, step=0.1), 0.02, 0.1),
        (Parameter("w", low=0.05, high=0.95, step=0.1), 0.97, 0.9),
        (Parameter("w", low=0.0, high=1.0, step=0.25), 2.0, 1.0),
        (Parameter("k", type=ParameterType.INT, low=0, high=100, step=5), 12, 10),
        (Parameter("k", type=ParameterType.INT, low=1, high=9, step=4), 0, 4),
        # without a step: 5 significant digits of the range (range 2.0: 0.0001) ...
        (Parameter("w", low=0.0, high=2.0), 0.123456789, 0.1235),
        (Parameter("w", low=0.0, high=10.0), 0.123456789, 0.123),
        (Parameter("w", low=-1000.0, high=1000.0), 123.456789, 123.5),
        (Parameter("w", low=0.000003, high=1.0), 0.0, 1e-05),  # range 0.999997: 0.00001
        # ... and of the value too when log-uniform, so that small values keep their digits
        (Parameter("p", low=0.01, high=100.0, distribution="log_uniform"), 0.0123456, 0.012346),
        (Parameter("p", low=0.01, high=100.0, distribution="log_uniform"), 54.321987, 54.322),
        # int parameters without a step are integers already; a fixed one stays as it is
        (Parameter("k", type=ParameterType.INT, low=0, high=10**6), 123457, 123457),
        (Parameter("w", low=0.123456789, high=0.123456789), 0.123456789, 0.123456789),
    ],
)
def test_generated_values_are_rounded_to_a_sensible_precision(
    parameter: Parameter, value: float, expected: float
) -> None:
    rounded = parameter.quantize(value)
    assert rounded == expected and type(rounded) is type(expected)
    assert repr(rounded) == repr(expected)  # no 0.30000000000000004
    assert parameter.quantize(rounded) == rounded


def test_space_round_trips_through_dicts() -> None:
    assert ParameterSpace.from_dicts(RANKER.to_dicts()) == RANKER
    assert RANKER["price_diff"].distribution is Distribution.LOG_UNIFORM
    assert RANKER["region"].type is ParameterType.INT
    assert RANKER.names == ("text_match", "distance", "price_diff", "region")


def test_clip_gives_the_nearest_valid_configuration() -> None:
    clipped = RANKER.clip({"text_match": 12.0, "distance": -1.0, "price_diff": 3.0, "region": 2.6})
    expected = {"text_match": 10.0, "distance": 0.0, "price_diff": 3.0, "region": 3}
    assert clipped.as_dict() == expected
    assert RANKER.validate(clipped.as_dict()) == clipped


def test_signature_is_canonical() -> None:
    config = RANKER.validate(REFERENCE)
    assert config.signature == "distance=0.5;price_diff=2.0;region=1;text_match=1.0"
    space = ParameterSpace((Parameter("w", low=-1.0, high=1.0),))
    assert space.validate({"w": -0.0}).signature == space.validate({"w": 0.0}).signature


@pytest.mark.parametrize(
    ("low", "high", "distribution"),
    [(-1.7e308, 1.7e308, "uniform"), (1e-300, 1.7976931348623157e308, "log_uniform")],
)
def test_random_draws_are_valid_for_extreme_finite_bounds(
    low: float, high: float, distribution: str
) -> None:
    # found by this suite: high - low overflowed and numpy raised OverflowError, so a space that
    # validated could not generate a random configuration
    parameter = Parameter("w", low=low, high=high, distribution=distribution)
    rng = np.random.default_rng(5)
    draws = [parameter.sample(rng) for _ in range(50)]
    assert all(math.isfinite(d) and low <= d <= high for d in draws)
    assert len(set(draws)) == 50


def test_random_configurations_are_reproducible() -> None:
    first = [RANKER.random(np.random.default_rng(4)) for _ in range(3)]
    second = [RANKER.random(np.random.default_rng(4)) for _ in range(3)]
    assert first == second
    rng = np.random.default_rng(4)
    assert len({RANKER.random(rng) for _ in range(20)}) == 20


def test_random_int_parameters_cover_their_range_uniformly() -> None:
    rng = np.random.default_rng(11)
    draws = [Parameter("k", type="int", low=-0.5, high=3.5).sample(rng) for _ in range(4_000)]
    counts = np.bincount(draws)
    assert list(np.nonzero(counts)[0]) == [0, 1, 2, 3]
    assert np.all(np.abs(counts - 1_000) < 4 * math.sqrt(1_000 * 0.75))


def test_log_uniform_spreads_over_orders_of_magnitude() -> None:
    rng = np.random.default_rng(12)
    parameter = Parameter("p", low=0.01, high=100.0, distribution="log_uniform")
    draws = np.array([parameter.sample(rng) for _ in range(4_000)])
    # log10 is uniform on [-2, 2]: a quarter of the draws per decade
    decades = np.bincount(np.floor(np.log10(draws) + 2).astype(int), minlength=4)[:4]
    assert np.all(np.abs(decades - 1_000) < 4 * math.sqrt(1_000 * 0.75))


# --- properties ---------------------------------------------------------------------------------

_names = st.lists(
    st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True), min_size=1, max_size=4, unique=True
)
_any_float = st.floats(allow_nan=False, allow_infinity=False)
_positive_float = st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)


@st.composite
def _parameters(draw: st.DrawFn, name: str) -> Parameter:
    kind = draw(st.sampled_from(["float", "int"]))
    distribution = draw(st.sampled_from(["uniform", "log_uniform"]))
    if kind == "float":
        bounds = _positive_float if distribution == "log_uniform" else _any_float
        low, high = sorted((draw(bounds), draw(bounds)))
        if low == high:
            high = low  # sorted() keeps (0.0, -0.0) as drawn, an empty range for st.floats
        return Parameter(name, ParameterType.FLOAT, low, high, Distribution(distribution))
    least = 1 if distribution == "log_uniform" else -MAX_EXACT_INT
    ints = st.integers(least, MAX_EXACT_INT)
    low_int, high_int = sorted((draw(ints), draw(ints)))
    # int bounds may be written as floats too
    low = float(low_int) if draw(st.booleans()) else low_int
    return Parameter(name, ParameterType.INT, low, high_int, Distribution(distribution))


@st.composite
def spaces(draw: st.DrawFn) -> ParameterSpace:
    return ParameterSpace(tuple(draw(_parameters(name)) for name in draw(_names)))


def _inside(parameter: Parameter) -> st.SearchStrategy[float | int]:
    if parameter.type is ParameterType.INT:
        return st.integers(math.ceil(parameter.low), math.floor(parameter.high))
    return st.floats(parameter.low, parameter.high)


@st.composite
def spaces_with_values(draw: st.DrawFn) -> tuple[ParameterSpace, dict[str, float | int]]:
    space = draw(spaces())
    return space, {p.name: draw(_inside(p)) for p in space.parameters}


@given(spaces_with_values())
def test_values_inside_the_bounds_validate_and_round_trip(
    space_values: tuple[ParameterSpace, dict[str, float | int]],
) -> None:
    space, values = space_values
    config = space.validate(values)
    assert config.as_dict() == values
    assert space.validate(config.as_dict()) == config
    for parameter in space.parameters:
        expected_type = int if parameter.type is ParameterType.INT else float
        assert type(config[parameter.name]) is expected_type


def _outside(parameter: Parameter) -> st.SearchStrategy[Any]:
    below = st.floats(max_value=parameter.low, exclude_max=True, allow_infinity=False)
    above = st.floats(min_value=parameter.high, exclude_min=True, allow_infinity=False)
    huge = st.integers(min_value=10**309, max_value=10**400)
    invalid: list[st.SearchStrategy[Any]] = [
        st.just(math.nan),
        st.just(math.inf),
        st.just(-math.inf),
        huge,
        huge.map(lambda x: -x),
        st.booleans(),
        st.none(),
        st.text(max_size=3),
    ]
    if parameter.low > -sys.float_info.max:
        invalid.append(below)
    if parameter.high < sys.float_info.max:
        invalid.append(above)
    if parameter.type is ParameterType.INT and parameter.high - parameter.low >= 1:
        invalid.append(st.just(math.ceil(parameter.low) + 0.5))
    return st.one_of(invalid)


@given(spaces_with_values(), st.data())
def test_invalid_values_always_raise_naming_the_parameter(
    space_values: tuple[ParameterSpace, dict[str, float | int]], data: st.DataObject
) -> None:
    space, values = space_values
    parameter = data.draw(st.sampled_from(space.parameters))
    bad = data.draw(_outside(parameter))
    with pytest.raises(ConfigurationError) as error:
        space.validate({**values, parameter.name: bad})
    assert error.value.field == parameter.name


@given(spaces_with_values(), st.data())
def test_missing_and_unknown_names_always_raise_naming_them(
    space_values: tuple[ParameterSpace, dict[str, float | int]], data: st.DataObject
) -> None:
    space, values = space_values
    missing = data.draw(st.sampled_from(space.names))
    with pytest.raises(ConfigurationError, match="missing parameter") as error:
        space.validate({k: v for k, v in values.items() if k != missing})
    assert error.value.field == missing

    unknown = data.draw(st.text(min_size=1, max_size=8).filter(lambda n: n not in space.names))
    with pytest.raises(ConfigurationError, match="unknown parameter") as error:
        space.validate({**values, unknown: 1.0})
    assert error.value.field == unknown


@given(spaces(), st.integers(0, 2**32 - 1))
def test_random_configurations_are_always_valid(space: ParameterSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(3):
        config = space.random(rng)
        assert space.validate(config.as_dict()) == config
        for parameter in space.parameters:
            value = config[parameter.name]
            assert parameter.low <= value <= parameter.high
            if parameter.type is ParameterType.INT:
                assert type(value) is int
            else:
                assert type(value) is float and math.isfinite(value)


@st.composite
def _two_configurations(draw: st.DrawFn) -> tuple[Configuration, Configuration]:
    space = draw(spaces())

    def few_values(parameter: Parameter) -> st.SearchStrategy[float | int]:
        # a handful of values per parameter so that equal configurations are common
        middle = parameter.low / 2 + parameter.high / 2
        candidates = [parameter.low, parameter.high, middle, 0.0, -0.0]
        return st.sampled_from([parameter.clip(value) for value in candidates])

    first = {p.name: draw(few_values(p)) for p in space.parameters}
    second = {p.name: draw(few_values(p)) for p in space.parameters}
    return space.validate(first), space.validate(second)


@given(_two_configurations())
def test_signature_equal_iff_configurations_equal(
    pair: tuple[Configuration, Configuration],
) -> None:
    first, second = pair
    assert (first.signature == second.signature) == (first == second)
    if first == second:
        assert hash(first) == hash(second)


@given(spaces())
def test_spaces_round_trip_through_dicts(space: ParameterSpace) -> None:
    assume(all(p.type is ParameterType.FLOAT or p.low == int(p.low) for p in space.parameters))
    assert ParameterSpace.from_dicts(space.to_dicts()) == space
