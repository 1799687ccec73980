"""``ranktune simulate movielens``: the platform, end to end, on real MovieLens behaviour.

``data`` loads MovieLens 100k at run time (cached, checksummed), ``model`` builds the
"similar films" environment and the scenario, ``run`` drives the service layer and is the
command, ``report`` turns the runs into tables, files and plots.
"""

from simulations.movielens.data import DataUnavailable, MovieLens, load
from simulations.movielens.model import (
    COMMAND,
    MovieLensConfig,
    MovieLensMarket,
    MovieLensModel,
    MovieLensResult,
    search_best,
)
from simulations.movielens.report import (
    available_lift,
    bad_traffic_share,
    bin_rows,
    captured,
    checkpoints,
    format_table,
    write_outputs,
)
from simulations.movielens.run import (
    MovieLensOutput,
    configure_parser,
    experiment_body,
    run,
    simulate,
)

__all__ = [
    "COMMAND",
    "DataUnavailable",
    "MovieLens",
    "MovieLensConfig",
    "MovieLensMarket",
    "MovieLensModel",
    "MovieLensOutput",
    "MovieLensResult",
    "available_lift",
    "bad_traffic_share",
    "bin_rows",
    "captured",
    "checkpoints",
    "configure_parser",
    "experiment_body",
    "format_table",
    "load",
    "run",
    "search_best",
    "simulate",
    "write_outputs",
]
