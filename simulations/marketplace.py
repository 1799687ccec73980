"""``ranktune simulate marketplace``: the platform, end to end, on a synthetic marketplace.

The platform's own code runs in-process, without HTTP, on a temporary SQLite database
(``--database`` keeps it): the experiment is created by
:func:`api.services.experiments.create_experiment`, every page view is served by
:meth:`api.serving.ServingState.assign` (group by unit hash, Thompson draw, ticket,
server-counted exposure), exposures are flushed by :meth:`api.runtime.Runtime.flush_exposures`
and the users' events (``view`` for a click on a block item, ``contact`` for a contact
request, the target event) go through the ticket check and the
:class:`api.ingest.EventWriter` as a client's ``POST /v1/events`` would. Every
``--tick-seconds`` of simulated time (default 10 s, SPEC's ``update_interval``)
:func:`api.services.ticks.apply_tick` runs with the simulated clock (and
``only_if_due=True``, so the service itself decides that the tick is due), then the
serving snapshot is refreshed; with ``--evolve`` the genetic step
(:func:`api.services.evolution.run_evolution_step`) runs every ``--evolve-minutes``.

The users and the catalogue are :mod:`simulations.marketplace_model`: a hidden model in
which clicks follow text and price similarity while contacts need a seller in the buyer's
region at a near price, so the configuration that maximises views is not the one that
maximises contacts (SPEC §2, the views trap). The view-maximising configuration is one of
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
import csv
import hashlib
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulations.marketplace_model import (
    PARAMETER_NAMES,
    Blocks,
    DailyCycle,
    MarketModel,
    Marketplace,
    SearchResult,
    ViewsTrap,
    config_of,
    search_best,
    weights_of,
)
from simulations.output import write_and_report
from simulations.plotting import Curve, new_figure, plot_curves_with_bands, save_figure
from simulations.progress import ProgressReporter, progress_enabled

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EXPERIMENT_NAME = "similar-items"
# The experts' hand-tuned weights: decent, not optimal (about 85% of the best contact rate).
REFERENCE_CONFIG = {"text_match": 0.3, "distance": 0.2, "price_diff": 0.9, "region": 0.2}
# Expert alternatives that start as arms next to the random ones.
EXPERT_CONFIGS = (
    {"text_match": 0.2, "distance": 0.1, "price_diff": 1.0, "region": 0.3},
    {"text_match": 0.4, "distance": 0.1, "price_diff": 1.0, "region": 0.1},
    {"text_match": 0.2, "distance": 0.2, "price_diff": 1.0, "region": 0.2},
)
TRAP_LABEL = "views-trap"
# An arm needs this many exposures before it can be called the best (or be retired by the
# genetic step): a fresh arm's prior mean of 1/2 says nothing about it.
MIN_EXPOSURES = 2000


@dataclass(frozen=True)
class MarketplaceConfig:
    """Everything that determines a run; saved with the results so it can be repeated."""

    hours: float = 6.0
    views_per_minute: float = 600.0
    seed: int = 1
    random_arms: int = 3
    evolve: bool = True
    evolve_minutes: float = 60.0
    tick_seconds: float = 30.0
    reference_share: float = 0.2
    mode: str = "request"
    users: int = 20_000
    start_hour: float = 8.0
    cycle_amplitude: float = 0.3
    bin_minutes: float = 30.0
    grid_steps: int = 10
    model: MarketModel = field(default_factory=MarketModel)

    def __post_init__(self) -> None:
        checks = [
            (self.hours > 0 and math.isfinite(self.hours), "hours must be > 0"),
            (self.views_per_minute > 0, "views_per_minute must be > 0"),
            (self.random_arms >= 0, "random_arms must be >= 0"),
            (self.tick_seconds >= 1, "tick_seconds must be >= 1"),
            (self.evolve_minutes * 60 >= self.tick_seconds, "evolve_minutes must span a tick"),
            (0 < self.reference_share < 1, "reference_share must be in (0, 1)"),
            (self.mode in ("request", "window"), "mode must be request or window"),
            (self.users >= 1, "users must be >= 1"),
            (0 <= self.cycle_amplitude < 1, "cycle_amplitude must be in [0, 1)"),
            (self.bin_minutes * 60 >= self.tick_seconds, "bin_minutes must span a tick"),
            (self.grid_steps >= 2, "grid_steps must be >= 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def n_windows(self) -> int:
        return max(1, round(self.hours * 3600 / self.tick_seconds))

    @property
    def windows_per_bin(self) -> int:
        return max(1, round(self.bin_minutes * 60 / self.tick_seconds))

    def command_line(self) -> str:
        parts = [
            "ranktune simulate marketplace",
            f"--hours {self.hours:g}",
            f"--views-per-minute {self.views_per_minute:g}",
            f"--seed {self.seed}",
            f"--arms {self.random_arms}",
            "--evolve" if self.evolve else "--no-evolve",
            f"--evolve-minutes {self.evolve_minutes:g}",
            f"--tick-seconds {self.tick_seconds:g}",
            f"--reference-share {self.reference_share:g}",
            f"--mode {self.mode}",
            f"--users {self.users}",
            f"--start-hour {self.start_hour:g}",
            f"--cycle-amplitude {self.cycle_amplitude:g}",
            f"--bin-minutes {self.bin_minutes:g}",
            f"--grid-steps {self.grid_steps}",
        ]
        return " ".join(parts)


# --- the platform, driven in-process ------------------------------------------------------


@dataclass
class ArmInfo:
    """What the simulator knows about an arm, including what the platform cannot see."""

    arm_id: int
    label: str
    origin: str
    config: dict[str, float]
    blocks: Blocks
    true_views: float
    true_contacts: float


@dataclass
class WindowLog:
    """Counts of every tick window, by arm (reference arm included), as arrays over windows."""

    exposures: list[dict[int, int]] = field(default_factory=list)
    clicks: list[dict[int, int]] = field(default_factory=list)
    contacts: list[dict[int, int]] = field(default_factory=list)
    expected_contacts: list[dict[int, float]] = field(default_factory=list)
    best_arm_ids: list[int] = field(default_factory=list)
    best_means: list[float] = field(default_factory=list)
    active_counts: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class GenerationLog:
    hour: float
    retired: list[int]
    added: list[int]


@dataclass
class MarketplaceResult:
    config: MarketplaceConfig
    trap: ViewsTrap
    reference_arm_id: int
    trap_arm_id: int
    arms: dict[int, ArmInfo]
    log: WindowLog
    final_arms: list[dict[str, Any]]
    generations: list[GenerationLog]
    evolution_available: bool
    ticks_applied: int
    wall_time_s: float
    search_time_s: float


@dataclass(frozen=True)
class _Reported:
    """An event as a client reports it (the fields of api.schemas.EventIn)."""

    ticket: str
    type: str
    count: int
    event_id: str


def _evolution_module() -> Any | None:
    try:
        from api.services import evolution
    except ImportError:
        return None
    return evolution if hasattr(evolution, "run_evolution_step") else None


class _Platform:
    """The service layer of one replica, on its own database, with a simulated clock."""

    def __init__(self, database_url: str, config: MarketplaceConfig, streams: Any) -> None:
        from pydantic import SecretStr

        from api.cli import upgrade_database
        from api.runtime import Runtime
        from api.serving import ServingState
        from api.settings import Settings

        upgrade_database(database_url)
        settings = Settings(
            database_url=database_url,
            admin_token=SecretStr("marketplace-simulation"),
            scheduler_enabled=False,
            ticket_secret=SecretStr(f"marketplace-simulation-{config.seed}"),
            tick_interval_s=config.tick_seconds,
            # A throwaway database: no fsync per commit.
            sqlite_synchronous="OFF",
        )
        self.runtime = Runtime(settings)
        self.runtime.serving = ServingState(self.runtime.signer, rng=streams["serving"])
        self.runtime.rng = streams["ticks"]
        self.evolution_rng = streams["evolution"]
        self.experiment_id = 0
        self.started_at = datetime.now().astimezone()

    def create(self, config: MarketplaceConfig, arm_configs: list[dict[str, float]]) -> Any:
        from api import repositories as repo
        from api import schemas
        from api.services.experiments import create_experiment

        evolution = None
        if config.evolve and _evolution_module() is not None:
            evolution = {
                "enabled": True,
                "evolve_interval_s": config.evolve_minutes * 60,
                "min_exposures": float(MIN_EXPOSURES),
                "drop_count": 1,
                "min_arms": 4,
                "max_arms": len(arm_configs) + 1,
                "score": "mean",
            }
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
            "target_event": "contact",
            # A block of k listings: one exposure may yield up to k views and k contacts.
            "max_events_per_exposure": {
                "view": config.model.block_size,
                "contact": config.model.block_size,
            },
        }
        if evolution is not None:
            body["evolution"] = evolution
        request = schemas.ExperimentCreate.model_validate(body)
        with self.runtime.transaction() as session:
            experiment = create_experiment(
                session, request, default_interval_s=config.tick_seconds, rng=self.runtime.rng
            )
            # A salt derived from the seed (instead of a random one) keeps the split of
            # users into groups, and with it the whole run, repeatable.
            experiment.salt = hashlib.sha256(f"salt-{config.seed}".encode()).hexdigest()[:16]
            self.experiment_id = experiment.id
            self.started_at = experiment.created_at
            arms = [(a.id, a.origin, dict(a.config)) for a in repo.arms_of(session, experiment.id)]
        self.refresh()
        return arms

    def refresh(self) -> Any:
        self.runtime.serving.refresh(self.runtime.session_factory)
        return self.runtime.serving.get(EXPERIMENT_NAME)

    def clock(self, seconds: float) -> datetime:
        return self.started_at + timedelta(seconds=seconds)

    def submit_events(self, events: list[_Reported]) -> None:
        """Check and store the events exactly as ``POST /v1/events`` does."""
        if events:
            rows = self.runtime.event_intake().rows(events, now=time.time())
            self.runtime.writer.submit(rows).result()

    def tick(self, seconds: float) -> bool:
        from api.services.ticks import apply_tick

        with self.runtime.transaction() as session:
            tick = apply_tick(
                session,
                self.experiment_id,
                now=self.clock(seconds),
                rng=self.runtime.rng,
                only_if_due=True,
                replica="simulator",
            )
            return tick is not None and bool(tick.applied)

    def evolve(self, seconds: float) -> tuple[list[int], list[int]] | None:
        evolution = _evolution_module()
        if evolution is None:
            return None
        with self.runtime.transaction() as session:
            outcome = evolution.run_evolution_step(
                session,
                self.experiment_id,
                now=self.clock(seconds),
                rng=self.evolution_rng,
                dry_run=False,
                only_if_due=True,
                replica="simulator",
            )
            if outcome is None or not outcome.applied:
                return None
            retired = [int(r.arm_id) for r in outcome.retired]
            added = [int(a.arm_id) for a in outcome.added if a.arm_id is not None]
        return retired, added

    def arm_rows(self) -> list[dict[str, Any]]:
        from api import repositories as repo

        with self.runtime.session_factory() as session:
            return [
                {
                    "arm_id": a.id,
                    "origin": a.origin,
                    "status": a.status,
                    "config": dict(a.config),
                    "alpha": a.alpha,
                    "beta": a.beta,
                    "exposures": a.exposures,
                    "target_events": a.target_events,
                    "generation": a.generation,
                    "parent_ids": list(a.parent_ids or []),
                }
                for a in repo.arms_of(session, self.experiment_id)
            ]

    def close(self) -> None:
        self.runtime.flush_exposures()
        self.runtime.engine.dispose()


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
    names = ("traffic", "serving", "ticks", "arms", "evolution")
    streams = dict(
        zip(
            names,
            (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(5)),
            strict=True,
        )
    )
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
        platform_ = _Platform(f"sqlite:///{path}", config, streams)
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
        for arm_id, origin, values in platform_.create(config, arm_configs):
            if origin == "reference":
                reference_arm_id = arm_id
                label = "reference"
            else:
                label = labels.get(_key(values), f"{origin}-{arm_id}")
            if label == TRAP_LABEL:
                trap_arm_id = arm_id
            know(arm_id, origin, values, label)
        snapshot = platform_.refresh()
        log = WindowLog()
        generations: list[GenerationLog] = []
        ticks_applied = 0
        view_index = 0
        served_so_far: dict[int, int] = {}
        windows_per_step = max(1, round(config.evolve_minutes * 60 / config.tick_seconds))
        views_per_window = config.views_per_minute * config.tick_seconds / 60.0
        k = config.model.block_size
        with ProgressReporter(config.n_windows, "marketplace", enabled=show_progress) as bar:
            for window in range(config.n_windows):
                t0 = window * config.tick_seconds
                n = int(traffic.poisson(views_per_window))
                users = traffic.integers(0, config.users, n)
                sources = traffic.integers(0, market.n_sources, n)
                hours = config.start_hour + (t0 + traffic.random(n) * config.tick_seconds) / 3600
                served = [platform_.runtime.serving.assign(snapshot, f"user-{u}") for u in users]
                arm_ids = np.fromiter((s.arm_id for s in served), dtype=np.int64, count=n)
                click_p = np.zeros((n, k))
                contact_p = np.zeros((n, k))
                for arm_id in np.unique(arm_ids):
                    if int(arm_id) not in arms:  # added by evolution since the last look
                        _learn_new_arms(platform_, arms, know)
                    rows = arm_ids == arm_id
                    blocks = arms[int(arm_id)].blocks
                    click_p[rows] = blocks.click_probs[sources[rows]]
                    contact_p[rows] = blocks.contact_probs[sources[rows]]
                contact_p *= cycle.factor(hours)[:, None]
                clicked = traffic.random((n, k)) < click_p
                contacted = clicked & (traffic.random((n, k)) < contact_p)
                clicks = clicked.sum(axis=1)
                contacts = contacted.sum(axis=1)
                expected = (click_p * contact_p).sum(axis=1)

                # Exposures: counted by assign, flushed like the runtime's flush job.
                platform_.runtime.flush_exposures()
                # Events: what the clients post, through the client route's own checks.
                events = [
                    _Reported(
                        served[i].ticket, event_type, int(count), f"pv{view_index + i}:{event_type}"
                    )
                    for i in np.flatnonzero(clicks)
                    for event_type, count in (("view", clicks[i]), ("contact", contacts[i]))
                    if count
                ]
                platform_.submit_events(events)
                view_index += n

                log.exposures.append(_sum_by(arm_ids, np.ones(n, dtype=np.int64)))
                for arm_id, count in log.exposures[-1].items():
                    served_so_far[arm_id] = served_so_far.get(arm_id, 0) + count
                log.clicks.append(_sum_by(arm_ids, clicks))
                log.contacts.append(_sum_by(arm_ids, contacts))
                log.expected_contacts.append(_sum_by(arm_ids, expected))

                now_s = (window + 1) * config.tick_seconds
                ticks_applied += platform_.tick(now_s)
                # No step after the last window: its new arms would never be served.
                last = window + 1 == config.n_windows
                if config.evolve and (window + 1) % windows_per_step == 0 and not last:
                    step = platform_.evolve(now_s)
                    if step is not None:
                        generations.append(GenerationLog(now_s / 3600, step[0], step[1]))
                snapshot = platform_.refresh()
                _learn_new_arms(platform_, arms, know)
                best_id, best_mean = _best_arm(snapshot, served_so_far)
                log.best_arm_ids.append(best_id)
                log.best_means.append(best_mean)
                log.active_counts.append(len(snapshot.arm_ids))
                bar.update(window + 1)
        final_arms = platform_.arm_rows()
        platform_.close()

    return MarketplaceResult(
        config=config,
        trap=trap,
        reference_arm_id=reference_arm_id,
        trap_arm_id=trap_arm_id,
        arms=arms,
        log=log,
        final_arms=final_arms,
        generations=generations,
        evolution_available=_evolution_module() is not None,
        ticks_applied=ticks_applied,
        wall_time_s=time.perf_counter() - started,
        search_time_s=search_time,
    )


def _sum_by(keys: IntArray, values: npt.ArrayLike) -> dict[int, Any]:
    totals: dict[int, Any] = {}
    v = np.asarray(values)
    for key in np.unique(keys):
        totals[int(key)] = v[keys == key].sum().item()
    return totals


def _best_arm(snapshot: Any, exposures: dict[int, int]) -> tuple[int, float]:
    """The active target arm with the highest posterior mean among those with at least
    ``MIN_EXPOSURES`` exposures (all active arms while none has); ties: the older arm."""
    if not snapshot.arm_ids:
        return -1, math.nan
    means = snapshot.alphas / (snapshot.alphas + snapshot.betas)
    seasoned = np.array([exposures.get(a, 0) >= MIN_EXPOSURES for a in snapshot.arm_ids])
    if seasoned.any():
        means = np.where(seasoned, means, -np.inf)
    index = int(np.argmax(means))
    return int(snapshot.arm_ids[index]), float(means[index])


def _learn_new_arms(
    platform_: _Platform, arms: dict[int, ArmInfo], know: Callable[..., None]
) -> None:
    snapshot = platform_.runtime.serving.get(EXPERIMENT_NAME)
    if snapshot is None or all(arm_id in arms for arm_id in snapshot.arm_ids):
        return
    for row in platform_.arm_rows():
        if row["arm_id"] not in arms:
            know(row["arm_id"], row["origin"], row["config"], f"{row['origin']}-{row['arm_id']}")


# --- analysis -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BinRow:
    """One time bin of the lift table."""

    start_hour: float
    end_hour: float
    target_exposures: int
    target_contacts: int
    reference_exposures: int
    reference_contacts: int
    lift: float  # observed target rate / reference rate - 1
    lift_ci_low: float
    lift_ci_high: float
    expected_lift: float  # same ratio of the served configurations' true expected contacts
    best_arm_id: int  # by posterior mean at the end of the bin
    best_arm_true_rate: float
    trap_share: float  # share of target exposures served the view-maximiser


def lift_interval(
    target_contacts: float,
    target_exposures: float,
    reference_contacts: float,
    reference_exposures: float,
) -> tuple[float, float, float]:
    """Lift of the target rate over the reference rate with a 95% interval.

    The interval is the delta-method one on the log rate ratio, treating contacts as Poisson:
    ``exp(log(RR) +- 1.96 sqrt(1/c_t + 1/c_r)) - 1``; NaN when a group has no contact.
    """
    if min(target_contacts, reference_contacts, target_exposures, reference_exposures) <= 0:
        return math.nan, math.nan, math.nan
    ratio = (target_contacts / target_exposures) / (reference_contacts / reference_exposures)
    half = 1.96 * math.sqrt(1.0 / target_contacts + 1.0 / reference_contacts)
    return ratio - 1.0, ratio * math.exp(-half) - 1.0, ratio * math.exp(half) - 1.0


def bin_rows(result: MarketplaceResult) -> list[BinRow]:
    config, log = result.config, result.log
    ref = result.reference_arm_id
    rows = []
    per_bin = config.windows_per_bin
    for start in range(0, config.n_windows, per_bin):
        stop = min(start + per_bin, config.n_windows)
        totals = {"te": 0.0, "tc": 0.0, "re": 0.0, "rc": 0.0, "tx": 0.0, "rx": 0.0, "trap": 0.0}
        for w in range(start, stop):
            for arm_id, count in log.exposures[w].items():
                totals["re" if arm_id == ref else "te"] += count
                if arm_id == result.trap_arm_id:
                    totals["trap"] += count
            for arm_id, count in log.contacts[w].items():
                totals["rc" if arm_id == ref else "tc"] += count
            for arm_id, value in log.expected_contacts[w].items():
                totals["rx" if arm_id == ref else "tx"] += value
        lift, low, high = lift_interval(totals["tc"], totals["te"], totals["rc"], totals["re"])
        expected = (
            (totals["tx"] / totals["te"]) / (totals["rx"] / totals["re"]) - 1.0
            if min(totals["te"], totals["re"], totals["rx"]) > 0
            else math.nan
        )
        best = log.best_arm_ids[stop - 1]
        rows.append(
            BinRow(
                start_hour=start * config.tick_seconds / 3600,
                end_hour=stop * config.tick_seconds / 3600,
                target_exposures=int(totals["te"]),
                target_contacts=int(totals["tc"]),
                reference_exposures=int(totals["re"]),
                reference_contacts=int(totals["rc"]),
                lift=lift,
                lift_ci_low=low,
                lift_ci_high=high,
                expected_lift=expected,
                best_arm_id=best,
                best_arm_true_rate=result.arms[best].true_contacts if best in result.arms else 0,
                trap_share=totals["trap"] / totals["te"] if totals["te"] else math.nan,
            )
        )
    return rows


def arm_summary(result: MarketplaceResult) -> list[dict[str, Any]]:
    """Every arm at the end: truth, traffic, posterior; sorted by posterior mean."""
    log = result.log
    total_target = sum(
        c for w in log.exposures for a, c in w.items() if a != result.reference_arm_id
    )
    last_hour = max(1, round(3600 / result.config.tick_seconds))
    recent = log.exposures[-last_hour:]
    recent_target = sum(c for w in recent for a, c in w.items() if a != result.reference_arm_id)
    best_possible = result.trap.contact_maximiser.contacts
    rows = []
    for arm in result.final_arms:
        info = result.arms[arm["arm_id"]]
        served = sum(w.get(arm["arm_id"], 0) for w in log.exposures)
        served_recent = sum(w.get(arm["arm_id"], 0) for w in recent)
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
                "true_views_per_page_view": info.true_views,
                "true_contacts_per_page_view": info.true_contacts,
                "true_fraction_of_best_possible": info.true_contacts / best_possible,
                "exposures": served,
                "contacts": sum(w.get(arm["arm_id"], 0) for w in log.contacts),
                "clicks": sum(w.get(arm["arm_id"], 0) for w in log.clicks),
                "traffic_share": None if reference else served / max(total_target, 1),
                "traffic_share_last_hour": None
                if reference
                else served_recent / max(recent_target, 1),
                "alpha": arm["alpha"],
                "beta": arm["beta"],
                "posterior_mean": None
                if reference
                else arm["alpha"] / (arm["alpha"] + arm["beta"]),
            }
        )
    rows.sort(key=lambda r: -1.0 if r["posterior_mean"] is None else -r["posterior_mean"])
    return rows


@dataclass(frozen=True)
class Verdict:
    """The headline numbers."""

    best_arm_id: int
    best_arm_label: str
    best_arm_true_rate: float
    best_possible_rate: float
    reference_rate: float
    trap_rate: float
    best_found_fraction: float
    best_found_lift_over_reference: float
    best_possible_lift_over_reference: float
    overall_lift: float
    overall_lift_ci: tuple[float, float]
    last_bin_lift: float
    trap_reproduced: bool
    trap_views_gain: float
    trap_contacts_loss: float
    trap_avoided: bool
    trap_final_share: float
    trap_posterior_mean: float | None
    trap_status: str


def verdict(result: MarketplaceResult, bins: list[BinRow]) -> Verdict:
    arms = arm_summary(result)
    best = next(a for a in arms if a["arm_id"] == result.log.best_arm_ids[-1])
    trap = next(a for a in arms if a["arm_id"] == result.trap_arm_id)
    reference = result.arms[result.reference_arm_id].true_contacts
    best_possible = result.trap.contact_maximiser.contacts
    te = sum(b.target_exposures for b in bins)
    tc = sum(b.target_contacts for b in bins)
    re_ = sum(b.reference_exposures for b in bins)
    rc = sum(b.reference_contacts for b in bins)
    lift, low, high = lift_interval(tc, te, rc, re_)
    return Verdict(
        best_arm_id=best["arm_id"],
        best_arm_label=best["label"],
        best_arm_true_rate=best["true_contacts_per_page_view"],
        best_possible_rate=best_possible,
        reference_rate=reference,
        trap_rate=result.arms[result.trap_arm_id].true_contacts,
        best_found_fraction=best["true_contacts_per_page_view"] / best_possible,
        best_found_lift_over_reference=best["true_contacts_per_page_view"] / reference - 1,
        best_possible_lift_over_reference=best_possible / reference - 1,
        overall_lift=lift,
        overall_lift_ci=(low, high),
        last_bin_lift=bins[-1].lift,
        trap_reproduced=result.trap.reproduced,
        trap_views_gain=result.trap.views_gain,
        trap_contacts_loss=result.trap.contacts_loss,
        trap_avoided=best["arm_id"] != result.trap_arm_id,
        trap_final_share=float(trap["traffic_share_last_hour"] or 0.0),
        trap_posterior_mean=trap["posterior_mean"],
        trap_status=trap["status"],
    )


# --- output -------------------------------------------------------------------------------


def _pct(value: float, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _weights(config: dict[str, float]) -> str:
    return " ".join(f"{name}={float(config[name]):.2f}" for name in REFERENCE_CONFIG)


def format_table(result: MarketplaceResult) -> str:
    """The tables printed by the command."""
    config = result.config
    bins = bin_rows(result)
    v = verdict(result, bins)
    trap = result.trap
    evolve = (
        "on"
        if config.evolve and result.evolution_available
        else ("unavailable in this build" if config.evolve else "off")
    )
    lines = [
        f"Marketplace: {config.hours:g} simulated hours, "
        f"{config.views_per_minute:g} page views/min, "
        f"{config.model.n_listings:,} listings, block of {config.model.block_size}, "
        f"seed {config.seed}",
        f"service layer in-process on SQLite; tick every {config.tick_seconds:g} s simulated "
        f"({result.ticks_applied} ticks), {config.mode} mode, reference share "
        f"{config.reference_share:g}, evolution {evolve}"
        + (f" every {config.evolve_minutes:g} min" if evolve == "on" else "")
        + f"; wall time {result.wall_time_s:.1f} s",
        "",
        "Lift of the target group over the reference group (contacts per page view)",
        f"{'hours':<11}{'target':>16}{'reference':>16}{'lift':>9}  {'95% CI':<18}"
        f"{'expected':>9}{'best arm':>10}{'its truth':>10}{'trap':>7}",
    ]
    for b in bins:
        interval = (
            f"[{_pct(b.lift_ci_low)}, {_pct(b.lift_ci_high)}]"
            if not math.isnan(b.lift_ci_low)
            else "n/a"
        )
        lines.append(
            f"{b.start_hour:>4.1f}-{b.end_hour:<5.1f}"
            f"{f'{b.target_contacts}/{b.target_exposures}':>16}"
            f"{f'{b.reference_contacts}/{b.reference_exposures}':>16}"
            f"{_pct(b.lift):>9}  {interval:<18}{_pct(b.expected_lift):>9}"
            f"{b.best_arm_id:>10}{b.best_arm_true_rate / v.best_possible_rate:>9.1%}"
            f"{_pct(b.trap_share, signed=False):>7}"
        )
    lines += [
        "(target, reference: contacts/page views; expected: the same ratio of the served "
        "configurations' true rates;",
        " best arm: highest posterior mean at the end of the bin, its truth as a fraction of "
        "the best possible; trap: traffic share of the view-maximiser)",
        "",
        f"Overall lift {_pct(v.overall_lift)} "
        f"[{_pct(v.overall_lift_ci[0])}, {_pct(v.overall_lift_ci[1])}], last bin "
        f"{_pct(v.last_bin_lift)}",
        f"Best configuration found: arm {v.best_arm_id} ({v.best_arm_label}) "
        f"{_weights(result.arms[v.best_arm_id].config)}",
        f"  true contact rate {v.best_arm_true_rate:.4%} per page view = "
        f"{v.best_found_fraction:.1%} of the best possible {v.best_possible_rate:.4%} "
        f"({_weights(config_of(trap.contact_maximiser.weights))})",
        f"  lift over the reference ({v.reference_rate:.4%}): found "
        f"{_pct(v.best_found_lift_over_reference)}, best possible "
        f"{_pct(v.best_possible_lift_over_reference)}",
        "",
        "Views trap (exact expectations over all source listings)",
        f"  view-maximiser   {_weights(config_of(trap.view_maximiser.weights))}: "
        f"views {trap.view_maximiser.views:.4f}, contacts {trap.view_maximiser.contacts:.4%}",
        f"  contact-maximiser {_weights(config_of(trap.contact_maximiser.weights))}: "
        f"views {trap.contact_maximiser.views:.4f}, contacts {trap.contact_maximiser.contacts:.4%}",
        f"  the view-maximiser gets {_pct(v.trap_views_gain)} views and "
        f"{_pct(-v.trap_contacts_loss)} contacts: "
        + ("trap reproduced" if v.trap_reproduced else "TRAP NOT REPRODUCED"),
        f"  as arm {result.trap_arm_id}: status {v.trap_status}, traffic share in the last "
        f"hour {v.trap_final_share:.1%}, posterior mean "
        + ("n/a" if v.trap_posterior_mean is None else f"{v.trap_posterior_mean:.3f}")
        + f"; bandit's best arm is {'not ' if v.trap_avoided else ''}the view-maximiser",
        "",
        "Arms at the end (sorted by posterior mean; truth = true contact rate / best possible)",
        f"{'arm':>4} {'label':<14}{'status':<8}{'truth':>7}{'views':>8}{'share':>7}"
        f"{'last h':>7}{'exposures':>10}{'contacts':>9}{'post. mean':>11}",
    ]
    for a in arm_summary(result):
        share = a["traffic_share"]
        recent = a["traffic_share_last_hour"]
        mean = a["posterior_mean"]
        lines.append(
            f"{a['arm_id']:>4} {a['label']:<14}{a['status']:<8}"
            f"{a['true_fraction_of_best_possible']:>7.1%}{a['true_views_per_page_view']:>8.4f}"
            f"{'-' if share is None else f'{share:.1%}':>7}"
            f"{'-' if recent is None else f'{recent:.1%}':>7}"
            f"{a['exposures']:>10,}{a['contacts']:>9,}"
            f"{'-' if mean is None else f'{mean:.3f}':>11}"
        )
    return "\n".join(lines)


def write_outputs(result: MarketplaceResult, out_dir: Path) -> list[Path]:
    """Write ``lift.csv``, ``best.csv``, ``arms.csv``, ``results.json`` and three plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    bins = bin_rows(result)
    v = verdict(result, bins)
    arms = arm_summary(result)
    written: list[Path] = []

    lift_path = out_dir / "lift.csv"
    with lift_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["start_hour", "end_hour", "target_exposures", "target_contacts",
             "reference_exposures", "reference_contacts", "lift", "lift_ci95_low",
             "lift_ci95_high", "expected_lift", "best_arm_id", "best_arm_true_rate",
             "trap_share", "seed"]
        )  # fmt: skip
        for b in bins:
            writer.writerow([*asdict(b).values(), config.seed])
    written.append(lift_path)

    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    best_rates = np.array([result.arms[a].true_contacts for a in result.log.best_arm_ids])
    best_path = out_dir / "best.csv"
    with best_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["hour", "best_arm_id", "best_posterior_mean", "best_arm_true_rate",
             "best_possible_rate", "reference_rate", "active_arms", "seed"]
        )  # fmt: skip
        for i, hour in enumerate(hours):
            writer.writerow(
                [f"{hour:.6f}", result.log.best_arm_ids[i], repr(result.log.best_means[i]),
                 repr(float(best_rates[i])), repr(v.best_possible_rate), repr(v.reference_rate),
                 result.log.active_counts[i], config.seed]
            )  # fmt: skip
    written.append(best_path)

    arms_path = out_dir / "arms.csv"
    with arms_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        columns = [c for c in arms[0] if c not in ("config", "parent_ids")]
        writer.writerow([*columns, *PARAMETER_NAMES, "parent_ids", "seed"])
        for a in arms:
            writer.writerow(
                [*(a[c] for c in columns), *(a["config"][n] for n in PARAMETER_NAMES),
                 " ".join(str(p) for p in a["parent_ids"]), config.seed]
            )  # fmt: skip
    written.append(arms_path)

    document = {
        "command": "ranktune simulate marketplace",
        "reproduce": config.command_line(),
        "seed": config.seed,
        "parameters": asdict(config),
        "reference_config": REFERENCE_CONFIG,
        "expert_configs": list(EXPERT_CONFIGS),
        "evolution_available": result.evolution_available,
        "random_streams": "SeedSequence(seed).spawn(5): traffic, serving, ticks, arms, evolution",
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "wall_time_s": result.wall_time_s,
        "search_time_s": result.search_time_s,
        "ticks_applied": result.ticks_applied,
        "verdict": _jsonable(asdict(v)),
        "views_trap": {
            "view_maximiser": _search_doc(result.trap.view_maximiser),
            "contact_maximiser": _search_doc(result.trap.contact_maximiser),
            "views_gain": result.trap.views_gain,
            "contacts_loss": result.trap.contacts_loss,
            "reproduced": result.trap.reproduced,
            "trap_arm_id": result.trap_arm_id,
        },
        "generations": [asdict(g) for g in result.generations],
        "bins": [_jsonable(asdict(b)) for b in bins],
        "arms": _jsonable(arms),
    }
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(document, indent=2) + "\n")
    written.append(results_path)
    written += write_plots(result, out_dir, bins, v)
    return written


def _search_doc(search: SearchResult) -> dict[str, Any]:
    return {
        "config": config_of(search.weights),
        "views_per_page_view": search.views,
        "contacts_per_page_view": search.contacts,
        "configurations_evaluated": search.evaluated,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_plots(
    result: MarketplaceResult, out_dir: Path, bins: list[BinRow], v: Verdict
) -> list[Path]:
    config = result.config
    note = (
        f"seed {config.seed}; {config.hours:g} h at {config.views_per_minute:g} views/min; "
        f"tick {config.tick_seconds:g} s; evolution "
        f"{'on' if config.evolve and result.evolution_available else 'off'}"
    )
    written: list[Path] = []
    mids = np.array([(b.start_hour + b.end_hour) / 2 for b in bins])
    lifts = [b.lift for b in bins]
    span = [0.0, config.hours]
    written += plot_curves_with_bands(
        [
            Curve(
                "observed lift (95% CI)",
                mids,
                lifts,
                lower=[b.lift_ci_low for b in bins],
                upper=[b.lift_ci_high for b in bins],
            ),
            Curve("expected lift of the served arms", mids, [b.expected_lift for b in bins]),
        ],
        out_dir / "marketplace-lift",
        title="Target group vs reference group: lift in contacts per page view",
        xlabel="simulated hours",
        ylabel="lift over the reference group",
        reference_lines=[
            Curve("best possible configuration", span, [v.best_possible_lift_over_reference] * 2,
                  dashed=True),
            Curve("view-maximiser (views trap)", span, [v.trap_rate / v.reference_rate - 1] * 2,
                  color="#d62728"),
            Curve("reference", span, [0.0, 0.0], color="0.6"),
        ],
        note=note,
    )  # fmt: skip

    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    best_rates = np.array([result.arms[a].true_contacts for a in result.log.best_arm_ids])
    written += plot_curves_with_bands(
        [Curve("best arm found (highest posterior mean)", hours, best_rates * 100)],
        out_dir / "marketplace-best",
        title="Best configuration found vs the best possible (true contact rate)",
        xlabel="simulated hours",
        ylabel="true contacts per 100 page views",
        reference_lines=[
            Curve("best possible (grid + local search)", span, [v.best_possible_rate * 100] * 2,
                  dashed=True),
            Curve("reference configuration", span, [v.reference_rate * 100] * 2, color="0.6"),
            Curve("view-maximiser (views trap)", span, [v.trap_rate * 100] * 2, color="#d62728"),
        ],
        note=note,
    )  # fmt: skip
    written += _plot_trap(result, out_dir, v, note)
    return written


def _plot_trap(result: MarketplaceResult, out_dir: Path, v: Verdict, note: str) -> list[Path]:
    """Views against contacts for every founder and evolved arm, with both maximisers."""
    figure = new_figure()
    axes = figure.add_subplot()
    trap = result.trap
    arms = arm_summary(result)
    shares = np.array([a["traffic_share"] or 0.0 for a in arms])
    cloud = np.concatenate(
        [trap.view_maximiser.evaluated_rates, trap.contact_maximiser.evaluated_rates]
    )
    axes.scatter(
        cloud[:, 0],
        cloud[:, 1] * 100,
        s=6,
        color="0.8",
        label="configurations evaluated by the search",
        zorder=0,
    )
    for a, share in zip(arms, shares, strict=True):
        if a["origin"] == "reference":
            continue
        axes.scatter(
            a["true_views_per_page_view"],
            a["true_contacts_per_page_view"] * 100,
            s=30 + 600 * share,
            color="#1f77b4" if a["arm_id"] != result.trap_arm_id else "#d62728",
            alpha=0.55,
            edgecolor="black" if a["arm_id"] == v.best_arm_id else "none",
            linewidth=1.5,
        )
    reference = result.arms[result.reference_arm_id]
    points = [
        (trap.view_maximiser.views, trap.view_maximiser.contacts, "view-maximiser (trap)", "v"),
        (trap.contact_maximiser.views, trap.contact_maximiser.contacts, "contact-maximiser", "^"),
        (reference.true_views, reference.true_contacts, "reference", "s"),
    ]
    for x, y, label, marker in points:
        axes.scatter(
            x, y * 100, marker=marker, s=110, facecolor="none", edgecolor="0.1", linewidth=1.5,
            label=label, zorder=3,
        )  # fmt: skip
    axes.scatter([], [], s=80, color="#1f77b4", alpha=0.55, label="arms (area: traffic share)")
    axes.scatter([], [], s=80, color="#d62728", alpha=0.55, label="the view-maximiser's arm")
    axes.scatter([], [], s=80, color="none", edgecolor="black", label="bandit's best arm")
    figure.suptitle("The views trap: views and contacts of every arm (true expectations)")
    axes.set_title(note, fontsize="x-small", color="0.35")
    axes.set_xlabel("block clicks (listing views) per page view")
    axes.set_ylabel("contacts per 100 page views")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return save_figure(figure, out_dir / "marketplace-views-trap")


# --- command line -------------------------------------------------------------------------


def _number(low: float, *, integer: bool = False, open_low: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = int(text) if integer else float(text)
        except ValueError as error:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from error
        ok = math.isfinite(value) and (value > low if open_low else value >= low)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {'>' if open_low else '>='} {low:g}")
        return value

    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    defaults = MarketplaceConfig()
    parser.add_argument(
        "--hours",
        type=_number(0, open_low=True),
        default=defaults.hours,
        help="simulated hours of traffic",
    )
    parser.add_argument(
        "--views-per-minute",
        type=_number(0, open_low=True),
        default=defaults.views_per_minute,
        help="page views per simulated minute",
    )
    parser.add_argument(
        "--seed",
        type=_number(0, integer=True),
        default=None,
        help="seed of all random draws; a fresh one is drawn and saved if omitted",
    )
    parser.add_argument(
        "--arms",
        type=_number(0, integer=True),
        default=defaults.random_arms,
        help="random founder arms (besides the view-maximiser and 3 expert arms)",
    )
    parser.add_argument(
        "--evolve",
        action=argparse.BooleanOptionalAction,
        default=defaults.evolve,
        help="run the genetic step (SPEC §3.3) on schedule",
    )
    parser.add_argument(
        "--evolve-minutes",
        type=_number(0, open_low=True),
        default=defaults.evolve_minutes,
        help="simulated minutes between genetic steps",
    )
    parser.add_argument(
        "--tick-seconds",
        type=_number(1),
        default=defaults.tick_seconds,
        help="simulated seconds between ticks (the experiment's update_interval_s)",
    )
    parser.add_argument(
        "--reference-share",
        type=_number(0, open_low=True),
        default=defaults.reference_share,
        help="share of users in the reference group",
    )
    parser.add_argument(
        "--mode",
        choices=("request", "window"),
        default=defaults.mode,
        help="Thompson draw per request, or one arm per tick window",
    )
    parser.add_argument(
        "--users",
        type=_number(1, integer=True),
        default=defaults.users,
        help="distinct users (the randomised unit)",
    )
    parser.add_argument(
        "--start-hour",
        type=_number(0),
        default=defaults.start_hour,
        help="clock hour at which the simulation starts (for the daily cycle)",
    )
    parser.add_argument(
        "--cycle-amplitude",
        type=_number(0),
        default=defaults.cycle_amplitude,
        help="daily contact cycle: 1 + a cos(2 pi (h - 20) / 24)",
    )
    parser.add_argument(
        "--bin-minutes",
        type=_number(0, open_low=True),
        default=defaults.bin_minutes,
        help="rows of the lift table",
    )
    parser.add_argument(
        "--database",
        type=Path,
        default=None,
        help="keep the SQLite database here (default: a temporary one)",
    )
    parser.add_argument(
        "--grid-steps",
        type=_number(2, integer=True),
        default=defaults.grid_steps,
        help="simplex grid 1/N of the search for the best possible configuration",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument(
        "--out", default="out/marketplace", help="directory for tables, data and plots"
    )


def config_from_args(args: argparse.Namespace) -> MarketplaceConfig:
    seed = args.seed
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return MarketplaceConfig(
        hours=args.hours,
        views_per_minute=args.views_per_minute,
        seed=seed,
        random_arms=args.arms,
        evolve=args.evolve,
        evolve_minutes=args.evolve_minutes,
        tick_seconds=args.tick_seconds,
        reference_share=args.reference_share,
        mode=args.mode,
        users=args.users,
        start_hour=args.start_hour,
        cycle_amplitude=args.cycle_amplitude,
        bin_minutes=args.bin_minutes,
        grid_steps=args.grid_steps,
    )


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 the outputs could not be written, 2 invalid parameters."""
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"ranktune simulate marketplace: {error}", file=sys.stderr)
        return 2
    if args.database is not None and args.database.exists():
        print(
            f"ranktune simulate marketplace: --database {args.database} exists; "
            "expected a new file",
            file=sys.stderr,
        )
        return 2
    result = simulate(
        config, database=args.database, show_progress=progress_enabled(args.no_progress)
    )
    print(format_table(result))
    return write_and_report(
        "marketplace", lambda: write_outputs(result, Path(args.out)), config.command_line()
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run this command alone (``python -m simulations.marketplace ...``)."""
    parser = argparse.ArgumentParser(prog="ranktune simulate marketplace")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
