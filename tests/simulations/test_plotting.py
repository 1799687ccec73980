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


def test_the_same_plot_is_written_as_the_same_svg(tmp_path: Path) -> None:
    # save_figure promises that a re-run of a seeded simulation rewrites identical files;
    # matplotlib salts the SVG's element ids with a random UUID unless told otherwise.
    x = np.arange(1, 11)
    for name in ("first", "second"):
        plot_curves_with_bands(
            [Curve("a", x, x * 1.0, lower=x - 0.5, upper=x + 0.5)],
            tmp_path / name,
            title="t",
            xlabel="x",
            ylabel="y",
        )
    first, second = (tmp_path / "first.svg").read_bytes(), (tmp_path / "second.svg").read_bytes()
    assert b'clip-path="url(#p' in first  # ids that a salt would change are there
    assert first == second
