"""``ranktune simulate model-search``: does the surrogate model find better arms sooner?

For every seed a scenario (``--environment``: the synthetic marketplace of
:mod:`simulations.marketplace`, or the real co-ratings of :mod:`simulations.movielens`; the
platform's service layer end to end either way) runs twice with identical traffic (the
same users, page views and random numbers; only the arm set differs): the genetic step as
it is (random, mutation and crossover at weight 1 each), and the same step with the
model's proposals in the mix at ``--model-weight``.  Each run reports, at every checkpoint
hour, the share of the available lift captured::

    captured = (rate(best arm) / rate(reference) - 1) / (rate(best possible) / rate(reference) - 1)

where the best arm is the platform's own choice at that time (highest posterior mean among
arms with enough exposures), rates are the true expected contacts per page view, and the
best possible is the exhaustive search of the environment's exact expectations; and the share of the
target group's traffic served to bad arms (true rate below the reference's).  Means over
seeds with Student-t 95% intervals, and the paired difference (same seed, same traffic).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulations.confidence import mean_ci
from simulations.marketplace.model import MarketplaceConfig, MarketplaceResult
from simulations.options import (
    FLAG,
    FLOATS,
    OPTIONAL_PATH,
    PATH,
    add_options,
    choice,
    command_line,
    from_args,
    integer,
    number,
    option,
    parameters,
)
from simulations.output import (
    csv_number,
    invalid_parameters,
    jsonable,
    write_and_report,
    write_csv,
    write_json,
)
from simulations.platform import WindowLog
from simulations.plotting import Curve, plot_curves_with_bands
from simulations.progress import ProgressReporter, progress_enabled

if TYPE_CHECKING:
    from simulations.movielens.data import MovieLens
    from simulations.movielens.model import MovieLensConfig, MovieLensMarket, RunRecord

COMMAND = "model-search"
VARIANTS = ("genetic", "genetic+model")
ENVIRONMENTS = ("marketplace", "movielens")
# Exit code when the MovieLens data cannot be loaded, as ``simulate movielens`` exits.
DATA_UNAVAILABLE = 3


@dataclass(frozen=True)
class ModelSearchConfig:
    """The comparison; every field is the command's option of that name."""

    environment: str = option(
        "marketplace",
        choice(*ENVIRONMENTS),
        "the synthetic marketplace, or MovieLens 100k's real co-ratings",
    )
    seeds: int = option(6, integer(minimum=1), "seeded runs of each variant")
    first_seed: int = option(1, integer(minimum=0), "the first seed (then +1, +2, ...)")
    hours: float = option(6.0, number(0.0, open_low=True), "simulated hours per run")
    checkpoints: tuple[float, ...] = option(
        (1.0, 3.0, 6.0), FLOATS, "hours at which the captured lift is reported"
    )
    model_weight: float = option(
        3.0,
        number(0.0, open_low=True),
        "weight of model proposals beside random, mutation and crossover at 1 each",
    )
    drop_count: int = option(1, integer(minimum=1), "arms each genetic step retires")
    views_per_minute: float = option(
        600.0, number(0.0, open_low=True), "page views per simulated minute"
    )
    evolve_minutes: float = option(
        60.0, number(0.0, open_low=True), "simulated minutes between genetic steps"
    )
    tick_seconds: float = option(30.0, number(1.0), "simulated seconds between ticks")
    grid_steps: int = option(
        10, integer(minimum=2), "simplex grid 1/N of the search for the best possible"
    )
    jobs: int = option(1, integer(minimum=1), "runs in parallel (processes)")

    def __post_init__(self) -> None:
        if not self.checkpoints or any(not 0 < h <= self.hours for h in self.checkpoints):
            raise ValueError("checkpoints must be hours in (0, hours]")

    def _scenario(self, seed: int) -> dict[str, Any]:
        """The settings both environments' configurations take from the comparison."""
        return {
            "hours": self.hours,
            "views_per_minute": self.views_per_minute,
            "seed": seed,
            "drop_count": self.drop_count,
            "evolve_minutes": self.evolve_minutes,
            "tick_seconds": self.tick_seconds,
            "grid_steps": self.grid_steps,
        }

    def marketplace(self, seed: int, variant: str) -> MarketplaceConfig:
        weight = self.model_weight if variant == "genetic+model" else 0.0
        return MarketplaceConfig(**self._scenario(seed), model_weight=weight)

    def movielens(self, seed: int, variant: str) -> MovieLensConfig:
        from simulations.movielens.model import MovieLensConfig

        return MovieLensConfig(
            **self._scenario(seed),
            model_proposals=variant == "genetic+model",
            model_weight=self.model_weight,
        )


@dataclass(frozen=True)
class ModelSearchOutput:
    data: Path | None = option(  # noqa: RUF009 - option() returns a dataclasses.field
        None,
        OPTIONAL_PATH,
        "with --environment movielens: a local copy of MovieLens 100k, as `simulate "
        "movielens --data` takes it (default: the cache, downloaded once)",
    )
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/model-search"), PATH, "directory for tables, data and plots")  # noqa: RUF009


@dataclass(frozen=True)
class RunOutcome:
    """One run's figures: captured lift per checkpoint, per hour, and bad-arm traffic;
    and, to tell the search from the selection, the share the truly best arm the run
    served captures (the platform's pick at the end can capture no more)."""

    seed: int
    variant: str
    captured: tuple[float, ...]  # at each checkpoint
    hourly: tuple[float, ...]  # at the end of every window (for the plot), thinned
    bad_traffic_share: float
    model_arms: int
    best_label: str
    wall_time_s: float
    best_served: float = float("nan")  # the truly best arm served at all in the run
    best_model: float = float("nan")  # the truly best model arm (NaN without any)


class ArmTruth(Protocol):
    """What both environments know of an arm: its true rate, origin and label."""

    @property
    def true_contacts(self) -> float: ...
    @property
    def origin(self) -> str: ...
    @property
    def label(self) -> str: ...


def outcome_from(
    *,
    seed: int,
    variant: str,
    arms: Mapping[int, ArmTruth],
    reference_arm_id: int,
    best_possible: float,
    log: WindowLog,
    tick_seconds: float,
    checkpoints: Sequence[float],
    wall_time_s: float,
) -> RunOutcome:
    """The comparison's figures of one run of either environment (see the module
    docstring); ``best_possible`` is the exhaustive search's rate."""
    reference = arms[reference_arm_id].true_contacts
    available = best_possible / reference - 1.0

    def captured_by(arm_id: int) -> float:
        return (arms[arm_id].true_contacts / reference - 1.0) / available

    def captured_at(window: int) -> float:
        return captured_by(log.best_arm_ids[window])

    per_hour = round(3600 / tick_seconds)
    windows = [min(len(log.best_arm_ids), max(1, round(h * per_hour))) - 1 for h in checkpoints]
    step = max(1, per_hour // 12)  # five-minute points for the curve
    curve = tuple(captured_at(w) for w in range(step - 1, len(log.best_arm_ids), step))
    served = {a for window in log.exposures for a in window if a != reference_arm_id}
    model = [captured_by(a) for a in served if arms[a].origin == "model"]
    target = bad = 0
    for window in log.exposures:
        for arm_id, count in window.items():
            if arm_id == reference_arm_id:
                continue
            target += count
            if arms[arm_id].true_contacts < reference:
                bad += count
    return RunOutcome(
        seed=seed,
        variant=variant,
        captured=tuple(captured_at(w) for w in windows),
        hourly=curve,
        bad_traffic_share=bad / max(target, 1),
        model_arms=sum(1 for arm in arms.values() if arm.origin == "model"),
        best_label=arms[log.best_arm_ids[-1]].label,
        wall_time_s=wall_time_s,
        best_served=max(captured_by(a) for a in served),
        best_model=max(model, default=float("nan")),
    )


def outcome_of(
    result: MarketplaceResult, variant: str, checkpoints: tuple[float, ...]
) -> RunOutcome:
    """The comparison's figures of one marketplace run."""
    return outcome_from(
        seed=result.config.seed,
        variant=variant,
        arms=result.arms,
        reference_arm_id=result.reference_arm_id,
        best_possible=result.trap.contact_maximiser.contacts,
        log=result.log,
        tick_seconds=result.config.tick_seconds,
        checkpoints=checkpoints,
        wall_time_s=result.wall_time_s,
    )


def movielens_outcome(
    run: RunRecord, best_possible: float, variant: str, config: ModelSearchConfig
) -> RunOutcome:
    """The comparison's figures of one MovieLens run."""
    return outcome_from(
        seed=run.seed,
        variant=variant,
        arms=run.arms,
        reference_arm_id=run.reference_arm_id,
        best_possible=best_possible,
        log=run.log,
        tick_seconds=config.tick_seconds,
        checkpoints=config.checkpoints,
        wall_time_s=run.wall_time_s,
    )


# The MovieLens market and its best possible rate, built once per process (a worker runs
# many seeds): keyed by the data's source and the grid.
_ENVIRONMENTS: dict[tuple[str, int], tuple[MovieLensMarket, float]] = {}


def _movielens_environment(data: MovieLens, grid_steps: int) -> tuple[MovieLensMarket, float]:
    from simulations.movielens.model import MovieLensMarket, MovieLensModel, search_best

    key = (data.source, grid_steps)
    if key not in _ENVIRONMENTS:
        market = MovieLensMarket(data, MovieLensModel())
        _ENVIRONMENTS[key] = (market, search_best(market, grid_steps).contacts)
    return _ENVIRONMENTS[key]


def _one_run(
    config: ModelSearchConfig, seed: int, variant: str, data: MovieLens | None
) -> RunOutcome:
    if config.environment == "movielens":
        from simulations.movielens.run import simulate_run

        assert data is not None
        market, best_possible = _movielens_environment(data, config.grid_steps)
        run = simulate_run(config.movielens(seed, variant), market, seed)
        return movielens_outcome(run, best_possible, variant, config)
    from simulations.marketplace.run import simulate

    return outcome_of(simulate(config.marketplace(seed, variant)), variant, config.checkpoints)


def simulate_all(
    config: ModelSearchConfig, *, show_progress: bool, data: MovieLens | None = None
) -> list[RunOutcome]:
    """Every (seed, variant) run, in processes when ``jobs > 1``; sorted by seed, variant.
    ``data``: MovieLens 100k, for ``--environment movielens``."""
    tasks = [
        (seed, variant)
        for seed in range(config.first_seed, config.first_seed + config.seeds)
        for variant in VARIANTS
    ]
    outcomes: list[RunOutcome] = []
    with ProgressReporter(len(tasks), COMMAND, enabled=show_progress) as bar:
        if config.jobs == 1:
            for seed, variant in tasks:
                outcomes.append(_one_run(config, seed, variant, data))
                bar.update(len(outcomes))
        else:
            with ProcessPoolExecutor(config.jobs) as pool:
                futures = [pool.submit(_one_run, config, s, v, data) for s, v in tasks]
                for future in futures:
                    outcomes.append(future.result())
                    bar.update(len(outcomes))
    return sorted(outcomes, key=lambda o: (o.seed, VARIANTS.index(o.variant)))


def summarise(config: ModelSearchConfig, outcomes: list[RunOutcome]) -> dict[str, Any]:
    """Means and 95% intervals per variant and checkpoint, and the paired differences."""
    by_variant = {v: [o for o in outcomes if o.variant == v] for v in VARIANTS}
    summary: dict[str, Any] = {"checkpoints": list(config.checkpoints), "variants": {}}
    for variant, runs in by_variant.items():
        captured = np.array([o.captured for o in runs])
        rows = []
        for k, hour in enumerate(config.checkpoints):
            ci = mean_ci(captured[:, k])
            rows.append(
                {
                    "hour": hour,
                    "mean": ci.mean,
                    "ci": [ci.ci_low, ci.ci_high],
                    "at_least_80": float(np.mean(captured[:, k] >= 0.8)),
                }
            )
        bad = mean_ci([o.bad_traffic_share for o in runs])
        served = mean_ci([o.best_served for o in runs])
        summary["variants"][variant] = {
            "runs": len(runs),
            "captured": rows,
            "bad_traffic_share": {"mean": bad.mean, "ci": [bad.ci_low, bad.ci_high]},
            "best_served": {"mean": served.mean, "ci": [served.ci_low, served.ci_high]},
            "model_arms": float(np.mean([o.model_arms for o in runs])),
        }
    base = np.array([o.captured for o in by_variant[VARIANTS[0]]])
    model = np.array([o.captured for o in by_variant[VARIANTS[1]]])
    summary["paired_difference"] = [
        {"hour": hour, "mean": d.mean, "ci": [d.ci_low, d.ci_high]}
        for hour, d in (
            (h, mean_ci(model[:, k] - base[:, k])) for k, h in enumerate(config.checkpoints)
        )
    ]
    return summary


def format_table(config: ModelSearchConfig, summary: dict[str, Any]) -> str:
    lines = [
        f"Model search on {config.environment}: {config.seeds} seeds x {len(VARIANTS)} variants, "
        f"{config.hours:g} simulated hours, identical traffic per seed, model weight "
        f"{config.model_weight:g} beside random/mutation/crossover at 1, drop {config.drop_count}",
        "Share of the available lift captured by the platform's best arm (mean, 95% CI)",
        f"{'variant':<15}"
        + "".join(f"{f'after {h:g} h':>26}" for h in config.checkpoints)
        + f"{'traffic on bad arms':>26}",
    ]
    for variant in VARIANTS:
        data = summary["variants"][variant]
        cells = [
            f"{row['mean']:>7.1%} [{row['ci'][0]:6.1%}, {row['ci'][1]:6.1%}]"
            for row in data["captured"]
        ]
        bad = data["bad_traffic_share"]
        cells.append(f"{bad['mean']:>7.1%} [{bad['ci'][0]:6.1%}, {bad['ci'][1]:6.1%}]")
        lines.append(f"{variant:<15}" + "".join(f"{c:>26}" for c in cells))
    diff = [
        f"{row['mean']:>+7.1%} [{row['ci'][0]:+6.1%}, {row['ci'][1]:+6.1%}]"
        for row in summary["paired_difference"]
    ]
    lines.append(f"{'difference':<15}" + "".join(f"{c:>26}" for c in diff))
    lines.append(
        "(bad arms: true contact rate below the reference's; difference: with the model minus "
        "without, paired by seed)"
    )
    lines.append(
        f"Search or selection? At {config.checkpoints[-1]:g} h, the share captured by the "
        "truly best arm served in the run (the platform's pick can capture no more):"
    )
    for variant in VARIANTS:
        data = summary["variants"][variant]
        served, picked = data["best_served"], data["captured"][-1]
        lines.append(
            f"{variant:<15}best served {served['mean']:>7.1%} [{served['ci'][0]:6.1%}, "
            f"{served['ci'][1]:6.1%}]   picked {picked['mean']:>7.1%}   model arms per run "
            f"{data['model_arms']:.1f}"
        )
    at_end = summary["variants"][VARIANTS[1]]["captured"][-1]
    lines.append(
        f"Goal: >= 80% of the available lift at {config.checkpoints[-1]:g} h with the model: "
        f"mean {at_end['mean']:.1%}, {at_end['at_least_80']:.0%} of the runs reach it"
    )
    return "\n".join(lines)


def write_outputs(
    config: ModelSearchConfig, outcomes: list[RunOutcome], summary: dict[str, Any], out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    header = [
        "seed",
        "variant",
        *(f"captured_{h:g}h" for h in config.checkpoints),
        "bad_traffic_share",
        "model_arms",
        "best_arm",
        "best_served",
        "best_model_arm",
        "wall_time_s",
    ]
    rows = [
        [
            o.seed,
            o.variant,
            *(csv_number(c) for c in o.captured),
            csv_number(o.bad_traffic_share),
            o.model_arms,
            o.best_label,
            csv_number(o.best_served),
            csv_number(o.best_model),
            f"{o.wall_time_s:.1f}",
        ]
        for o in outcomes
    ]
    written = [write_csv(out / "runs.csv", header, rows)]
    written.append(
        write_json(
            out / "results.json",
            jsonable(
                {
                    "parameters": parameters(config),
                    "reproduce": command_line(COMMAND, config),
                    "summary": summary,
                    "runs": [dataclasses.asdict(o) for o in outcomes],
                }
            ),
        )
    )
    curves = []
    for variant in VARIANTS:
        values = np.array([o.hourly for o in outcomes if o.variant == variant])
        ci = mean_ci(values, axis=0)
        x = (np.arange(values.shape[1]) + 1) * config.hours / values.shape[1]
        curves.append(Curve(variant, x, ci.mean, ci.ci_low, ci.ci_high))
    written += plot_curves_with_bands(
        curves,
        out / "model-search",
        title="Share of the available lift captured by the best arm",
        xlabel="simulated hours",
        ylabel="captured share (1 = the best possible)",
        reference_lines=[Curve("goal: 80%", [0, config.hours], [0.8, 0.8])],
        note=f"{config.environment}, {config.seeds} seeds (identical traffic per seed), mean and "
        f"95% CI; model weight {config.model_weight:g}, drop {config.drop_count} per step every "
        f"{config.evolve_minutes:g} min",
    )
    return written


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ModelSearchConfig)
    add_options(parser, ModelSearchOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters,
    3 the MovieLens data could not be loaded."""
    try:
        config = from_args(ModelSearchConfig, args)
    except ValueError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(ModelSearchOutput, args)
    data = None
    if config.environment == "movielens":
        from simulations.movielens.data import DataUnavailable, load

        try:
            data = load(output.data)
        except DataUnavailable as error:
            print(
                f"ranktune simulate {COMMAND}: MovieLens 100k unavailable: {error}", file=sys.stderr
            )
            return DATA_UNAVAILABLE
    outcomes = simulate_all(config, show_progress=progress_enabled(output.no_progress), data=data)
    summary = summarise(config, outcomes)
    print(format_table(config, summary))
    return write_and_report(
        COMMAND,
        lambda: write_outputs(config, outcomes, summary, output.out),
        command_line(COMMAND, config),
    )
