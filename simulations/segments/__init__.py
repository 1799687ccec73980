"""``ranktune simulate segments``: one global bandit, independent per-category bandits and
hierarchical per-category bandits (:mod:`bandit.hierarchy`) on the same skewed traffic.

``model`` holds the parameters (each one also the command's option), the world and the
tick of one strategy, ``run`` runs the strategies on shared traffic and is the command,
``report`` writes the table, the files and the plots.
"""

from simulations.segments.model import (
    COMMAND,
    METRICS,
    STRATEGIES,
    SegmentsConfig,
    Strategy,
    draw_qualities,
    oracle_metrics,
    run_metrics,
    simulate_strategies,
)
from simulations.segments.report import format_table, write_outputs
from simulations.segments.run import (
    SegmentsOutput,
    SegmentsResult,
    configure_parser,
    run,
    simulate,
)

__all__ = [
    "COMMAND",
    "METRICS",
    "STRATEGIES",
    "SegmentsConfig",
    "SegmentsOutput",
    "SegmentsResult",
    "Strategy",
    "configure_parser",
    "draw_qualities",
    "format_table",
    "oracle_metrics",
    "run",
    "run_metrics",
    "simulate",
    "simulate_strategies",
    "write_outputs",
]
