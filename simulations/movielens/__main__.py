"""``python -m simulations.movielens ...``: the same as ``ranktune simulate movielens ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["movielens", *sys.argv[1:]]))
