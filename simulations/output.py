"""What every simulator command does last: write its files, say where, and how to repeat."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def write_and_report(command: str, write: Callable[[], list[Path]], reproduce: str) -> int:
    """Run ``write``; print the files written and the command that repeats the run.

    Returns the command's exit code: 0, or 1 when the outputs cannot be written.
    """
    try:
        written = write()
    except OSError as error:
        print(f"ranktune simulate {command}: cannot write outputs: {error}", file=sys.stderr)
        return 1
    print()
    print(f"wrote {', '.join(str(path) for path in written)}")
    print(f"reproduce: {reproduce}")
    return 0
