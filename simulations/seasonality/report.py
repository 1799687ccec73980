"""The seasonality command's tables, files and plots."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from simulations.confidence import mean_ci
from simulations.options import command_line, parameters
from simulations.output import versions, write_csv, write_json
from simulations.plotting import new_figure, save_figure
from simulations.seasonality.model import (
    COMMAND,
    FEEDS,
    MODES,
    START_HOUR_BINS,
    TABLE_COLUMNS,
    CombinationResult,
    Effect,
    FloatArray,
    SeasonalityConfig,
    SeasonalityResult,
    daily_rates,
    served_hour_factors,
)


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
    smoothed = mean_ci(
        _rolling_share(result.best_exposures, result.target_exposures, width), axis=1
    )
    return {
        "mean": np.nanmean(per_window, axis=1),
        "smoothed_mean": smoothed.mean,
        "smoothed_ci_low": smoothed.ci_low,
        "smoothed_ci_high": smoothed.ci_high,
    }


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
        f"{config.runs} runs, arms {arms_text(config)}, "
        f"peak/trough {config.peak_to_trough:g}, {config.window_minutes:g}-min ticks, "
        f"{start_text(config)}, "
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
                "picked_arm_hour_factor": mean_ci(picked_factor).mean,
                "other_arms_hour_factor": mean_ci(other_factor).mean,
                "other_arms_traffic_share": mean_ci(
                    1.0 - (exposures * is_picked).sum(1) / exposures.sum(1)
                ).mean,
                "p_best_final_by_start_hour": {
                    f"{low:02d}-{low + 6:02d}": mean_ci(
                        combination.metrics["p_best_final"][
                            (result.start_hours >= low) & (result.start_hours < low + 6)
                        ]
                    ).mean
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


def effect_line(effect: Effect) -> str:
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
    write_csv(path, summary_columns, [[row[c] for c in summary_columns] for row in result.rows])
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
    write_csv(
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
    write_csv(
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
        "reproduce": command_line(COMMAND, config),
        "seed": config.seed,
        "parameters": parameters(config),
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
        "versions": versions(),
        "files": [p.name for p in paths],
    }
    write_json(path, document)
    return paths


def start_text(config: SeasonalityConfig) -> str:
    if config.start_hour is None:
        return "random start hour"
    return f"start at {config.start_hour:g}:00"


def arms_text(config: SeasonalityConfig) -> str:
    return ",".join(f"{q:g}" for q in config.arm_qualities)
