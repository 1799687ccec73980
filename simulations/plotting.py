"""Plot helpers shared by the simulator commands (matplotlib, Agg canvas, no pyplot).

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas instead of
``pyplot``: no global figure registry, no GUI backend picked from the environment, nothing
to close, and safe to call from tests and worker threads.

    curves = [Curve("thompson", t, mean, lower=ci_low, upper=ci_high)]
    lines = [Curve("Lai-Robbins", t, bound, dashed=True)]
    plot_curves_with_bands(curves, out / "regret", title=..., xlabel="t", ylabel="regret",
                           reference_lines=lines, log_x=True)
    # -> [out/regret.png, out/regret.svg]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DEFAULT_FORMATS = ("png", "svg")


@dataclass(frozen=True)
class Curve:
    """One line of a plot, with an optional shaded band ``lower .. upper`` around it."""

    label: str
    x: npt.ArrayLike
    y: npt.ArrayLike
    lower: npt.ArrayLike | None = None
    upper: npt.ArrayLike | None = None
    dashed: bool = False
    color: str | None = None


def new_figure(width: float = 8.0, height: float = 5.0) -> Figure:
    """A figure attached to an Agg canvas, ready for ``save_figure``."""
    # Fixed margins rather than a layout engine: constrained/tight layout draw the figure an
    # extra time per save, which was a third of the regret command's output time.
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.88)
    FigureCanvasAgg(figure)
    return figure


def save_figure(
    figure: Figure,
    stem: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    dpi: int = 150,
) -> list[Path]:
    """Save ``figure`` as ``stem.<format>`` for every format; returns the paths written.

    The SVG carries no creation date and a fixed id salt (matplotlib salts element ids with
    a random UUID by default), so that re-running a seeded simulation rewrites an identical
    file and committed sample plots do not churn.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"Date": None} if fmt == "svg" else None
        with matplotlib.rc_context({"svg.hashsalt": "ranktune"}):
            figure.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
        paths.append(path)
    return paths


def plot_curves_with_bands(
    curves: Sequence[Curve],
    stem: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    reference_lines: Sequence[Curve] = (),
    log_x: bool = False,
    log_y: bool = False,
    band_alpha: float = 0.2,
    formats: Sequence[str] = DEFAULT_FORMATS,
    note: str | None = None,
) -> list[Path]:
    """Draw every curve with its band, then the reference lines (thin, dashed by default),
    and save the figure as ``stem.png`` and ``stem.svg``. Returns the paths written.

    ``note`` is a line of small text above the axes (for example the run's parameters), so
    that a plot found on its own still says what produced it.
    """
    figure = new_figure()
    axes = figure.add_subplot()
    colors = _color_cycle()
    for index, curve in enumerate(curves):
        color = curve.color or colors[index % len(colors)]
        x = np.asarray(curve.x, dtype=np.float64)
        axes.plot(
            x,
            np.asarray(curve.y, dtype=np.float64),
            label=curve.label,
            color=color,
            linewidth=1.8,
            linestyle="--" if curve.dashed else "-",
        )
        if curve.lower is not None and curve.upper is not None:
            axes.fill_between(
                x,
                np.asarray(curve.lower, dtype=np.float64),
                np.asarray(curve.upper, dtype=np.float64),
                color=color,
                alpha=band_alpha,
                linewidth=0,
            )
    for line in reference_lines:
        axes.plot(
            np.asarray(line.x, dtype=np.float64),
            np.asarray(line.y, dtype=np.float64),
            label=line.label,
            color=line.color or "0.25",
            linewidth=1.2,
            linestyle="--" if line.dashed else ":",
        )
    if log_x:
        axes.set_xscale("log")
    if log_y:
        axes.set_yscale("log")
    figure.suptitle(title)
    if note:
        axes.set_title(note, fontsize="x-small", color="0.35")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return save_figure(figure, stem, formats)


def _color_cycle() -> list[str]:
    # The tab10 palette: distinguishable and colour-blind tolerant for up to ~6 lines.
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
