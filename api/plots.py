"""Plots of a live experiment: each arm's posterior mean and 95% credible band over ticks.

Built on a matplotlib ``Figure`` with an Agg canvas (no pyplot: no global state, safe in the
server's worker threads), rendered to PNG or SVG bytes. matplotlib is imported by the first
plot, not with this module: it costs more than a second, which ``ranktune serve`` would
otherwise spend before answering (tests/test_startup_imports.py).

Bounded whatever the history: a long history is downsampled to at most
``points_per_arm(arms)`` ticks (:func:`downsample`), and with many arms only the
``HIGHLIGHTED_ARMS`` best by latest posterior mean are coloured, banded and named in the
legend; the others are thin grey lines under them, with one legend entry for all of them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.summaries import credible_intervals

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
MAX_POINTS_PER_ARM = 400  # a 960-pixel-wide plot shows no more detail than this
POINT_BUDGET = 200_000  # points of all arms together: bounds the rows read and drawn
HIGHLIGHTED_ARMS = 8  # about what distinct colours and a legend can keep readable
# Matplotlib's default colours without its grey, which is the colour of the other arms.
COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C9")


@dataclass(frozen=True)
class ArmSeries:
    """One arm's posterior after each applied tick that updated it (or a sample of them)."""

    label: str
    tick_numbers: Sequence[int] | npt.NDArray[np.int64]
    alphas: Sequence[float] | npt.NDArray[np.float64]
    betas: Sequence[float] | npt.NDArray[np.float64]


def points_per_arm(arms: int) -> int:
    """Ticks to draw per arm for ``arms`` arms: MAX_POINTS_PER_ARM, fewer (at least two, the
    first and the last) when that would exceed POINT_BUDGET in all."""
    return max(2, min(MAX_POINTS_PER_ARM, POINT_BUDGET // max(arms, 1)))


def downsample(count: int, max_points: int) -> npt.NDArray[np.intp]:
    """Indices of at most ``max_points`` (>= 2) of ``count`` points: all of them if they fit,
    else evenly spaced ones, the first and the last always included.

    A posterior after a tick is a state, not an increment, so the points kept are exact
    values of the curve; what is lost is only the detail between two of them.
    """
    if max_points < 2:
        raise ValueError(f"max_points: expected at least 2, got {max_points}")
    if count <= max_points:
        return np.arange(count, dtype=np.intp)
    # The spacing (count - 1) / (max_points - 1) exceeds 1, so the rounded indices are
    # distinct: exactly max_points of them.
    return np.round(np.linspace(0, count - 1, max_points)).astype(np.intp)


def _latest_mean(arm: ArmSeries) -> float:
    return float(arm.alphas[-1]) / (float(arm.alphas[-1]) + float(arm.betas[-1]))


def posteriors_figure(
    title: str,
    series: Sequence[ArmSeries],
    fmt: str = "png",
    *,
    subtitle: str | None = None,
    highlighted: int = HIGHLIGHTED_ARMS,
) -> bytes:
    """Posterior mean alpha/(alpha+beta) per arm; the ``highlighted`` arms with the highest
    latest mean in colour with their equal-tailed 95% band, the others thin and grey.

    theta is the arm's share of the pair (arm, reference) on the reference-ratio scale: a
    mean above 1/2 means the arm earns more target events per exposure than the reference
    group (docs/spec.md, "Updating"), so 1/2 is drawn as the reference line, and the right
    axis and the legend read the same scale as the lift over the reference.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(9.0, 5.0))
    figure.subplots_adjust(left=0.11, right=0.62, bottom=0.1, top=0.86)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    drawn = sorted((arm for arm in series if len(arm.tick_numbers)), key=_latest_mean)
    rest, top = drawn[: max(0, len(drawn) - highlighted)], drawn[-highlighted:]
    for index, arm in enumerate(reversed(top)):  # best first: the legend reads top down
        ticks, means, alphas, betas = _curve(arm)
        lows, highs = credible_intervals(alphas, betas)
        colour = COLOURS[index % len(COLOURS)]
        label = f"{arm.label}: {_lift(means[-1]):+.0%}"
        axes.plot(ticks, means, label=label, color=colour, linewidth=1.5, zorder=3)
        axes.fill_between(ticks, lows, highs, alpha=0.15, color=colour, linewidth=0, zorder=2)
    if rest:
        # One artist for all of them (hundreds of Line2D would cost seconds), under the rest.
        lines = [np.column_stack(_curve(arm)[:2]) for arm in rest]
        # Fainter as they get more numerous, so that hundreds stay a light background.
        faint = min(0.6, max(0.2, 30 / len(rest)))
        others = LineCollection(lines, colors="0.6", linewidths=0.6, alpha=faint, zorder=1)
        others.set_label(f"{len(rest)} other arms")
        axes.add_collection(others)
        axes.autoscale_view(scaley=False)
    axes.axhline(0.5, color="0.4", linestyle=":", linewidth=1, label="reference (1/2)")
    if not drawn:
        axes.text(0.5, 0.5, "no applied tick yet", ha="center", transform=axes.transAxes)
    figure.suptitle(title, x=0.09, y=0.97, ha="left")
    if subtitle:
        axes.set_title(subtitle, loc="left", fontsize=8, color="0.3")
    axes.set_xlabel("tick")
    axes.set_ylabel(
        "theta: the arm's share of the pair arm + reference\n(posterior mean, 95% band)"
    )
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    # The same scale read as the lift over the reference: theta / (1 - theta) - 1.
    lift_axis = axes.secondary_yaxis("right", functions=(_lift_of_theta, _theta_of_lift))
    lift_axis.set_ticks([-0.75, -0.5, -0.25, 0.0, 0.5, 1.0, 2.0, 4.0])
    lift_axis.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    lift_axis.set_ylabel("lift over the reference", fontsize=8)
    lift_axis.tick_params(labelsize=8)
    axes.legend(
        loc="upper left",
        bbox_to_anchor=(1.2, 1.0),
        fontsize=8,
        title="latest lift",
        title_fontsize=8,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()


def _lift(theta: float) -> float:
    return theta / (1.0 - theta) - 1.0 if theta < 1.0 else float("inf")


def _lift_of_theta(theta: npt.ArrayLike) -> npt.NDArray[np.float64]:
    clipped = np.clip(np.asarray(theta, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    return np.asarray(clipped / (1.0 - clipped) - 1.0, dtype=np.float64)


def _theta_of_lift(lift: npt.ArrayLike) -> npt.NDArray[np.float64]:
    ratio = np.maximum(np.asarray(lift, dtype=np.float64) + 1.0, 0.0)
    return np.asarray(ratio / (1.0 + ratio), dtype=np.float64)


def _curve(
    arm: ArmSeries,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:
    ticks = np.asarray(arm.tick_numbers, dtype=np.float64)
    alphas = np.asarray(arm.alphas, dtype=np.float64)
    betas = np.asarray(arm.betas, dtype=np.float64)
    return ticks, alphas / (alphas + betas), alphas, betas
