"""Each default is declared once, in the pure layer; the request bodies read it from there."""

from __future__ import annotations

import dataclasses

from api import schemas
from bandit import DEFAULT_POLICY_PARAMETERS, UCB1, EpsilonDecreasing, EpsilonGreedy, make_policy


def test_policy_params_default_to_the_pure_policy_parameters() -> None:
    assert schemas.PolicyParams().model_dump() == dataclasses.asdict(DEFAULT_POLICY_PARAMETERS)
    assert make_policy("egreedy") == EpsilonGreedy(epsilon=DEFAULT_POLICY_PARAMETERS.epsilon)
    assert make_policy("edecay") == EpsilonDecreasing(c=DEFAULT_POLICY_PARAMETERS.c)
    assert make_policy("ucb1") == UCB1(alpha=DEFAULT_POLICY_PARAMETERS.ucb_alpha)
