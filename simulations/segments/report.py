"""The segments command's table, files and plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulations.confidence import MeanCIArray, mean_ci
from simulations.options import command_line, parameters
from simulations.output import jsonable, versions, write_csv, write_json
from simulations.plotting import Curve, new_figure, plot_curves_with_bands, save_figure
from simulations.segments.model import COMMAND, METRICS, FloatArray

if TYPE_CHECKING:
    from simulations.segments.run import SegmentsResult

COLORS = {
    "global": "#1f77b4",
    "independent": "#ff7f0e",
    "hierarchical": "#2ca02c",
    "oracle": "0.5",
}
HEADERS = {
    "lift": "lift",
    "lift_big": "lift big",
    "lift_small": "lift small",
    "regret_pct": "regret",
    "regret_contacts": "regret contacts",
}


def _cell(metric: str, row: dict[str, float]) -> str:
    half = (row[f"{metric}_ci_high"] - row[f"{metric}_ci_low"]) / 2
    if metric == "regret_contacts":
        return f"{row[metric]:,.0f} ±{half:,.0f}"
    return (
        f"{row[metric]:+.2f}% ±{half:.2f}"
        if metric != "regret_pct"
        else (f"{row[metric]:.2f}% ±{half:.2f}")
    )


def format_table(result: SegmentsResult) -> str:
    config = result.config
    header = ["strategy", *(HEADERS[m] for m in METRICS)]
    body = [[row["strategy"], *(_cell(m, row) for m in METRICS)] for row in result.rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [
        f"Lift over the reference configuration in expected contacts, mean over {config.runs} "
        f"runs ± 95% CI half-width; big = the top {config.big_categories} categories "
        f"({config.big_share:.0%} of traffic), small = the other "
        f"{config.categories - config.big_categories}; regret against each category's best arm",
        "",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
    if result.pooling:
        p = result.pooling
        lines += [
            "",
            f"hierarchical, last fit: kappa / cap {p['kappa_over_cap']:.2f} on average "
            f"({p['share_at_cap']:.0%} of arms at the cap = fully pooled); pooling weight "
            f"kappa / (kappa + n_s) {p['pooling_weight_big']:.2f} in big and "
            f"{p['pooling_weight_small']:.2f} in small categories",
        ]
    return "\n".join(lines)


def write_outputs(result: SegmentsResult, out: Path, plots: bool = True) -> list[Path]:
    config = result.config
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    columns = ["strategy"] + [f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high")]
    paths.append(
        write_csv(out / "summary.csv", columns, [[r[c] for c in columns] for r in result.rows])
    )
    run_rows = [
        [name, run, *(float(values[m][run]) for m in METRICS)]
        for name, values in result.metrics.items()
        for run in range(config.runs)
    ]
    paths.append(write_csv(out / "runs.csv", ["strategy", "run", *METRICS], run_rows))
    days = (np.arange(config.n_windows, dtype=np.float64) + 1.0) * (config.window_minutes / 1440.0)
    curve_summaries = {name: mean_ci(c, axis=1) for name, c in result.regret_curves.items()}
    header = ["day"] + [f"{n}_{s}" for n in curve_summaries for s in ("mean", "ci_low", "ci_high")]
    paths.append(
        write_csv(
            out / "regret.csv",
            header,
            [
                [float(days[t])]
                + [
                    float(v)
                    for s in curve_summaries.values()
                    for v in (s.mean[t], s.ci_low[t], s.ci_high[t])
                ]
                for t in range(config.n_windows)
            ],
        )
    )
    if plots:
        paths += write_plots(result, days, curve_summaries, out)
    path = out / "segments.json"
    paths.append(path)
    document = {
        "command": COMMAND,
        "reproduce": command_line(COMMAND, config),
        "seed": config.seed,
        "parameters": parameters(config),
        "derived": {
            "n_windows": config.n_windows,
            "big_categories": config.big_categories,
            "shares": [float(s) for s in config.shares],
        },
        "summary": result.rows,
        "effects": result.effects,
        "pooling": result.pooling,
        "elapsed_s": result.elapsed_s,
        "versions": versions(),
        "files": [p.name for p in paths],
    }
    write_json(path, jsonable(document))
    return paths


def _note(result: SegmentsResult) -> str:
    config = result.config
    return (
        f"{config.runs} runs, {config.categories} categories (Zipf {config.zipf:g}), "
        f"spread {config.spread:g}, {config.requests_per_day:,.0f} requests/day, "
        f"seed {config.seed}"
    )


def write_plots(
    result: SegmentsResult, days: FloatArray, curves: Mapping[str, MeanCIArray], out: Path
) -> list[Path]:
    lines = [
        Curve(name, days, s.mean, lower=s.ci_low, upper=s.ci_high, color=COLORS[name])
        for name, s in curves.items()
    ]
    paths = plot_curves_with_bands(
        lines,
        out / "segments-regret",
        title="Cumulative regret against each category's best arm (mean, 95% CI)",
        xlabel="day",
        ylabel="regret (expected contacts)",
        note=_note(result),
    )
    figure = new_figure(8.0, 4.5)
    axes = figure.add_subplot()
    groups = ("lift", "lift_big", "lift_small")
    width = 0.8 / len(result.rows)
    x = np.arange(len(groups))
    for i, row in enumerate(result.rows):
        means = np.array([row[g] for g in groups])
        low = means - np.array([row[f"{g}_ci_low"] for g in groups])
        high = np.array([row[f"{g}_ci_high"] for g in groups]) - means
        axes.bar(
            x + (i - (len(result.rows) - 1) / 2) * width,
            means,
            width,
            yerr=np.vstack([low, high]),
            capsize=3,
            label=row["strategy"],
            color=COLORS[row["strategy"]],
        )
    axes.set_xticks(x, ["all categories", "big categories", "small categories"])
    axes.set_ylabel("lift over the reference (%)")
    axes.axhline(0, color="0.3", lw=0.8)
    axes.grid(True, axis="y", alpha=0.3)
    top = max(row[f"{g}_ci_high"] for row in result.rows for g in groups)
    axes.set_ylim(top=1.2 * top if top > 0 else 1.0)  # room for the legend above the bars
    axes.legend(fontsize="small", loc="upper center", ncol=len(result.rows))
    figure.suptitle("Lift over the reference configuration, by category size")
    axes.set_title(_note(result), fontsize="x-small", color="0.35")
    paths += save_figure(figure, out / "segments-lift")
    return paths
