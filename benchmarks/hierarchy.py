"""What the hierarchical segment model costs per tick: 20 arms x 1,000 segments.

Not part of ``make bench`` (pure NumPy/SciPy, no server). The issue's budget is a tick with
1,000 segments x 20 arms under 100 ms; the empirical-Bayes fit is the new part of it.

The evidence: per arm, 1,000 segments with Zipf traffic (segment ``s`` gets a share
``1 / (s + 1)`` of ``--evidence`` pseudo-observations, so a few big segments and a long
tail, many of them empty), segment rates ``theta_s ~ Beta`` around a per-arm mean, and
real-valued failures as the reference-ratio update makes them. Then, alternating,
``--repeats`` times each:

* baseline: the independent posteriors ``(prior + x_s, prior + m_s)`` and one Thompson draw
  from each of the 20 x 1,000 Betas (what a tick does without pooling);
* fit: :func:`bandit.hierarchy.fit_hierarchy` on all 20 arms at once, plus the same draw
  from the shrunk posteriors;
* scipy per arm: ``scipy.optimize.minimize`` (L-BFGS-B, numerical gradient) of the same
  objective arm by arm, the obvious alternative (``--scipy-repeats``, it is slow);
* a tick's refit: the evidence grown by one more window (drawn the same way with
  ``--window`` of the evidence) fitted cold, and warm (``start=`` the fit before the window,
  as ``api.services.segments.refit`` does), with the largest relative difference of their
  ``mu`` and ``kappa``.

Prints the medians (wall clock, and the process's CPU time: the machine is shared), each
one's ratio to the baseline's median of the same run, and the largest difference of the
maximised objective between the fit and scipy (>= 0 means the fit found an equal or higher
maximum).

    .venv/bin/python benchmarks/hierarchy.py [--repeats 30] [--scipy-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import optimize, special

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.hierarchy import HierarchicalFit, fit_hierarchy, log_objective
from bandit.update import Prior
from benchmarks.common import say

ARMS = 20
SEGMENTS = 1_000


def evidence(rng: np.random.Generator, total: float) -> tuple[np.ndarray, np.ndarray]:
    shares = 1.0 / np.arange(1, SEGMENTS + 1)
    shares /= shares.sum()
    n = rng.poisson(total * shares, size=(ARMS, SEGMENTS)).astype(np.float64)
    means = rng.uniform(0.4, 0.6, size=(ARMS, 1))
    theta = rng.beta(50 * means, 50 * (1 - means), size=(ARMS, SEGMENTS))
    x = rng.binomial(n.astype(np.int64), theta).astype(np.float64)
    # The reference-ratio update's failures are c_r * n_k / n_r: real numbers.
    m = (n - x) * rng.uniform(0.9, 1.1, size=(ARMS, SEGMENTS))
    return x, m


def scipy_per_arm(x: np.ndarray, m: np.ndarray, prior: Prior) -> np.ndarray:
    """Per arm, the maximum of the same objective over (logit mu, log kappa) in the bounds."""
    values = np.empty(x.shape[0])
    strength = prior.alpha + prior.beta
    for arm in range(x.shape[0]):
        total = float(x[arm].sum() + m[arm].sum())
        start = [float(special.logit((prior.alpha + x[arm].sum()) / (strength + total))), 3.0]

        def negative(p: np.ndarray, arm: int = arm) -> float:
            mu, kappa = special.expit(p[0]), np.exp(p[1])
            return -float(log_objective(x[arm], m[arm], mu, kappa, prior=prior))

        bounds = [(-30.0, 30.0), (np.log(strength), np.log(strength + total))]
        result = optimize.minimize(negative, start, method="L-BFGS-B", bounds=bounds)
        values[arm] = -result.fun
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--scipy-repeats", type=int, default=3)
    parser.add_argument("--evidence", type=float, default=100_000.0, help="per arm")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=float, default=0.01, help="share of the evidence")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    prior = Prior()
    x, m = evidence(rng, args.evidence)
    draws = np.random.default_rng(args.seed + 1)

    def baseline() -> None:
        draws.beta(prior.alpha + x, prior.beta + m)

    def fit() -> None:
        result = fit_hierarchy(x, m, prior=prior)
        draws.beta(result.alphas, result.betas)

    window_x, window_m = evidence(rng, args.evidence * args.window)
    grown_x, grown_m = x + window_x, m + window_m
    before = fit_hierarchy(x, m, prior=prior)

    def cold() -> HierarchicalFit:
        return fit_hierarchy(grown_x, grown_m, prior=prior)

    def warm() -> HierarchicalFit:
        return fit_hierarchy(grown_x, grown_m, prior=prior, start=(before.mu, before.kappa))

    timings: dict[str, list[float]] = {
        "baseline": [],
        "fit": [],
        "scipy per arm": [],
        "refit, cold": [],
        "refit, warm": [],
    }
    cpu: dict[str, list[float]] = {label: [] for label in timings}
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("baseline", baseline, args.repeats),
        ("fit", fit, args.repeats),
        ("scipy per arm", lambda: scipy_per_arm(x, m, prior), args.scipy_repeats),
        ("refit, cold", cold, args.repeats),
        ("refit, warm", warm, args.repeats),
    ]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    fit()  # warm-up (imports, caches)
    for repeat in range(args.repeats):
        for label, call, repeats in cases:
            if repeat >= repeats:
                continue
            started, cpu_started = time.perf_counter(), time.process_time()
            call()
            timings[label].append(time.perf_counter() - started)
            cpu[label].append(time.process_time() - cpu_started)

    result = fit_hierarchy(x, m, prior=prior)
    gap = result.log_objective - scipy_per_arm(x, m, prior)
    empty = float((x + m == 0).mean())
    say(
        f"hierarchy fit: {ARMS} arms x {SEGMENTS} segments, {args.evidence:,.0f} evidence per "
        f"arm ({empty:.0%} of segments empty), seed {args.seed}; load average before: {load}"
    )
    base = statistics.median(timings["baseline"])
    cpu_base = statistics.median(cpu["baseline"])
    for label, values in timings.items():
        median = statistics.median(values)
        cpu_median = statistics.median(cpu[label])
        say(
            f"  {label:<16} {1e3 * median:9.2f} ms median of {len(values):>2} "
            f"({median / base:6.1f}x the baseline); CPU {1e3 * cpu_median:8.2f} ms "
            f"({cpu_median / cpu_base:6.1f}x)"
        )
    bounds = f"{result.kappa_min.min():.0f}..{result.kappa_max.max():,.0f}"
    say(
        f"  Newton iterations {result.iterations}; kappa from {result.kappa.min():.1f} to "
        f"{result.kappa.max():.1f} (bounds {bounds})"
    )
    say(
        f"  objective: fit - scipy per arm, min {gap.min():+.2e}, max {gap.max():+.2e} "
        "(>= 0: the fit's maximum is as high)"
    )
    cold_fit, warm_fit = cold(), warm()
    differences = [
        float(np.max(np.abs(getattr(warm_fit, name) / getattr(cold_fit, name) - 1)))
        for name in ("mu", "kappa")
    ]
    say(
        f"  refit after a window of {args.window:.0%} of the evidence: Newton iterations "
        f"cold {cold_fit.iterations} (after the grid), warm {warm_fit.iterations}; largest "
        f"relative difference warm/cold: mu {differences[0]:.1e}, kappa {differences[1]:.1e}"
    )
    say(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
