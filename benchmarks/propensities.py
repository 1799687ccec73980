"""What a tick's propensities cost: P(each arm's Beta draw is the largest), integrated.

Not part of ``make bench`` (pure NumPy/SciPy, no server). Every applied tick computes the
window's propensities once (api.services.ticks.window_propensities); for Thompson sampling
that is :func:`bandit.propensities.beta_rank_probabilities`. The baseline, measured in the
same run, is what the code base already used for the same quantity: the Monte Carlo P(best)
of the posterior summaries (:func:`bandit.summaries.prob_best`, 10,000 draws), whose
standard error is about 0.005 where the integral's stated error bound is about 1e-9.

Posteriors like a live experiment's after a few thousand exposures per arm: successes
``~ Gamma(20, 1)`` rounded, failures 20 times as many, prior Beta(1, 1). For K in --arms,
``--repeats`` times alternating, prints the medians (wall clock and the process's CPU time:
the machine is shared), the ratio of the integral's to the baseline's median in the same
run, the integral's stated error bound and the Monte Carlo's largest standard error.

    .venv/bin/python benchmarks/propensities.py [--repeats 15] [--arms 3,7,20,80]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bandit.propensities import beta_rank_probabilities
from bandit.summaries import prob_best


def _timed(work: Callable[..., object], *arguments: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work(*arguments)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--arms", default="3,7,20,80")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print(
        f"{'K':>3} {'integral ms':>12} {'(cpu)':>7} {'MC 10k ms':>10} {'(cpu)':>7} "
        f"{'ratio':>6} {'error bound':>12} {'MC se':>7}"
    )
    for k in (int(value) for value in args.arms.split(",")):
        successes = np.round(rng.gamma(20.0, 1.0, k))
        alphas, betas = 1 + successes, 1 + 20 * successes
        integral: list[tuple[float, float]] = []
        monte_carlo: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            integral.append(_timed(beta_rank_probabilities, alphas, betas))
            monte_carlo.append(_timed(prob_best, alphas, betas, rng, 10_000))
        wall_i = statistics.median(t[0] for t in integral) * 1e3
        cpu_i = statistics.median(t[1] for t in integral) * 1e3
        wall_m = statistics.median(t[0] for t in monte_carlo) * 1e3
        cpu_m = statistics.median(t[1] for t in monte_carlo) * 1e3
        result = beta_rank_probabilities(alphas, betas)
        se = float(np.max(np.sqrt(result.first * (1 - result.first) / 10_000)))
        print(
            f"{k:>3} {wall_i:>12.1f} {cpu_i:>7.1f} {wall_m:>10.1f} {cpu_m:>7.1f} "
            f"{wall_i / wall_m:>6.2f} {result.error:>12.1e} {se:>7.4f}"
        )


if __name__ == "__main__":
    main()
