"""Placeholder: `ranktune simulate regret` is being built (see the simulator issue)."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/regret", help="directory for tables, data and plots")


def run(args: argparse.Namespace) -> int:
    print("ranktune simulate regret: not implemented yet")
    return 2
