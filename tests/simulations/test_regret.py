"""``ranktune simulate regret``: regret arithmetic, statistical shape against theory, the CLI.

The shape tests use fixed seeds and tolerances several standard errors wide; each one also
fails for the wrong kind of policy (a linear policy fails the logarithmic tests and vice
versa), so none of them can pass vacuously.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bandit.errors import InvalidParameterError
from bandit.policies import Policy
from simulations.bounds import lai_robbins_bound, lai_robbins_constant, ucb1_upper_bound
from simulations.cli import main
from simulations.plotting import Curve, plot_curves_with_bands
from simulations.progress import ProgressReporter, progress_enabled
from simulations.regret import (
    PRESETS,
    RegretConfig,
    RegretResult,
    checkpoint_times,
    mean_with_ci,
    policy_rng,
    run_regret,
    simulate_policy,
)

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


def test_mean_with_ci_golden_values() -> None:
    # mean 2.5, sd sqrt(5/3), t_{0.975, 3} = 3.182446305284263
    summary = mean_with_ci([1.0, 2.0, 3.0, 4.0])
    half_width = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert summary.mean == 2.5
    assert summary.sd == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert summary.ci_low == pytest.approx(2.5 - half_width, rel=1e-9)
    assert summary.ci_high == pytest.approx(2.5 + half_width, rel=1e-9)
    assert summary.n == 4


def test_mean_with_ci_of_one_run_has_no_interval() -> None:
    summary = mean_with_ci([7.0])
    assert summary.mean == 7.0
    assert math.isnan(summary.ci_low) and math.isnan(summary.ci_high)


def test_config_validation() -> None:
    with pytest.raises(InvalidParameterError, match="at least 2 arms"):
        RegretConfig(means=(0.5,), horizon=10, runs=2, seed=1)
    with pytest.raises(InvalidParameterError, match="probabilities"):
        RegretConfig(means=(0.5, 1.2), horizon=10, runs=2, seed=1)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        RegretConfig(means=THREE_ARMS, horizon=10, runs=2, seed=1, epsilon=1.5)
    with pytest.raises(InvalidParameterError, match="policy"):
        RegretConfig(means=THREE_ARMS, horizon=10, runs=2, seed=1, policies=("softmax",))


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
    # Streams of different policies differ even under the same seed.
    assert policy_rng(4, "ucb1")[1] != policy_rng(4, "thompson")[1]


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


def test_command_writes_table_data_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "regret"
    argv = ["regret", "--arms", "0.2,0.5,0.8", "--horizon", "300", "--runs", "20", "--seed", "3"]
    code = main([*argv, "--no-progress", "--log-x", "--out", str(out)])
    assert code == 0

    printed = capsys.readouterr()
    assert "Lai-Robbins" in printed.out and "Auer" in printed.out
    for policy in ("egreedy", "edecay", "ucb1", "thompson"):
        assert policy in printed.out
    assert printed.err == ""  # --no-progress (and not a terminal anyway)

    for name in ("summary.csv", "curves.csv", "results.json", "regret.png", "regret.svg"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["policy"] for row in rows] == ["egreedy", "edecay", "ucb1", "thompson"]
    assert all(
        float(r["ci95_low"]) <= float(r["mean_regret"]) <= float(r["ci95_high"]) for r in rows
    )

    document = json.loads((out / "results.json").read_text())
    assert document["parameters"]["seed"] == 3
    assert document["parameters"]["means"] == [0.2, 0.5, 0.8]
    assert document["parameters"]["horizon"] == 300
    assert document["curves"]["t"][-1] == 300
    expected_bound = float(lai_robbins_bound([0.2, 0.5, 0.8], 300))
    assert document["bounds"]["lai_robbins_lower_bound_at_horizon"] == pytest.approx(expected_bound)
    assert len(document["summary"][0]["regret_at_horizon_by_run"]) == 20

    # The saved command repeats the run exactly.
    again = tmp_path / "again"
    repeat = shlex.split(document["reproduce"])[2:]
    assert main([*repeat, "--no-progress", "--out", str(again)]) == 0
    assert (again / "summary.csv").read_text().splitlines()[1].split(",")[:10] == (
        (out / "summary.csv").read_text().splitlines()[1].split(",")[:10]
    )


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


# --- shared helpers: progress and plotting -------------------------------------------------


def test_progress_draws_only_when_enabled() -> None:
    stream = io.StringIO()
    with ProgressReporter(100, "run", enabled=True, stream=stream, min_interval=0.0) as progress:
        for step in range(1, 101):
            progress.update(step)
    text = stream.getvalue()
    assert text.startswith("\r")
    assert "100/100" in text and text.endswith("\n")

    quiet = io.StringIO()  # not a terminal: silent by default
    with ProgressReporter(100, "run", stream=quiet) as progress:
        progress.advance(50)
        progress.advance(50)
    assert quiet.getvalue() == ""
    assert progress.done == 100
    assert not progress_enabled(False, quiet)


def test_progress_render() -> None:
    progress = ProgressReporter(200, "ucb1", enabled=False, width=10)
    progress.update(50)
    assert progress.render(2.0) == "ucb1 [##--------]  25%  50/200  2.0 s, ~6.0 s left"


def test_plot_curves_with_bands_writes_png_and_svg(tmp_path: Path) -> None:
    x = np.arange(1, 11)
    paths = plot_curves_with_bands(
        [Curve("a", x, x * 1.0, lower=x - 0.5, upper=x + 0.5)],
        tmp_path / "nested" / "plot",
        title="t",
        xlabel="x",
        ylabel="y",
        reference_lines=[Curve("ref", x, np.log(x), dashed=True)],
        log_x=True,
        note="note",
    )
    assert [p.name for p in paths] == ["plot.png", "plot.svg"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert b"<svg" in paths[1].read_bytes()[:500]
