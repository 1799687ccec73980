"""``ranktune simulate marketplace``: the platform, end to end, on a synthetic marketplace.

The platform's own code runs in-process, without HTTP, on a temporary SQLite database
(``--database`` keeps it): the experiment is created by
:func:`api.services.experiments.create_experiment`, every page view is served by
:meth:`api.serving.ServingState.assign` (group by unit hash, Thompson draw, ticket,
server-counted exposure), exposures are flushed by :meth:`api.runtime.Runtime.flush_exposures`
and the users' events (``view`` for a click on a block item, ``contact`` for a contact
request, the target event) go through the ticket check and the
:class:`api.ingest.EventWriter` as a client's ``POST /v1/events`` would. Every
``--tick-seconds`` of simulated time (default 30 s; the service's default interval is 10 s)
:func:`api.services.ticks.apply_tick` runs with the simulated clock (and
``only_if_due=True``, so the service itself decides that the tick is due), then the
serving snapshot is refreshed; with ``--evolve`` the genetic step
(:func:`api.services.evolution.run_evolution_step`) runs every ``--evolve-minutes``.

The users and the catalogue are :mod:`simulations.marketplace.model`: a hidden model in
which clicks follow text and price similarity while contacts need a seller in the buyer's
region at a near price, so the configuration that maximises views is not the one that
maximises contacts (the views trap of docs/spec.md). The view-maximising configuration is one of
the arms; the bandit optimises contacts and should leave it.

Simplifications, stated: a window's events all arrive before its tick (no event straddles a
tick); users do not remember earlier blocks; the traffic rate is constant (the daily cycle
acts on contact propensity, the quantity the reference ratio must cancel).

Randomness: ``SeedSequence(seed).spawn(5)`` gives independent streams for traffic, the
serving policy's draws, ticks (the runtime's generator, which also draws window mode's
first pinned arm), initial arms and evolution; the experiment's salt and ticket key are
derived from the seed, so a seeded run is repeatable.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulations.marketplace.model import (
    COMMAND,
    EXPERIMENT_NAME,
    EXPERT_CONFIGS,
    REFERENCE_CONFIG,
    TRAP_LABEL,
    ArmInfo,
    DailyCycle,
    Marketplace,
    MarketplaceConfig,
    MarketplaceResult,
    ViewsTrap,
    config_of,
    search_best,
    weights_of,
)
from simulations.marketplace.report import format_table, write_outputs
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
    sum_by,
)
from simulations.progress import ProgressReporter, progress_enabled


@dataclass(frozen=True)
class MarketplaceOutput:
    """Where and how the results go; not part of the run, so not in ``reproduce``."""

    database: Path | None = option(  # noqa: RUF009 - option() returns a dataclasses.field
        None, OPTIONAL_PATH, "keep the SQLite database here (default: a temporary one)"
    )
    no_progress: bool = option(False, FLAG, "no progress line on stderr")
    out: Path = option(Path("out/marketplace"), PATH, "directory for tables, data and plots")  # noqa: RUF009


# --- the platform, driven in-process ------------------------------------------------------


def experiment_body(
    config: MarketplaceConfig, arm_configs: list[dict[str, float]]
) -> dict[str, Any]:
    """The ``ExperimentCreate`` body of the scenario."""
    body: dict[str, Any] = {
        "name": EXPERIMENT_NAME,
        "parameters": [
            {"name": name, "type": "float", "low": 0.0, "high": 1.0}
            for name in ("text_match", "distance", "price_diff", "region")
        ],
        "reference_config": REFERENCE_CONFIG,
        "arms": arm_configs,
        "reference_share": config.reference_share,
        "mode": config.mode,
        "update_interval_s": config.tick_seconds,
        "target_event": config.optimise,
        # The other metric is reported beside it, as a guardrail when --guardrail-loss is
        # positive (an arm confidently worse on it beyond that loss is retired).
        "metrics": [_other_metric(config.optimise, config.guardrail_loss)],
        # A block of k listings: one exposure may yield up to k views and k contacts.
        "max_events_per_exposure": {
            "view": config.model.block_size,
            "contact": config.model.block_size,
        },
    }
    if config.evolve and evolution_module() is not None:
        body["evolution"] = evolution_settings(
            evolve_minutes=config.evolve_minutes,
            drop_count=config.drop_count,
            arm_count=len(arm_configs),
            model_weight=config.model_weight,
        )
    return body


def initial_arm_configs(
    market: Marketplace, trap: ViewsTrap, random_arms: int, rng: np.random.Generator
) -> tuple[list[dict[str, float]], dict[str, str]]:
    """The founders: the view-maximiser (the trap), the experts' alternatives, random draws.

    Returns the configurations and a label for each (keyed by the rounded configuration).
    """
    configs: list[dict[str, float]] = []
    labels: dict[str, str] = {}

    def add(values: dict[str, float], label: str) -> None:
        rounded = {name: round(float(values[name]), 4) for name in REFERENCE_CONFIG}
        key = _key(rounded)
        if key in labels or key == _key(REFERENCE_CONFIG):
            return
        labels[key] = label
        configs.append(rounded)

    add(config_of(trap.view_maximiser.weights), TRAP_LABEL)
    for index, expert in enumerate(EXPERT_CONFIGS, start=1):
        add(expert, f"expert-{index}")
    for index in range(1, random_arms + 1):
        add({name: float(rng.uniform(0.0, 1.0)) for name in REFERENCE_CONFIG}, f"random-{index}")
    return configs, labels


def _key(config: dict[str, float]) -> str:
    return ";".join(f"{name}={float(config[name]):.4f}" for name in sorted(config))


def simulate(
    config: MarketplaceConfig,
    *,
    database: Path | None = None,
    show_progress: bool = False,
) -> MarketplaceResult:
    """Run the whole scenario; see the module docstring."""
    started = time.perf_counter()
    streams = seeded_streams(config.seed, ("traffic", "serving", "ticks", "arms", "evolution"))
    market = Marketplace(config.model)
    trap = ViewsTrap(
        view_maximiser=search_best(market, "views", grid_steps=config.grid_steps),
        contact_maximiser=search_best(market, "contacts", grid_steps=config.grid_steps),
    )
    search_time = time.perf_counter() - started
    arm_configs, labels = initial_arm_configs(market, trap, config.random_arms, streams["arms"])
    cycle = DailyCycle(config.cycle_amplitude)
    traffic = streams["traffic"]

    with tempfile.TemporaryDirectory(prefix="ranktune-marketplace-") as scratch:
        path = database if database is not None else Path(scratch) / "marketplace.db"
        platform_ = Platform(
            f"sqlite:///{path}",
            label="marketplace",
            seed=config.seed,
            tick_seconds=config.tick_seconds,
            streams=streams,
        )
        arms: dict[int, ArmInfo] = {}

        def know(arm_id: int, origin: str, values: dict[str, float], label: str) -> None:
            blocks = market.blocks(weights_of(values))
            arms[arm_id] = ArmInfo(
                arm_id,
                label,
                origin,
                {k: float(v) for k, v in values.items()},
                blocks,
                blocks.expected_views,
                blocks.expected_contacts,
            )

        reference_arm_id = trap_arm_id = -1
        for arm_id, origin, values in platform_.create(experiment_body(config, arm_configs)):
            if origin == "reference":
                reference_arm_id = arm_id
                label = "reference"
            else:
                label = labels.get(_key(values), f"{origin}-{arm_id}")
            if label == TRAP_LABEL:
                trap_arm_id = arm_id
            know(arm_id, origin, values, label)
        snapshot = platform_.refresh()
        trace = RunTrace()
        guardrail_retired: dict[int, tuple[float, str]] = {}
        paused: tuple[float, dict[str, Any]] | None = None
        view_index = 0
        k = config.model.block_size
        with ProgressReporter(config.n_windows, "marketplace", enabled=show_progress) as bar:
            for window in range(config.n_windows):
                t0 = window * config.tick_seconds
                n = int(traffic.poisson(config.views_per_window))
                users = traffic.integers(0, config.users, n)
                sources = traffic.integers(0, market.n_sources, n)
                hours = config.start_hour + (t0 + traffic.random(n) * config.tick_seconds) / 3600
                served, arm_ids, live = platform_.serve(snapshot, users)
                click_p = np.zeros((n, k))
                contact_p = np.zeros((n, k))
                for arm_id in np.unique(arm_ids):
                    if int(arm_id) not in arms:  # added by evolution since the last look
                        platform_.learn_new_arms(arms, know)
                    rows = arm_ids == arm_id
                    blocks = arms[int(arm_id)].blocks
                    click_p[rows] = blocks.click_probs[sources[rows]]
                    contact_p[rows] = blocks.contact_probs[sources[rows]]
                contact_p *= cycle.factor(hours)[:, None]
                clicked = traffic.random((n, k)) < click_p
                contacted = clicked & (traffic.random((n, k)) < contact_p)
                clicks = clicked.sum(axis=1)
                contacts = contacted.sum(axis=1)

                # Exposures: counted by assign, flushed like the runtime's flush job.
                platform_.flush_exposures()
                # Events: what the clients post, through the client route's own checks.
                events = [
                    Reported(
                        served[i].ticket, event_type, int(count), f"pv{view_index + i}:{event_type}"
                    )
                    for i in np.flatnonzero(clicks)
                    for event_type, count in (("view", clicks[i]), ("contact", contacts[i]))
                    if count
                ]
                platform_.submit_events(events)
                view_index += n
                expected = (click_p * contact_p).sum(axis=1)
                counted = trace.record(arm_ids, live, contacts, expected)
                trace.log.clicks.append(sum_by(counted, clicks))

                now_s = (window + 1) * config.tick_seconds
                applied = platform_.tick(now_s)
                trace.ticks_applied += applied
                if applied:
                    outcome = platform_.decide(now_s)
                    for arm_id in outcome.retired_arm_ids:
                        reason = platform_.retired_reason(arm_id)
                        guardrail_retired[arm_id] = (now_s / 3600, reason)
                    if outcome.paused:
                        paused = (now_s / 3600, platform_.paused_reason())
                if config.evolve:
                    platform_.evolve_on_schedule(trace, window, config)
                snapshot = platform_.look(trace, arms, know)
                bar.update(window + 1)
        final_arms = platform_.arm_rows()
        # Every window's counts are in: each window flushed its exposures before its tick.
        report = platform_.report(config.n_windows * config.tick_seconds)
        platform_.close()

    return MarketplaceResult(
        config=config,
        trap=trap,
        reference_arm_id=reference_arm_id,
        trap_arm_id=trap_arm_id,
        arms=arms,
        log=trace.log,
        final_arms=final_arms,
        generations=trace.generations,
        evolution_available=evolution_module() is not None,
        ticks_applied=trace.ticks_applied,
        wall_time_s=time.perf_counter() - started,
        search_time_s=search_time,
        report=report,
        guardrail_retired=guardrail_retired,
        paused=paused,
    )


def _other_metric(optimised: str, max_loss: float) -> dict[str, Any]:
    """Views beside contacts, or contacts beside views: a guardrail or a secondary metric."""
    event = "view" if optimised == "contact" else "contact"
    if max_loss > 0:
        return {"event": event, "role": "guardrail", "direction": "increase", "max_loss": max_loss}
    return {"event": event, "role": "secondary", "direction": "increase"}


# --- the command --------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_options(parser, MarketplaceConfig)
    add_options(parser, MarketplaceOutput)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = from_args(MarketplaceConfig, args)
    except ValueError as error:
        return invalid_parameters(COMMAND, error)
    output = from_args(MarketplaceOutput, args)
    if output.database is not None and output.database.exists():
        return invalid_parameters(
            COMMAND, ValueError(f"--database {output.database} exists; expected a new file")
        )
    result = simulate(
        config, database=output.database, show_progress=progress_enabled(output.no_progress)
    )
    print(format_table(result))
    return write_and_report(
        COMMAND, lambda: write_outputs(result, output.out), command_line(COMMAND, config)
    )
