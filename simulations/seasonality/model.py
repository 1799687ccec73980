"""The seasonality simulation's parameters and model: a daily cycle, two feeds, two modes.

The lesson of the reference-ratio update (docs/spec.md) replayed.  Conversion swings
``--peak-to-trough``
(default 4x) over a day; a bandit fed raw conversion credits an arm with the hour it was
served in, while a bandit fed the reference-group ratio compares every arm with the
reference group over the same window, so the hour cancels.

The model, per tick window ``t`` (``--window-minutes`` long) and per independent run:

* the reference contact rate is ``r(t) = base_rate * (1 + a * cos(2 pi (h - peak_hour) / 24))``
  with ``a = (R - 1) / (R + 1)`` so that peak / trough ``= R`` and the daily mean is
  ``base_rate``;
* ``N ~ Poisson(requests_per_day * window_minutes / 1440)`` requests arrive;
  ``n_r ~ Binomial(N, reference_share)`` of them are reference-group requests and get the
  reference configuration, the other ``n_t = N - n_r`` are target-group requests and get
  an arm;
* each run starts at a uniformly random clock hour (``--start-hour`` fixes it): when an
  experiment starts matters to a raw-fed bandit, and experiments start at any hour;
* arm ``k`` converts with probability ``quality_k * r(t)`` (qualities are relative to the
  reference configuration, which has quality 1), the reference group with ``r(t)``.

The four combinations share the same traffic (common random numbers: the same ``N``,
``n_r`` and reference contacts in every run), so their differences are paired.

* **request mode**: each target request draws its own arm by Thompson sampling from the
  posteriors, which are frozen between ticks.  The requests of one window are therefore
  i.i.d. draws of the Thompson choice distribution; the simulator estimates it with
  ``--draws-per-window`` draws of :class:`bandit.policies.ThompsonSampling` per run and
  splits the window's ``n_t`` requests multinomially.
* **window mode**: one Thompson draw per run at the start of the window; that arm serves
  the whole target group until the next tick.
* **raw feed**: ``alpha_k += c_k``, ``beta_k += n_k - c_k`` (conversion per exposure).
* **ratio feed**: the reference-ratio update, ``alpha_k += c_k``,
  ``beta_k += c_r * n_k / n_r``; a window
  without reference exposures waits for the next tick.

Both feeds apply ``--decay`` with :func:`bandit.update.decayed`.  The increments are the
formulas of :mod:`bandit.update` evaluated on arrays of shape ``(runs, K)``;
``tests/simulations/seasonality/test_model.py`` checks them against
:func:`bandit.update.reference_ratio_update` run by run.

Measured per run, then summarised across runs: whether the arm with the highest posterior
mean at the end is the truly best arm, whether the arm served most over the last day is,
the best arm's traffic share over the last day, the wasted traffic (share of all target
exposures on other arms) and the regret in expected contacts against always serving the
best arm. Means across runs come with the shared Student-t interval
(:func:`simulations.confidence.mean_ci`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.policies import ThompsonSampling
from bandit.update import Prior, decayed, ratio_increments
from simulations.options import (
    FLOATS,
    Kind,
    comma_separated,
    float_short,
    integer,
    number,
    option,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COMMAND = "seasonality"
MODES = ("request", "window")
FEEDS = ("raw", "ratio")
# Fixed order so that each combination keeps its random stream whichever subset is run.
COMBINATIONS = tuple((mode, feed) for mode in MODES for feed in FEEDS)
MINUTES_PER_DAY = 24 * 60
START_HOUR_BINS = (0, 6, 12, 18)
TABLE_COLUMNS = (
    "mode",
    "feed",
    "p_best_final",
    "p_best_last_day",
    "best_share_last_day",
    "wasted_traffic",
    "regret_contacts",
    "regret_pct",
)


def _start_hour(text: str) -> float | None:
    if text.strip().lower() == "random":
        return None
    try:
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected an hour or 'random', got {text!r}") from error


def _show_start_hour(value: float | None) -> str:
    return "random" if value is None else float_short(value)


def _names(text: str) -> tuple[str, ...]:
    return tuple(comma_separated(text))


# The config checks every value (and says which one is wrong), so the parsers only read them.
QUALITIES = FLOATS
START_HOUR: Kind[float | None] = Kind(_start_hour, _show_start_hour)
NAMES: Kind[tuple[str, ...]] = Kind(_names, ",".join)
NUMBER = number()
INTEGER = integer()


@dataclass(frozen=True)
class SeasonalityConfig:
    """Every parameter of one simulation; written verbatim to the JSON result.

    Each field but the prior is also the command's option of that name (see
    :mod:`simulations.options`).
    """

    arm_qualities: tuple[float, ...] = option(
        (1.00, 1.05, 1.10, 0.90),
        QUALITIES,
        "arm qualities relative to the reference configuration",
        flag="--arms",
    )
    days: float = option(7.0, NUMBER, "simulated days")
    window_minutes: float = option(10.0, NUMBER, "tick window length in minutes")
    runs: int = option(200, INTEGER, "independent runs")
    seed: int = option(1, INTEGER, "random seed")
    base_rate: float = option(
        0.02, NUMBER, "reference contact rate per exposure, averaged over a day"
    )
    peak_to_trough: float = option(
        4.0, NUMBER, "ratio of the highest to the lowest hourly conversion"
    )
    peak_hour: float = option(20.0, NUMBER, "hour of peak conversion")
    start_hour: float | None = option(
        None,
        START_HOUR,
        "clock hour at which every run starts, or 'random' for a uniformly random hour "
        "per run (default random: experiments do not all start at midnight)",
    )
    requests_per_day: float = option(
        100_800.0, NUMBER, "mean requests per day, both groups (Poisson per window)"
    )
    reference_share: float = option(0.2, NUMBER, "share of requests in the reference group")
    decay: float = option(
        1.0, NUMBER, "gamma in (0, 1] applied to the evidence before every update (1 = no decay)"
    )
    draws_per_window: int = option(
        64, INTEGER, "Thompson draws per run that set the request-mode split"
    )
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    modes: tuple[str, ...] = option(MODES, NAMES, "comma-separated modes among request, window")
    feeds: tuple[str, ...] = option(FEEDS, NAMES, "comma-separated feeds among raw, ratio")
    smooth_hours: float = option(6.0, NUMBER, "trailing window of the plotted share, hours")

    def __post_init__(self) -> None:
        qualities = np.asarray(self.arm_qualities, dtype=np.float64)
        if qualities.ndim != 1 or qualities.size < 2:
            raise InvalidParameterError(
                "arms must list at least two relative qualities", parameter="arm_qualities"
            )
        if not np.all(np.isfinite(qualities)) or np.any(qualities <= 0):
            raise InvalidParameterError(
                "arm qualities must be finite numbers > 0", parameter="arm_qualities"
            )
        if np.sum(qualities == qualities.max()) > 1:
            raise InvalidParameterError(
                "exactly one arm must have the highest quality", parameter="arm_qualities"
            )
        _require(self.days > 0, "days", "days must be > 0")
        _require(
            0 < self.window_minutes <= MINUTES_PER_DAY,
            "window_minutes",
            "window_minutes must be in (0, 1440]",
        )
        _require(
            self.n_windows >= 1,
            "window_minutes",
            "days * 1440 / window_minutes must be at least 1 window",
        )
        _require(self.runs >= 1, "runs", "runs must be >= 1")
        _require(self.seed >= 0, "seed", "seed must be >= 0")
        _require(0 < self.base_rate < 1, "base_rate", "base_rate must be in (0, 1)")
        _require(self.peak_to_trough >= 1, "peak_to_trough", "peak_to_trough must be >= 1")
        _require(
            self.start_hour is None or 0 <= self.start_hour < 24,
            "start_hour",
            "start_hour must be in [0, 24) or random",
        )
        _require(self.requests_per_day > 0, "requests_per_day", "requests_per_day must be > 0")
        _require(
            0 < self.reference_share < 1, "reference_share", "reference_share must be in (0, 1)"
        )
        _require(0 < self.decay <= 1, "decay", "decay must be in (0, 1]")
        _require(self.draws_per_window >= 1, "draws_per_window", "draws_per_window must be >= 1")
        _require(self.smooth_hours > 0, "smooth_hours", "smooth_hours must be > 0")
        Prior(self.prior_alpha, self.prior_beta)  # validates the prior
        peak_rate = self.base_rate * (1 + self.cycle_amplitude) * float(qualities.max())
        _require(
            peak_rate <= 1,
            "base_rate",
            f"the best arm's peak contact rate must be <= 1, got {peak_rate}",
        )
        for label, chosen, allowed in (("modes", self.modes, MODES), ("feeds", self.feeds, FEEDS)):
            unknown = sorted(set(chosen) - set(allowed))
            _require(
                bool(chosen) and not unknown,
                label,
                f"{label} must be a non-empty subset of {', '.join(allowed)}; got {chosen}",
            )

    @property
    def cycle_amplitude(self) -> float:
        """``a`` with ``(1 + a) / (1 - a) = peak_to_trough``."""
        return (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0)

    @property
    def n_windows(self) -> int:
        return round(self.days * MINUTES_PER_DAY / self.window_minutes)

    @property
    def requests_per_window(self) -> float:
        return self.requests_per_day * self.window_minutes / MINUTES_PER_DAY

    @property
    def windows_per_day(self) -> int:
        return max(1, round(MINUTES_PER_DAY / self.window_minutes))

    @property
    def best_arm(self) -> int:
        return int(np.argmax(self.arm_qualities))

    @property
    def combinations(self) -> tuple[tuple[str, str], ...]:
        return tuple((m, f) for m, f in COMBINATIONS if m in self.modes and f in self.feeds)


def _require(condition: bool, parameter: str, message: str) -> None:
    if not condition:
        raise InvalidParameterError(message, parameter=parameter)


class DailyCycle(Protocol):
    """What :func:`daily_rates` reads of a simulator's config (seasonality, segments)."""

    @property
    def base_rate(self) -> float: ...

    @property
    def peak_hour(self) -> float: ...

    @property
    def cycle_amplitude(self) -> float: ...


def daily_rates(hours: npt.ArrayLike, config: DailyCycle) -> FloatArray:
    """The reference group's contact rate ``r(h)`` at the given clock hours."""
    h = np.asarray(hours, dtype=np.float64)
    phase = 2.0 * np.pi * (h - config.peak_hour) / 24.0
    return config.base_rate * (1.0 + config.cycle_amplitude * np.cos(phase))


def window_midpoint_hours(config: SeasonalityConfig) -> FloatArray:
    """Hours since the start of the simulation (which begins at ``start_hour`` o'clock)."""
    return (np.arange(config.n_windows, dtype=np.float64) + 0.5) * (config.window_minutes / 60.0)


# --- the update, on arrays of shape (runs, K) --------------------------------------------


def raw_increments(
    arm_events: FloatArray, arm_exposures: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Raw conversion: a contact is a success, every other exposure a failure."""
    return arm_events.copy(), arm_exposures - arm_events


@dataclass(frozen=True)
class Traffic:
    """The traffic every combination sees, shape ``(windows, runs)``."""

    target_requests: IntArray
    reference_exposures: IntArray
    reference_events: IntArray


def draw_start_hours(config: SeasonalityConfig, rng: np.random.Generator) -> FloatArray:
    """Each run's clock hour at the start: fixed, or uniform over the day (``None``)."""
    if config.start_hour is None:
        return rng.uniform(0.0, 24.0, size=config.runs)
    return np.full(config.runs, float(config.start_hour))


def draw_traffic(config: SeasonalityConfig, rates: FloatArray, rng: np.random.Generator) -> Traffic:
    """Requests, reference exposures and reference contacts; ``rates`` is ``(windows, runs)``."""
    shape = (config.n_windows, config.runs)
    requests = rng.poisson(config.requests_per_window, size=shape)
    reference = rng.binomial(requests, config.reference_share)
    reference_events = rng.binomial(reference, rates)
    return Traffic(
        (requests - reference).astype(np.int64),
        reference.astype(np.int64),
        reference_events.astype(np.int64),
    )


@dataclass
class CombinationResult:
    """What one (mode, feed) combination did in every run."""

    mode: str
    feed: str
    final_alphas: FloatArray  # (runs, K)
    final_betas: FloatArray  # (runs, K)
    exposures: FloatArray  # (runs, K) over the whole horizon
    events: FloatArray  # (runs, K) target events (contacts) over the whole horizon
    last_day_exposures: FloatArray  # (runs, K)
    best_exposures: FloatArray  # (windows, runs)
    target_exposures: FloatArray  # (windows, runs)
    rate_weighted_exposures: FloatArray  # (runs, K) sum over windows of n_k * r(t)
    regret_contacts: FloatArray  # (runs,) expected contacts lost against the best arm
    best_contacts: FloatArray  # (runs,) expected contacts of always serving the best arm
    metrics: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.mode}/{self.feed}"


def simulate_combination(
    config: SeasonalityConfig,
    mode: str,
    feed: str,
    traffic: Traffic,
    rates: FloatArray,
    rng: np.random.Generator,
    on_window: Callable[[int], None] | None = None,
) -> CombinationResult:
    """Run one combination for all runs at once; the only Python loop is over windows.

    ``rates`` is the reference contact rate ``r(t)`` per window and run, ``(windows, runs)``;
    ``on_window(done)`` is called after every window with the number of windows done.
    """
    qualities = np.asarray(config.arm_qualities, dtype=np.float64)
    k = qualities.size
    runs = config.runs
    best = config.best_arm
    prior = Prior(config.prior_alpha, config.prior_beta)
    policy = ThompsonSampling(prior_alpha=prior.alpha, prior_beta=prior.beta)
    alphas = np.full((runs, k), prior.alpha)
    betas = np.full((runs, k), prior.beta)
    # Ratio feed: target data from windows without reference exposures, waiting (docs/spec.md).
    pending_events = np.zeros((runs, k))
    pending_exposures = np.zeros((runs, k))
    pending_reference_events = np.zeros(runs)
    pending_reference_exposures = np.zeros(runs)

    exposures = np.zeros((runs, k))
    events = np.zeros((runs, k))
    last_day_exposures = np.zeros((runs, k))
    rate_weighted_exposures = np.zeros((runs, k))
    best_exposures = np.zeros((config.n_windows, runs))
    regret = np.zeros(runs)
    best_contacts = np.zeros(runs)
    last_day_start = max(0, config.n_windows - config.windows_per_day)
    arm_index = np.arange(k)

    for t in range(config.n_windows):
        n_target = traffic.target_requests[t]
        successes, failures = alphas - prior.alpha, betas - prior.beta
        if mode == "request":
            draws = policy.choose(
                np.broadcast_to(successes[:, None, :], (runs, config.draws_per_window, k)),
                np.broadcast_to(failures[:, None, :], (runs, config.draws_per_window, k)),
                rng,
            )
            choice_shares = (draws[..., None] == arm_index).mean(axis=1)
            arm_exposures = rng.multinomial(n_target, choice_shares).astype(np.float64)
        else:
            chosen = policy.choose(successes, failures, rng)
            arm_exposures = (chosen[:, None] == arm_index) * n_target[:, None].astype(np.float64)
        contact_rates = rates[t][:, None] * qualities
        arm_events = rng.binomial(arm_exposures.astype(np.int64), contact_rates).astype(np.float64)

        exposures += arm_exposures
        events += arm_events
        if t >= last_day_start:
            last_day_exposures += arm_exposures
        best_exposures[t] = arm_exposures[:, best]
        rate_weighted_exposures += rates[t][:, None] * arm_exposures
        regret += rates[t] * (arm_exposures @ (qualities[best] - qualities))
        best_contacts += rates[t] * qualities[best] * n_target

        if feed == "raw":
            alpha_increments, beta_increments = raw_increments(arm_events, arm_exposures)
            alphas = decayed(alphas, prior.alpha, config.decay) + alpha_increments
            betas = decayed(betas, prior.beta, config.decay) + beta_increments
        else:
            pending_events += arm_events
            pending_exposures += arm_exposures
            pending_reference_events += traffic.reference_events[t]
            pending_reference_exposures += traffic.reference_exposures[t]
            ready = pending_reference_exposures > 0
            if np.any(ready):
                alpha_increments, beta_increments = ratio_increments(
                    pending_events[ready],
                    pending_exposures[ready],
                    pending_reference_events[ready],
                    pending_reference_exposures[ready],
                )
                alphas[ready] = decayed(alphas[ready], prior.alpha, config.decay) + alpha_increments
                betas[ready] = decayed(betas[ready], prior.beta, config.decay) + beta_increments
                pending_events[ready] = 0.0
                pending_exposures[ready] = 0.0
                pending_reference_events[ready] = 0.0
                pending_reference_exposures[ready] = 0.0
        if on_window is not None:
            on_window(t + 1)

    return CombinationResult(
        mode=mode,
        feed=feed,
        final_alphas=alphas,
        final_betas=betas,
        exposures=exposures,
        events=events,
        last_day_exposures=last_day_exposures,
        best_exposures=best_exposures,
        target_exposures=traffic.target_requests.astype(np.float64),
        rate_weighted_exposures=rate_weighted_exposures,
        regret_contacts=regret,
        best_contacts=best_contacts,
    )


def run_metrics(result: CombinationResult, best: int) -> dict[str, FloatArray]:
    """Per-run metrics; every array has shape ``(runs,)``."""
    means = result.final_alphas / (result.final_alphas + result.final_betas)
    total = result.exposures.sum(axis=1)
    last_day_total = result.last_day_exposures.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        best_share_last_day = result.last_day_exposures[:, best] / last_day_total
        wasted = 1.0 - result.exposures[:, best] / total
        regret_pct = 100.0 * result.regret_contacts / result.best_contacts
    return {
        "p_best_final": (np.argmax(means, axis=1) == best).astype(np.float64),
        "p_best_last_day": (np.argmax(result.last_day_exposures, axis=1) == best).astype(
            np.float64
        ),
        "best_share_last_day": best_share_last_day,
        "wasted_traffic": wasted,
        "regret_contacts": result.regret_contacts,
        "regret_pct": regret_pct,
    }


def served_hour_factors(result: CombinationResult, base_rate: float) -> FloatArray:
    """Per run and arm, the mean conversion factor ``r(t) / base_rate`` of the windows in
    which the arm was served, weighted by its exposures (1 = an average hour; NaN if never
    served).  A raw-fed arm judged mostly in bad hours has a factor well below 1.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return result.rate_weighted_exposures / (base_rate * result.exposures)


@dataclass(frozen=True)
class Effect:
    """Paired difference ratio - raw in one mode, with its verdict."""

    mode: str
    metric: str
    difference: float
    ci_low: float
    ci_high: float
    verdict: str


@dataclass
class SeasonalityResult:
    config: SeasonalityConfig
    results: dict[tuple[str, str], CombinationResult]
    rows: list[dict[str, Any]]
    effects: list[Effect]
    hours: FloatArray
    start_hours: FloatArray
    rates: FloatArray
    elapsed_s: float
