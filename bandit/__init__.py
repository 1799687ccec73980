"""Pure bandit mathematics: policies, the reference-ratio update, posterior summaries.

No I/O, clocks or settings here; randomness only from an injected ``numpy.random.Generator``.
"""

from bandit.errors import BanditError, InvalidParameterError
from bandit.hierarchy import HierarchicalFit, fit_hierarchy, pooling_weights
from bandit.nursery import Nursery, choose_with_nursery, nursery_of
from bandit.policies import (
    DEFAULT_POLICY_PARAMETERS,
    POLICY_NAMES,
    UCB1,
    EpsilonDecreasing,
    EpsilonGreedy,
    Policy,
    PolicyParameters,
    ThompsonSampling,
    make_policy,
)
from bandit.summaries import PosteriorSummary, summarize
from bandit.update import PosteriorUpdate, Prior, WindowCounts, reference_ratio_update

__all__ = [
    "DEFAULT_POLICY_PARAMETERS",
    "POLICY_NAMES",
    "UCB1",
    "BanditError",
    "EpsilonDecreasing",
    "EpsilonGreedy",
    "HierarchicalFit",
    "InvalidParameterError",
    "Nursery",
    "Policy",
    "PolicyParameters",
    "PosteriorSummary",
    "PosteriorUpdate",
    "Prior",
    "ThompsonSampling",
    "WindowCounts",
    "choose_with_nursery",
    "fit_hierarchy",
    "make_policy",
    "nursery_of",
    "pooling_weights",
    "reference_ratio_update",
    "summarize",
]
