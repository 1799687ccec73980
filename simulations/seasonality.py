"""``ranktune simulate seasonality``: raw conversion versus the reference-group ratio.

The target-action lesson of SPEC §3.2 replayed.  Conversion swings ``--peak-to-trough``
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
* **ratio feed**: SPEC §3.2, ``alpha_k += c_k``, ``beta_k += c_r * n_k / n_r``; a window
  without reference exposures waits for the next tick.

Both feeds apply ``--decay`` with :func:`bandit.update.decayed`.  The increments are the
formulas of :mod:`bandit.update` evaluated on arrays of shape ``(runs, K)``;
``tests/simulations/test_seasonality.py`` checks them against
:func:`bandit.update.reference_ratio_update` run by run.

Measured per run, then summarised across runs: whether the arm with the highest posterior
mean at the end is the truly best arm, whether the arm served most over the last day is,
the best arm's traffic share over the last day, the wasted traffic (share of all target
exposures on other arms) and the regret in expected contacts against always serving the
best arm.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.policies import ThompsonSampling
from bandit.update import Prior, decayed, ratio_increments
from simulations.plotting import new_figure, save_figure
from simulations.progress import ProgressReporter, progress_enabled

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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


@dataclass(frozen=True)
class SeasonalityConfig:
    """Every parameter of one simulation; written verbatim to the JSON result."""

    arm_qualities: tuple[float, ...] = (1.00, 1.05, 1.10, 0.90)
    days: float = 7.0
    window_minutes: float = 10.0
    runs: int = 200
    seed: int = 1
    base_rate: float = 0.02
    peak_to_trough: float = 4.0
    peak_hour: float = 20.0
    start_hour: float | None = None
    requests_per_day: float = 100_800.0
    reference_share: float = 0.2
    decay: float = 1.0
    draws_per_window: int = 64
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    modes: tuple[str, ...] = MODES
    feeds: tuple[str, ...] = FEEDS
    smooth_hours: float = 6.0

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


def daily_rates(hours: npt.ArrayLike, config: SeasonalityConfig) -> FloatArray:
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
    # Ratio feed: target data from windows without reference exposures, waiting (SPEC §3.2).
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


def mean_ci(values: FloatArray) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% confidence interval of the mean across runs."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(finite.mean())
    half = 1.96 * float(finite.std(ddof=1)) / math.sqrt(finite.size) if finite.size > 1 else 0.0
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Effect:
    """Paired difference ratio - raw in one mode, with its verdict."""

    mode: str
    metric: str
    difference: float
    ci_low: float
    ci_high: float
    verdict: str


def paired_effects(results: dict[tuple[str, str], CombinationResult]) -> list[Effect]:
    """Ratio minus raw per mode, paired run by run (both saw the same traffic)."""
    effects = []
    for mode in MODES:
        raw, ratio = results.get((mode, "raw")), results.get((mode, "ratio"))
        if raw is None or ratio is None:
            continue
        for metric, higher_is_better in (("p_best_final", True), ("regret_pct", False)):
            diff, low, high = mean_ci(ratio.metrics[metric] - raw.metrics[metric])
            better = low > 0 if higher_is_better else high < 0
            worse = high < 0 if higher_is_better else low > 0
            verdict = "ratio better" if better else "raw better" if worse else "no clear difference"
            effects.append(Effect(mode, metric, diff, low, high, verdict))
    return effects


# --- progress, output ----------------------------------------------------------------------


def _format_cell(metric: str, mean: float, low: float, high: float) -> str:
    if metric == "regret_contacts":
        return f"{mean:,.0f} ±{(high - low) / 2:,.0f}"
    if metric == "regret_pct":
        return f"{mean:.2f}% ±{(high - low) / 2:.2f}"
    return f"{mean:.3f} ±{(high - low) / 2:.3f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = list(TABLE_COLUMNS)
    body = [
        [row["mode"], row["feed"]]
        + [
            _format_cell(m, row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"])
            for m in TABLE_COLUMNS[2:]
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
    return "\n".join(lines)


def _rolling_share(best: FloatArray, total: FloatArray, width: int) -> FloatArray:
    """Per-run best-arm share over a trailing window of ``width`` tick windows."""
    zero = np.zeros((1, best.shape[1]))
    cum_best = np.concatenate([zero, np.cumsum(best, axis=0)])
    cum_total = np.concatenate([zero, np.cumsum(total, axis=0)])
    ends = np.arange(1, best.shape[0] + 1)
    starts = np.maximum(0, ends - width)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares: FloatArray = (cum_best[ends] - cum_best[starts]) / (
            cum_total[ends] - cum_total[starts]
        )
    return shares


def best_share_series(
    config: SeasonalityConfig, result: CombinationResult
) -> dict[str, FloatArray]:
    """The best arm's share of target traffic over time, summarised across runs.

    ``mean`` is per window (in window mode a window's share is 0 or 1, so this is the share
    of runs serving the best arm); ``smoothed_*`` is each run's share over a trailing
    ``smooth_hours``, its mean across runs and a 95% confidence interval of that mean.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        per_window = result.best_exposures / result.target_exposures
    width = max(1, round(config.smooth_hours * 60 / config.window_minutes))
    smoothed = _rolling_share(result.best_exposures, result.target_exposures, width)
    n = np.maximum(np.sum(np.isfinite(smoothed), axis=1), 1)
    mean = np.nanmean(smoothed, axis=1)
    sd = np.nanstd(smoothed, axis=1, ddof=1) if config.runs > 1 else np.zeros_like(mean)
    half = 1.96 * sd / np.sqrt(n)
    return {
        "mean": np.nanmean(per_window, axis=1),
        "smoothed_mean": mean,
        "smoothed_ci_low": mean - half,
        "smoothed_ci_high": mean + half,
    }


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


COMBINATION_STYLE = {
    ("request", "raw"): ("tab:orange", "request mode, raw conversion"),
    ("request", "ratio"): ("tab:blue", "request mode, reference ratio"),
    ("window", "raw"): ("tab:red", "window mode, raw conversion"),
    ("window", "ratio"): ("tab:green", "window mode, reference ratio"),
}


def write_plots(
    config: SeasonalityConfig,
    hours: FloatArray,
    rates: FloatArray,
    series: dict[tuple[str, str], dict[str, FloatArray]],
    out: Path,
) -> list[Path]:
    days = hours / 24.0
    modes = [m for m in MODES if m in config.modes]
    figure = new_figure(9.0, 0.6 + 3.0 * len(modes))
    axes = figure.subplots(len(modes), 1, sharex=True, squeeze=False)[:, 0]
    for ax, mode in zip(axes, modes, strict=True):
        if config.start_hour is not None:
            # Every run has the same clock: show the cycle as a grey strip along the bottom.
            strip = 0.12 * rates[:, 0] / rates.max()
            ax.fill_between(days, 0, strip, color="0.85", lw=0, label="conversion cycle (scaled)")
        for feed in FEEDS:
            if (mode, feed) not in series:
                continue
            s = series[(mode, feed)]
            color, label = COMBINATION_STYLE[(mode, feed)]
            ax.fill_between(
                days, s["smoothed_ci_low"], s["smoothed_ci_high"], color=color, alpha=0.25, lw=0
            )
            ax.plot(days, s["smoothed_mean"], color=color, lw=1.8, label=label)
        ax.axhline(
            1.0 / len(config.arm_qualities), color="0.4", lw=0.8, ls=":", label="uniform split"
        )
        ax.set_ylim(0, 1)
        ax.set_xlim(0, days[-1] + config.window_minutes / 2880)
        ax.grid(True, alpha=0.3)
        ax.set_ylabel("best arm's traffic share")
        ax.set_title(f"{mode} mode", loc="left")
        ax.legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("day")
    figure.suptitle(
        "Traffic share of the truly best arm: raw conversion vs reference ratio\n"
        f"{config.runs} runs, arms {_arms_text(config)}, "
        f"peak/trough {config.peak_to_trough:g}, {config.window_minutes:g}-min ticks, "
        f"{_start_text(config)}, "
        f"seed {config.seed}; line: mean of each run's share over the trailing "
        f"{config.smooth_hours:g} h, band: 95% CI",
        fontsize="small",
    )
    paths = save_figure(figure, out / "seasonality-best-share")

    figure = new_figure(7.0, 3.6)
    ax = figure.subplots()
    day_hours = np.linspace(0, 24, 289)
    day_rates = daily_rates(day_hours, config)
    ax.plot(day_hours, day_rates, color="black", lw=2, label="reference (quality 1.00)")
    for i, quality in enumerate(config.arm_qualities):
        best = " (best)" if i == config.best_arm else ""
        ax.plot(day_hours, quality * day_rates, lw=1, label=f"arm {i}: quality {quality:.2f}{best}")
    ax.set_xlim(0, 24)
    ax.set_ylim(0, None)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel("hour of day")
    ax.set_ylabel("contact rate per exposure")
    ax.set_title(f"Daily conversion cycle: peak / trough = {config.peak_to_trough:g}", loc="left")
    ax.legend(fontsize="small")
    paths += save_figure(figure, out / "seasonality-daily-cycle")
    return paths


# --- the command ---------------------------------------------------------------------------


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


def simulate(config: SeasonalityConfig, *, show_progress: bool = False) -> SeasonalityResult:
    """Run every requested combination on shared traffic; no files, no printing."""
    started = time.monotonic()
    streams = np.random.SeedSequence(config.seed).spawn(1 + len(COMBINATIONS))
    hours = window_midpoint_hours(config)
    traffic_rng = np.random.default_rng(streams[0])
    start_hours = draw_start_hours(config, traffic_rng)
    rates = daily_rates(start_hours[None, :] + hours[:, None], config)
    traffic = draw_traffic(config, rates, traffic_rng)
    results: dict[tuple[str, str], CombinationResult] = {}
    for mode, feed in config.combinations:
        rng = np.random.default_rng(streams[1 + COMBINATIONS.index((mode, feed))])
        label = f"{mode}/{feed}".ljust(13)
        with ProgressReporter(config.n_windows, label, enabled=show_progress) as progress:
            result = simulate_combination(
                config, mode, feed, traffic, rates, rng, on_window=progress.update
            )
        result.metrics = run_metrics(result, config.best_arm)
        results[(mode, feed)] = result
    rows = []
    for (mode, feed), result in results.items():
        row: dict[str, Any] = {"mode": mode, "feed": feed}
        for metric in TABLE_COLUMNS[2:]:
            mean, low, high = mean_ci(result.metrics[metric])
            row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = mean, low, high
        rows.append(row)
    return SeasonalityResult(
        config,
        results,
        rows,
        paired_effects(results),
        hours,
        start_hours,
        rates,
        time.monotonic() - started,
    )


def diagnostics(result: SeasonalityResult) -> list[dict[str, Any]]:
    """Per combination: how often each arm was the final pick, and in which hours the final
    pick and the other arms were judged.

    The hour factor of a set of arms is their exposure-weighted mean of ``r(t) / base_rate``
    (1 = an average hour), pooled over the set and then averaged over runs.
    """
    config = result.config
    k = len(config.arm_qualities)
    rows = []
    for (mode, feed), combination in result.results.items():
        means = combination.final_alphas / (combination.final_alphas + combination.final_betas)
        picked = np.argmax(means, axis=1)
        is_picked = picked[:, None] == np.arange(k)
        weighted = combination.rate_weighted_exposures / config.base_rate
        exposures = combination.exposures
        with np.errstate(divide="ignore", invalid="ignore"):
            picked_factor = (weighted * is_picked).sum(1) / (exposures * is_picked).sum(1)
            other_factor = (weighted * ~is_picked).sum(1) / (exposures * ~is_picked).sum(1)
        rows.append(
            {
                "mode": mode,
                "feed": feed,
                "final_pick_counts": [int(x) for x in np.bincount(picked, minlength=k)],
                "picked_arm_hour_factor": mean_ci(picked_factor)[0],
                "other_arms_hour_factor": mean_ci(other_factor)[0],
                "other_arms_traffic_share": mean_ci(
                    1.0 - (exposures * is_picked).sum(1) / exposures.sum(1)
                )[0],
                "p_best_final_by_start_hour": {
                    f"{low:02d}-{low + 6:02d}": mean_ci(
                        combination.metrics["p_best_final"][
                            (result.start_hours >= low) & (result.start_hours < low + 6)
                        ]
                    )[0]
                    for low in START_HOUR_BINS
                },
            }
        )
    return rows


def format_diagnostics(rows: list[dict[str, Any]], config: SeasonalityConfig) -> str:
    k = len(config.arm_qualities)
    bins = [f"p_best_start_{low:02d}-{low + 6:02d}h" for low in START_HOUR_BINS]
    header = ["mode", "feed", "picked_arm_hours", "other_arms_hours", "final_picks", *bins]
    body = [
        [
            row["mode"],
            row["feed"],
            f"{row['picked_arm_hour_factor']:.2f}",
            f"{row['other_arms_hour_factor']:.2f}",
            " ".join(
                f"arm{i}{'*' if i == config.best_arm else ''}:{row['final_pick_counts'][i]}"
                for i in range(k)
            ),
            *(f"{x:.2f}" for x in row["p_best_final_by_start_hour"].values()),
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
    return "\n".join(lines)


def _effect_line(effect: Effect) -> str:
    unit = " pp" if effect.metric == "regret_pct" else ""
    return (
        f"  {effect.mode} mode, {effect.metric}: ratio - raw = {effect.difference:+.3f}{unit} "
        f"(95% CI {effect.ci_low:+.3f} to {effect.ci_high:+.3f}) -> {effect.verdict}"
    )


def write_outputs(result: SeasonalityResult, out: Path, plots: bool = True) -> list[Path]:
    config = result.config
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    summary_columns = ["mode", "feed"] + [
        f"{m}{suffix}" for m in TABLE_COLUMNS[2:] for suffix in ("", "_ci_low", "_ci_high")
    ]
    path = out / "summary.csv"
    _write_csv(path, summary_columns, [[row[c] for c in summary_columns] for row in result.rows])
    paths.append(path)

    metric_names = list(TABLE_COLUMNS[2:])
    k = len(config.arm_qualities)
    run_rows = []
    for (mode, feed), combination in result.results.items():
        factors = served_hour_factors(combination, config.base_rate)
        for run in range(config.runs):
            run_rows.append(
                [mode, feed, run, float(result.start_hours[run])]
                + [float(combination.metrics[m][run]) for m in metric_names]
                + [float(x) for x in combination.exposures[run]]
                + [float(x) for x in combination.events[run]]
                + [float(x) for x in combination.final_alphas[run]]
                + [float(x) for x in combination.final_betas[run]]
                + [float(x) for x in factors[run]]
            )
    path = out / "runs.csv"
    _write_csv(
        path,
        ["mode", "feed", "run", "start_hour", *metric_names]
        + [f"exposures_arm{i}" for i in range(k)]
        + [f"contacts_arm{i}" for i in range(k)]
        + [f"alpha_arm{i}" for i in range(k)]
        + [f"beta_arm{i}" for i in range(k)]
        + [f"served_hour_factor_arm{i}" for i in range(k)],
        run_rows,
    )
    paths.append(path)

    series = {key: best_share_series(config, c) for key, c in result.results.items()}
    series_header = ["window", "hour", "mean_reference_rate"]
    columns = []
    for (mode, feed), s in series.items():
        for name, values in s.items():
            series_header.append(f"{mode}_{feed}_best_share_{name}")
            columns.append(values)
    path = out / "best_share.csv"
    _write_csv(
        path,
        series_header,
        [
            [t, float(result.hours[t]), float(result.rates[t].mean())]
            + [float(c[t]) for c in columns]
            for t in range(config.n_windows)
        ],
    )
    paths.append(path)

    if plots:
        paths += write_plots(config, result.hours, result.rates, series, out)

    path = out / "seasonality.json"
    paths.append(path)
    document = {
        "command": "seasonality",
        "seed": config.seed,
        "parameters": asdict(config),
        "derived": {
            "n_windows": config.n_windows,
            "windows_per_day": config.windows_per_day,
            "requests_per_window": config.requests_per_window,
            "best_arm": config.best_arm,
            "cycle_amplitude": config.cycle_amplitude,
            "peak_rate": float(daily_rates(config.peak_hour, config)),
            "trough_rate": float(daily_rates(config.peak_hour + 12, config)),
        },
        "summary": result.rows,
        "effects": [asdict(e) for e in result.effects],
        "diagnostics": diagnostics(result),
        "elapsed_s": result.elapsed_s,
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "files": [p.name for p in paths],
    }
    path.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n")
    return paths


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error


def _start_hour(text: str) -> float | None:
    if text.strip().lower() == "random":
        return None
    try:
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected an hour or 'random', got {text!r}") from error


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = SeasonalityConfig()
    parser.add_argument(
        "--arms",
        type=_floats,
        default=d.arm_qualities,
        help="arm qualities relative to the reference configuration (default 1.00,1.05,1.10,0.90)",
    )
    parser.add_argument("--days", type=float, default=d.days, help=f"simulated days ({d.days:g})")
    parser.add_argument(
        "--window-minutes",
        type=float,
        default=d.window_minutes,
        help=f"tick window length in minutes ({d.window_minutes:g})",
    )
    parser.add_argument("--runs", type=int, default=d.runs, help=f"independent runs ({d.runs})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    parser.add_argument(
        "--base-rate",
        type=float,
        default=d.base_rate,
        help=f"reference contact rate per exposure, averaged over a day ({d.base_rate:g})",
    )
    parser.add_argument(
        "--peak-to-trough",
        type=float,
        default=d.peak_to_trough,
        help=f"ratio of the highest to the lowest hourly conversion ({d.peak_to_trough:g})",
    )
    parser.add_argument(
        "--peak-hour",
        type=float,
        default=d.peak_hour,
        help=f"hour of peak conversion ({d.peak_hour:g})",
    )
    parser.add_argument(
        "--start-hour",
        type=_start_hour,
        default=d.start_hour,
        help="clock hour at which every run starts, or 'random' for a uniformly random hour "
        "per run (default random: experiments do not all start at midnight)",
    )
    parser.add_argument(
        "--requests-per-day",
        type=float,
        default=d.requests_per_day,
        help=f"mean requests per day, both groups (Poisson per window; {d.requests_per_day:g})",
    )
    parser.add_argument(
        "--reference-share",
        type=float,
        default=d.reference_share,
        help=f"share of requests in the reference group ({d.reference_share:g})",
    )
    parser.add_argument(
        "--decay",
        type=float,
        default=d.decay,
        help="gamma in (0, 1] applied to the evidence before every update (1 = no decay)",
    )
    parser.add_argument(
        "--draws-per-window",
        type=int,
        default=d.draws_per_window,
        help=f"Thompson draws per run that set the request-mode split ({d.draws_per_window})",
    )
    parser.add_argument(
        "--modes", type=_names, default=d.modes, help="request,window (both by default)"
    )
    parser.add_argument("--feeds", type=_names, default=d.feeds, help="raw,ratio (both by default)")
    parser.add_argument(
        "--smooth-hours",
        type=float,
        default=d.smooth_hours,
        help=f"trailing window of the plotted share, hours ({d.smooth_hours:g})",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/SVG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument(
        "--out", default="out/seasonality", help="directory for tables, data and plots"
    )


def _start_text(config: SeasonalityConfig) -> str:
    if config.start_hour is None:
        return "random start hour"
    return f"start at {config.start_hour:g}:00"


def _arms_text(config: SeasonalityConfig) -> str:
    return ",".join(f"{q:g}" for q in config.arm_qualities)


def config_from_args(args: argparse.Namespace) -> SeasonalityConfig:
    return SeasonalityConfig(
        arm_qualities=tuple(args.arms),
        days=args.days,
        window_minutes=args.window_minutes,
        runs=args.runs,
        seed=args.seed,
        base_rate=args.base_rate,
        peak_to_trough=args.peak_to_trough,
        peak_hour=args.peak_hour,
        start_hour=args.start_hour,
        requests_per_day=args.requests_per_day,
        reference_share=args.reference_share,
        decay=args.decay,
        draws_per_window=args.draws_per_window,
        modes=tuple(args.modes),
        feeds=tuple(args.feeds),
        smooth_hours=args.smooth_hours,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except InvalidParameterError as error:
        print(f"ranktune simulate seasonality: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(
        f"seasonality: {config.runs} runs x {config.days:g} days of {config.window_minutes:g}-min "
        f"windows ({config.n_windows} ticks), arms {_arms_text(config)} "
        f"(best: arm {config.best_arm}), conversion peak/trough {config.peak_to_trough:g}, "
        f"seed {config.seed}",
        file=sys.stderr,
    )
    result = simulate(config, show_progress=progress_enabled(args.no_progress))
    paths = write_outputs(result, out, plots=not args.no_plots)
    print(format_table(result.rows))
    print(
        "\nIn which hours the arms were judged: mean conversion factor r(t)/base_rate of the "
        "hours in which the final pick and the other arms were served (1 = an average hour); "
        "final picks per arm (* = truly best); p_best_final by the clock hour the run started:"
    )
    print(format_diagnostics(diagnostics(result), config))
    if result.effects:
        print("\nEffect of the reference ratio (paired by run, same traffic):")
        for effect in result.effects:
            print(_effect_line(effect))
    print(f"\nwrote {', '.join(p.name for p in paths)} to {out}  ({result.elapsed_s:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulations.seasonality``: the same command without the dispatcher."""
    parser = argparse.ArgumentParser(
        prog="python -m simulations.seasonality", description=__doc__.splitlines()[0]
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
