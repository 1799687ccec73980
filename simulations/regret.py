"""``ranktune simulate regret``: cumulative regret of bandit policies on Bernoulli arms.

Every policy plays ``runs`` independent bandits for ``horizon`` steps. The loop is over time
steps only: the statistics of all runs are ``(runs, K)`` arrays and each step is a handful of
NumPy calls, so 200 runs cost little more than one.

Regret is the **pseudo-regret** ``R(t) = sum_{s <= t} (p* - p_{A_s})``: the expected reward
lost by the arms actually pulled, not the realised reward difference. It has the same
expectation as the realised regret, less noise, and it is the quantity the Lai-Robbins and
Auer et al. bounds (:mod:`simulations.bounds`) speak about.

Randomness: each policy gets its own generator,
``default_rng(SeedSequence(seed, spawn_key=(crc32(policy_name),)))``, used both for the
policy's own draws and for its rewards. A policy's results therefore depend only on the
seed, the instance and its own parameters: adding, removing or reordering other policies
does not change them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats

from bandit.errors import InvalidParameterError
from bandit.policies import POLICY_NAMES, Policy, make_policy
from simulations.bounds import (
    check_means,
    lai_robbins_bound,
    lai_robbins_constant,
    ucb1_upper_bound,
)
from simulations.output import write_and_report
from simulations.plotting import Curve, plot_curves_with_bands
from simulations.progress import ProgressReporter, progress_enabled

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PRESETS: dict[str, tuple[float, ...]] = {
    # The original comparison (SPEC §3.4): three well-separated arms.
    "three-arms": (0.3, 0.5, 0.7),
    # Ten close arms 0.40, 0.41, ..., 0.50: hard, and the bounds grow large.
    "ten-close": tuple(round(float(p), 4) for p in np.linspace(0.40, 0.50, 10)),
    # Contact rates of a similar-items block: small, close conversion rates.
    "low-rates": (0.020, 0.025, 0.030, 0.035, 0.040),
}
DEFAULT_PRESET = "three-arms"
DEFAULT_POLICIES = ("egreedy", "edecay", "ucb1", "thompson")
CONFIDENCE = 0.95
DEFAULT_CHECKPOINTS = 400


@dataclass(frozen=True)
class RegretConfig:
    """Everything that determines a run; saved with the results so it can be repeated."""

    means: tuple[float, ...]
    horizon: int
    runs: int
    seed: int
    policies: tuple[str, ...] = DEFAULT_POLICIES
    epsilon: float = 0.1
    c: float = 5.0
    ucb_alpha: float = 2.0
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    checkpoints: int = DEFAULT_CHECKPOINTS

    def __post_init__(self) -> None:
        check_means(self.means)
        if len(self.means) < 2:
            raise InvalidParameterError(
                f"a bandit needs at least 2 arms; got {len(self.means)}", parameter="means"
            )
        if self.horizon < 1:
            raise InvalidParameterError(
                f"horizon must be >= 1, got {self.horizon}", parameter="horizon"
            )
        if self.runs < 1:
            raise InvalidParameterError(f"runs must be >= 1, got {self.runs}", parameter="runs")
        if not self.policies:
            raise InvalidParameterError(
                "policies must name at least one policy", parameter="policies"
            )
        for name in self.policies:
            self.make_policy(name)  # validates the name and its parameters

    def make_policy(self, name: str) -> Policy:
        return make_policy(
            name,
            prior_alpha=self.prior_alpha,
            prior_beta=self.prior_beta,
            epsilon=self.epsilon,
            c=self.c,
            ucb_alpha=self.ucb_alpha,
        )

    def policy_parameters(self, name: str) -> str:
        """The parameters of one policy, as shown in the table."""
        return {
            "egreedy": f"epsilon={self.epsilon:g}",
            "edecay": f"c={self.c:g}",
            "ucb1": f"alpha={self.ucb_alpha:g}",
            "thompson": f"Beta({self.prior_alpha:g}, {self.prior_beta:g})",
        }.get(name, "")

    def command_line(self) -> str:
        """A ``ranktune simulate regret`` command that repeats this run exactly."""
        return " ".join(
            [
                "ranktune simulate regret",
                f"--arms {','.join(repr(float(p)) for p in self.means)}",
                f"--horizon {self.horizon}",
                f"--runs {self.runs}",
                f"--seed {self.seed}",
                f"--policies {','.join(self.policies)}",
                f"--epsilon {self.epsilon!r}",
                f"--c {self.c!r}",
                f"--ucb-alpha {self.ucb_alpha!r}",
                f"--prior-alpha {self.prior_alpha!r}",
                f"--prior-beta {self.prior_beta!r}",
                f"--checkpoints {self.checkpoints}",
            ]
        )


@dataclass(frozen=True)
class PolicyRegret:
    """One policy's simulated runs."""

    policy: str
    times: IntArray  # the checkpoints t (1-based number of pulls), increasing, ending at T
    cumulative_regrets: FloatArray  # (runs, len(times)): pseudo-regret of each run at each t
    best_arm_pulls: IntArray  # (runs,): pulls of an optimal arm over the whole horizon
    wall_time_s: float
    spawn_key: int

    @property
    def final_regrets(self) -> FloatArray:
        regrets: FloatArray = self.cumulative_regrets[:, -1]
        return regrets


@dataclass(frozen=True)
class MeanWithCI:
    """Mean over runs with a Student-t confidence interval; NaN bounds for a single run."""

    mean: float
    ci_low: float
    ci_high: float
    sd: float
    n: int


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    parameters: str
    regret: MeanWithCI
    best_arm_share: float
    wall_time_s: float


@dataclass(frozen=True)
class RegretResult:
    config: RegretConfig
    runs_by_policy: dict[str, PolicyRegret]
    summaries: list[PolicySummary] = field(default_factory=list)


def checkpoint_times(horizon: int, count: int = DEFAULT_CHECKPOINTS) -> IntArray:
    """About ``count`` times in ``1..horizon``: half log-spaced, half evenly spaced, so the
    curve is smooth on both a linear and a log time axis. Always ends at ``horizon``."""
    half = max(count // 2, 2)
    log_spaced = np.geomspace(1, horizon, half)
    linear = np.linspace(1, horizon, half)
    times = np.unique(np.rint(np.concatenate([log_spaced, linear, [horizon]])).astype(np.int64))
    return times[(times >= 1) & (times <= horizon)]


def policy_rng(seed: int, policy_name: str) -> tuple[np.random.Generator, int]:
    """The generator of one policy and the spawn key that identifies its stream."""
    spawn_key = zlib.crc32(policy_name.encode("utf-8"))
    sequence = np.random.SeedSequence(seed, spawn_key=(spawn_key,))
    return np.random.default_rng(sequence), spawn_key


def simulate_policy(
    policy: Policy,
    means: npt.ArrayLike,
    horizon: int,
    runs: int,
    rng: np.random.Generator,
    times: IntArray | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[FloatArray, IntArray]:
    """Play ``runs`` independent Bernoulli bandits for ``horizon`` steps with ``policy``.

    Returns the pseudo-regret of every run at every checkpoint in ``times`` (shape
    ``(runs, len(times))``) and every run's number of pulls of an optimal arm.
    ``on_step(t)`` is called now and then with the number of steps done (for progress).
    """
    p = check_means(means)
    arm_count = p.size
    gaps = p.max() - p
    optimal = gaps == 0
    times = checkpoint_times(horizon) if times is None else np.asarray(times, dtype=np.int64)

    if times.ndim != 1 or times.size == 0 or np.any(np.diff(times) <= 0):
        raise InvalidParameterError(
            "times must be a non-empty increasing sequence", parameter="times"
        )
    if times[0] < 1 or times[-1] > horizon:
        raise InvalidParameterError(f"times must lie in 1..{horizon}", parameter="times")
    # A sentinel past the horizon saves a bounds check in the loop.
    stops = [int(t) for t in times] + [horizon + 1]

    successes = np.zeros((runs, arm_count))
    failures = np.zeros((runs, arm_count))
    flat_successes = successes.reshape(-1)  # views: writes land in successes / failures
    flat_failures = failures.reshape(-1)
    offsets = np.arange(runs) * arm_count
    regrets = np.empty((runs, times.size))
    checkpoint_index = 0
    report_every = max(horizon // 100, 1)

    for step in range(1, horizon + 1):
        arms = policy.choose(successes, failures, rng)
        rewards = rng.random(runs) < p[arms]
        # One cell per run, so fancy-index += adds exactly once per run; flat indices into
        # the contiguous arrays are about twice as fast as (rows, arms) pairs.
        cells = offsets + arms
        flat_successes[cells] += rewards
        flat_failures[cells] += ~rewards
        if step == stops[checkpoint_index]:
            # Pseudo-regret from the pull counts: sum_k n_k(t) * Delta_k.
            regrets[:, checkpoint_index] = (successes + failures) @ gaps
            checkpoint_index += 1
        if on_step is not None and step % report_every == 0:
            on_step(step)

    pulls = successes + failures
    best_arm_pulls = np.rint(pulls[:, optimal].sum(axis=1)).astype(np.int64)
    return regrets, best_arm_pulls


def mean_with_ci(values: npt.ArrayLike, confidence: float = CONFIDENCE) -> MeanWithCI:
    """Mean of ``values`` with the Student-t interval ``mean ± t_{n-1} * sd / sqrt(n)``."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return MeanWithCI(mean, math.nan, math.nan, math.nan, n)
    sd = float(x.std(ddof=1))
    half_width = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return MeanWithCI(mean, mean - half_width, mean + half_width, sd, n)


def curve_bands(
    regrets: FloatArray, confidence: float = CONFIDENCE
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean over runs and its confidence band at every checkpoint (columns of ``regrets``)."""
    n = regrets.shape[0]
    mean: FloatArray = regrets.mean(axis=0)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half: FloatArray = (
        stats.t.ppf(0.5 + confidence / 2, n - 1) * regrets.std(axis=0, ddof=1) / math.sqrt(n)
    )
    return mean, mean - half, mean + half


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
                regret=mean_with_ci(outcome.final_regrets),
                best_arm_share=float(best_pulls.mean() / config.horizon),
                wall_time_s=wall_time,
            )
        )
    return RegretResult(config, runs_by_policy, summaries)


# --- output -------------------------------------------------------------------------------


def format_table(result: RegretResult) -> str:
    """The summary table and the two bounds, as printed by the command."""
    config = result.config
    horizon = config.horizon
    arms = ", ".join(f"{p:g}" for p in config.means)
    lines = [
        f"Regret on {len(config.means)} Bernoulli arms ({arms}), horizon T = {horizon:,}, "
        f"{config.runs:,} runs, seed {config.seed}",
        "pseudo-regret sum_t (p* - p_chosen), mean over runs with a 95% t-interval",
        "",
        f"{'policy':<10}{'parameters':<16}{'regret at T':>12}  {'95% CI':<20}"
        f"{'best-arm share':>15}{'wall time':>11}",
    ]
    for summary in result.summaries:
        r = summary.regret
        interval = f"[{r.ci_low:.1f}, {r.ci_high:.1f}]" if r.n > 1 else "n/a (1 run)"
        lines.append(
            f"{summary.policy:<10}{summary.parameters:<16}{r.mean:>12.1f}  {interval:<20}"
            f"{summary.best_arm_share:>14.1%} {summary.wall_time_s:>9.2f} s"
        )
    constant = lai_robbins_constant(config.means)
    lai_robbins = float(lai_robbins_bound(config.means, horizon))
    ucb1 = float(ucb1_upper_bound(config.means, horizon))
    lines += [
        "",
        f"Bounds at T = {horizon:,}:",
        f"  Lai-Robbins asymptotic lower bound  C ln T = {constant:.3f} x {math.log(horizon):.3f}"
        f" = {lai_robbins:.1f}",
        f"  UCB1 finite-time upper bound (Auer et al. 2002, Thm 1) = {ucb1:.1f}"
        + (
            ""
            if config.ucb_alpha == 2.0
            else f"  (for alpha=2; this run used {config.ucb_alpha:g})"
        ),
    ]
    return "\n".join(lines)


def write_outputs(result: RegretResult, out_dir: Path, *, log_x: bool = False) -> list[Path]:
    """Write ``summary.csv``, ``curves.csv``, ``results.json`` and ``regret.png/.svg``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    times = checkpoint_times(config.horizon, config.checkpoints)
    lower_bound = lai_robbins_bound(config.means, times)
    upper_bound = ucb1_upper_bound(config.means, times)
    bands = {
        name: curve_bands(run.cumulative_regrets) for name, run in result.runs_by_policy.items()
    }
    written = []

    summary_path = out_dir / "summary.csv"
    with summary_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["policy", "parameters", "horizon", "runs", "seed", "mean_regret", "ci95_low",
             "ci95_high", "sd_regret", "best_arm_share", "wall_time_s"]
        )  # fmt: skip
        for s in result.summaries:
            writer.writerow(
                [s.policy, s.parameters, config.horizon, config.runs, config.seed,
                 _num(s.regret.mean), _num(s.regret.ci_low), _num(s.regret.ci_high),
                 _num(s.regret.sd), _num(s.best_arm_share), f"{s.wall_time_s:.4f}"]
            )  # fmt: skip
    written.append(summary_path)

    curves_path = out_dir / "curves.csv"
    with curves_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["t", "lai_robbins_lower_bound", "ucb1_upper_bound"]
        for name in bands:
            header += [f"{name}_mean", f"{name}_ci95_low", f"{name}_ci95_high"]
        writer.writerow(header)
        for i, t in enumerate(times):
            row = [int(t), _num(lower_bound[i]), _num(upper_bound[i])]
            for mean, low, high in bands.values():
                row += [_num(mean[i]), _num(low[i]), _num(high[i])]
            writer.writerow(row)
    written.append(curves_path)

    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(_results_document(result, bands, times), indent=2) + "\n")
    written.append(results_path)

    curves = [
        Curve(f"{name} ({config.policy_parameters(name)})", times, mean, lower=low, upper=high)
        for name, (mean, low, high) in bands.items()
    ]
    reference_lines = [
        Curve("Lai-Robbins lower bound C ln t (asymptotic)", times, lower_bound, dashed=True),
        Curve("UCB1 upper bound (Auer et al. 2002)", times, upper_bound, color="0.55"),
    ]
    arms = ", ".join(f"{p:g}" for p in config.means)
    written += plot_curves_with_bands(
        curves,
        out_dir / "regret",
        title="Mean cumulative pseudo-regret with 95% confidence bands",
        xlabel="t (pulls)" + (", log scale" if log_x else ""),
        ylabel="cumulative regret",
        reference_lines=reference_lines,
        log_x=log_x,
        note=f"arms {arms}; T = {config.horizon:,}; {config.runs} runs; seed {config.seed}",
    )
    return written


def _results_document(
    result: RegretResult,
    bands: dict[str, tuple[FloatArray, FloatArray, FloatArray]],
    times: IntArray,
) -> dict[str, object]:
    config = result.config
    return {
        "command": "ranktune simulate regret",
        "reproduce": config.command_line(),
        "parameters": asdict(config),
        "regret_definition": "pseudo-regret: sum over steps of (p* - p of the chosen arm)",
        "random_streams": {
            "bit_generator": "PCG64",
            "construction": "default_rng(SeedSequence(seed, spawn_key=(crc32(policy),)))",
            "spawn_keys": {n: r.spawn_key for n, r in result.runs_by_policy.items()},
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "ranktune": _ranktune_version(),
        },
        "bounds": {
            "lai_robbins_constant": lai_robbins_constant(config.means),
            "lai_robbins_lower_bound_at_horizon": float(
                lai_robbins_bound(config.means, config.horizon)
            ),
            "ucb1_upper_bound_at_horizon": float(ucb1_upper_bound(config.means, config.horizon)),
        },
        "summary": [
            {
                "policy": s.policy,
                "parameters": s.parameters,
                "mean_regret": _json_num(s.regret.mean),
                "ci95_low": _json_num(s.regret.ci_low),
                "ci95_high": _json_num(s.regret.ci_high),
                "sd_regret": _json_num(s.regret.sd),
                "best_arm_share": s.best_arm_share,
                "wall_time_s": s.wall_time_s,
                "regret_at_horizon_by_run": result.runs_by_policy[s.policy].final_regrets.tolist(),
            }
            for s in result.summaries
        ],
        "curves": {
            "t": times.tolist(),
            "lai_robbins_lower_bound": lai_robbins_bound(config.means, times).tolist(),
            "ucb1_upper_bound": ucb1_upper_bound(config.means, times).tolist(),
            **{
                name: {
                    "mean": mean.tolist(),
                    "ci95_low": low.tolist(),
                    "ci95_high": high.tolist(),
                }
                for name, (mean, low, high) in bands.items()
            },
        },
    }


def _num(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _json_num(value: float) -> float | None:
    return None if math.isnan(value) else value


def _ranktune_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ranktune")
    except PackageNotFoundError:
        return "unknown"


# --- command line -------------------------------------------------------------------------


def _probabilities(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error
    if len(values) < 2:
        raise argparse.ArgumentTypeError(f"a bandit needs at least 2 arms, got {text!r}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"arm means must be probabilities in [0, 1], got {text!r}")
    return values


def _policy_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    unknown = [n for n in names if n not in POLICY_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"policies must be a comma-separated subset of {','.join(DEFAULT_POLICIES)}; "
            f"got {text!r}"
        )
    return names


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from error
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float, *, open_low: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from error
        ok = math.isfinite(value) and (value > low if open_low else value >= low) and value <= high
        if not ok:
            bracket = "(" if open_low else "["
            raise argparse.ArgumentTypeError(f"must be in {bracket}{low:g}, {high:g}], got {text}")
        return value

    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    instance = parser.add_mutually_exclusive_group()
    instance.add_argument(
        "--arms",
        type=_probabilities,
        help="comma-separated success probabilities of the Bernoulli arms, e.g. 0.3,0.5,0.7",
    )
    instance.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"a named instance instead of --arms (default {DEFAULT_PRESET}: "
        + "; ".join(f"{k} = {','.join(f'{p:g}' for p in v)}" for k, v in PRESETS.items())
        + ")",
    )
    parser.add_argument("--horizon", type=_int_at_least(1), default=10_000, help="steps T per run")
    parser.add_argument(
        "--runs", type=_int_at_least(2), default=200, help="independent runs (>= 2 for a CI)"
    )
    parser.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=None,
        help="seed of all random draws; a fresh one is drawn, printed and saved if omitted",
    )
    parser.add_argument(
        "--policies",
        type=_policy_names,
        default=DEFAULT_POLICIES,
        help="comma-separated policies among egreedy, edecay, ucb1, thompson",
    )
    parser.add_argument(
        "--epsilon",
        type=_float_in(0.0, 1.0, open_low=False),
        default=0.1,
        help="exploration probability of egreedy",
    )
    parser.add_argument(
        "--c",
        type=_float_in(0.0, math.inf, open_low=True),
        default=5.0,
        help="edecay explores with probability min(1, c K / t)",
    )
    parser.add_argument(
        "--ucb-alpha",
        type=_float_in(0.0, math.inf, open_low=True),
        default=2.0,
        help="UCB1 index mean + sqrt(alpha ln t / n_k); 2 is Auer et al.'s UCB1",
    )
    parser.add_argument(
        "--prior-alpha",
        type=_float_in(0.0, math.inf, open_low=True),
        default=1.0,
        help="Thompson sampling Beta prior alpha",
    )
    parser.add_argument(
        "--prior-beta",
        type=_float_in(0.0, math.inf, open_low=True),
        default=1.0,
        help="Thompson sampling Beta prior beta",
    )
    parser.add_argument(
        "--checkpoints",
        type=_int_at_least(2),
        default=DEFAULT_CHECKPOINTS,
        help="about how many times t to record regret at (half log-spaced, half linear)",
    )
    parser.add_argument("--log-x", action="store_true", help="log-scaled time axis on the plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument("--out", default="out/regret", help="directory for tables, data and plots")


def config_from_args(args: argparse.Namespace) -> RegretConfig:
    means = args.arms if args.arms is not None else PRESETS[args.preset or DEFAULT_PRESET]
    seed = args.seed
    if seed is None:
        # A fresh 32-bit seed from the OS, reported so the run can be repeated.
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return RegretConfig(
        means=tuple(float(p) for p in means),
        horizon=args.horizon,
        runs=args.runs,
        seed=seed,
        policies=tuple(args.policies),
        epsilon=args.epsilon,
        c=args.c,
        ucb_alpha=args.ucb_alpha,
        prior_alpha=args.prior_alpha,
        prior_beta=args.prior_beta,
        checkpoints=args.checkpoints,
    )


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = config_from_args(args)
    except InvalidParameterError as error:
        print(f"ranktune simulate regret: {error}", file=sys.stderr)
        return 2
    result = run_regret(config, show_progress=progress_enabled(args.no_progress))
    print(format_table(result))
    return write_and_report(
        "regret",
        lambda: write_outputs(result, Path(args.out), log_x=args.log_x),
        config.command_line(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run this command alone (``python -m simulations.regret ...``)."""
    parser = argparse.ArgumentParser(prog="ranktune simulate regret")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
