"""``simulations.confidence.mean_ci``: the Student-t interval every command uses.

The expected intervals are computed independently, with SciPy's own interval functions
(``stats.t.interval`` on ``stats.sem`` and ``ttest_1samp(...).confidence_interval``), not
with the formula the function implements.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from simulations.confidence import mean_ci


def test_golden_values() -> None:
    # mean 2.5, sd sqrt(5/3), t_{0.975, 3} = 3.182446305284263
    summary = mean_ci([1.0, 2.0, 3.0, 4.0])
    half_width = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert summary.mean == 2.5
    assert summary.sd == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert summary.ci_low == pytest.approx(2.5 - half_width, rel=1e-9)
    assert summary.ci_high == pytest.approx(2.5 + half_width, rel=1e-9)
    assert summary.n == 4


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30, 200])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_matches_scipys_t_interval(n: int, confidence: float) -> None:
    values = np.random.default_rng(n).gamma(2.0, 3.0, size=n)
    low, high = stats.t.interval(confidence, df=n - 1, loc=np.mean(values), scale=stats.sem(values))
    test_ci = stats.ttest_1samp(values, 0.0).confidence_interval(confidence)

    summary = mean_ci(values, confidence)

    assert summary.ci_low == pytest.approx(low, rel=1e-12)
    assert summary.ci_high == pytest.approx(high, rel=1e-12)
    assert summary.ci_low == pytest.approx(test_ci.low, rel=1e-12)
    assert summary.ci_high == pytest.approx(test_ci.high, rel=1e-12)
    assert summary.sd == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert summary.n == n


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(min_value=2, max_value=60),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    st.floats(min_value=0.5, max_value=0.999),
)
def test_matches_scipy_on_any_sample(values: np.ndarray, confidence: float) -> None:
    sem = stats.sem(values)
    summary = mean_ci(values, confidence)
    if sem == 0:  # every value equal: a zero-width interval at the value
        assert summary.ci_low == summary.ci_high == pytest.approx(values[0], rel=1e-12)
        return
    low, high = stats.t.interval(confidence, df=values.size - 1, loc=values.mean(), scale=sem)
    width = high - low
    assert summary.ci_low == pytest.approx(low, abs=1e-9 * width + 1e-9)
    assert summary.ci_high == pytest.approx(high, abs=1e-9 * width + 1e-9)


def test_tends_to_the_normal_interval() -> None:
    # The half-width in standard errors is t_{n-1}: 12.7 at n = 2, 1.972 at 200, -> 1.960.
    z = stats.norm.ppf(0.975)
    ratios = []
    for n in (2, 200, 1_000_000):
        values = np.random.default_rng(1).normal(size=n)
        summary = mean_ci(values)
        ratios.append((summary.ci_high - summary.mean) / (summary.sd / math.sqrt(n)))
    assert ratios[0] == pytest.approx(12.706204736, rel=1e-9)
    assert ratios[1] == pytest.approx(stats.t.ppf(0.975, 199), rel=1e-12)
    assert ratios[1] / z == pytest.approx(1.006, abs=0.001)
    assert ratios[2] == pytest.approx(z, rel=1e-5)


def test_fewer_than_two_values_have_no_interval() -> None:
    one = mean_ci([7.0])
    assert one.mean == 7.0 and one.n == 1
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) and math.isnan(one.sd)
    empty = mean_ci([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.ci_low)


def test_non_finite_values_are_left_out() -> None:
    with_gaps = mean_ci([1.0, math.nan, 2.0, math.inf, 4.0])
    without = mean_ci([1.0, 2.0, 4.0])
    assert with_gaps == without
    assert with_gaps.n == 3


def test_along_an_axis_is_the_interval_of_every_column() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(5.0, 2.0, size=(40, 7))
    values[3, 2] = math.nan
    columns = mean_ci(values, axis=0)
    rows = mean_ci(values.T, axis=1)
    for j in range(values.shape[1]):
        one = mean_ci(values[:, j])
        assert columns.mean[j] == pytest.approx(one.mean, rel=1e-12)
        assert columns.ci_low[j] == pytest.approx(one.ci_low, rel=1e-12)
        assert columns.ci_high[j] == pytest.approx(one.ci_high, rel=1e-12)
        assert columns.n[j] == one.n == (39 if j == 2 else 40)
    np.testing.assert_array_equal(rows.ci_low, columns.ci_low)


def test_finite_data_give_numpys_own_mean_and_sd_bit_for_bit() -> None:
    # The commands' files kept their bytes when they moved to mean_ci: same arithmetic.
    values = np.random.default_rng(5).gamma(2.0, 30.0, size=(200, 50)).cumsum(axis=1)
    columns = mean_ci(values, axis=0)
    np.testing.assert_array_equal(columns.mean, values.mean(axis=0))
    np.testing.assert_array_equal(columns.sd, values.std(axis=0, ddof=1))
    last = mean_ci(values[:, -1])
    assert last.mean == float(values[:, -1].mean())
    assert last.sd == float(values[:, -1].std(ddof=1))


def test_rejects_a_confidence_outside_0_1() -> None:
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], 1.0)
