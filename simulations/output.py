"""What every simulator command does last: write its files, say where, and how to repeat.

    print(format_table(result))
    return write_and_report("regret", lambda: write_outputs(result, out), reproduce)

prints ``wrote <files>`` and ``reproduce: ranktune simulate regret ...`` after the table.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from simulations.options import PROGRAM


def write_and_report(command: str, write: Callable[[], list[Path]], reproduce: str) -> int:
    """Run ``write``; print the files written and the command that repeats the run.

    Returns the command's exit code: 0, or 1 when the outputs cannot be written.
    """
    try:
        written = write()
    except OSError as error:
        print(f"{PROGRAM} {command}: cannot write outputs: {error}", file=sys.stderr)
        return 1
    print()
    print(f"wrote {', '.join(str(path) for path in written)}")
    print(f"reproduce: {reproduce}")
    return 0


def invalid_parameters(command: str, error: Exception) -> int:
    """Say which parameter is wrong, argparse-style; returns the exit code 2."""
    print(f"{PROGRAM} {command}: error: {error}", file=sys.stderr)
    return 2


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Indented JSON; NaN is written as ``NaN`` where a command has not mapped it to null."""
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def percent(value: float | None, signed: bool = True) -> str:
    """``+12.3%`` (or ``12.3%`` unsigned) for a table; ``n/a`` for none or NaN."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def weights_text(config: dict[str, float], names: Iterable[str]) -> str:
    """A configuration's weights as ``name=0.60 ...``, in the order of ``names``."""
    return " ".join(f"{name}={float(config[name]):.2f}" for name in names)


def csv_number(value: float) -> str:
    """The exact float, or an empty cell for NaN (no interval from a single run)."""
    return "" if math.isnan(value) else repr(float(value))


def json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def versions(*, ranktune: bool = False) -> dict[str, str]:
    """The versions a result depends on, for the JSON."""
    found = {"python": platform.python_version(), "numpy": np.__version__}
    if ranktune:
        found["ranktune"] = ranktune_version()
    return found


def ranktune_version() -> str:
    try:
        return version("ranktune")
    except PackageNotFoundError:
        return "unknown"
