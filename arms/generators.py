"""Generators of new configurations: random draws, mutations and crossovers.

Every generator is pure: the parent configurations and the space in, a new valid
:class:`~arms.space.Configuration` out, randomness only from the injected
:class:`numpy.random.Generator`.  Parents are assumed to be valid configurations of the
space (the service validated them when the arms were created).  Every generated value is
at its parameter's precision (:meth:`~arms.space.Parameter.quantize`).
"""

from __future__ import annotations

import math

import numpy as np

from arms.space import (
    Configuration,
    Distribution,
    Parameter,
    ParameterSpace,
    ParameterType,
    Value,
)
from bandit.errors import InvalidParameterError


def random_configuration(space: ParameterSpace, rng: np.random.Generator) -> Configuration:
    """A configuration drawn from every parameter's distribution (see ``Parameter.sample``)."""
    return space.random(rng)


def _perturb(parameter: Parameter, value: Value, noise: float, scale: float) -> Value:
    """``value`` moved by ``noise`` standard deviations of ``scale`` times the span, at the
    parameter's precision (:meth:`~arms.space.Parameter.quantize`).

    Log-uniform parameters are perturbed in log space (``sd = scale * log(high / low)``), so
    a mutation is a relative change, as their distribution suggests.
    """
    if parameter.distribution is Distribution.LOG_UNIFORM:
        log_low, log_high = math.log(parameter.low), math.log(parameter.high)
        moved = math.log(value) + noise * scale * (log_high - log_low)
        # clipped in log space: exp() of a move past a bound near 1e308 would overflow
        return parameter.quantize(math.exp(min(max(moved, log_low), log_high)))
    return parameter.quantize(value + noise * scale * parameter.span)


def _forced_change(parameter: Parameter, value: Value, noise: float, scale: float) -> Value:
    """A value of ``parameter`` different from ``value``, moving into the interior.

    The move keeps the size of the Gaussian step but points away from a bound the value
    sits on; when that step rounds back to ``value`` (an integer, a coarse step), the move
    is one point of the parameter's grid, the other way at the end of the grid.
    """
    if value >= parameter.high:
        direction = -1
    elif value <= parameter.low:
        direction = 1
    else:
        direction = 1 if noise >= 0 else -1
    moved = _perturb(parameter, value, direction * abs(noise), scale)
    if moved != value:
        return moved
    moved = parameter.neighbour(value, direction)
    return moved if moved != value else parameter.neighbour(value, -direction)


def mutate(
    config: Configuration,
    space: ParameterSpace,
    rng: np.random.Generator,
    scale: float = 0.1,
) -> Configuration:
    """Gaussian mutation: every parameter moves by ``N(0, (scale * span)^2)``, then is clipped
    and rounded to its precision.

    ``span = high - low``; integer parameters are rounded then clipped to their integer
    bounds, log-uniform ones are perturbed in log space.  Clipping puts some mass exactly on
    the bounds, which is wanted: a bound (a weight of 0) is often a meaningful value.

    Change is guaranteed whenever the space can change at all: if every parameter came back
    equal (a step rounded to zero, a value clipped back to its bound), one parameter that
    can take more than one value, chosen uniformly, is moved by :func:`_forced_change`.
    One normal draw per parameter is taken in the space's order.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise InvalidParameterError(
            f"scale must be a finite number > 0, got {scale!r}", parameter="scale"
        )
    noises = rng.standard_normal(len(space.parameters))
    values = {
        p.name: _perturb(p, config[p.name], float(noise), scale)
        for p, noise in zip(space.parameters, noises, strict=True)
    }
    if all(values[p.name] == config[p.name] for p in space.parameters):
        changeable = [k for k, p in enumerate(space.parameters) if p.can_vary]
        if changeable:
            k = changeable[int(rng.integers(len(changeable)))]
            parameter = space.parameters[k]
            values[parameter.name] = _forced_change(
                parameter, config[parameter.name], float(noises[k]), scale
            )
    return Configuration(tuple((p.name, values[p.name]) for p in space.parameters))


def crossover(
    a: Configuration,
    b: Configuration,
    space: ParameterSpace,
    rng: np.random.Generator,
    *,
    blend: bool = False,
) -> Configuration:
    """Uniform crossover: each parameter comes from ``a`` or ``b`` with probability 1/2.

    Uniform crossover (rather than one-point) because parameter order carries no meaning.
    When the parents differ in two or more parameters the child is never a copy of either:
    an all-``a`` or all-``b`` draw over the differing parameters gets one of them, chosen
    uniformly, flipped.  (With a single difference the only children are the parents.)

    ``blend=True`` instead draws float parameters uniformly between the parents' values,
    ``a + u * (b - a)`` with ``u ~ U(0, 1)`` per parameter (intermediate recombination);
    integer parameters still take one parent's value.  The default is plain uniform
    crossover because it recombines values the experiment has already tested.

    The child is at the space's precision (:meth:`~arms.space.ParameterSpace.quantize`):
    a value taken from a parent given by hand off the grid is rounded onto it.
    """
    parameters = space.parameters
    from_b = rng.random(len(parameters)) < 0.5
    differing = [k for k, p in enumerate(parameters) if a[p.name] != b[p.name]]
    if len(differing) >= 2 and len({bool(from_b[k]) for k in differing}) == 1:
        k = differing[int(rng.integers(len(differing)))]
        from_b[k] = not from_b[k]
    values: dict[str, float] = {}
    for k, p in enumerate(parameters):
        if blend and p.type is ParameterType.FLOAT:
            u = float(rng.random())
            values[p.name] = a[p.name] + u * (b[p.name] - a[p.name])
        else:
            values[p.name] = b[p.name] if from_b[k] else a[p.name]
    return space.quantize(values)
