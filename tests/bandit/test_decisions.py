"""The decision rules (bandit.decisions): exact boundaries, the sustained-period clock and
the settings' ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bandit.decisions import (
    DecisionSettings,
    WinnerCandidate,
    confidently_worse,
    next_candidate,
    passes_winner_thresholds,
    sustained,
)
from bandit.errors import InvalidParameterError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lower", "upper", "higher_is_better", "max_loss", "expected"),
    [
        # Higher is better: the whole interval must lie below -max_loss.
        (-0.30, -0.06, True, 0.05, True),
        (-0.30, -0.05, True, 0.05, False),  # touching the tolerance is not past it
        (-0.30, -0.01, True, 0.05, False),  # confidently worse, but within the tolerance
        (-0.30, 0.02, True, 0.05, False),
        (-0.30, -0.001, True, 0.0, True),  # no tolerance: any confident loss
        (None, None, True, 0.05, False),  # no interval yet
        # Lower is better (complaints): the whole interval must lie above +max_loss.
        (0.11, 0.40, False, 0.10, True),
        (0.10, 0.40, False, 0.10, False),
        (-0.02, 0.40, False, 0.10, False),
        (None, None, False, 0.10, False),
    ],
)
def test_confidently_worse_is_the_interval_entirely_past_the_tolerance(
    lower: float | None,
    upper: float | None,
    higher_is_better: bool,
    max_loss: float,
    expected: bool,
) -> None:
    assert (
        confidently_worse(lower, upper, higher_is_better=higher_is_better, max_loss=max_loss)
        is expected
    )


@pytest.mark.parametrize("max_loss", [-0.01, float("nan"), float("inf")])
def test_confidently_worse_refuses_a_tolerance_out_of_range(max_loss: float) -> None:
    with pytest.raises(InvalidParameterError) as error:
        confidently_worse(-0.5, -0.4, higher_is_better=True, max_loss=max_loss)
    assert error.value.parameter == "max_loss"


@pytest.mark.parametrize(
    ("p_best", "lower", "expected"),
    [
        (0.95, 0.001, True),
        (0.9499, 0.5, False),
        (0.99, 0.0, False),  # the lift must be strictly above winner_min_lift
        (0.99, -0.01, False),
        (1.0, None, False),
    ],
)
def test_winner_thresholds(p_best: float, lower: float | None, expected: bool) -> None:
    assert passes_winner_thresholds(p_best, lower, DecisionSettings()) is expected


def test_winner_thresholds_with_a_minimum_lift() -> None:
    settings = DecisionSettings(winner_min_lift=0.05)
    assert passes_winner_thresholds(0.97, 0.051, settings)
    assert not passes_winner_thresholds(0.97, 0.05, settings)


def test_the_sustained_period_starts_with_an_arm_and_restarts_on_any_change() -> None:
    first = next_candidate(None, 3, T0)
    assert first == WinnerCandidate(3, T0)
    later = T0 + timedelta(seconds=10)
    assert next_candidate(first, 3, later) is first  # the same arm keeps its start
    assert next_candidate(first, 4, later) == WinnerCandidate(4, later)  # another restarts
    assert next_candidate(first, None, later) is None  # a miss clears it
    assert not sustained(first, T0 + timedelta(seconds=3599), 3600)
    assert sustained(first, T0 + timedelta(seconds=3600), 3600)
    assert sustained(first, T0, 0)


def test_default_settings() -> None:
    settings = DecisionSettings()
    assert (
        settings.guardrail_min_exposures,
        settings.circuit_breaker,
        settings.decision_max_loss,
        settings.winner_p_best,
        settings.winner_min_lift,
        settings.winner_sustain_s,
    ) == (1000.0, True, 0.05, 0.95, 0.0, 3600.0)


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"guardrail_min_exposures": -1.0}, "guardrail_min_exposures"),
        ({"circuit_breaker": 1}, "circuit_breaker"),
        ({"decision_max_loss": 1.5}, "decision_max_loss"),
        ({"winner_p_best": 0.5}, "winner_p_best"),
        ({"winner_p_best": float("nan")}, "winner_p_best"),
        ({"winner_min_lift": -2.0}, "winner_min_lift"),
        ({"winner_sustain_s": -1.0}, "winner_sustain_s"),
    ],
)
def test_settings_out_of_range_name_the_parameter(
    overrides: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as error:
        DecisionSettings(**overrides)
    assert error.value.parameter == parameter
