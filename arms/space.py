"""Parameter spaces and arm configurations as immutable, validated values.

A :class:`ParameterSpace` is an ordered tuple of named numeric :class:`Parameter` s.  A
:class:`Configuration` is one point of a space: every parameter present, nothing else,
finite and inside the bounds, integer parameters integral.

Precision of generated values.  What the generators produce (random draws, mutations,
crossovers) goes through :meth:`Parameter.quantize`: the nearest multiple, inside the
bounds, of the parameter's ``step`` when it declares one, else of a resolution of five
significant digits of its range (``10 ** (floor(log10(high - low)) - 4)``: range 2.0 gives
0.0001), finer where a log-uniform value is small (five significant digits of the value
too).  Integer parameters without a step stay integers.  Configurations given by people
(the reference, founders, expert configurations) are validated, never rounded.  The grid
is computed in decimal on the shortest text of each number, so values read as written
(0.3, not 0.30000000000000004).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from typing import Any

import numpy as np

from arms.errors import ConfigurationError

Value = float | int

# Int parameters are limited to the integers that a float (and a JSON number read by a
# JavaScript client) holds exactly; beyond that, "integral" and "in bounds" lose their meaning.
MAX_INT_BOUND = 2**53
# Significant digits of a parameter's range (and of a log-uniform value) that generated
# values keep when the parameter declares no step.
SIGNIFICANT_DIGITS = 5
# Grids are computed in decimal: enough digits for any multiple of a step between bounds
# of up to 2**53 (ints) or of two 17-digit floats.
_GRID = Context(prec=60)


def _is_number(value: Any) -> bool:
    # numbers.Real admits numpy scalars (np.int64 from a generator's rng.integers) and Fraction;
    # bool is an int to Python but never a meaningful weight.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    # Rationals are finite by construction; math.isfinite would overflow on 10**400.
    return isinstance(value, numbers.Rational) or math.isfinite(value)


def _decimal(value: Value) -> Decimal:
    # The shortest text of a float: 0.1 is 0.1, not 0.1000000000000000055511151231257827.
    return Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))


class ParameterType(StrEnum):
    FLOAT = "float"
    INT = "int"


class Distribution(StrEnum):
    """How random configurations draw a parameter."""

    UNIFORM = "uniform"
    LOG_UNIFORM = "log_uniform"


@dataclass(frozen=True)
class Parameter:
    """One named numeric parameter with inclusive bounds ``[low, high]``.

    ``step``, when given, is the precision of generated values: they are multiples of it
    (positive, at most ``high - low``; an integer >= 1 for an int parameter).
    """

    name: str
    type: ParameterType = ParameterType.FLOAT
    low: float = 0.0
    high: float = 1.0
    distribution: Distribution = Distribution.UNIFORM
    step: float | None = None

    def __post_init__(self) -> None:
        field = self.name or "name"
        if not self.name or not self.name.isidentifier():
            raise ConfigurationError("name", f"expected an identifier, got {self.name!r}")
        try:
            object.__setattr__(self, "type", ParameterType(self.type))
        except ValueError:
            raise ConfigurationError(f"{field}.type", "expected 'float' or 'int'") from None
        try:
            object.__setattr__(self, "distribution", Distribution(self.distribution))
        except ValueError:
            raise ConfigurationError(
                f"{field}.distribution", "expected 'uniform' or 'log_uniform'"
            ) from None
        for bound in ("low", "high"):
            value = getattr(self, bound)
            if not _is_number(value):
                raise ConfigurationError(f"{field}.{bound}", f"expected a number, got {value!r}")
            if not _is_finite(value):
                raise ConfigurationError(f"{field}.{bound}", "expected a finite number")
            if self.type is ParameterType.INT and not -MAX_INT_BOUND <= value <= MAX_INT_BOUND:
                raise ConfigurationError(
                    f"{field}.{bound}",
                    f"an int parameter must lie within [-2**53, 2**53], got {value!r}",
                )
            # plain Python numbers, so that to_dict() is JSON-serialisable whatever came in
            normalised = int(value) if isinstance(value, numbers.Integral) else float(value)
            object.__setattr__(self, bound, normalised)
        if self.low > self.high:
            raise ConfigurationError(
                f"{field}.low", f"expected low <= high, got {self.low} > {self.high}"
            )
        if self.type is ParameterType.INT and math.ceil(self.low) > math.floor(self.high):
            raise ConfigurationError(f"{field}.low", "an int parameter needs an integer in bounds")
        if self.distribution is Distribution.LOG_UNIFORM and self.low <= 0:
            raise ConfigurationError(f"{field}.low", "log_uniform needs low > 0")
        if self.step is not None:
            object.__setattr__(self, "step", self._checked_step(f"{field}.step", self.step))

    def _checked_step(self, field: str, step: Any) -> Value:
        if not _is_number(step):
            raise ConfigurationError(field, f"expected a number, got {step!r}")
        if not (_is_finite(step) and step > 0):
            raise ConfigurationError(field, f"expected a finite number > 0, got {step!r}")
        if self.type is ParameterType.INT:
            if step != int(step):
                raise ConfigurationError(
                    field, f"expected an integer >= 1 for an int parameter, got {step!r}"
                )
            span: Value = math.floor(self.high) - math.ceil(self.low)
            normalised: Value = int(step)
        else:
            # in decimal: high - low of 0.1 and 0.3 is 0.2, not 0.19999999999999998
            span = float(_decimal(self.high) - _decimal(self.low))
            normalised = float(step)
        if normalised > span:
            raise ConfigurationError(
                field, f"expected a step no larger than high - low ({span}), got {step!r}"
            )
        return normalised

    @property
    def span(self) -> float:
        return float(self.high - self.low)

    def validate(self, value: Any) -> Value:
        """Return ``value`` as this parameter's type, or raise naming the parameter."""
        if not _is_number(value):
            raise ConfigurationError(self.name, f"expected a number, got {value!r}")
        if not _is_finite(value):
            raise ConfigurationError(self.name, f"expected a finite number, got {value!r}")
        if not self.low <= value <= self.high:
            raise ConfigurationError(
                self.name, f"expected a value in [{self.low}, {self.high}], got {value!r}"
            )
        if self.type is ParameterType.INT:
            if value != int(value):
                raise ConfigurationError(self.name, f"expected an integer, got {value!r}")
            return int(value)
        return float(value)

    def clip(self, value: float) -> Value:
        """Nearest valid value: clipped to the bounds, rounded for int parameters."""
        if self.type is ParameterType.INT:
            low, high = math.ceil(self.low), math.floor(self.high)
            return int(min(max(round(value), low), high))
        return float(min(max(value, self.low), self.high))

    def sample(self, rng: np.random.Generator) -> Value:
        """One draw from this parameter's distribution, at its precision (:meth:`quantize`).

        Uniform with a step: every multiple of the step in bounds equally likely (rounding
        a continuous draw would give the end points half the chance).
        """
        if self.step is not None and self.distribution is Distribution.UNIFORM:
            first, last = self._grid_indices(_decimal(self.step))
            if last - first < 2**62:  # numpy's integers; finer grids are as good as continuous
                return self._grid_value(first + int(rng.integers(last - first + 1)), self.step)
        if self.type is ParameterType.INT:
            low, high = math.ceil(self.low), math.floor(self.high)
            if self.distribution is Distribution.LOG_UNIFORM:
                drawn = math.exp(rng.uniform(math.log(low), math.log(high + 1))) - 0.5
                return self.quantize(drawn)
            return self.quantize(int(rng.integers(low, high + 1)))
        if self.distribution is Distribution.LOG_UNIFORM:
            return self.quantize(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if not math.isfinite(self.high - self.low):
            # numpy refuses a span that overflows; the convex combination never overflows
            u = rng.random()
            return self.quantize((1.0 - u) * self.low + u * self.high)
        return self.quantize(rng.uniform(self.low, self.high))

    # -- precision of generated values -----------------------------------------------------
    def resolution(self, value: float) -> Decimal | None:
        """The grid step around ``value`` (a value in bounds): the step, 1 for an int, or
        :data:`SIGNIFICANT_DIGITS` of the range (and of a log-uniform value); None for a
        float parameter with a single value."""
        if self.step is not None:
            return _decimal(self.step)
        if self.type is ParameterType.INT:
            return Decimal(1)
        span = _decimal(self.high) - _decimal(self.low)
        if span == 0:
            return None
        unit = Decimal(1).scaleb(span.adjusted() - SIGNIFICANT_DIGITS + 1)
        if self.distribution is Distribution.LOG_UNIFORM:
            at_value = Decimal(1).scaleb(_decimal(value).adjusted() - SIGNIFICANT_DIGITS + 1)
            unit = min(unit, at_value)
        return unit

    def quantize(self, value: float) -> Value:
        """The nearest multiple of :meth:`resolution` inside the bounds: what a generated
        value becomes. Idempotent; never leaves the bounds."""
        clipped = self.clip(value)
        unit = self.resolution(clipped)
        if unit is None:
            return clipped
        first, last = self._grid_indices(unit)
        with localcontext(_GRID):
            index = int((_decimal(clipped) / unit).to_integral_value(ROUND_HALF_EVEN))
        return self._grid_value(min(max(index, first), last), unit)

    def neighbour(self, value: float, direction: int) -> Value:
        """The grid point next to ``value`` (+1: above, -1: below), or the same value at
        the end of the grid."""
        nearest = self.quantize(value)
        unit = self.resolution(nearest)
        if unit is None:
            return nearest
        first, last = self._grid_indices(unit)
        with localcontext(_GRID):
            index = int((_decimal(nearest) / unit).to_integral_value(ROUND_HALF_EVEN))
        return self._grid_value(min(max(index + direction, first), last), unit)

    @property
    def can_vary(self) -> bool:
        """Whether generation can give this parameter more than one value."""
        return self.quantize(self.low) != self.quantize(self.high)

    def _grid_indices(self, unit: Decimal) -> tuple[int, int]:
        """The first and last multiples of ``unit`` inside the bounds, as multipliers."""
        with localcontext(_GRID):
            first = (_decimal(self.low) / unit).to_integral_value(ROUND_CEILING)
            last = (_decimal(self.high) / unit).to_integral_value(ROUND_FLOOR)
        return int(first), int(last)

    def _grid_value(self, index: int, unit: Decimal | Value) -> Value:
        with localcontext(_GRID):
            exact = index * (unit if isinstance(unit, Decimal) else _decimal(unit))
        if self.type is ParameterType.INT:
            return int(exact)
        # float() rounds to the nearest double, which may step over a bound by one ulp
        return min(max(float(exact), self.low), self.high)

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "low": self.low,
            "high": self.high,
            "distribution": self.distribution.value,
        }
        if self.step is not None:  # absent means no step: stored spaces stay as they were
            values["step"] = self.step
        return values


@dataclass(frozen=True)
class Configuration(Mapping[str, Value]):
    """One point of a parameter space, in the space's parameter order. Immutable, hashable."""

    items_: tuple[tuple[str, Value], ...]

    def __getitem__(self, name: str) -> Value:
        for key, value in self.items_:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def as_dict(self) -> dict[str, Value]:
        return dict(self.items_)

    @property
    def signature(self) -> str:
        """Canonical text of the configuration: equal configurations have equal signatures.

        Floats are written with ``repr`` (shortest round-trip form) after normalising -0.0, so
        two configurations share a signature exactly when every value is equal.
        """
        parts = []
        for key, value in sorted(self.items_):
            text = str(value) if isinstance(value, int) else repr(float(value) + 0.0)
            parts.append(f"{key}={text}")
        return ";".join(parts)


@dataclass(frozen=True)
class ParameterSpace:
    """An ordered set of uniquely named parameters."""

    parameters: tuple[Parameter, ...]

    def __post_init__(self) -> None:
        if not self.parameters:
            raise ConfigurationError("parameters", "expected at least one parameter")
        seen: set[str] = set()
        for parameter in self.parameters:
            if parameter.name in seen:
                raise ConfigurationError(parameter.name, "parameter names must be unique")
            seen.add(parameter.name)

    @classmethod
    def from_dicts(cls, specs: list[Mapping[str, Any]]) -> ParameterSpace:
        """Build a space from JSON-like dicts ``{name, type, low, high[, distribution, step]}``."""
        parameters = []
        for index, spec in enumerate(specs):
            try:
                parameters.append(Parameter(**dict(spec)))
            except TypeError as error:
                raise ConfigurationError(f"parameters[{index}]", str(error)) from None
        return cls(tuple(parameters))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    def validate(self, values: Mapping[str, Any]) -> Configuration:
        """Validate a mapping of values against the space; raise naming the first bad field."""
        if not isinstance(values, Mapping):
            raise ConfigurationError("config", f"expected an object, got {type(values).__name__}")
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise ConfigurationError(
                str(unknown[0]), f"unknown parameter; expected one of {', '.join(self.names)}"
            )
        for name in self.names:
            if name not in values:
                raise ConfigurationError(name, "missing parameter")
        return Configuration(tuple((p.name, p.validate(values[p.name])) for p in self.parameters))

    def clip(self, values: Mapping[str, float]) -> Configuration:
        """The nearest valid configuration to ``values`` (every parameter must be present)."""
        return Configuration(tuple((p.name, p.clip(values[p.name])) for p in self.parameters))

    def quantize(self, values: Mapping[str, float]) -> Configuration:
        """The configuration of generated values nearest to ``values`` (see
        :meth:`Parameter.quantize`; every parameter must be present)."""
        return Configuration(tuple((p.name, p.quantize(values[p.name])) for p in self.parameters))

    def random(self, rng: np.random.Generator) -> Configuration:
        """A configuration drawn from every parameter's distribution."""
        return Configuration(tuple((p.name, p.sample(rng)) for p in self.parameters))

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.parameters]
