"""``python -m simulations.seasonality ...``: the same as ``ranktune simulate seasonality ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["seasonality", *sys.argv[1:]]))
