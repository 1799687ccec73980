"""``ranktune simulate regret``: simulate every policy of a config, and the command itself."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from bandit.errors import InvalidParameterError
from simulations.confidence import mean_ci
from simulations.options import FLAG, PATH, add_options, command_line, from_args, option
from simulations.output import invalid_parameters, write_and_report
from simulations.progress import ProgressReporter, progress_enabled
from simulations.regret.model import (
    COMMAND,
    PolicyRegret,
    PolicySummary,
    RegretConfig,
    RegretResult,
    checkpoint_times,
    policy_rng,
    simulate_policy,
)
from simulations.regret.report import format_table, write_outputs


@dataclass(frozen=True)
class RegretOutput:
    """Where and how the results are shown; not part of the run, so not in ``reproduce``."""

    log_x: bool = option(False, FLAG, "log-scaled time axis on the plot")
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/regret"), PATH, "directory for tables, data and plots")  # noqa: RUF009


def run_regret(config: RegretConfig, *, show_progress: bool = False) -> RegretResult:
    """Simulate every policy of ``config`` and summarise it."""
    times = checkpoint_times(config.horizon, config.checkpoints)
    runs_by_policy: dict[str, PolicyRegret] = {}
    summaries = []
    for name in config.policies:
        policy = config.make_policy(name)
        rng, spawn_key = policy_rng(config.seed, name)
        with ProgressReporter(config.horizon, f"{name:<9}", enabled=show_progress) as progress:
            started = time.perf_counter()
            regrets, best_pulls = simulate_policy(
                policy, config.means, config.horizon, config.runs, rng, times, progress.update
            )
            wall_time = time.perf_counter() - started
        outcome = PolicyRegret(name, times, regrets, best_pulls, wall_time, spawn_key)
        runs_by_policy[name] = outcome
        summaries.append(
            PolicySummary(
                policy=name,
                parameters=config.policy_parameters(name),
                regret=mean_ci(outcome.final_regrets),
                best_arm_share=float(best_pulls.mean() / config.horizon),
                wall_time_s=wall_time,
            )
        )
    return RegretResult(config, runs_by_policy, summaries)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, RegretConfig)
    add_options(parser, RegretOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = from_args(RegretConfig, args)
    except InvalidParameterError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(RegretOutput, args)
    result = run_regret(config, show_progress=progress_enabled(output.no_progress))
    print(format_table(result))
    return write_and_report(
        COMMAND,
        lambda: write_outputs(result, output.out, log_x=output.log_x),
        command_line(COMMAND, config),
    )
