"""What the surrogate model costs a genetic step: 200 arms in the history.

Part of ``make bench`` (``run_all.py --only model-search``) and runnable alone; pure
computation, no server. The issue's budget: a genetic step with 200 arms in the history
under 1 s.

The experiment: the four parameters of the README's example (three floats, one int),
10 active arms (the reference included) and 190 retired ones of the same phase, each
measured with a few thousand exposures of a smooth hidden rate. Then, alternating,
``--repeats`` times each, :func:`arms.evolution.evolve_step` retiring 3 arms and adding 3:

* baseline: the step as it was, mix random/mutation/crossover at 1 each;
* with the model: the same mix plus ``model`` at 3 (one or two of the three slots are model
  proposals, so the surrogate is fitted and queried every time).

Prints the medians (wall clock, and the process's CPU time: the machine may be shared) and
the ratio of the model step's median to the baseline's of the same run.

    .venv/bin/python benchmarks/model_search.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arms.evolution import ActiveArm, EvolutionPlan, RetiredArm, evolve_step
from arms.space import ParameterSpace
from bandit.evolution import EvolutionSettings
from bandit.update import Prior
from benchmarks.common import say

HISTORY = 200
ACTIVE = 10
BUDGET_S = 1.0
SPACE = ParameterSpace.from_dicts(
    [
        {"name": "text_match", "type": "float", "low": 0, "high": 2},
        {"name": "distance", "type": "float", "low": 0, "high": 2},
        {"name": "price_diff", "type": "float", "low": 0, "high": 2},
        {"name": "region", "type": "int", "low": 0, "high": 3},
    ]
)


def history(seed: int) -> tuple[list[ActiveArm], list[RetiredArm]]:
    rng = np.random.default_rng(seed)
    configs = [SPACE.random(rng) for _ in range(HISTORY)]
    x = np.array([[c[n] for n in SPACE.names] for c in configs], dtype=float) / [2, 2, 2, 3]
    theta = 0.5 + 0.05 * np.exp(-4 * ((x - [0.7, 0.2, 0.5, 0.33]) ** 2).sum(axis=1))
    exposures = rng.integers(500, 5000, HISTORY).astype(float)
    alpha = 1 + theta * exposures * 0.1
    beta = 1 + (1 - theta) * exposures * 0.1
    active = [
        ActiveArm(k, configs[k], alpha[k], beta[k], exposures[k], is_reference=k == 0)
        for k in range(ACTIVE)
    ]
    retired = [
        RetiredArm(k, configs[k], alpha[k], beta[k], exposures[k]) for k in range(ACTIVE, HISTORY)
    ]
    return active, retired


def settings(model_weight: float) -> EvolutionSettings:
    return EvolutionSettings(
        min_exposures=100, drop_count=3, min_arms=2, max_arms=ACTIVE, model_weight=model_weight
    )


def timed(
    model_weight: float, active: list[ActiveArm], retired: list[RetiredArm], seed: int
) -> tuple[float, float, EvolutionPlan]:
    wall, cpu = time.perf_counter(), time.process_time()
    plan = evolve_step(
        SPACE,
        active,
        [],
        settings(model_weight),
        Prior(),
        np.random.default_rng(seed),
        generation=1,
        retired=retired,
    )
    return time.perf_counter() - wall, time.process_time() - cpu, plan


def run(repeats: int) -> dict[str, Any]:
    active, retired = history(0)
    timed(3.0, active, retired, 0)  # imports scikit-learn: not part of a step's cost
    base_wall: list[float] = []
    base_cpu: list[float] = []
    model_wall: list[float] = []
    model_cpu: list[float] = []
    model_slots: list[int] = []
    for repeat in range(repeats):
        wall, cpu, _ = timed(0.0, active, retired, repeat)
        base_wall.append(wall)
        base_cpu.append(cpu)
        wall, cpu, plan = timed(3.0, active, retired, repeat)
        model_wall.append(wall)
        model_cpu.append(cpu)
        model_slots.append(sum(1 for a in plan.additions if a.origin == "model"))
    return {
        "history": HISTORY,
        "repeats": repeats,
        "baseline_median_s": statistics.median(base_wall),
        "baseline_cpu_median_s": statistics.median(base_cpu),
        "model_median_s": statistics.median(model_wall),
        "model_cpu_median_s": statistics.median(model_cpu),
        "model_max_s": max(model_wall),
        "ratio": statistics.median(model_wall) / statistics.median(base_wall),
        "model_proposals_per_step": statistics.mean(model_slots),
        "budget_s": BUDGET_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    r = run(args.repeats)
    say(f"genetic step, {r['history']} arms in the history, {r['repeats']} repeats (medians)")
    say(
        f"  without the model: {r['baseline_median_s'] * 1000:8.1f} ms wall, "
        f"{r['baseline_cpu_median_s'] * 1000:8.1f} ms CPU"
    )
    say(
        f"  with the model:    {r['model_median_s'] * 1000:8.1f} ms wall, "
        f"{r['model_cpu_median_s'] * 1000:8.1f} ms CPU (max {r['model_max_s'] * 1000:.1f} ms; "
        f"{r['model_proposals_per_step']:.1f} model proposals per step)"
    )
    met = "met" if r["model_median_s"] < BUDGET_S else "NOT met"
    say(f"  ratio {r['ratio']:.1f}x the step without the model; budget < {BUDGET_S:g} s: {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
