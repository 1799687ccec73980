"""``simulations.plotting``: curves with bands, written as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulations.plotting import Curve, plot_curves_with_bands


def test_plot_curves_with_bands_writes_png_and_svg(tmp_path: Path) -> None:
    x = np.arange(1, 11)
    paths = plot_curves_with_bands(
        [Curve("a", x, x * 1.0, lower=x - 0.5, upper=x + 0.5)],
        tmp_path / "nested" / "plot",
        title="t",
        xlabel="x",
        ylabel="y",
        reference_lines=[Curve("ref", x, np.log(x), dashed=True)],
        log_x=True,
        note="note",
    )
    assert [p.name for p in paths] == ["plot.png", "plot.svg"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert b"<svg" in paths[1].read_bytes()[:500]
