"""``simulations.marketplace.report``: the lift interval."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.marketplace import lift_interval


def test_lift_interval_contains_the_ratio_and_is_nan_without_contacts() -> None:
    lift, low, high = lift_interval(120, 1000, 100, 1000)
    assert lift == pytest.approx(0.2)
    assert low < lift < high
    assert all(np.isnan(lift_interval(0, 1000, 100, 1000)))
