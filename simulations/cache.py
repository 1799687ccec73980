"""Where downloaded public data sets are kept: one user cache directory for ranktune.

``$RANKTUNE_CACHE_DIR/<name>`` when that variable is set, else
``$XDG_CACHE_HOME/ranktune/<name>`` (``~/.cache/ranktune/<name>`` without it). The MovieLens
simulator (simulations.movielens.data) and the Open Bandit Dataset check (ranktune.obd) keep
their files there; nothing downloaded is ever part of the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RANKTUNE_CACHE_DIR"


def user_cache_dir(name: str) -> Path:
    """The cache directory of the data set ``name`` (module doc); not created here."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override) / name
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ranktune" / name
