"""``ranktune simulate model-search``: the genetic step with and without the surrogate
model's proposals, on the synthetic marketplace, over many seeds with identical traffic."""

from simulations.model_search.run import (
    COMMAND,
    ModelSearchConfig,
    RunOutcome,
    configure_parser,
    outcome_of,
    run,
    summarise,
)

__all__ = [
    "COMMAND",
    "ModelSearchConfig",
    "RunOutcome",
    "configure_parser",
    "outcome_of",
    "run",
    "summarise",
]
