"""The regret command's table, files and plot."""

from __future__ import annotations

import math
from pathlib import Path

from simulations.bounds import lai_robbins_bound, lai_robbins_constant, ucb1_upper_bound
from simulations.confidence import MeanCIArray, mean_ci
from simulations.options import PROGRAM, command_line, parameters
from simulations.output import csv_number, json_number, versions, write_csv, write_json
from simulations.plotting import Curve, plot_curves_with_bands
from simulations.regret.model import COMMAND, IntArray, RegretResult, checkpoint_times


def format_table(result: RegretResult) -> str:
    """The summary table and the two bounds, as printed by the command."""
    config = result.config
    horizon = config.horizon
    arms = ", ".join(f"{p:g}" for p in config.means)
    lines = [
        f"Regret on {len(config.means)} Bernoulli arms ({arms}), horizon T = {horizon:,}, "
        f"{config.runs:,} runs, seed {config.seed}",
        "pseudo-regret sum_t (p* - p_chosen), mean over runs with a 95% t-interval",
        "",
        f"{'policy':<10}{'parameters':<16}{'regret at T':>12}  {'95% CI':<20}"
        f"{'best-arm share':>15}{'wall time':>11}",
    ]
    for summary in result.summaries:
        r = summary.regret
        interval = f"[{r.ci_low:.1f}, {r.ci_high:.1f}]" if r.n > 1 else "n/a (1 run)"
        lines.append(
            f"{summary.policy:<10}{summary.parameters:<16}{r.mean:>12.1f}  {interval:<20}"
            f"{summary.best_arm_share:>14.1%} {summary.wall_time_s:>9.2f} s"
        )
    constant = lai_robbins_constant(config.means)
    lai_robbins = float(lai_robbins_bound(config.means, horizon))
    ucb1 = float(ucb1_upper_bound(config.means, horizon))
    lines += [
        "",
        f"Bounds at T = {horizon:,}:",
        f"  Lai-Robbins asymptotic lower bound  C ln T = {constant:.3f} x {math.log(horizon):.3f}"
        f" = {lai_robbins:.1f}",
        f"  UCB1 finite-time upper bound (Auer et al. 2002, Thm 1) = {ucb1:.1f}"
        + (
            ""
            if config.ucb_alpha == 2.0
            else f"  (for alpha=2; this run used {config.ucb_alpha:g})"
        ),
    ]
    return "\n".join(lines)


def write_outputs(result: RegretResult, out_dir: Path, *, log_x: bool = False) -> list[Path]:
    """Write ``summary.csv``, ``curves.csv``, ``results.json`` and ``regret.png/.svg``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    times = checkpoint_times(config.horizon, config.checkpoints)
    lower_bound = lai_robbins_bound(config.means, times)
    upper_bound = ucb1_upper_bound(config.means, times)
    # The band at each checkpoint: how well the mean is known there, not the runs' spread.
    bands = {
        name: mean_ci(run.cumulative_regrets, axis=0) for name, run in result.runs_by_policy.items()
    }

    summary = write_csv(
        out_dir / "summary.csv",
        ["policy", "parameters", "horizon", "runs", "seed", "mean_regret", "ci95_low",
         "ci95_high", "sd_regret", "best_arm_share", "wall_time_s"],
        (
            [s.policy, s.parameters, config.horizon, config.runs, config.seed,
             csv_number(s.regret.mean), csv_number(s.regret.ci_low),
             csv_number(s.regret.ci_high), csv_number(s.regret.sd),
             csv_number(s.best_arm_share), f"{s.wall_time_s:.4f}"]
            for s in result.summaries
        ),
    )  # fmt: skip

    header = ["t", "lai_robbins_lower_bound", "ucb1_upper_bound"]
    for name in bands:
        header += [f"{name}_mean", f"{name}_ci95_low", f"{name}_ci95_high"]
    rows = []
    for i, t in enumerate(times):
        row = [int(t), csv_number(lower_bound[i]), csv_number(upper_bound[i])]
        for band in bands.values():
            row += [csv_number(band.mean[i]), csv_number(band.ci_low[i]),
                    csv_number(band.ci_high[i])]  # fmt: skip
        rows.append(row)
    curves_csv = write_csv(out_dir / "curves.csv", header, rows)

    results = write_json(out_dir / "results.json", _results_document(result, bands, times))

    curves = [
        Curve(
            f"{name} ({config.policy_parameters(name)})",
            times,
            band.mean,
            lower=band.ci_low,
            upper=band.ci_high,
        )
        for name, band in bands.items()
    ]
    reference_lines = [
        Curve("Lai-Robbins lower bound C ln t (asymptotic)", times, lower_bound, dashed=True),
        Curve("UCB1 upper bound (Auer et al. 2002)", times, upper_bound, color="0.55"),
    ]
    arms = ", ".join(f"{p:g}" for p in config.means)
    plots = plot_curves_with_bands(
        curves,
        out_dir / "regret",
        title="Mean cumulative pseudo-regret with 95% confidence bands",
        xlabel="t (pulls)" + (", log scale" if log_x else ""),
        ylabel="cumulative regret",
        reference_lines=reference_lines,
        log_x=log_x,
        note=f"arms {arms}; T = {config.horizon:,}; {config.runs} runs; seed {config.seed}",
    )
    return [summary, curves_csv, results, *plots]


def _results_document(
    result: RegretResult, bands: dict[str, MeanCIArray], times: IntArray
) -> dict[str, object]:
    config = result.config
    return {
        "command": f"{PROGRAM} {COMMAND}",
        "reproduce": command_line(COMMAND, config),
        "parameters": parameters(config),
        "regret_definition": "pseudo-regret: sum over steps of (p* - p of the chosen arm)",
        "random_streams": {
            "bit_generator": "PCG64",
            "construction": "default_rng(SeedSequence(seed, spawn_key=(crc32(policy),)))",
            "spawn_keys": {n: r.spawn_key for n, r in result.runs_by_policy.items()},
        },
        "versions": versions(ranktune=True),
        "bounds": {
            "lai_robbins_constant": lai_robbins_constant(config.means),
            "lai_robbins_lower_bound_at_horizon": float(
                lai_robbins_bound(config.means, config.horizon)
            ),
            "ucb1_upper_bound_at_horizon": float(ucb1_upper_bound(config.means, config.horizon)),
        },
        "summary": [
            {
                "policy": s.policy,
                "parameters": s.parameters,
                "mean_regret": json_number(s.regret.mean),
                "ci95_low": json_number(s.regret.ci_low),
                "ci95_high": json_number(s.regret.ci_high),
                "sd_regret": json_number(s.regret.sd),
                "best_arm_share": s.best_arm_share,
                "wall_time_s": s.wall_time_s,
                "regret_at_horizon_by_run": result.runs_by_policy[s.policy].final_regrets.tolist(),
            }
            for s in result.summaries
        ],
        "curves": {
            "t": times.tolist(),
            "lai_robbins_lower_bound": lai_robbins_bound(config.means, times).tolist(),
            "ucb1_upper_bound": ucb1_upper_bound(config.means, times).tolist(),
            **{
                name: {
                    "mean": band.mean.tolist(),
                    "ci95_low": band.ci_low.tolist(),
                    "ci95_high": band.ci_high.tolist(),
                }
                for name, band in bands.items()
            },
        },
    }
