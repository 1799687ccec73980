"""``ranktune simulate segments``: run the strategies on shared traffic, and the command."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bandit.errors import InvalidParameterError
from bandit.hierarchy import pooling_weights
from simulations.confidence import mean_ci
from simulations.options import FLAG, PATH, add_options, command_line, from_args, option
from simulations.output import invalid_parameters, write_and_report
from simulations.progress import ProgressReporter, progress_enabled
from simulations.segments.model import (
    COMMAND,
    METRICS,
    FloatArray,
    SegmentsConfig,
    Strategy,
    oracle_metrics,
    run_metrics,
    simulate_strategies,
)
from simulations.segments.report import format_table, write_outputs

# (treatment, control, metric): the paired comparisons the issue asks about.
COMPARISONS = (
    ("independent", "global", "lift"),
    ("hierarchical", "global", "lift"),
    ("hierarchical", "independent", "lift"),
    ("hierarchical", "independent", "lift_big"),
    ("hierarchical", "independent", "lift_small"),
)


@dataclass(frozen=True)
class SegmentsOutput:
    """Where and how the results go; not part of the run, so not in ``reproduce``."""

    no_plots: bool = option(False, FLAG, "skip the PNG/SVG plots")
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/segments"), PATH, "directory for tables, data and plots")  # noqa: RUF009


@dataclass
class SegmentsResult:
    config: SegmentsConfig
    metrics: dict[str, dict[str, FloatArray]]  # strategy (and "oracle") -> metric -> (runs,)
    rows: list[dict[str, Any]]
    effects: list[dict[str, Any]]
    pooling: dict[str, float]
    regret_curves: dict[str, FloatArray]  # strategy -> (windows, runs)
    elapsed_s: float


def pooling_summary(strategy: Strategy, config: SegmentsConfig) -> dict[str, float]:
    """The last hierarchical fit: how much the segments were pooled."""
    fit = strategy.fit
    if fit is None:
        return {}
    evidence = np.swapaxes(strategy.successes + strategy.failures, 1, 2)
    weights = pooling_weights(fit.kappa, evidence)
    big = config.big_categories
    return {
        "kappa_over_cap": float(np.mean(fit.kappa / fit.kappa_max)),
        "share_at_cap": float(np.mean(fit.kappa >= fit.kappa_max * (1 - 1e-9))),
        "pooling_weight_big": float(weights[..., :big].mean()),
        "pooling_weight_small": float(weights[..., big:].mean())
        if big < config.categories
        else float("nan"),
    }


def simulate(config: SegmentsConfig, *, show_progress: bool = False) -> SegmentsResult:
    """Run every strategy on the same worlds and traffic; no files, no printing."""
    started = time.monotonic()
    with ProgressReporter(config.n_windows, "segments", enabled=show_progress) as progress:
        _, strategies = simulate_strategies(config, on_window=progress.update)
    metrics = {name: run_metrics(s, config) for name, s in strategies.items()}
    metrics["oracle"] = oracle_metrics(next(iter(strategies.values())), config)
    rows = []
    for name, values in metrics.items():
        row: dict[str, Any] = {"strategy": name}
        for metric in METRICS:
            summary = mean_ci(values[metric])
            row[metric] = summary.mean
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = summary.ci_low, summary.ci_high
        rows.append(row)
    effects = []
    for treatment, control, metric in COMPARISONS:
        if treatment not in strategies or control not in strategies:
            continue
        d = mean_ci(metrics[treatment][metric] - metrics[control][metric])
        verdict = (
            f"{treatment} better"
            if d.ci_low > 0
            else f"{control} better"
            if d.ci_high < 0
            else "no clear difference"
        )
        effects.append(
            {
                "treatment": treatment,
                "control": control,
                "metric": metric,
                "difference_pp": d.mean,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "verdict": verdict,
            }
        )
    hierarchical = strategies.get("hierarchical")
    pooling = pooling_summary(hierarchical, config) if hierarchical is not None else {}
    curves = {name: np.asarray(s.regret_series) for name, s in strategies.items()}
    return SegmentsResult(
        config, metrics, rows, effects, pooling, curves, time.monotonic() - started
    )


def effect_line(effect: dict[str, Any]) -> str:
    return (
        f"  {effect['metric']}: {effect['treatment']} - {effect['control']} = "
        f"{effect['difference_pp']:+.2f} pp (95% CI {effect['ci_low']:+.2f} to "
        f"{effect['ci_high']:+.2f}) -> {effect['verdict']}"
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SegmentsConfig)
    add_options(parser, SegmentsOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = from_args(SegmentsConfig, args)
    except InvalidParameterError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(SegmentsOutput, args)
    print(
        f"segments: {config.runs} runs x {config.days:g} days of {config.window_minutes:g}-min "
        f"ticks, {config.categories} categories (Zipf {config.zipf:g}; the top "
        f"{config.big_categories} carry {config.big_share:.0%}), spread {config.spread:g}, "
        f"seed {config.seed}",
        file=sys.stderr,
    )
    result = simulate(config, show_progress=progress_enabled(output.no_progress))
    print(format_table(result))
    if result.effects:
        print("\nPaired by run (same worlds, same traffic):")
        for effect in result.effects:
            print(effect_line(effect))
    return write_and_report(
        COMMAND,
        lambda: write_outputs(result, output.out, plots=not output.no_plots),
        command_line(COMMAND, config),
    )
