"""``ranktune simulate seasonality``: raw conversion versus the reference-group ratio.

``model`` holds the parameters (each one also the command's option), the daily cycle, the
traffic and the update of one (mode, feed) combination, ``run`` runs the combinations on
shared traffic and is the command, ``report`` writes the tables, the files and the plots.
"""

from simulations.seasonality.model import (
    COMMAND,
    TABLE_COLUMNS,
    CombinationResult,
    Effect,
    SeasonalityConfig,
    SeasonalityResult,
    Traffic,
    daily_rates,
    simulate_combination,
)
from simulations.seasonality.report import (
    best_share_series,
    diagnostics,
    format_diagnostics,
    format_table,
    write_outputs,
)
from simulations.seasonality.run import (
    SeasonalityOutput,
    configure_parser,
    paired_effects,
    run,
    simulate,
)

__all__ = [
    "COMMAND",
    "TABLE_COLUMNS",
    "CombinationResult",
    "Effect",
    "SeasonalityConfig",
    "SeasonalityOutput",
    "SeasonalityResult",
    "Traffic",
    "best_share_series",
    "configure_parser",
    "daily_rates",
    "diagnostics",
    "format_diagnostics",
    "format_table",
    "paired_effects",
    "run",
    "simulate",
    "simulate_combination",
    "write_outputs",
]
