"""``simulations.regret.run``: random streams, statistical shape against theory, the command.

The shape tests use fixed seeds and tolerances several standard errors wide; each one also
fails for the wrong kind of policy (a linear policy fails the logarithmic tests and vice
versa), so none of them can pass vacuously.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simulations.bounds import lai_robbins_bound, lai_robbins_constant, ucb1_upper_bound
from simulations.cli import main
from simulations.regret import PRESETS, RegretConfig, RegretResult, run_regret

THREE_ARMS = (0.3, 0.5, 0.7)


# --- random streams ------------------------------------------------------------------------


def test_a_policys_results_do_not_depend_on_the_other_policies() -> None:
    alone = run_regret(RegretConfig(THREE_ARMS, 300, 20, seed=4, policies=("thompson",)))
    together = run_regret(
        RegretConfig(THREE_ARMS, 300, 20, seed=4, policies=("ucb1", "egreedy", "thompson"))
    )
    np.testing.assert_array_equal(
        alone.runs_by_policy["thompson"].cumulative_regrets,
        together.runs_by_policy["thompson"].cumulative_regrets,
    )


def test_seed_determines_the_results() -> None:
    config = RegretConfig(THREE_ARMS, 300, 20, seed=4, policies=("egreedy",))
    first = run_regret(config).runs_by_policy["egreedy"].cumulative_regrets
    second = run_regret(config).runs_by_policy["egreedy"].cumulative_regrets
    other = run_regret(RegretConfig(THREE_ARMS, 300, 20, seed=5, policies=("egreedy",)))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other.runs_by_policy["egreedy"].cumulative_regrets)


# --- statistical shape against theory ------------------------------------------------------

SHAPE_T = 20_000
SHAPE_EARLY_T = 2_000


@pytest.fixture(scope="module")
def shape_run() -> RegretResult:
    # 200 runs to T = 20,000 with ~60 checkpoints: about 3 s on one core.
    config = RegretConfig(
        THREE_ARMS,
        SHAPE_T,
        200,
        seed=2024,
        policies=("egreedy", "ucb1", "thompson"),
        checkpoints=60,
    )
    return run_regret(config)


def _mean_at(result: RegretResult, policy: str, t: int) -> float:
    run = result.runs_by_policy[policy]
    index = int(np.searchsorted(run.times, t))
    assert run.times[index] >= t and run.times[index] < 1.1 * t
    return float(run.cumulative_regrets[:, index].mean())


def _decade_increment(result: RegretResult, policy: str) -> float:
    """Mean regret gained between ~T/10 and T."""
    return _mean_at(result, policy, SHAPE_T) - _mean_at(result, policy, SHAPE_EARLY_T)


def test_epsilon_greedy_regret_grows_linearly(shape_run: RegretResult) -> None:
    # Once the greedy arm is the best one, each step loses epsilon * mean(Delta)
    # = 0.1 * (0.4 + 0.2 + 0) / 3 = 0.02 in expectation.
    times = shape_run.runs_by_policy["egreedy"].times
    t_mid = int(times[np.searchsorted(times, 10_000)])
    gained = _mean_at(shape_run, "egreedy", SHAPE_T) - _mean_at(shape_run, "egreedy", t_mid)
    slope = gained / (SHAPE_T - t_mid)
    assert slope == pytest.approx(0.02, rel=0.1)
    # Linear growth: the last decade costs several times all the regret before it.
    assert _decade_increment(shape_run, "egreedy") > 4 * _mean_at(
        shape_run, "egreedy", SHAPE_EARLY_T
    )


@pytest.mark.parametrize("policy", ["ucb1", "thompson"])
def test_ucb1_and_thompson_regret_grows_logarithmically(
    shape_run: RegretResult, policy: str
) -> None:
    increment = _decade_increment(shape_run, policy)
    # R(10 t) - R(t) = a ln 10 for R = a ln t + b: far below the linear policy's increment,
    # and below the regret already accumulated by t (a linear policy's would be ~9x it).
    assert increment < 0.2 * _decade_increment(shape_run, "egreedy")
    assert increment < 1.5 * _mean_at(shape_run, policy, SHAPE_EARLY_T)


def test_thompson_is_within_a_small_factor_of_lai_robbins(shape_run: RegretResult) -> None:
    # Thompson sampling attains the Lai-Robbins constant asymptotically (Kaufmann et al. 2012;
    # Agrawal & Goyal 2013). At T = 20,000 its regret is about 0.6 C ln T and its last decade
    # costs about 0.7 C ln 10: lower-order terms are still negative at this horizon.
    level = _mean_at(shape_run, "thompson", SHAPE_T) / float(lai_robbins_bound(THREE_ARMS, SHAPE_T))
    assert 1 / 3 < level < 2
    slope = _decade_increment(shape_run, "thompson") / (
        lai_robbins_constant(THREE_ARMS) * math.log(SHAPE_T / SHAPE_EARLY_T)
    )
    assert 0.35 < slope < 2
    # ... while UCB1 (8 / Delta per log unit in its bound) is several times above it.
    assert _mean_at(shape_run, "ucb1", SHAPE_T) > 2 * _mean_at(shape_run, "thompson", SHAPE_T)


def test_ucb1_stays_under_its_finite_time_bound(shape_run: RegretResult) -> None:
    run = shape_run.runs_by_policy["ucb1"]
    after_initial_round = run.times > len(THREE_ARMS)
    regrets = run.cumulative_regrets[:, after_initial_round]
    upper_ci = regrets.mean(axis=0) + 3 * regrets.std(axis=0, ddof=1) / math.sqrt(regrets.shape[0])
    bound = ucb1_upper_bound(THREE_ARMS, run.times[after_initial_round])
    assert np.all(upper_ci < bound)


# --- the command ---------------------------------------------------------------------------


def test_command_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["regret", "--preset", "ten-close", "--horizon", "50", "--runs", "2", "--seed", "1",
         "--policies", "thompson", "--no-progress", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["parameters"]["means"] == list(PRESETS["ten-close"])
    assert len(PRESETS["ten-close"]) == 10
    assert "10 Bernoulli arms" in capsys.readouterr().out


def test_command_without_seed_reports_the_one_it_drew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["regret", "--horizon", "20", "--runs", "2", "--policies", "ucb1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    seed = json.loads((tmp_path / "results.json").read_text())["parameters"]["seed"]
    assert f"--seed {seed} " in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad",
    [
        ["--arms", "0.5,1.5"],
        ["--arms", "0.5"],
        ["--arms", "a,b"],
        ["--arms", "0.1,0.2", "--preset", "three-arms"],
        ["--policies", "egreedy,softmax"],
        ["--horizon", "0"],
        ["--runs", "1"],
        ["--epsilon", "2"],
        ["--prior-alpha", "0"],
    ],
)
def test_command_rejects_bad_arguments(
    bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["regret", *bad, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_command_reports_an_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["regret", "--horizon", "10", "--runs", "2", "--seed", "1", "--no-progress"]
    assert main([*argv, "--out", str(blocker / "out")]) == 1
    assert "cannot write outputs" in capsys.readouterr().err
