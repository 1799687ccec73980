"""``ranktune simulate <command>``: the simulator's command line.

Each command is a package (``model``, ``run``, ``report``) that exposes
``configure_parser(parser)`` and ``run(args) -> int`` (the exit code); its options are
declared once, on its config dataclass (:mod:`simulations.options`). This module only wires
the commands together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "regret": ("simulations.regret", "regret of epsilon-greedy, UCB1 and Thompson sampling"),
    "seasonality": (
        "simulations.seasonality",
        "raw conversion versus the reference-group ratio under a daily cycle",
    ),
    "marketplace": (
        "simulations.marketplace",
        "the platform replayed on a synthetic similar-items marketplace",
    ),
    "movielens": (
        "simulations.movielens",
        "the platform replayed on a similar-films block with MovieLens 100k's real co-likes",
    ),
    "segments": (
        "simulations.segments",
        "one global bandit versus independent and hierarchical per-category bandits",
    ),
    "model-search": (
        "simulations.model_search",
        "the marketplace's genetic step with and without the surrogate model's proposals",
    ),
}


def build_parser(
    prog: str = "ranktune simulate", only: str | None = None
) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone: each command's package
    is imported to declare its options, and one costs the others' start-up (the marketplace
    imports the service's report, SQLAlchemy included) for nothing."""
    parser = argparse.ArgumentParser(prog=prog, description="Bandit simulations.")
    subparsers = parser.add_subparsers(dest="simulation", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(argv) if argv is not None else sys.argv[1:]
    # A known command first: only its parser (--help and mistakes get every command's).
    only = arguments[0] if arguments and arguments[0] in COMMANDS else None
    args = build_parser(only=only).parse_args(arguments)
    return int(args.run(args))
