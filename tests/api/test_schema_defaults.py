"""Each default is declared once, in the pure layer; the request bodies read it from there."""

from __future__ import annotations

import dataclasses

import pytest

from api import schemas
from bandit import DEFAULT_POLICY_PARAMETERS, UCB1, EpsilonDecreasing, EpsilonGreedy, make_policy
from bandit.evolution import EvolutionSettings


def test_policy_params_default_to_the_pure_policy_parameters() -> None:
    assert schemas.PolicyParams().model_dump() == dataclasses.asdict(DEFAULT_POLICY_PARAMETERS)
    assert make_policy("egreedy") == EpsilonGreedy(epsilon=DEFAULT_POLICY_PARAMETERS.epsilon)
    assert make_policy("edecay") == EpsilonDecreasing(c=DEFAULT_POLICY_PARAMETERS.c)
    assert make_policy("ucb1") == UCB1(alpha=DEFAULT_POLICY_PARAMETERS.ucb_alpha)


def test_an_empty_evolution_object_gives_the_pure_defaults() -> None:
    assert schemas.EvolutionIn().to_settings() == EvolutionSettings()


def test_every_setting_of_the_pure_layer_has_exactly_one_request_field() -> None:
    pure = {field.name for field in dataclasses.fields(EvolutionSettings)}
    request = set(schemas.EvolutionIn.model_fields) - {*schemas.SCHEDULE_FIELDS, "mix"}
    weights = set(schemas.MIX_WEIGHTS.values())
    assert set(schemas.EvolutionMix.model_fields) == set(schemas.MIX_WEIGHTS)
    assert request | weights == pure and not request & weights


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("max_arms", "evolution.max_arms"),
        ("random_weight", "evolution.mix.random"),
        ("mutation_weight", "evolution.mix.mutation"),
        ("crossover_weight", "evolution.mix.crossover"),
    ],
)
def test_a_setting_is_blamed_on_its_request_field(setting: str, field: str) -> None:
    assert schemas.evolution_field(setting) == field


def test_the_settings_shown_round_trip_to_the_same_pure_settings() -> None:
    settings = EvolutionSettings(max_arms=7, random_weight=0.5, score="prob_best")
    shown = schemas.EvolutionSettingsOut.of(settings, enabled=True, evolve_interval_s=60.0)
    body = schemas.EvolutionIn.model_validate(shown.model_dump())
    assert body.to_settings() == settings
