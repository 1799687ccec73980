"""``simulations.segments.model``: the world, shared traffic, and one tick against the
reference-ratio rule written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.errors import InvalidParameterError
from simulations.segments import SegmentsConfig, Strategy, draw_qualities, simulate_strategies
from simulations.segments.model import step


def test_zipf_shares_and_big_categories() -> None:
    config = SegmentsConfig(categories=4, zipf=1.0, big_share=0.5)
    np.testing.assert_allclose(config.shares, np.array([12, 6, 4, 3]) / 25, rtol=1e-14)
    assert config.big_categories == 2  # 0.48 < 0.5 <= 0.72
    assert SegmentsConfig(categories=4, zipf=0.0, big_share=0.5).big_categories == 2
    assert SegmentsConfig(categories=4, big_share=0.4).big_categories == 1


def test_spread_zero_makes_every_category_identical() -> None:
    config = SegmentsConfig(categories=7, runs=3, spread=0.0)
    qualities = draw_qualities(config, np.random.default_rng(0))
    assert qualities.shape == (3, 7, 5)
    np.testing.assert_array_equal(qualities, np.broadcast_to(config.arm_qualities, (3, 7, 5)))
    spread = draw_qualities(SegmentsConfig(categories=7, runs=3), np.random.default_rng(0))
    assert np.std(np.log(spread / np.asarray(config.arm_qualities))) == pytest.approx(0.1, rel=0.3)


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [
        ({"spread": -0.1}, "spread"),
        ({"runs": 1}, "runs"),
        ({"categories": 0}, "categories"),
        ({"arm_qualities": (1.0,)}, "arm_qualities"),
        ({"refit_every": 0}, "refit_every"),
        ({"big_share": 1.0}, "big_share"),
        ({"strategies": ("global", "contextual")}, "strategies"),
    ],
)
def test_invalid_parameters_are_named(changes: dict[str, object], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        SegmentsConfig(**changes)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter


def test_every_strategy_sees_the_same_traffic() -> None:
    config = SegmentsConfig(categories=6, runs=3, days=0.5, requests_per_day=20_000.0)
    _, strategies = simulate_strategies(config)
    first = strategies["global"]
    for strategy in strategies.values():
        np.testing.assert_array_equal(strategy.exposures.sum(axis=-1), first.exposures.sum(-1))
        np.testing.assert_allclose(strategy.oracle_contacts, first.oracle_contacts, rtol=1e-12)
    # ... but each splits it its own way.
    assert not np.array_equal(strategies["independent"].exposures, first.exposures)


def _strategy(name: str) -> Strategy:
    strategy = Strategy(name, np.random.default_rng(3), (1, 2, 3))
    # A posterior so sure of arm 0 that every Thompson draw picks it.
    strategy.successes[..., 0] = 1e9
    strategy.failures[..., 1:] = 1e9
    return strategy


def test_one_tick_is_the_reference_ratio_rule_within_each_category() -> None:
    config = SegmentsConfig(categories=2, runs=2, arm_qualities=(1.0, 1.0, 1.0))
    strategy = _strategy("independent")
    before_s, before_f = strategy.successes.copy(), strategy.failures.copy()
    target = np.array([[100, 40]])
    ref_exposures, ref_events = np.array([[25.0, 0.0]]), np.array([[3.0, 0.0]])
    qualities = np.ones((1, 2, 3))
    step(strategy, config, target, ref_exposures, ref_events, np.array([0.05]), qualities)
    np.testing.assert_array_equal(strategy.exposures[0], [[100, 0, 0], [40, 0, 0]])
    contacts = strategy.successes[0, 0] - before_s[0, 0]
    np.testing.assert_allclose(
        strategy.failures[0, 0] - before_f[0, 0], [3.0 * 100 / 25, 0.0, 0.0], rtol=1e-12
    )
    assert contacts[1:].tolist() == [0.0, 0.0]
    # No reference exposure in the second category: its window waits for the next tick.
    np.testing.assert_array_equal(strategy.successes[0, 1], before_s[0, 1])
    np.testing.assert_array_equal(strategy.pending_exposures[0, 1], [40.0, 0.0, 0.0])
    step(
        strategy,
        config,
        np.array([[0, 0]]),
        np.array([[0.0, 10.0]]),
        np.array([[0.0, 2.0]]),
        np.array([0.05]),
        qualities,
    )
    np.testing.assert_allclose(
        strategy.failures[0, 1] - before_f[0, 1], [2.0 * 40 / 10, 0.0, 0.0], rtol=1e-12
    )
    np.testing.assert_array_equal(strategy.pending_exposures[0, 1], [0.0, 0.0, 0.0])


def test_the_global_strategy_uses_the_ratio_over_all_categories() -> None:
    config = SegmentsConfig(categories=2, runs=2, arm_qualities=(1.0, 1.0, 1.0))
    strategy = _strategy("global")
    assert strategy.successes.shape == (1, 1, 3)
    before_f = strategy.failures.copy()
    step(
        strategy,
        config,
        np.array([[100, 40]]),
        np.array([[25.0, 10.0]]),
        np.array([[3.0, 4.0]]),
        np.array([0.05]),
        np.ones((1, 2, 3)),
    )
    np.testing.assert_allclose(
        strategy.failures[0, 0] - before_f[0, 0], [7.0 * 140 / 35, 0.0, 0.0], rtol=1e-12
    )
