"""``ranktune simulate seasonality``: run every combination on shared traffic, and the command.

The model and the metrics are :mod:`simulations.seasonality.model`; this module draws the
traffic, runs the requested (mode, feed) combinations on it, summarises each metric across
runs and pairs the two feeds run by run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bandit.errors import InvalidParameterError
from simulations.confidence import mean_ci
from simulations.options import FLAG, PATH, add_options, command_line, from_args, option
from simulations.output import invalid_parameters, write_and_report
from simulations.progress import ProgressReporter, progress_enabled
from simulations.seasonality.model import (
    COMBINATIONS,
    COMMAND,
    MODES,
    TABLE_COLUMNS,
    CombinationResult,
    Effect,
    SeasonalityConfig,
    SeasonalityResult,
    daily_rates,
    draw_start_hours,
    draw_traffic,
    run_metrics,
    simulate_combination,
    window_midpoint_hours,
)
from simulations.seasonality.report import (
    arms_text,
    diagnostics,
    effect_line,
    format_diagnostics,
    format_table,
    write_outputs,
)


@dataclass(frozen=True)
class SeasonalityOutput:
    """Where and how the results go; not part of the run, so not in ``reproduce``."""

    no_plots: bool = option(False, FLAG, "skip the PNG/SVG plots")
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/seasonality"), PATH, "directory for tables, data and plots")  # noqa: RUF009


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
            summary = mean_ci(result.metrics[metric])
            row[metric] = summary.mean
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = summary.ci_low, summary.ci_high
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


def paired_effects(results: dict[tuple[str, str], CombinationResult]) -> list[Effect]:
    """Ratio minus raw per mode, paired run by run (both saw the same traffic)."""
    effects = []
    for mode in MODES:
        raw, ratio = results.get((mode, "raw")), results.get((mode, "ratio"))
        if raw is None or ratio is None:
            continue
        for metric, higher_is_better in (("p_best_final", True), ("regret_pct", False)):
            d = mean_ci(ratio.metrics[metric] - raw.metrics[metric])
            # NaN bounds (a single run) compare False: no clear difference.
            better = d.ci_low > 0 if higher_is_better else d.ci_high < 0
            worse = d.ci_high < 0 if higher_is_better else d.ci_low > 0
            verdict = "ratio better" if better else "raw better" if worse else "no clear difference"
            effects.append(Effect(mode, metric, d.mean, d.ci_low, d.ci_high, verdict))
    return effects


# --- the command ---------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SeasonalityConfig)
    add_options(parser, SeasonalityOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = from_args(SeasonalityConfig, args)
    except InvalidParameterError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(SeasonalityOutput, args)
    print(
        f"seasonality: {config.runs} runs x {config.days:g} days of {config.window_minutes:g}-min "
        f"windows ({config.n_windows} ticks), arms {arms_text(config)} "
        f"(best: arm {config.best_arm}), conversion peak/trough {config.peak_to_trough:g}, "
        f"seed {config.seed}",
        file=sys.stderr,
    )
    result = simulate(config, show_progress=progress_enabled(output.no_progress))
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
            print(effect_line(effect))
    return write_and_report(
        COMMAND,
        lambda: write_outputs(result, output.out, plots=not output.no_plots),
        command_line(COMMAND, config),
    )
