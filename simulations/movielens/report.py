"""The movielens command's analysis, tables, files and plots.

Per run: the lift of the target group over the reference group per time bin (observed,
with its interval, and expected from the served configurations' truth), and the best
configuration found against the best possible. Over runs: the share of the available lift
captured after 1, 3 and 6 simulated hours, and the target traffic spent on arms worse than
the reference, each a mean with its 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulations.confidence import MeanCI, mean_ci
from simulations.marketplace.report import lift_interval
from simulations.movielens.model import (
    COMMAND,
    PARAMETER_NAMES,
    REFERENCE_CONFIG,
    MovieLensResult,
    RunRecord,
    config_of,
)
from simulations.options import PROGRAM, command_line, parameters
from simulations.output import jsonable, percent, versions, weights_text, write_csv, write_json
from simulations.plotting import Curve, plot_curves_with_bands


@dataclass(frozen=True)
class BinRow:
    """One time bin of one run's lift table."""

    start_hour: float
    end_hour: float
    target_exposures: int
    target_contacts: int
    reference_exposures: int
    reference_contacts: int
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    expected_lift: float
    best_arm_id: int
    best_arm_captured: float  # share of the available lift the best arm captures


def available_lift(result: MovieLensResult) -> float:
    """The best possible configuration's lift over the reference (exact)."""
    return result.search.contacts / result.reference_rate - 1.0


def captured(result: MovieLensResult, run: RunRecord, arm_id: int) -> float:
    """``(rate / reference - 1) / (best possible / reference - 1)`` of an arm's true rate:
    1 is the best possible, 0 the reference, negative worse than the reference."""
    if arm_id not in run.arms:
        return math.nan
    found = run.arms[arm_id].true_contacts / result.reference_rate - 1.0
    return found / available_lift(result)


def window_at(result: MovieLensResult, hour: float) -> int:
    """The last tick window that ends at or before ``hour``."""
    config = result.config
    return min(config.n_windows, max(1, round(hour * 3600 / config.tick_seconds))) - 1


def captured_at(result: MovieLensResult, run: RunRecord, hour: float) -> float:
    return captured(result, run, run.log.best_arm_ids[window_at(result, hour)])


def bad_traffic_share(result: MovieLensResult, run: RunRecord, hour: float) -> float:
    """Share of the target traffic up to ``hour`` served arms truly worse than the
    reference configuration."""
    bad = total = 0
    for window in run.log.exposures[: window_at(result, hour) + 1]:
        for arm_id, count in window.items():
            if arm_id == run.reference_arm_id:
                continue
            total += count
            if run.arms[arm_id].true_contacts < result.reference_rate:
                bad += count
    return bad / total if total else math.nan


def bin_rows(result: MovieLensResult, run: RunRecord) -> list[BinRow]:
    config, log = result.config, run.log
    ref = run.reference_arm_id
    rows = []
    per_bin = config.windows_per_bin
    for start in range(0, config.n_windows, per_bin):
        stop = min(start + per_bin, config.n_windows)
        te = tc = re_ = rc = tx = rx = 0.0
        for w in range(start, stop):
            for arm_id, count in log.exposures[w].items():
                te, re_ = (te, re_ + count) if arm_id == ref else (te + count, re_)
            for arm_id, count in log.contacts[w].items():
                tc, rc = (tc, rc + count) if arm_id == ref else (tc + count, rc)
            for arm_id, value in log.expected_contacts[w].items():
                tx, rx = (tx, rx + value) if arm_id == ref else (tx + value, rx)
        lift, low, high = lift_interval(tc, te, rc, re_)
        expected = (tx / te) / (rx / re_) - 1.0 if min(te, re_, rx) > 0 else math.nan
        best = log.best_arm_ids[stop - 1]
        rows.append(
            BinRow(
                start * config.tick_seconds / 3600,
                stop * config.tick_seconds / 3600,
                int(te), int(tc), int(re_), int(rc),
                lift, low, high, expected, best, captured(result, run, best),
            )
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class Checkpoint:
    """Over runs, at one hour: the share of the available lift captured, and the traffic
    spent on arms worse than the reference so far."""

    hour: float
    captured: MeanCI
    bad_traffic: MeanCI


def checkpoints(result: MovieLensResult) -> list[Checkpoint]:
    return [
        Checkpoint(
            hour,
            mean_ci([captured_at(result, run, hour) for run in result.runs]),
            mean_ci([bad_traffic_share(result, run, hour) for run in result.runs]),
        )
        for hour in result.config.checkpoints
    ]


def arm_summary(result: MovieLensResult, run: RunRecord) -> list[dict[str, Any]]:
    """Every arm of a run at the end: truth, traffic, posterior; by posterior mean."""
    log = run.log
    total_target = sum(c for w in log.exposures for a, c in w.items() if a != run.reference_arm_id)
    rows = []
    for arm in run.final_arms:
        info = run.arms[arm["arm_id"]]
        served = sum(w.get(arm["arm_id"], 0) for w in log.exposures)
        reference = arm["origin"] == "reference"
        rows.append(
            {
                "arm_id": arm["arm_id"],
                "label": info.label,
                "origin": arm["origin"],
                "status": arm["status"],
                "generation": arm["generation"],
                "parent_ids": arm["parent_ids"],
                "config": arm["config"],
                "true_contacts_per_page_view": info.true_contacts,
                "captured": captured(result, run, arm["arm_id"]),
                "exposures": served,
                "contacts": sum(w.get(arm["arm_id"], 0) for w in log.contacts),
                "traffic_share": None if reference else served / max(total_target, 1),
                "alpha": arm["alpha"],
                "beta": arm["beta"],
                "posterior_mean": None
                if reference
                else arm["alpha"] / (arm["alpha"] + arm["beta"]),
            }
        )
    rows.sort(key=lambda r: -1.0 if r["posterior_mean"] is None else -r["posterior_mean"])
    return rows


# --- the table and the files --------------------------------------------------------------


def _ci(m: MeanCI, signed: bool = True) -> str:
    if math.isnan(m.ci_low):
        return percent(m.mean, signed)
    return f"{percent(m.mean, signed)} [{percent(m.ci_low, signed)}, {percent(m.ci_high, signed)}]"


def _evolution(result: MovieLensResult) -> str:
    config = result.config
    if not config.evolve:
        return "off"
    if not result.evolution_available:
        return "unavailable in this build"
    mix = "genetic step with model proposals" if config.model_proposals else "genetic step"
    return f"{mix} every {config.evolve_minutes:g} min"


def format_table(result: MovieLensResult) -> str:
    """The tables printed by the command."""
    config = result.config
    env = result.environment
    run = result.runs[0]
    lines = [
        f"MovieLens 100k ({result.data_source}): {int(env['sources'])} source films with "
        f">= {config.model.min_likers} future likers, {int(env['candidates'])} candidate films, "
        f"{int(env['future_users'])} future users; traffic by the ratings' hour of day "
        f"(busiest hour {env['busiest_over_quietest_hour']:.1f}x the quietest)",
        f"{config.hours:g} simulated hours from {config.start_hour:g}:00, "
        f"{config.views_per_minute:g} page views/min on average, block of "
        f"{config.model.block_size}, {config.runs} run(s) from seed {config.seed}; "
        f"evolution: {_evolution(result)}; wall time {result.wall_time_s:.1f} s "
        f"(exact search {result.search_time_s:.1f} s)",
        "",
        f"Lift of the target group over the reference group, run 1 (seed {run.seed}), "
        "contacts per page view",
        f"{'hours':<11}{'target':>14}{'reference':>14}{'lift':>9}  {'95% CI':<18}"
        f"{'expected':>9}{'best arm':>10}{'captured':>10}",
    ]
    for b in bin_rows(result, run):
        interval = (
            f"[{percent(b.lift_ci_low)}, {percent(b.lift_ci_high)}]"
            if not math.isnan(b.lift_ci_low)
            else "n/a"
        )
        lines.append(
            f"{b.start_hour:>4.1f}-{b.end_hour:<5.1f}"
            f"{f'{b.target_contacts}/{b.target_exposures}':>14}"
            f"{f'{b.reference_contacts}/{b.reference_exposures}':>14}"
            f"{percent(b.lift):>9}  {interval:<18}{percent(b.expected_lift):>9}"
            f"{b.best_arm_id:>10}{percent(b.best_arm_captured, signed=False):>10}"
        )
    best_id = run.log.best_arm_ids[-1]
    best = run.arms[best_id]
    lines += [
        "(expected: the same ratio of the served configurations' true rates; best arm: highest "
        "posterior mean at the end of the bin;",
        " captured: its lift over the reference as a share of the best possible lift)",
        "",
        f"Best configuration found (run 1): arm {best_id} ({best.label}) "
        f"{weights_text(best.config, REFERENCE_CONFIG)}",
        f"  true contact rate {best.true_contacts:.4%} per page view; lift over the reference "
        f"({result.reference_rate:.4%}) {percent(best.true_contacts / result.reference_rate - 1)}, "
        f"{percent(captured(result, run, best_id), signed=False)} of the available lift",
        f"Best possible (exhaustive search of {len(result.search.grid)} grid points on exact "
        f"expectations): {result.search.contacts:.4%} "
        f"({weights_text(config_of(result.search.weights), REFERENCE_CONFIG)}), "
        f"{percent(available_lift(result))} over the reference",
        "",
        f"Over {config.runs} run(s): share of the available lift captured by the best arm, and "
        "target traffic on arms worse than the reference (mean [95% CI])",
        f"{'after':>7}  {'captured':<28}{'traffic on worse arms':<28}",
    ]
    for c in checkpoints(result):
        lines.append(f"{c.hour:>6g}h  {_ci(c.captured):<28}{_ci(c.bad_traffic, signed=False):<28}")
    lines += [
        "",
        "Arms at the end of run 1 (by posterior mean; captured = its true lift / the available "
        "lift)",
        f"{'arm':>4} {'label':<14}{'status':<9}{'captured':>9}{'share':>7}{'exposures':>10}"
        f"{'contacts':>9}{'post. mean':>11}  weights",
    ]
    for a in arm_summary(result, run):
        share, mean = a["traffic_share"], a["posterior_mean"]
        lines.append(
            f"{a['arm_id']:>4} {a['label']:<14}{a['status']:<9}{percent(a['captured']):>9}"
            f"{'-' if share is None else f'{share:.1%}':>7}{a['exposures']:>10,}"
            f"{a['contacts']:>9,}{'-' if mean is None else f'{mean:.3f}':>11}  "
            f"{weights_text(a['config'], REFERENCE_CONFIG)}"
        )
    return "\n".join(lines)


def write_outputs(result: MovieLensResult, out_dir: Path) -> list[Path]:
    """Write ``lift.csv``, ``best.csv``, ``runs.csv``, ``arms.csv``, ``results.json`` and
    two plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    lift = write_csv(
        out_dir / "lift.csv",
        ["seed", "start_hour", "end_hour", "target_exposures", "target_contacts",
         "reference_exposures", "reference_contacts", "lift", "lift_ci95_low", "lift_ci95_high",
         "expected_lift", "best_arm_id", "best_arm_captured"],
        ([run.seed, *asdict(b).values()] for run in result.runs for b in bin_rows(result, run)),
    )  # fmt: skip
    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    best = write_csv(
        out_dir / "best.csv",
        ["seed", "hour", "best_arm_id", "best_posterior_mean", "best_arm_true_rate",
         "captured", "best_possible_rate", "reference_rate", "active_arms"],
        (
            [run.seed, f"{hour:.6f}", arm_id, repr(run.log.best_means[i]),
             repr(run.arms[arm_id].true_contacts if arm_id in run.arms else math.nan),
             repr(captured(result, run, arm_id)), repr(result.search.contacts),
             repr(result.reference_rate), run.log.active_counts[i]]
            for run in result.runs
            for i, (hour, arm_id) in enumerate(zip(hours, run.log.best_arm_ids, strict=True))
        ),
    )  # fmt: skip
    points = result.config.checkpoints
    runs = write_csv(
        out_dir / "runs.csv",
        ["seed", *(f"captured_{h:g}h" for h in points),
         *(f"bad_traffic_{h:g}h" for h in points), "wall_time_s"],
        (
            [run.seed, *(repr(captured_at(result, run, h)) for h in points),
             *(repr(bad_traffic_share(result, run, h)) for h in points), f"{run.wall_time_s:.2f}"]
            for run in result.runs
        ),
    )  # fmt: skip
    arm_rows = [dict(a, seed=run.seed) for run in result.runs for a in arm_summary(result, run)]
    columns = [c for c in arm_rows[0] if c not in ("config", "parent_ids", "seed")]
    arms_csv = write_csv(
        out_dir / "arms.csv",
        ["seed", *columns, *PARAMETER_NAMES, "parent_ids"],
        (
            [a["seed"], *(a[c] for c in columns), *(a["config"][n] for n in PARAMETER_NAMES),
             " ".join(map(str, a["parent_ids"]))]
            for a in arm_rows
        ),
    )  # fmt: skip
    document = {
        "command": f"{PROGRAM} {COMMAND}",
        "seed": config.seed,
        "parameters": parameters(config),
        "reproduce": command_line(COMMAND, config),
        "data_source": result.data_source,
        "environment": result.environment,
        "reference_config": REFERENCE_CONFIG,
        "reference_rate": result.reference_rate,
        "best_possible": {
            "config": config_of(result.search.weights),
            "rate": result.search.contacts,
            "lift_over_reference": available_lift(result),
            "grid_points": len(result.search.grid),
        },
        "checkpoints": [
            {"hour": c.hour, "captured": asdict(c.captured), "bad_traffic": asdict(c.bad_traffic)}
            for c in checkpoints(result)
        ],
        "runs": [
            {
                "seed": run.seed,
                "best_arm_id": run.log.best_arm_ids[-1],
                "best_config": run.arms[run.log.best_arm_ids[-1]].config,
                "generations": [asdict(g) for g in run.generations],
                "ticks_applied": run.ticks_applied,
                "wall_time_s": run.wall_time_s,
            }
            for run in result.runs
        ],
        "versions": versions(ranktune=True),
    }
    results = write_json(out_dir / "results.json", jsonable(document))
    return [lift, best, runs, arms_csv, results, *plot(result, out_dir)]


def plot(result: MovieLensResult, out_dir: Path) -> list[Path]:
    """The lift over time (run 1), and the share of the available lift captured over
    time (mean over runs with its band)."""
    config = result.config
    run = result.runs[0]
    bins = bin_rows(result, run)
    note = (
        f"MovieLens 100k, {config.views_per_minute:g} page views/min, seed {config.seed}, "
        f"{config.runs} run(s), evolution: {_evolution(result)}"
    )
    mids = [(b.start_hour + b.end_hour) / 2 for b in bins]
    span = [0.0, config.hours]
    written = plot_curves_with_bands(
        [
            Curve("observed lift (95% CI)", mids, [b.lift for b in bins],
                  lower=[b.lift_ci_low for b in bins], upper=[b.lift_ci_high for b in bins]),
            Curve("expected lift of the served arms", mids, [b.expected_lift for b in bins]),
        ],
        out_dir / "movielens-lift",
        title="MovieLens: target group vs reference group, contacts per page view (run 1)",
        xlabel="simulated hours",
        ylabel="lift over the reference group",
        reference_lines=[
            Curve("best possible configuration", span, [available_lift(result)] * 2, dashed=True),
            Curve("reference", span, [0.0, 0.0], color="0.6"),
        ],
        note=note,
    )  # fmt: skip
    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    shares = np.array([[captured(result, r, a) for a in r.log.best_arm_ids] for r in result.runs])
    over = mean_ci(shares, axis=0)
    several = config.runs > 1
    curve = Curve(
        f"best arm found, mean of {config.runs} run(s)" + (" (95% CI)" if several else ""),
        hours,
        over.mean,
        lower=over.ci_low if several else None,
        upper=over.ci_high if several else None,
    )
    written += plot_curves_with_bands(
        [curve],
        out_dir / "movielens-captured",
        title="MovieLens: share of the available lift captured by the best arm found",
        xlabel="simulated hours",
        ylabel="(found lift) / (best possible lift)",
        reference_lines=[
            Curve("best possible", span, [1.0, 1.0], dashed=True),
            Curve("reference", span, [0.0, 0.0], color="0.6"),
        ],
        note=note,
    )
    return written
