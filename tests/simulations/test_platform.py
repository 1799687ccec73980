"""The simulators' shared driver: what a window records, the genetic step's settings, and
the checks every scenario's configuration shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from simulations.platform import (
    MIN_EXPOSURES,
    RunTrace,
    ScenarioClock,
    evolution_settings,
    require,
)


def test_a_window_is_recorded_by_arm_without_the_traffic_served_while_paused() -> None:
    trace = RunTrace()
    arm_ids = np.array([3, 1, 3, 2, 3], dtype=np.int64)
    live = np.array([True, True, False, True, True])
    counted = trace.record(arm_ids, live, [1, 0, 4, 2, 0], [0.5, 0.25, 0.5, 0.75, 0.5])
    assert counted.tolist() == [3, 1, -1, 2, 3]
    assert trace.log.exposures == [{1: 1, 2: 1, 3: 2}]
    assert trace.log.contacts == [{1: 0, 2: 2, 3: 1}]
    assert trace.log.expected_contacts == [{1: 0.25, 2: 0.75, 3: 1.0}]
    trace.record(np.array([3], dtype=np.int64), np.array([True]), [0], [0.5])
    assert trace.served == {1: 1, 2: 1, 3: 3}


def test_the_model_joins_the_mix_only_with_a_positive_weight() -> None:
    plain = evolution_settings(evolve_minutes=30, drop_count=2, arm_count=6, model_weight=0.0)
    assert plain == {
        "enabled": True,
        "evolve_interval_s": 1800,
        "min_exposures": float(MIN_EXPOSURES),
        "drop_count": 2,
        "min_arms": 4,
        "max_arms": 7,
        "score": "mean",
    }
    model = evolution_settings(evolve_minutes=30, drop_count=2, arm_count=6, model_weight=3.0)
    assert model["mix"] == {"random": 1.0, "mutation": 1.0, "crossover": 1.0, "model": 3.0}


@dataclass(frozen=True)
class Scenario(ScenarioClock):
    hours: float = 1.5
    views_per_minute: float = 10.0
    random_arms: int = 0
    tick_seconds: float = 30.0
    evolve_minutes: float = 20.0
    reference_share: float = 0.2
    users: int = 5
    bin_minutes: float = 15.0
    grid_steps: int = 2

    def __post_init__(self) -> None:
        require(self.scenario_checks())


def test_the_clock_counts_windows_of_a_tick() -> None:
    scenario = Scenario()
    assert scenario.n_windows == 180
    assert scenario.windows_per_bin == 30
    assert scenario.windows_per_step == 40
    assert scenario.views_per_window == 5.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hours", float("inf"), "hours must be > 0"),
        ("evolve_minutes", 0.25, "evolve_minutes must span a tick"),
        ("reference_share", 1.0, "reference_share must be in (0, 1)"),
        ("grid_steps", 1, "grid_steps must be >= 2"),
    ],
)
def test_the_first_failed_check_is_the_error(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Scenario(**{field: value})  # type: ignore[arg-type]
