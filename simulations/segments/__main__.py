"""``python -m simulations.segments ...``: the same as ``ranktune simulate segments ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["segments", *sys.argv[1:]]))
