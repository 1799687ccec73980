"""``ranktune simulate movielens``: the platform, end to end, on real MovieLens behaviour.

The service layer runs in-process on a temporary SQLite database through
:class:`simulations.platform.Platform`, exactly as ``ranktune simulate marketplace`` drives
it: the experiment is created by the service, every page view is served by
``ServingState.assign``, exposures are flushed, the users' ``contact`` events go through the
ticket check and the event writer, ticks and the scheduled genetic step run on the
simulated clock (``only_if_due=True``). The environment is
:mod:`simulations.movielens.model`: a "similar films" block whose contacts are the real
co-likes of the held-out half of the ratings, with traffic that follows the ratings'
hour-of-day profile.

Simplifications, stated: a window's events all arrive before its tick; visitors do not
remember earlier blocks; a page view's traffic factor is that of its window's start hour.

Randomness: ``SeedSequence(seed + i).spawn(5)`` gives run ``i`` independent streams for
traffic, the serving policy's draws, ticks, the initial arms and evolution; the
experiment's salt and ticket key are derived from the seed, so a seeded run repeats.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulations.movielens.data import DataUnavailable, MovieLens, load
from simulations.movielens.model import (
    COMMAND,
    EXPERIMENT_NAME,
    EXPERT_CONFIGS,
    PARAMETER_NAMES,
    REFERENCE_CONFIG,
    ArmTruth,
    MovieLensConfig,
    MovieLensMarket,
    MovieLensResult,
    RunRecord,
    describe,
    search_best,
    weights_of,
)
from simulations.movielens.report import format_table, write_outputs
from simulations.options import (
    FLAG,
    OPTIONAL_PATH,
    PATH,
    add_options,
    command_line,
    from_args,
    option,
)
from simulations.output import invalid_parameters, write_and_report
from simulations.platform import (
    Platform,
    Reported,
    RunTrace,
    evolution_module,
    evolution_settings,
    seeded_streams,
)
from simulations.progress import ProgressReporter, progress_enabled

# Exit code when the data cannot be loaded (0 done, 1 outputs not written, 2 bad options).
DATA_UNAVAILABLE = 3


@dataclass(frozen=True)
class MovieLensOutput:
    """Where the data comes from and where the results go; not in ``reproduce``."""

    data: Path | None = option(  # noqa: RUF009 - option() returns a dataclasses.field
        None,
        OPTIONAL_PATH,
        "a local copy of MovieLens 100k: the official archive unpacked (u.data, u.item) or "
        "RecBole's ml-100k.inter and ml-100k.item (default: the cache, downloaded once)",
    )
    database: Path | None = option(  # noqa: RUF009
        None, OPTIONAL_PATH, "keep the SQLite database of the first run here (a new file)"
    )
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/movielens"), PATH, "directory for tables, data and plots")  # noqa: RUF009


def experiment_body(config: MovieLensConfig, arm_configs: list[dict[str, float]]) -> dict[str, Any]:
    """The ``ExperimentCreate`` body: four float weights in [0, 1], the experts' reference,
    the founders, contacts as the target event, and the genetic step when on."""
    k = config.model.block_size
    body: dict[str, Any] = {
        "name": EXPERIMENT_NAME,
        "parameters": [
            {"name": name, "type": "float", "low": 0.0, "high": 1.0} for name in PARAMETER_NAMES
        ],
        "reference_config": REFERENCE_CONFIG,
        "arms": arm_configs,
        "reference_share": config.reference_share,
        "mode": config.mode,
        "update_interval_s": config.tick_seconds,
        "target_event": "contact",
        # A block of k films: one page view may yield up to k contacts.
        "max_events_per_exposure": {"contact": k},
    }
    if config.evolve and evolution_module() is not None:
        body["evolution"] = evolution_settings(
            evolve_minutes=config.evolve_minutes,
            drop_count=config.drop_count,
            arm_count=len(arm_configs),
            model_weight=config.model_weight if config.model_proposals else 0.0,
        )
    return body


def founders(
    random_arms: int, rng: np.random.Generator
) -> tuple[list[dict[str, float]], list[str]]:
    """The experts' alternatives, then ``random_arms`` uniform draws; with their labels."""
    configs = [dict(c) for c in EXPERT_CONFIGS]
    labels = [f"expert-{i}" for i in range(1, len(configs) + 1)]
    for index in range(1, random_arms + 1):
        configs.append({name: round(float(rng.uniform(0.0, 1.0)), 4) for name in PARAMETER_NAMES})
        labels.append(f"random-{index}")
    return configs, labels


def _key(config: dict[str, Any]) -> tuple[float, ...]:
    return tuple(round(float(config[name]), 4) for name in PARAMETER_NAMES)


def simulate_run(
    config: MovieLensConfig,
    market: MovieLensMarket,
    seed: int,
    *,
    database: Path | None = None,
    bar: ProgressReporter | None = None,
    done_before: int = 0,
) -> RunRecord:
    """One seeded run of the scenario through the platform."""
    started = time.perf_counter()
    streams = seeded_streams(seed, ("traffic", "serving", "ticks", "arms", "evolution"))
    arm_configs, founder_labels = founders(config.random_arms, streams["arms"])
    labels = dict(zip(map(_key, arm_configs), founder_labels, strict=True))
    traffic = streams["traffic"]
    k = config.model.block_size

    with tempfile.TemporaryDirectory(prefix="ranktune-movielens-") as scratch:
        path = database if database is not None else Path(scratch) / "movielens.db"
        platform_ = Platform(
            f"sqlite:///{path}",
            label="movielens",
            seed=seed,
            tick_seconds=config.tick_seconds,
            streams=streams,
        )
        arms: dict[int, ArmTruth] = {}

        def know(arm_id: int, origin: str, values: dict[str, Any], label: str) -> None:
            blocks = market.blocks(weights_of(values))
            truth = {k_: float(v) for k_, v in values.items()}
            arms[arm_id] = ArmTruth(arm_id, label, origin, truth, blocks, blocks.expected_contacts)

        reference_arm_id = -1
        for arm_id, origin, values in platform_.create(experiment_body(config, arm_configs)):
            if origin == "reference":
                reference_arm_id = arm_id
            label = "reference" if origin == "reference" else labels.get(_key(values), origin)
            know(arm_id, origin, values, label)
        snapshot = platform_.refresh()
        trace = RunTrace()
        view_index = 0
        for window in range(config.n_windows):
            t0 = window * config.tick_seconds
            hour = config.start_hour + t0 / 3600
            n = int(traffic.poisson(config.views_per_window * market.traffic_factor(hour)))
            visitors = traffic.integers(0, config.users, n)
            sources = traffic.choice(market.n_sources, n, p=market.source_weights)
            likers = market.draw_likers(sources, traffic)
            served, arm_ids, live = platform_.serve(snapshot, visitors)
            items = np.zeros((n, k), dtype=np.int64)
            probs = np.zeros((n, k))
            for arm_id in np.unique(arm_ids):
                if int(arm_id) not in arms:  # added by evolution since the last look
                    platform_.learn_new_arms(arms, know)
                rows = arm_ids == arm_id
                blocks = arms[int(arm_id)].blocks
                items[rows] = blocks.items[sources[rows]]
                probs[rows] = blocks.contact_probs[sources[rows]]
            # The real user contacts an examined film exactly when they liked it.
            films = market.candidates[items]
            examined = traffic.random((n, k)) < market.position_factors
            contacts = (examined & market.liked[likers[:, None], films]).sum(axis=1)

            platform_.flush_exposures()
            events = [
                Reported(served[i].ticket, "contact", int(contacts[i]), f"pv{view_index + i}")
                for i in np.flatnonzero(contacts)
            ]
            platform_.submit_events(events)
            view_index += n
            trace.record(arm_ids, live, contacts, probs.sum(axis=1))

            trace.ticks_applied += platform_.tick((window + 1) * config.tick_seconds)
            if config.evolve:
                platform_.evolve_on_schedule(trace, window, config)
            snapshot = platform_.look(trace, arms, know)
            if bar is not None:
                bar.update(done_before + window + 1)
        final_arms = platform_.arm_rows()
        platform_.close()
    return RunRecord(
        seed=seed,
        reference_arm_id=reference_arm_id,
        arms=arms,
        log=trace.log,
        final_arms=final_arms,
        generations=trace.generations,
        ticks_applied=trace.ticks_applied,
        wall_time_s=time.perf_counter() - started,
    )


def simulate(
    config: MovieLensConfig,
    data: MovieLens,
    *,
    database: Path | None = None,
    show_progress: bool = False,
) -> MovieLensResult:
    """Every run of the scenario on one environment (see the module docstring)."""
    started = time.perf_counter()
    market = MovieLensMarket(data, config.model)
    search = search_best(market, config.grid_steps)
    search_time = time.perf_counter() - started
    reference_rate = market.expected_contacts(weights_of(REFERENCE_CONFIG))
    runs = []
    total = config.runs * config.n_windows
    with ProgressReporter(total, "movielens", enabled=show_progress) as bar:
        for index in range(config.runs):
            runs.append(
                simulate_run(
                    config,
                    market,
                    config.seed + index,
                    database=database if index == 0 else None,
                    bar=bar,
                    done_before=index * config.n_windows,
                )
            )
    return MovieLensResult(
        config=config,
        search=search,
        reference_rate=reference_rate,
        environment=describe(market),
        data_source=data.source,
        runs=runs,
        evolution_available=evolution_module() is not None,
        search_time_s=search_time,
        wall_time_s=time.perf_counter() - started,
    )


# --- the command --------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, MovieLensConfig)
    add_options(parser, MovieLensOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters,
    3 the data could not be loaded."""
    try:
        config = from_args(MovieLensConfig, args)
    except ValueError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(MovieLensOutput, args)
    if output.database is not None and output.database.exists():
        return invalid_parameters(
            COMMAND, ValueError(f"--database {output.database} exists; expected a new file")
        )
    try:
        data = load(output.data)
    except DataUnavailable as error:
        print(f"ranktune simulate {COMMAND}: MovieLens 100k unavailable: {error}", file=sys.stderr)
        return DATA_UNAVAILABLE
    try:
        result = simulate(
            config,
            data,
            database=output.database,
            show_progress=progress_enabled(output.no_progress),
        )
    except ValueError as error:  # the environment is empty for these data
        return invalid_parameters(COMMAND, error)
    print(format_table(result))
    return write_and_report(
        COMMAND, lambda: write_outputs(result, output.out), command_line(COMMAND, config)
    )
