"""``ranktune simulate regret``: cumulative regret of bandit policies on Bernoulli arms.

``model`` holds the parameters (each one also the command's option) and the simulation of
one policy, ``run`` runs every policy and the command, ``report`` writes the table, the
files and the plot.
"""

from simulations.regret.model import (
    COMMAND,
    DEFAULT_POLICIES,
    PRESETS,
    PolicyRegret,
    PolicySummary,
    RegretConfig,
    RegretResult,
    checkpoint_times,
    policy_rng,
    simulate_policy,
)
from simulations.regret.report import format_table, write_outputs
from simulations.regret.run import RegretOutput, configure_parser, run, run_regret

__all__ = [
    "COMMAND",
    "DEFAULT_POLICIES",
    "PRESETS",
    "PolicyRegret",
    "PolicySummary",
    "RegretConfig",
    "RegretOutput",
    "RegretResult",
    "checkpoint_times",
    "configure_parser",
    "format_table",
    "policy_rng",
    "run",
    "run_regret",
    "simulate_policy",
    "write_outputs",
]
