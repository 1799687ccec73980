"""``python -m simulations.regret ...``: the same as ``ranktune simulate regret ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["regret", *sys.argv[1:]]))
