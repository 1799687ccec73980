"""Plots of a live experiment: each arm's posterior mean and 95% credible band over ticks.

Built on a matplotlib ``Figure`` with an Agg canvas (no pyplot: no global state, safe in the
server's worker threads), rendered to PNG or SVG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bandit.summaries import credible_intervals

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


@dataclass(frozen=True)
class ArmSeries:
    """One arm's posterior after each applied tick that updated it."""

    label: str
    tick_numbers: Sequence[int]
    alphas: Sequence[float]
    betas: Sequence[float]


def posteriors_figure(title: str, series: Sequence[ArmSeries], fmt: str = "png") -> bytes:
    """Posterior mean alpha/(alpha+beta) per arm with its equal-tailed 95% band.

    A mean above 1/2 means the arm earns more target events per exposure than the
    reference group (SPEC §3.2), so 1/2 is drawn as the reference line.
    """
    figure = Figure(figsize=(8.0, 5.0))
    figure.subplots_adjust(left=0.09, right=0.78, bottom=0.1, top=0.9)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for arm in series:
        if not arm.tick_numbers:
            continue
        alphas = [float(a) for a in arm.alphas]
        betas = [float(b) for b in arm.betas]
        means = [a / (a + b) for a, b in zip(alphas, betas, strict=True)]
        lows, highs = credible_intervals(alphas, betas)
        (line,) = axes.plot(arm.tick_numbers, means, label=arm.label, linewidth=1.5)
        axes.fill_between(arm.tick_numbers, lows, highs, alpha=0.15, color=line.get_color())
    axes.axhline(0.5, color="0.4", linestyle=":", linewidth=1, label="reference (1/2)")
    if not any(arm.tick_numbers for arm in series):
        axes.text(0.5, 0.5, "no applied tick yet", ha="center", transform=axes.transAxes)
    axes.set_title(title)
    axes.set_xlabel("tick")
    axes.set_ylabel("posterior mean of theta (95% band)")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()
