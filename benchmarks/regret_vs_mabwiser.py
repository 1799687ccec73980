"""ranktune's regret simulator against MABWiser: speed per simulated step, and the same regret.

Both libraries run in this one process, on the same instances:

- ``3-arms``: Bernoulli arms 0.3, 0.5, 0.7
- ``10-arms``: 0.40, 0.41, ..., 0.50

for T = 10,000 steps and every policy that both have: epsilon-greedy (epsilon = 0.1), UCB1
(Auer et al. 2002) and Thompson sampling with a Beta(1, 1) prior. MABWiser has no
epsilon-decreasing policy.

What a "simulated step" is: one arm choice plus one reward update in one run. ranktune plays
``--runs`` runs at once (vectorised over runs); MABWiser plays one run at a time with
``predict()`` / ``partial_fit()``, its documented online loop. MABWiser is about a thousand
times slower, so it plays fewer runs (``--mab-runs``) of the same horizon; both per-step times
are medians (ranktune over ``--repeats`` repetitions of the whole batch, MABWiser over its
runs) and regret is compared at T with 95% t-intervals.

The same algorithm, checked in MABWiser 2.7.4's source (mabwiser/greedy.py, ucb.py,
thompson.py, utils.py):

- UCB1: MABWiser's index is ``mean + alpha * sqrt(2 ln N / n_k)``; ``alpha = 1`` is Auer's UCB1,
  which is ranktune's ``UCB1(alpha=2)`` (index ``mean + sqrt(alpha ln N / n_k)``). ``N`` is
  the number of pulls so far in both.
- Untried arms: MABWiser scores them 0 (its UCB1 would never try an arm that was not in the
  training data), so every MABWiser learner is first ``fit()`` on one pull of each arm, in
  order. ranktune's UCB1 and epsilon-greedy try every arm once first by themselves (unplayed
  arms rank first); its Thompson sampling does not, which changes at most K of 10,000 steps.
- Epsilon-greedy: both explore with probability epsilon by a uniformly random arm, otherwise
  pull the best empirical mean; ties go to the first arm in both.
- Thompson sampling: both draw Beta(1 + successes, 1 + failures).

Run it from the repository root in its own environment (MABWiser is not a runtime
dependency of ranktune):

    python3 -m venv benchmarks/.venv-mabwiser
    benchmarks/.venv-mabwiser/bin/pip install -r benchmarks/requirements-mabwiser.txt
    benchmarks/.venv-mabwiser/bin/pip install -e .
    benchmarks/.venv-mabwiser/bin/python benchmarks/regret_vs_mabwiser.py

``--quick`` is a one-minute smoke run with few runs and a short horizon.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Import ranktune from this checkout even when it is not installed in the environment.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.policies import Policy, make_policy
from simulations.confidence import mean_ci
from simulations.regret import (
    RegretConfig,
    policy_rng,
    run_regret,
    simulate_policy,
    write_outputs,
)

try:
    from mabwiser.mab import MAB, LearningPolicy
except ImportError:  # pragma: no cover - the message is the point
    sys.exit(
        "MABWiser is not installed in this environment; see the docstring of "
        "benchmarks/regret_vs_mabwiser.py for the benchmark's own virtualenv."
    )

MABWISER_VERSION = importlib.metadata.version("mabwiser")
INSTANCES = {
    "3-arms": (0.3, 0.5, 0.7),
    "10-arms": tuple(float(p) for p in np.linspace(0.40, 0.50, 10)),
}
POLICIES = ("egreedy", "ucb1", "thompson")
EPSILON = 0.1
SPEED_TARGET = 100.0
DEFAULT_COMPARISON_TARGET_S = 5.0


@dataclass(frozen=True)
class Row:
    instance: str
    policy: str
    ranktune_runs: int
    mabwiser_runs: int
    horizon: int
    ranktune_us_per_step: float
    mabwiser_us_per_step: float
    speedup: float
    ranktune_regret: float
    ranktune_ci: tuple[float, float]
    mabwiser_regret: float
    mabwiser_ci: tuple[float, float]
    difference_ci: tuple[float, float]
    ranktune_mean_in_mabwiser_ci: bool


def ranktune_policy(name: str) -> Policy:
    # ucb_alpha=2 is Auer's UCB1 = MABWiser's UCB1(alpha=1); the other defaults already match.
    return make_policy(name, epsilon=EPSILON, prior_alpha=1.0, prior_beta=1.0, ucb_alpha=2.0)


def mabwiser_policy(name: str) -> object:
    if name == "egreedy":
        return LearningPolicy.EpsilonGreedy(epsilon=EPSILON)
    if name == "ucb1":
        return LearningPolicy.UCB1(alpha=1.0)
    if name == "thompson":
        return LearningPolicy.ThompsonSampling()
    raise ValueError(name)


def run_ranktune(
    means: tuple[float, ...], name: str, horizon: int, runs: int, seed: int, repeats: int
) -> tuple[np.ndarray, list[float]]:
    """Final regrets of the first repetition and the per-step time of every repetition."""
    per_step_us = []
    final = np.empty(0)
    for repeat in range(repeats):
        rng, _ = policy_rng(seed, name)  # the same stream each repetition: same work
        started = time.perf_counter()
        regrets, _ = simulate_policy(
            ranktune_policy(name), means, horizon, runs, rng, np.array([horizon])
        )
        per_step_us.append((time.perf_counter() - started) / (runs * horizon) * 1e6)
        if repeat == 0:
            final = regrets[:, -1]
    return final, per_step_us


def run_mabwiser(
    means: tuple[float, ...], name: str, horizon: int, runs: int, seed: int
) -> tuple[np.ndarray, list[float]]:
    """Final pseudo-regret of every run and its time per simulated step (one run at a time)."""
    p = np.asarray(means)
    gaps = p.max() - p
    arms = list(range(p.size))
    finals = np.empty(runs)
    per_step_us = []
    for run in range(runs):
        key = (zlib.crc32(f"mabwiser-{name}".encode()), run)
        reward_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
        mab_seed = int(reward_rng.integers(2**31 - 1))
        started = time.perf_counter()
        mab = MAB(arms=arms, learning_policy=mabwiser_policy(name), seed=mab_seed)
        # One pull of every arm first: MABWiser cannot predict before fit(), and its UCB1
        # scores untried arms 0. The same opening as UCB1's "play each arm once".
        first_rewards = (reward_rng.random(p.size) < p).astype(int)
        mab.fit(decisions=arms, rewards=first_rewards)
        regret = float(gaps.sum())
        for _ in range(horizon - p.size):
            arm = mab.predict()
            reward = int(reward_rng.random() < p[arm])
            mab.partial_fit(decisions=[arm], rewards=[reward])
            regret += gaps[arm]
        per_step_us.append((time.perf_counter() - started) / horizon * 1e6)
        finals[run] = regret
    return finals, per_step_us


def difference_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch 95% interval of mean(a) - mean(b)."""
    from scipy import stats

    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.975, dof)) * se
    diff = float(a.mean() - b.mean())
    return diff - half, diff + half


def replay_mismatches(name: str, means: tuple[float, ...], horizon: int, seed: int) -> int:
    """Play ranktune's and MABWiser's policy on the *same* rewards (the n-th pull of arm k
    always returns ``table[k, n]``) and count the steps where they pull different arms.

    UCB1 is deterministic given its rewards. For Thompson sampling ranktune is given the
    generator MABWiser builds from its seed (``default_rng(seed)``) and the same opening
    pull of every arm; both then draw Beta(1 + s_k, 1 + f_k) for arms 0..K-1 in order, so the
    same algorithm must make the same choices. Zero mismatches is a check of the algorithms
    themselves, free of sampling noise.
    """
    p = np.asarray(means)
    k = p.size
    table_rng = np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(zlib.crc32(b"replay"),))
    )
    table = (table_rng.random((k, horizon)) < p[:, None]).astype(int)

    mab = MAB(arms=list(range(k)), learning_policy=mabwiser_policy(name), seed=seed)
    mab.fit(decisions=list(range(k)), rewards=table[:, 0].tolist())
    used = np.ones(k, dtype=int)
    theirs = []
    for _ in range(horizon - k):
        arm = mab.predict()
        reward = int(table[arm, used[arm]])
        used[arm] += 1
        mab.partial_fit(decisions=[arm], rewards=[reward])
        theirs.append(arm)

    policy = ranktune_policy(name)
    rng = np.random.default_rng(seed)
    successes = table[:, 0].astype(float)[None, :].copy()
    failures = 1.0 - successes
    used[:] = 1
    ours = []
    for _ in range(horizon - k):
        arm = int(policy.choose(successes, failures, rng)[0])
        reward = table[arm, used[arm]]
        used[arm] += 1
        successes[0, arm] += reward
        failures[0, arm] += 1 - reward
        ours.append(arm)
    return int(np.sum(np.asarray(ours) != np.asarray(theirs)))


def time_default_comparison() -> float:
    """Wall time of ``ranktune simulate regret`` with its defaults (4 policies, 3 arms,
    T = 10,000, 200 runs), simulation plus writing the table, CSV, JSON and plots."""
    config = RegretConfig(means=(0.3, 0.5, 0.7), horizon=10_000, runs=200, seed=1)
    started = time.perf_counter()
    result = run_regret(config)
    with tempfile.TemporaryDirectory() as out:
        write_outputs(result, Path(out))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizon", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200, help="ranktune runs (vectorised)")
    parser.add_argument("--mab-runs", type=int, default=20, help="MABWiser runs (sequential)")
    parser.add_argument("--repeats", type=int, default=3, help="timed ranktune repetitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instances", default=",".join(INSTANCES))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--quick", action="store_true", help="T=2,000, 50 vs 5 runs, 1 repeat")
    parser.add_argument(
        "--replay-only", action="store_true", help="only the replays and the default timing"
    )
    parser.add_argument("--out", default="benchmarks/results/regret_vs_mabwiser.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.horizon, args.runs, args.mab_runs, args.repeats = 2_000, 50, 5, 1

    print(
        f"ranktune vs MABWiser {MABWISER_VERSION}: T = {args.horizon:,}, ranktune "
        f"{args.runs} runs at once (median of {args.repeats}), MABWiser {args.mab_runs} runs one "
        f"by one; numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    rows = []
    for instance in [] if args.replay_only else args.instances.split(","):
        means = INSTANCES[instance]
        for name in args.policies.split(","):
            ours, ours_times = run_ranktune(
                means, name, args.horizon, args.runs, args.seed, args.repeats
            )
            theirs, their_times = run_mabwiser(means, name, args.horizon, args.mab_runs, args.seed)
            ours_ci, their_ci = mean_ci(ours), mean_ci(theirs)
            ours_us, their_us = statistics.median(ours_times), statistics.median(their_times)
            row = Row(
                instance=instance,
                policy=name,
                ranktune_runs=args.runs,
                mabwiser_runs=args.mab_runs,
                horizon=args.horizon,
                ranktune_us_per_step=ours_us,
                mabwiser_us_per_step=their_us,
                speedup=their_us / ours_us,
                ranktune_regret=ours_ci.mean,
                ranktune_ci=(ours_ci.ci_low, ours_ci.ci_high),
                mabwiser_regret=their_ci.mean,
                mabwiser_ci=(their_ci.ci_low, their_ci.ci_high),
                difference_ci=difference_ci(ours, theirs),
                ranktune_mean_in_mabwiser_ci=their_ci.ci_low <= ours_ci.mean <= their_ci.ci_high,
            )
            rows.append(row)
            print(f"  done {instance} {name}", file=sys.stderr, flush=True)

    replay_steps = min(args.horizon, 3_000)
    replay = {
        f"{instance} {name}": replay_mismatches(name, INSTANCES[instance], replay_steps, args.seed)
        for instance in args.instances.split(",")
        for name in ("ucb1", "thompson")
    }
    default_wall = time_default_comparison()
    if rows:
        print_table(rows, default_wall)
    else:
        print(f"default comparison: {default_wall:.2f} s")
    for instance, mismatches in replay.items():
        print(
            f"replay on identical rewards, {instance}, {replay_steps:,} steps: "
            f"{mismatches} differing arm choices"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "parameters": vars(args),
                "mabwiser": MABWISER_VERSION,
                "numpy": np.__version__,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "default_comparison_wall_s": default_wall,
                "ucb1_replay_mismatches": replay,
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")
    fast = all(r.speedup >= SPEED_TARGET for r in rows)
    same = all(r.ranktune_mean_in_mabwiser_ci for r in rows)
    identical = all(m == 0 for m in replay.values())
    ok = fast and same and identical and default_wall < DEFAULT_COMPARISON_TARGET_S
    return 0 if ok else 1


def print_table(rows: list[Row], default_wall: float) -> None:
    print()
    print(
        f"{'instance':<9}{'policy':<10}{'ranktune':>10}{'MABWiser':>10}{'speed-up':>10}  "
        f"{'ranktune regret [95% CI]':<26}{'MABWiser regret [95% CI]':<26}{'same?':<6}"
    )
    print(f"{'':<19}{'us/step':>10}{'us/step':>10}")
    for r in rows:
        ours = f"{r.ranktune_regret:.1f} [{r.ranktune_ci[0]:.1f}, {r.ranktune_ci[1]:.1f}]"
        theirs = f"{r.mabwiser_regret:.1f} [{r.mabwiser_ci[0]:.1f}, {r.mabwiser_ci[1]:.1f}]"
        print(
            f"{r.instance:<9}{r.policy:<10}{r.ranktune_us_per_step:>10.3f}"
            f"{r.mabwiser_us_per_step:>10.1f}{r.speedup:>9.0f}x  {ours:<26}{theirs:<26}"
            f"{'yes' if r.ranktune_mean_in_mabwiser_ci else 'NO':<6}"
        )
    print(
        f"\nspeed target {SPEED_TARGET:.0f}x per simulated step: "
        f"{'met' if all(r.speedup >= SPEED_TARGET for r in rows) else 'NOT met'}; "
        "same regret (ranktune's mean inside MABWiser's 95% interval): "
        f"{sum(r.ranktune_mean_in_mabwiser_ci for r in rows)}/{len(rows)}"
    )
    print(
        f"default comparison (4 policies, 3 arms, T = 10,000, 200 runs, with outputs): "
        f"{default_wall:.2f} s (target < {DEFAULT_COMPARISON_TARGET_S:.0f} s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
