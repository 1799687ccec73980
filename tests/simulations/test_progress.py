"""``simulations.progress``: the progress line and when it is drawn."""

from __future__ import annotations

import io

from simulations.progress import ProgressReporter, progress_enabled


def test_progress_draws_only_when_enabled() -> None:
    stream = io.StringIO()
    with ProgressReporter(100, "run", enabled=True, stream=stream, min_interval=0.0) as progress:
        for step in range(1, 101):
            progress.update(step)
    text = stream.getvalue()
    assert text.startswith("\r")
    assert "100/100" in text and text.endswith("\n")

    quiet = io.StringIO()  # not a terminal: silent by default
    with ProgressReporter(100, "run", stream=quiet) as progress:
        progress.advance(50)
        progress.advance(50)
    assert quiet.getvalue() == ""
    assert progress.done == 100
    assert not progress_enabled(False, quiet)


def test_progress_render() -> None:
    progress = ProgressReporter(200, "ucb1", enabled=False, width=10)
    progress.update(50)
    assert progress.render(2.0) == "ucb1 [##--------]  25%  50/200  2.0 s, ~6.0 s left"
