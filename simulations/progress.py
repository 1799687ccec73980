"""A small progress line on stderr for long simulations.

    with ProgressReporter(total=horizon, label="thompson", enabled=not args.no_progress) as bar:
        for t in range(horizon):
            ...
            bar.update(t + 1)

It redraws at most every ``min_interval`` seconds, so calling :meth:`ProgressReporter.update`
on every step of a loop costs a clock read. It stays silent when the stream is not a
terminal (CI logs, pipes, tests), unless ``enabled=True`` forces it on.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


def progress_enabled(no_progress: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw progress: not asked to be quiet and writing to a terminal."""
    target = sys.stderr if stream is None else stream
    return not no_progress and bool(getattr(target, "isatty", lambda: False)())


class ProgressReporter:
    """Draws ``label [#####-----]  50%  5,000/10,000  1.2 s, ~1.2 s left`` on one line."""

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
        width: int = 24,
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = progress_enabled(False, self.stream) if enabled is None else enabled
        self.min_interval = min_interval
        self.width = width
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._drawn = False
        self._last_len = 0

    def update(self, done: int) -> None:
        """Record that ``done`` of ``total`` units are finished (an absolute count)."""
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval or done >= self.total:
            self._last_draw = now
            self._draw(now)

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more finished units."""
        self.update(self.done + n)

    def close(self) -> None:
        """Finish the line (a final redraw, then a newline) if anything was drawn."""
        if self.enabled and self._drawn:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def render(self, elapsed: float) -> str:
        """The progress line for the current count (without the leading carriage return)."""
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        text = (
            f"{self.label} [{bar}] {fraction:4.0%}  {self.done:,}/{self.total:,}  {elapsed:.1f} s"
        )
        if 0 < fraction < 1:
            text += f", ~{elapsed * (1 - fraction) / fraction:.1f} s left"
        return text

    def _draw(self, now: float) -> None:
        # Pad with spaces so that a shorter line fully covers the previous one.
        line = self.render(now - self._start)
        self.stream.write("\r" + line.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(line)
        self._drawn = True
