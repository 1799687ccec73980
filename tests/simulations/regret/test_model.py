"""``simulations.regret.model``: regret arithmetic, checkpoints and the config's checks.

The arithmetic is exact: policies whose regret is known in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from bandit.errors import InvalidParameterError
from bandit.policies import Policy
from simulations.regret import RegretConfig, checkpoint_times, policy_rng, simulate_policy

THREE_ARMS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class FixedArm(Policy):
    """Always pulls the same arm: its regret is exactly ``Delta_arm * t``."""

    arm: int
    name: str = "fixed"

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        shape = np.shape(successes)[:-1]
        return np.full(shape, self.arm, dtype=np.int64)


class RoundRobin(Policy):
    """Pulls arm ``t mod K`` and keeps the last statistics it was shown."""

    name = "round-robin"

    def __init__(self) -> None:
        self.last_successes = np.empty(0)
        self.last_failures = np.empty(0)

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        s = np.asarray(successes)
        f = np.asarray(failures)
        self.last_successes, self.last_failures = s.copy(), f.copy()
        t = int(np.rint(s[0] + f[0]).sum())
        return np.full(s.shape[:-1], t % s.shape[-1], dtype=np.int64)


# --- exact regret arithmetic ---------------------------------------------------------------


def test_fixed_arm_regret_is_gap_times_t() -> None:
    times = np.array([1, 2, 10, 50])
    regrets, best_pulls = simulate_policy(
        FixedArm(0), THREE_ARMS, 50, 7, np.random.default_rng(0), times
    )
    assert regrets.shape == (7, 4)
    np.testing.assert_allclose(regrets, np.tile(0.4 * times, (7, 1)), rtol=1e-12)
    assert best_pulls.tolist() == [0] * 7


def test_best_arm_has_zero_regret_and_full_share() -> None:
    regrets, best_pulls = simulate_policy(
        FixedArm(2), THREE_ARMS, 40, 5, np.random.default_rng(0), np.array([40])
    )
    assert np.all(regrets == 0.0)
    assert best_pulls.tolist() == [40] * 5


def test_every_optimal_arm_counts_as_best() -> None:
    regrets, best_pulls = simulate_policy(
        FixedArm(1), (0.7, 0.7, 0.2), 30, 3, np.random.default_rng(0), np.array([30])
    )
    assert np.all(regrets == 0.0)
    assert best_pulls.tolist() == [30] * 3


def test_round_robin_regret_and_counts() -> None:
    # Over 3 pulls round robin loses 0.4 + 0.2 + 0 = 0.6: regret at t = 3m is 0.6 m exactly.
    policy = RoundRobin()
    times = np.array([3, 30, 298, 300])
    regrets, best_pulls = simulate_policy(
        policy, THREE_ARMS, 301, 4, np.random.default_rng(5), times
    )
    np.testing.assert_allclose(regrets[:, [0, 1, 3]], np.tile([0.6, 6.0, 60.0], (4, 1)))
    np.testing.assert_allclose(regrets[:, 2], 59.8)  # 99 full cycles, then arm 0
    assert best_pulls.tolist() == [100] * 4
    # The policy was last shown the statistics after 300 pulls: 100 per arm, split
    # into successes and failures.
    pulls = policy.last_successes + policy.last_failures
    assert np.all(pulls == 100)


def test_rewards_are_bernoulli_with_the_arm_mean() -> None:
    # 400 runs x 500 pulls of arm 2 (p = 0.7) at t = 500: success share within 5 standard errors.
    policy = RoundRobin()
    simulate_policy(policy, (0.7, 0.7), 1001, 400, np.random.default_rng(9), np.array([1001]))
    share = policy.last_successes.sum() / (policy.last_successes + policy.last_failures).sum()
    standard_error = math.sqrt(0.7 * 0.3 / (400 * 1000))
    assert abs(share - 0.7) < 5 * standard_error


def test_simulate_rejects_bad_checkpoints() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidParameterError):
        simulate_policy(FixedArm(0), THREE_ARMS, 10, 2, rng, np.array([5, 3]))
    with pytest.raises(InvalidParameterError):
        simulate_policy(FixedArm(0), THREE_ARMS, 10, 2, rng, np.array([5, 11]))


def test_checkpoint_times() -> None:
    times = checkpoint_times(10_000, 400)
    assert times[0] == 1
    assert times[-1] == 10_000
    assert np.all(np.diff(times) > 0)
    assert 300 <= times.size <= 400
    assert checkpoint_times(1).tolist() == [1]
    assert checkpoint_times(3, 400).tolist() == [1, 2, 3]


def test_config_validation() -> None:
    with pytest.raises(InvalidParameterError, match="at least 2 arms"):
        RegretConfig(means=(0.5,), horizon=10, runs=2, seed=1)
    with pytest.raises(InvalidParameterError, match="probabilities"):
        RegretConfig(means=(0.5, 1.2), horizon=10, runs=2, seed=1)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        RegretConfig(means=THREE_ARMS, horizon=10, runs=2, seed=1, epsilon=1.5)
    with pytest.raises(InvalidParameterError, match="policy"):
        RegretConfig(means=THREE_ARMS, horizon=10, runs=2, seed=1, policies=("softmax",))


def test_streams_of_different_policies_differ_under_the_same_seed() -> None:
    # A policy's stream is keyed by its name, so no two policies share one.
    assert policy_rng(4, "ucb1")[1] != policy_rng(4, "thompson")[1]
