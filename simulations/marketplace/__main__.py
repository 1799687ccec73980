"""``python -m simulations.marketplace ...``: the same as ``ranktune simulate marketplace ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["marketplace", *sys.argv[1:]]))
