"""``ranktune simulate <command>``: the simulator's command line.

Each command is a package (``model``, ``run``, ``report``) that exposes
``configure_parser(parser)`` and ``run(args) -> int`` (the exit code); its options are
declared once, on its config dataclass (:mod:`simulations.options`). This module only wires
the commands together.
"""

from __future__ import annotations

import argparse
import importlib
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
}


def build_parser(prog: str = "ranktune simulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Bandit simulations.")
    subparsers = parser.add_subparsers(dest="simulation", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
