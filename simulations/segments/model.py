"""The segments simulation's parameters and model: categories whose best arm differs.

Issue 12 replayed: one bandit for all traffic, one independent bandit per category, or one
per category sharing strength through the hierarchical prior of :mod:`bandit.hierarchy`.

The world, drawn per run (so that results average over many worlds):

* ``--categories`` categories ``c`` with Zipf traffic: category ``c`` (0-based) gets a share
  ``(c + 1)^(-zipf) / sum`` of the requests (a few big categories, a long tail);
* ``--arms`` base qualities ``q_k`` relative to the reference configuration (quality 1);
  in category ``c`` arm ``k`` has quality ``q_ck = q_k exp(spread z_ck)``, ``z_ck ~ N(0, 1)``,
  so ``--spread 0`` makes every category identical and a larger spread makes the best arm
  differ between categories.  The reference configuration has quality 1 everywhere: the
  lift of an arm is relative to it.

Per tick window ``t`` (``--window-minutes``), run and category, shared by every strategy
(common random numbers):

* the reference contact rate ``r(t) = base_rate (1 + a cos(2 pi (h - peak_hour) / 24))``
  with peak / trough ``= --peak-to-trough``, multiplying both groups;
* ``N_c ~ Poisson(requests_per_day * window / 1440 * share_c)`` requests,
  ``n_rc ~ Binomial(N_c, reference_share)`` of them reference (the unit hash) and the rest
  target, reference contacts ``~ Binomial(n_rc, r(t))``.

Each strategy then splits every category's target requests between the arms by Thompson
sampling in request mode (each request draws its own arm; the simulator estimates the
choice distribution with ``--draws-per-window`` draws, as ``simulate seasonality`` does),
draws the arms' contacts ``~ Binomial(n_ck, r(t) q_ck)`` and updates by the reference-ratio
rule (:func:`bandit.update.ratio_increments`):

* **global**: one posterior per arm over all traffic, the ratio of all categories' target
  contacts against all categories' reference (today's unsegmented service);
* **independent**: one posterior per (arm, category), the ratio within the category, the
  experiment prior Beta(1, 1) in every category;
* **hierarchical**: the same per-category evidence, but each arm's categories share the
  prior ``Beta(mu kappa, (1 - mu) kappa)`` fitted by :func:`bandit.hierarchy.fit_hierarchy`
  every ``--refit-every`` ticks (in between, new evidence is added to the last fit's prior),
  on the evidence divided by its dispersion factors
  (:func:`bandit.hierarchy.dispersion_factors`), as the service fits it.

A category whose window has no reference exposure keeps its data for the next tick (per
strategy and run), as the service does.

Measured per run, in expected contacts (``r(t) q`` per exposure, free of the Bernoulli
noise of the contacts themselves): the **lift** of the target group over the reference
configuration on the same exposures, ``sum n_ck r q_ck / sum n_ck r - 1``, overall, in the
**big** categories (the fewest top categories that carry ``--big-share`` of the traffic)
and in the **small** ones (the rest); and the **regret** against serving each category's
best arm, in contacts and in percent of that oracle's contacts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.hierarchy import (
    HierarchicalFit,
    dispersion_factors,
    fit_hierarchy,
    ratio_moment_increments,
)
from bandit.update import Prior, ratio_increments
from simulations.options import FLOATS, integer, number, option
from simulations.seasonality.model import daily_rates

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COMMAND = "segments"
STRATEGIES = ("global", "independent", "hierarchical")
MINUTES_PER_DAY = 24 * 60
METRICS = ("lift", "lift_big", "lift_small", "regret_pct", "regret_contacts")


QUALITIES = FLOATS
NUMBER = number()
INTEGER = integer()


@dataclass(frozen=True)
class SegmentsConfig:
    """Every parameter of one simulation; written verbatim to the JSON result."""

    categories: int = option(50, INTEGER, "number of categories (segments)")
    zipf: float = option(1.0, NUMBER, "Zipf exponent of the categories' traffic shares")
    arm_qualities: tuple[float, ...] = option(
        (1.00, 1.04, 1.08, 0.96, 1.02),
        QUALITIES,
        "base arm qualities relative to the reference configuration",
        flag="--arms",
    )
    spread: float = option(
        0.10,
        NUMBER,
        "sd of log quality between categories (0 = identical categories)",
    )
    days: float = option(7.0, NUMBER, "simulated days")
    window_minutes: float = option(60.0, NUMBER, "tick window length in minutes")
    runs: int = option(100, INTEGER, "independent runs (each with its own world)")
    seed: int = option(1, INTEGER, "random seed")
    requests_per_day: float = option(
        400_000.0, NUMBER, "mean requests per day, all categories and both groups"
    )
    reference_share: float = option(0.2, NUMBER, "share of requests in the reference group")
    base_rate: float = option(
        0.02, NUMBER, "reference contact rate per exposure, averaged over a day"
    )
    peak_to_trough: float = option(4.0, NUMBER, "ratio of the highest to the lowest hourly rate")
    peak_hour: float = option(20.0, NUMBER, "hour of peak conversion")
    draws_per_window: int = option(
        8, INTEGER, "Thompson draws per run and category that set the request split"
    )
    refit_every: int = option(6, INTEGER, "ticks between two fits of the hierarchical prior")
    big_share: float = option(
        0.5, NUMBER, "the big categories are the fewest top ones with this share of traffic"
    )
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    strategies: tuple[str, ...] = field(default=STRATEGIES)

    def __post_init__(self) -> None:
        qualities = np.asarray(self.arm_qualities, dtype=np.float64)
        _require(
            qualities.ndim == 1 and qualities.size >= 2,
            "arm_qualities",
            "arms must list at least two relative qualities",
        )
        _require(
            bool(np.all(np.isfinite(qualities)) and np.all(qualities > 0)),
            "arm_qualities",
            "arm qualities must be finite numbers > 0",
        )
        _require(self.categories >= 1, "categories", "categories must be >= 1")
        _require(0 <= self.zipf <= 5, "zipf", "zipf must be in [0, 5]")
        _require(0 <= self.spread <= 2, "spread", "spread must be in [0, 2]")
        _require(self.days > 0, "days", "days must be > 0")
        _require(
            0 < self.window_minutes <= MINUTES_PER_DAY,
            "window_minutes",
            "window_minutes must be in (0, 1440]",
        )
        _require(self.n_windows >= 1, "window_minutes", "days must hold at least one window")
        _require(self.runs >= 2, "runs", "runs must be >= 2 (intervals across runs)")
        _require(self.seed >= 0, "seed", "seed must be >= 0")
        _require(self.requests_per_day > 0, "requests_per_day", "requests_per_day must be > 0")
        _require(
            0 < self.reference_share < 1, "reference_share", "reference_share must be in (0, 1)"
        )
        _require(0 < self.base_rate < 1, "base_rate", "base_rate must be in (0, 1)")
        _require(self.peak_to_trough >= 1, "peak_to_trough", "peak_to_trough must be >= 1")
        _require(self.draws_per_window >= 1, "draws_per_window", "draws_per_window must be >= 1")
        _require(self.refit_every >= 1, "refit_every", "refit_every must be >= 1")
        _require(0 < self.big_share < 1, "big_share", "big_share must be in (0, 1)")
        Prior(self.prior_alpha, self.prior_beta)
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        _require(
            bool(self.strategies) and not unknown,
            "strategies",
            f"strategies must be a non-empty subset of {', '.join(STRATEGIES)}",
        )

    @property
    def n_windows(self) -> int:
        return round(self.days * MINUTES_PER_DAY / self.window_minutes)

    @property
    def requests_per_window(self) -> float:
        return self.requests_per_day * self.window_minutes / MINUTES_PER_DAY

    @property
    def cycle_amplitude(self) -> float:
        return (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0)

    @property
    def shares(self) -> FloatArray:
        """The categories' traffic shares, largest first."""
        weights = np.arange(1, self.categories + 1, dtype=np.float64) ** -self.zipf
        shares: FloatArray = weights / weights.sum()
        return shares

    @property
    def big_categories(self) -> int:
        """How many of the top categories are "big": the fewest with ``big_share``."""
        cumulative = np.cumsum(self.shares)
        return int(np.searchsorted(cumulative, self.big_share - 1e-12) + 1)


def _require(condition: bool, parameter: str, message: str) -> None:
    if not condition:
        raise InvalidParameterError(message, parameter=parameter)


def draw_qualities(config: SegmentsConfig, rng: np.random.Generator) -> FloatArray:
    """Per run, category and arm: ``q_k exp(spread z)``, shape ``(runs, categories, K)``."""
    base = np.asarray(config.arm_qualities, dtype=np.float64)
    z = rng.standard_normal((config.runs, config.categories, base.size))
    qualities: FloatArray = base * np.exp(config.spread * z)
    return qualities


@dataclass
class Strategy:
    """One strategy's state and tallies over all runs (arrays ``(runs, categories, K)``)."""

    name: str
    rng: np.random.Generator
    shape: tuple[int, int, int]
    successes: FloatArray = field(init=False)
    failures: FloatArray = field(init=False)
    pending_events: FloatArray = field(init=False)
    pending_exposures: FloatArray = field(init=False)
    pending_reference_events: FloatArray = field(init=False)
    pending_reference_exposures: FloatArray = field(init=False)
    prior_alphas: FloatArray = field(init=False)
    prior_betas: FloatArray = field(init=False)
    # Over the applied windows: sum n_k and sum n_k^2 / n_r (the fit's dispersion factors).
    applied_exposures: FloatArray = field(init=False)
    ratio_moments: FloatArray = field(init=False)
    exposures: FloatArray = field(init=False)
    expected_contacts: FloatArray = field(init=False)
    reference_equivalent: FloatArray = field(init=False)
    oracle_contacts: FloatArray = field(init=False)
    regret_series: list[FloatArray] = field(default_factory=list)
    fit: HierarchicalFit | None = None

    def __post_init__(self) -> None:
        runs, categories, k = self.shape
        # The global strategy keeps one posterior per arm: a single "category".
        state = (runs, 1, k) if self.name == "global" else self.shape
        self.successes = np.zeros(state)
        self.failures = np.zeros(state)
        self.pending_events = np.zeros(state)
        self.pending_exposures = np.zeros(state)
        self.pending_reference_events = np.zeros(state[:2])
        self.pending_reference_exposures = np.zeros(state[:2])
        self.applied_exposures = np.zeros(state)
        self.ratio_moments = np.zeros(state)
        self.prior_alphas = np.ones((runs, 1, k) if self.name == "global" else (runs, k))
        self.prior_betas = np.ones_like(self.prior_alphas)
        self.exposures = np.zeros(self.shape)
        self.expected_contacts = np.zeros(self.shape)
        self.reference_equivalent = np.zeros(self.shape)
        self.oracle_contacts = np.zeros((runs, categories))

    def posterior(self) -> tuple[FloatArray, FloatArray]:
        if self.name == "global":
            return self.prior_alphas + self.successes, self.prior_betas + self.failures
        return (
            self.prior_alphas[:, None, :] + self.successes,
            self.prior_betas[:, None, :] + self.failures,
        )


def choice_shares(
    alphas: FloatArray, betas: FloatArray, draws: int, rng: np.random.Generator
) -> FloatArray:
    """The Thompson choice distribution estimated from ``draws`` draws, shape of ``alphas``."""
    k = alphas.shape[-1]
    thetas = rng.beta(
        alphas[..., None, :], betas[..., None, :], size=(*alphas.shape[:-1], draws, k)
    )
    chosen = np.argmax(thetas, axis=-1)
    counts = np.stack([(chosen == arm).sum(axis=-1) for arm in range(k)], axis=-1)
    shares: FloatArray = counts / draws
    return shares


def refit(strategy: Strategy, prior: Prior) -> None:
    """Fit each arm's prior across categories from the per-category evidence, divided by
    its dispersion factor (``bandit.hierarchy.dispersion_factors``), as the service does."""
    phi = dispersion_factors(
        strategy.successes,
        strategy.failures,
        strategy.applied_exposures,
        strategy.ratio_moments,
    )
    fit = fit_hierarchy(
        np.swapaxes(strategy.successes / phi, 1, 2),
        np.swapaxes(strategy.failures / phi, 1, 2),
        prior=prior,
    )
    strategy.prior_alphas = fit.prior_alphas
    strategy.prior_betas = fit.prior_betas
    strategy.fit = fit


def step(
    strategy: Strategy,
    config: SegmentsConfig,
    target: IntArray,
    reference_exposures: FloatArray,
    reference_events: FloatArray,
    rate: FloatArray,
    qualities: FloatArray,
) -> None:
    """One tick window of one strategy: split, contacts, tallies, reference-ratio update."""
    rng = strategy.rng
    alphas, betas = strategy.posterior()
    shares = choice_shares(alphas, betas, config.draws_per_window, rng)
    shares = np.broadcast_to(shares, qualities.shape)
    arm_exposures = rng.multinomial(target, shares).astype(np.float64)
    contact_rates = rate[:, None, None] * qualities
    arm_events = rng.binomial(arm_exposures.astype(np.int64), contact_rates).astype(np.float64)

    strategy.exposures += arm_exposures
    expected = arm_exposures * contact_rates
    strategy.expected_contacts += expected
    strategy.reference_equivalent += arm_exposures * rate[:, None, None]
    oracle = target * rate[:, None] * qualities.max(axis=-1)
    strategy.oracle_contacts += oracle
    regret = (oracle - expected.sum(axis=-1)).sum(axis=-1)
    previous = strategy.regret_series[-1] if strategy.regret_series else 0.0
    strategy.regret_series.append(previous + regret)

    if strategy.name == "global":
        arm_events = arm_events.sum(axis=1, keepdims=True)
        arm_exposures = arm_exposures.sum(axis=1, keepdims=True)
        reference_events = reference_events.sum(axis=1, keepdims=True)
        reference_exposures = reference_exposures.sum(axis=1, keepdims=True)
    strategy.pending_events += arm_events
    strategy.pending_exposures += arm_exposures
    strategy.pending_reference_events += reference_events
    strategy.pending_reference_exposures += reference_exposures
    ready = strategy.pending_reference_exposures > 0
    if np.any(ready):
        alpha_increments, beta_increments = ratio_increments(
            strategy.pending_events[ready],
            strategy.pending_exposures[ready],
            strategy.pending_reference_events[ready],
            strategy.pending_reference_exposures[ready],
        )
        strategy.successes[ready] += alpha_increments
        strategy.failures[ready] += beta_increments
        applied = strategy.pending_exposures[ready]
        strategy.applied_exposures[ready] += applied
        strategy.ratio_moments[ready] += ratio_moment_increments(
            applied, strategy.pending_reference_exposures[ready]
        )
        strategy.pending_events[ready] = 0.0
        strategy.pending_exposures[ready] = 0.0
        strategy.pending_reference_events[ready] = 0.0
        strategy.pending_reference_exposures[ready] = 0.0


def simulate_strategies(
    config: SegmentsConfig,
    *,
    on_window: Callable[[int], None] | None = None,
) -> tuple[FloatArray, dict[str, Strategy]]:
    """Run every strategy on the same worlds and traffic; returns the qualities and the
    strategies' final states and tallies."""
    streams = np.random.SeedSequence(config.seed).spawn(2 + len(STRATEGIES))
    world_rng = np.random.default_rng(streams[0])
    traffic_rng = np.random.default_rng(streams[1])
    qualities = draw_qualities(config, world_rng)
    shape = (config.runs, config.categories, len(config.arm_qualities))
    strategies = {
        name: Strategy(name, np.random.default_rng(streams[2 + STRATEGIES.index(name)]), shape)
        for name in STRATEGIES
        if name in config.strategies
    }
    prior = Prior(config.prior_alpha, config.prior_beta)
    means = config.requests_per_window * config.shares
    hours = (np.arange(config.n_windows) + 0.5) * config.window_minutes / 60.0
    # Each run starts at a uniformly random hour: experiments start at any time of day.
    start_hours = traffic_rng.uniform(0.0, 24.0, size=config.runs)
    for t in range(config.n_windows):
        rate = daily_rates(start_hours + hours[t], config)
        requests = traffic_rng.poisson(means, size=(config.runs, config.categories))
        reference_exposures = traffic_rng.binomial(requests, config.reference_share)
        target = requests - reference_exposures
        reference_events = traffic_rng.binomial(reference_exposures, rate[:, None])
        for strategy in strategies.values():
            if strategy.name == "hierarchical" and t % config.refit_every == 0 and t > 0:
                refit(strategy, prior)
            step(
                strategy,
                config,
                target,
                reference_exposures.astype(np.float64),
                reference_events.astype(np.float64),
                rate,
                qualities,
            )
        if on_window is not None:
            on_window(t + 1)
    return qualities, strategies


def run_metrics(strategy: Strategy, config: SegmentsConfig) -> dict[str, FloatArray]:
    """Per-run metrics of one strategy; every array has shape ``(runs,)``."""
    big = config.big_categories
    contacts = strategy.expected_contacts.sum(axis=-1)  # (runs, categories)
    reference = strategy.reference_equivalent.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = contacts.sum(axis=1) / reference.sum(axis=1) - 1.0
        lift_big = contacts[:, :big].sum(axis=1) / reference[:, :big].sum(axis=1) - 1.0
        lift_small = contacts[:, big:].sum(axis=1) / reference[:, big:].sum(axis=1) - 1.0
        regret = strategy.oracle_contacts.sum(axis=1) - contacts.sum(axis=1)
        regret_pct = 100.0 * regret / strategy.oracle_contacts.sum(axis=1)
    return {
        "lift": 100.0 * lift,
        "lift_big": 100.0 * lift_big,
        "lift_small": 100.0 * lift_small,
        "regret_pct": regret_pct,
        "regret_contacts": regret,
    }


def oracle_metrics(strategy: Strategy, config: SegmentsConfig) -> dict[str, FloatArray]:
    """The lifts of serving each category's best arm on the same target traffic: the most
    any strategy can reach (regret 0 by definition)."""
    big = config.big_categories
    reference = strategy.reference_equivalent.sum(axis=-1)
    oracle = strategy.oracle_contacts
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = {
            "lift": oracle.sum(axis=1) / reference.sum(axis=1),
            "lift_big": oracle[:, :big].sum(axis=1) / reference[:, :big].sum(axis=1),
            "lift_small": oracle[:, big:].sum(axis=1) / reference[:, big:].sum(axis=1),
        }
    zeros = np.zeros(config.runs)
    result = {name: 100.0 * (value - 1.0) for name, value in lifts.items()}
    result.update(regret_pct=zeros, regret_contacts=zeros)
    return result
