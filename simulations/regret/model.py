"""The regret simulation's parameters and its model: Bernoulli bandits played by a policy.

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
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.policies import POLICY_NAMES, Policy, make_policy
from simulations.bounds import check_means
from simulations.confidence import MeanCI
from simulations.options import (
    Alias,
    Kind,
    comma_separated,
    float_repr,
    fresh_seed,
    integer,
    join,
    number,
    option,
    option_factory,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COMMAND = "regret"
PRESETS: dict[str, tuple[float, ...]] = {
    # The original comparison (docs/spec.md, "Simulation"): three well-separated arms.
    "three-arms": (0.3, 0.5, 0.7),
    # Ten close arms 0.40, 0.41, ..., 0.50: hard, and the bounds grow large.
    "ten-close": tuple(round(float(p), 4) for p in np.linspace(0.40, 0.50, 10)),
    # Contact rates of a similar-items block: small, close conversion rates.
    "low-rates": (0.020, 0.025, 0.030, 0.035, 0.040),
}
DEFAULT_PRESET = "three-arms"
DEFAULT_POLICIES = ("egreedy", "edecay", "ucb1", "thompson")
DEFAULT_CHECKPOINTS = 400


def _probabilities(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in comma_separated(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error
    if len(values) < 2:
        raise argparse.ArgumentTypeError(f"a bandit needs at least 2 arms, got {text!r}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"arm means must be probabilities in [0, 1], got {text!r}")
    return values


def _preset(text: str) -> tuple[float, ...]:
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(sorted(PRESETS))})"
        )
    return PRESETS[text]


def _policy_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(comma_separated(text)))
    unknown = [n for n in names if n not in POLICY_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"policies must be a comma-separated subset of {','.join(DEFAULT_POLICIES)}; "
            f"got {text!r}"
        )
    return names


def _show_probabilities(values: tuple[float, ...]) -> str:
    return join(values, float_repr)


ARMS: Kind[tuple[float, ...]] = Kind(_probabilities, _show_probabilities)
PRESET = Alias(
    "--preset",
    _preset,
    help=f"a named instance instead of --arms (default {DEFAULT_PRESET}: "
    + "; ".join(f"{k} = {','.join(f'{p:g}' for p in v)}" for k, v in PRESETS.items())
    + ")",
    metavar="{" + ",".join(sorted(PRESETS)) + "}",
)
POLICIES: Kind[tuple[str, ...]] = Kind(_policy_names, ",".join)
# repr, not :g, in the reproduce line: --c 5.0, as it always was.
POSITIVE = number(0.0, open_low=True, show=float_repr)


@dataclass(frozen=True)
class RegretConfig:
    """Everything that determines a run; saved with the results so it can be repeated.

    Each field is also the command's option of that name (see :mod:`simulations.options`).
    """

    means: tuple[float, ...] = option(
        PRESETS[DEFAULT_PRESET],
        ARMS,
        "comma-separated success probabilities of the Bernoulli arms, e.g. 0.3,0.5,0.7",
        flag="--arms",
        alias=PRESET,
    )
    horizon: int = option(10_000, integer(minimum=1), "steps T per run")
    runs: int = option(200, integer(minimum=2), "independent runs (>= 2 for a CI)")
    seed: int = option_factory(
        fresh_seed,
        integer(minimum=0),
        "seed of all random draws; a fresh one is drawn, printed and saved if omitted",
    )
    policies: tuple[str, ...] = option(
        DEFAULT_POLICIES, POLICIES, "comma-separated policies among egreedy, edecay, ucb1, thompson"
    )
    epsilon: float = option(
        0.1, number(0.0, 1.0, show=float_repr), "exploration probability of egreedy"
    )
    c: float = option(5.0, POSITIVE, "edecay explores with probability min(1, c K / t)")
    ucb_alpha: float = option(
        2.0, POSITIVE, "UCB1 index mean + sqrt(alpha ln t / n_k); 2 is Auer et al.'s UCB1"
    )
    prior_alpha: float = option(1.0, POSITIVE, "Thompson sampling Beta prior alpha")
    prior_beta: float = option(1.0, POSITIVE, "Thompson sampling Beta prior beta")
    checkpoints: int = option(
        DEFAULT_CHECKPOINTS,
        integer(minimum=2),
        "about how many times t to record regret at (half log-spaced, half linear)",
    )

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
class PolicySummary:
    policy: str
    parameters: str
    regret: MeanCI
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
