"""Model-guided proposals: a Gaussian-process surrogate of the arms' posteriors, and the
configurations it expects to be best (Bayesian optimisation over the parameter space).

:func:`propose` is pure: the arms the experiment served in the current phase (active and
retired), the space and a generator in, a batch of new configurations out, each with what
the surrogate expects of it.

Data.  Every served arm is one observation: its configuration, scaled to the unit cube
(log-uniform parameters in log space), and its posterior on the reference-ratio scale:
``theta = alpha / (alpha + beta)``, where ``theta > 1/2`` means "beats the reference" and
``theta / (1 - theta)`` is the arm's rate relative to the reference's.  The posterior's
variance ``alpha * beta / ((alpha + beta)^2 (alpha + beta + 1))`` is that observation's
noise variance (scikit-learn's per-point ``alpha``), so a well-measured arm pins the
surrogate down and a young one barely moves it.  The reference arm, when given, is an
exact observation at ``theta = 1/2``: it is the yardstick itself.

Surrogate.  scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
with a constant times an anisotropic Matérn 5/2 kernel (one length scale per parameter,
fitted by maximum marginal likelihood, restarts seeded from the generator), on targets
standardised by their mean and standard deviation.

Acquisition.  Expected improvement over the best posterior mean the surrogate gives a
served arm, evaluated on candidates: uniform draws in the unit cube and Gaussian
perturbations of the best served configurations (integer parameters rounded before they
are scored, so the score is that of a point that can be served).  A batch is chosen by
the kriging believer: after each pick the surrogate is told that the pick came out at its
predicted mean (hyper-parameters kept), which collapses its uncertainty there, so the next
pick goes elsewhere.  A pick that rounds (at the space's precision) onto a configuration
already taken is dropped and the next best candidate is taken.

Too little data.  With fewer than :func:`min_observations` measured arms the surrogate is
not fitted (:func:`ready` is False) and the genetic step fills its model slots from the
other origins.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from arms.space import Configuration, Distribution, ParameterSpace, ParameterType

FloatArray = npt.NDArray[np.float64]

MODEL_NAME = "gp-matern52-ei"
# Candidates scored per pick: uniform draws, and perturbations of the best served arms.
UNIFORM_CANDIDATES = 2048
LOCAL_CANDIDATES = 1024
LOCAL_PARENTS = 8
LOCAL_SCALES = (0.03, 0.1, 0.25)
# Expected improvement's margin, in standard deviations of the targets.
EI_XI = 0.01
# Observations whose posterior has less than this many exposures are not data yet.
MIN_EXPOSURES = 1.0
# Noise floor (variance, in standardised units) so that the kernel matrix stays invertible.
JITTER = 1e-6
OPTIMIZER_RESTARTS = 1
# The kernel's hyper-parameters are fitted on at most this many observations (the best
# measured ones): each likelihood evaluation is a Cholesky factorisation, cubic in the
# count; the surrogate then conditions on every observation with those hyper-parameters.
HYPER_FIT_POINTS = 64


@dataclass(frozen=True)
class Observation:
    """A served arm as the surrogate sees it."""

    config: Configuration
    alpha: float
    beta: float
    exposures: float
    is_reference: bool = False

    @property
    def mean(self) -> float:
        return 0.5 if self.is_reference else self.alpha / (self.alpha + self.beta)

    @property
    def variance(self) -> float:
        if self.is_reference:
            return 0.0
        total = self.alpha + self.beta
        return self.alpha * self.beta / (total * total * (total + 1.0))


@dataclass(frozen=True)
class Prediction:
    """What the surrogate expects of a configuration, on the reference-ratio scale.

    ``mean`` and ``sd`` are those of ``theta`` (1/2: as good as the reference);
    ``ratio`` is ``mean / (1 - mean)``, the expected rate relative to the reference's;
    ``expected_improvement`` is the acquisition value that chose it (in units of theta).
    """

    mean: float
    sd: float
    ratio: float
    expected_improvement: float


@dataclass(frozen=True)
class Proposal:
    config: Configuration
    prediction: Prediction


@dataclass(frozen=True)
class ProposalBatch:
    """The proposals of one step and the data they came from.

    ``data_version`` is a digest of the observations (configuration signature, alpha, beta
    of each, sorted): the same data gives the same version, any tick that moves a
    posterior gives another.  ``requested - len(proposals)`` picks found no configuration
    that was not taken.
    """

    model: str
    data_version: str
    n_observations: int
    requested: int
    proposals: tuple[Proposal, ...]


def measured(observations: Sequence[Observation]) -> list[Observation]:
    """The observations that carry data: the reference, and arms with exposures."""
    return [o for o in observations if o.is_reference or o.exposures >= MIN_EXPOSURES]


def min_observations(space: ParameterSpace) -> int:
    """Measured non-reference arms needed before the surrogate is fitted: one per
    parameter plus one (fewer cannot even pin down a linear trend)."""
    return len(space.parameters) + 1


def ready(space: ParameterSpace, observations: Sequence[Observation]) -> bool:
    """Whether there is enough data to fit the surrogate (see :func:`min_observations`)."""
    arms = [o for o in measured(observations) if not o.is_reference]
    return len({o.config.signature for o in arms}) >= min_observations(space)


def data_version(observations: Sequence[Observation]) -> str:
    rows = sorted(
        f"{o.config.signature}|{o.alpha!r}|{o.beta!r}|{int(o.is_reference)}"
        for o in measured(observations)
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


# -- scaling -------------------------------------------------------------------------------
def _bounds(space: ParameterSpace) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Per parameter: low and high in the scaled coordinate's units, and whether it is log."""
    logs = np.array([p.distribution is Distribution.LOG_UNIFORM for p in space.parameters])
    pairs = list(zip(space.parameters, logs, strict=True))
    lows = np.array([math.log(p.low) if log else p.low for p, log in pairs])
    highs = np.array([math.log(p.high) if log else p.high for p, log in pairs])
    return lows, highs, logs


def to_unit(space: ParameterSpace, configs: Sequence[Configuration]) -> FloatArray:
    """Configurations as points of the unit cube (a parameter with a single value: 0)."""
    values = np.array([[float(c[p.name]) for p in space.parameters] for c in configs], dtype=float)
    return _scaled(space, values.reshape(len(configs), len(space.parameters)))


def _scaled(space: ParameterSpace, values: FloatArray) -> FloatArray:
    """Parameter values (rows) as points of the unit cube."""
    lows, highs, logs = _bounds(space)
    values = np.where(logs, np.log(np.where(logs, values, 1.0)), values)
    span = highs - lows
    return np.where(span > 0, (values - lows) / np.where(span > 0, span, 1.0), 0.0)


def from_unit(space: ParameterSpace, points: FloatArray) -> FloatArray:
    """Points of the unit cube as parameter values (integers rounded, inside the bounds)."""
    lows, highs, logs = _bounds(space)
    values = lows + np.clip(points, 0.0, 1.0) * (highs - lows)
    values = np.where(logs, np.exp(values), values)
    for k, parameter in enumerate(space.parameters):
        if parameter.type is ParameterType.INT:
            values[:, k] = np.clip(
                np.round(values[:, k]), math.ceil(parameter.low), math.floor(parameter.high)
            )
    return values


def _servable(space: ParameterSpace, points: FloatArray) -> FloatArray:
    """The points moved to where they would be served: integer parameters rounded."""
    if all(p.type is ParameterType.FLOAT for p in space.parameters):
        return np.clip(points, 0.0, 1.0)
    return _scaled(space, from_unit(space, points))


# -- the surrogate -------------------------------------------------------------------------
@dataclass
class Surrogate:
    """A fitted Gaussian process on standardised targets (see the module docstring)."""

    regressor: object
    y_mean: float
    y_scale: float
    x: FloatArray
    y: FloatArray
    noise: FloatArray

    def predict(self, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation of theta at ``points`` (unit-cube coordinates)."""
        with threadpool_limits(1):
            mean, sd = self.regressor.predict(points, return_std=True)  # type: ignore[attr-defined]
        return self.y_mean + self.y_scale * mean, self.y_scale * sd

    def believe(self, point: FloatArray) -> Surrogate:
        """The surrogate told that ``point`` came out at its predicted mean (kriging
        believer), hyper-parameters kept."""
        from sklearn.gaussian_process import GaussianProcessRegressor

        standard_mean = (self.predict(point[None, :])[0][0] - self.y_mean) / self.y_scale
        x = np.vstack([self.x, point[None, :]])
        y = np.append(self.y, standard_mean)
        noise = np.append(self.noise, JITTER)
        with threadpool_limits(1):
            regressor = GaussianProcessRegressor(
                kernel=self.regressor.kernel_,  # type: ignore[attr-defined]
                alpha=noise,
                optimizer=None,
            ).fit(x, y)
        return Surrogate(regressor, self.y_mean, self.y_scale, x, y, noise)


def fit(
    space: ParameterSpace, observations: Sequence[Observation], rng: np.random.Generator
) -> Surrogate:
    """Fit the surrogate to the measured observations (repeated configurations are kept:
    two arms with the same configuration are two measurements of it)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    data = measured(observations)
    x = to_unit(space, [o.config for o in data])
    theta = np.array([o.mean for o in data])
    variance = np.array([o.variance for o in data])
    y_mean = float(theta.mean())
    y_scale = float(theta.std())
    if not y_scale > 0:
        y_scale = float(math.sqrt(max(variance.mean(), 1e-12)))
    y = (theta - y_mean) / y_scale
    noise = variance / y_scale**2 + JITTER
    d = len(space.parameters)
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
        length_scale=np.full(d, 0.3), length_scale_bounds=(0.03, 10.0), nu=2.5
    )
    tuning = GaussianProcessRegressor(
        kernel=kernel,
        alpha=noise,
        n_restarts_optimizer=OPTIMIZER_RESTARTS,
        random_state=int(rng.integers(2**31 - 1)),
    )
    subset = np.argsort(noise, kind="stable")[:HYPER_FIT_POINTS]
    with threadpool_limits(1), warnings.catch_warnings():
        # A length scale at its bound is an answer (the metric barely depends on that
        # parameter, or varies as fast as allowed), not an error.
        warnings.simplefilter("ignore")
        if len(subset) < len(y):
            tuning.set_params(alpha=noise[subset]).fit(x[subset], y[subset])
            regressor = GaussianProcessRegressor(
                kernel=tuning.kernel_, alpha=noise, optimizer=None
            ).fit(x, y)
        else:
            regressor = tuning.fit(x, y)
    return Surrogate(regressor, y_mean, y_scale, x, y, noise)


def expected_improvement(mean: FloatArray, sd: FloatArray, best: float, xi: float) -> FloatArray:
    """``E[max(f - best - xi, 0)]`` for ``f ~ N(mean, sd^2)``; ``max(mean - best - xi, 0)``
    where ``sd`` is 0."""
    gain = mean - best - xi
    safe = np.where(sd > 0, sd, 1.0)
    z = gain / safe
    from scipy import stats  # imported when used: serving needs none of scipy

    ei = gain * stats.norm.cdf(z) + safe * stats.norm.pdf(z)
    return np.where(sd > 0, np.maximum(ei, 0.0), np.maximum(gain, 0.0))


def candidates(space: ParameterSpace, surrogate: Surrogate, rng: np.random.Generator) -> FloatArray:
    """Uniform points of the cube and perturbations of the best served points, servable."""
    d = len(space.parameters)
    uniform = rng.random((UNIFORM_CANDIDATES, d))
    fitted, _ = surrogate.predict(surrogate.x)
    order = np.argsort(-fitted, kind="stable")[:LOCAL_PARENTS]
    parents = surrogate.x[order]
    picks = rng.integers(len(parents), size=LOCAL_CANDIDATES)
    scales = np.asarray(LOCAL_SCALES)[rng.integers(len(LOCAL_SCALES), size=LOCAL_CANDIDATES)]
    local = parents[picks] + scales[:, None] * rng.standard_normal((LOCAL_CANDIDATES, d))
    return _servable(space, np.vstack([uniform, local]))


def propose(
    space: ParameterSpace,
    observations: Sequence[Observation],
    count: int,
    taken: set[str] | frozenset[str],
    rng: np.random.Generator,
) -> ProposalBatch:
    """Up to ``count`` new configurations, best expected improvement first, none of whose
    signatures is in ``taken`` nor equal to another's.

    Requires :func:`ready`; the generator is consumed in a fixed order (the fit's restarts,
    then the candidates), so the same inputs and seed give the same batch.
    """
    version = data_version(observations)
    data = measured(observations)
    if count <= 0:
        return ProposalBatch(MODEL_NAME, version, len(data), count, ())
    surrogate = fit(space, data, rng)
    points = candidates(space, surrogate, rng)
    served = [o for o in data if not o.is_reference]
    best = float(np.max(surrogate.predict(to_unit(space, [o.config for o in served]))[0]))
    xi = EI_XI * surrogate.y_scale
    used = set(taken)
    available = np.ones(len(points), dtype=bool)
    proposals: list[Proposal] = []
    believed = surrogate
    while len(proposals) < count and available.any():
        mean, sd = believed.predict(points)
        ei = np.where(available, expected_improvement(mean, sd, best, xi), -np.inf)
        k = int(np.argmax(ei))
        available[k] = False
        values = from_unit(space, points[k][None, :])[0]
        config = space.quantize(dict(zip(space.names, values.tolist(), strict=True)))
        if config.signature in used:
            continue
        used.add(config.signature)
        # What the surrogate expected before any belief was added: the honest preview.
        at = to_unit(space, [config])
        expected, spread = surrogate.predict(at)
        theta = float(expected[0])
        proposals.append(
            Proposal(
                config,
                Prediction(
                    mean=theta,
                    sd=float(spread[0]),
                    ratio=theta / (1.0 - theta) if theta < 1.0 else math.inf,
                    expected_improvement=float(ei[k]),
                ),
            )
        )
        believed = believed.believe(at[0])
    return ProposalBatch(MODEL_NAME, version, len(data), count, tuple(proposals))
