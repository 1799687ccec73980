"""``python -m simulations.model_search ...``: ``ranktune simulate model-search ...``."""

import sys

from simulations.cli import main

raise SystemExit(main(["model-search", *sys.argv[1:]]))
