"""``ranktune simulate marketplace``: the platform, end to end, on a synthetic marketplace.

``model`` holds the hidden market, the scenario's parameters (each one also the command's
option) and what a run records, ``run`` drives the service layer through the scenario and
is the command, ``report`` turns a run into the lift table, the verdict, files and plots.
"""

from simulations.marketplace.model import (
    COMMAND,
    TRAP_LABEL,
    MarketModel,
    MarketplaceConfig,
    MarketplaceResult,
)
from simulations.marketplace.report import (
    arm_summary,
    bin_rows,
    format_table,
    lift_interval,
    verdict,
    write_outputs,
)
from simulations.marketplace.run import MarketplaceOutput, configure_parser, run, simulate

__all__ = [
    "COMMAND",
    "TRAP_LABEL",
    "MarketModel",
    "MarketplaceConfig",
    "MarketplaceOutput",
    "MarketplaceResult",
    "arm_summary",
    "bin_rows",
    "configure_parser",
    "format_table",
    "lift_interval",
    "run",
    "simulate",
    "verdict",
    "write_outputs",
]
