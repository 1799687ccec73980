"""Where an arm came from (stored on every arm, reported in its lineage)."""

from __future__ import annotations

from enum import StrEnum


class Origin(StrEnum):
    REFERENCE = "reference"  # the incumbent configuration, served to the reference group
    EXPERT = "expert"  # a founder given at creation, or an expert configuration from the queue
    MANUAL = "manual"  # added by an admin
    RANDOM = "random"  # drawn from the parameter space by a genetic step
    MUTATION = "mutation"  # a genetic step's perturbation of one of the best survivors
    CROSSOVER = "crossover"  # a genetic step's mix of two of the best survivors
    MODEL = "model"  # a genetic step's proposal from the surrogate model (arms/surrogate.py)
