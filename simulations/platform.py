"""The platform's service layer of one replica, driven in-process by a simulator.

``ranktune simulate marketplace`` and ``ranktune simulate movielens`` replay traffic through
the real code paths without HTTP: :func:`api.services.experiments.create_experiment` on a
migrated database, :meth:`api.serving.ServingState.assign` for every page view,
:meth:`api.runtime.Runtime.flush_exposures`, the client route's ticket check and the
:class:`api.ingest.EventWriter` for events, :func:`api.services.ticks.apply_tick` and
:func:`api.services.evolution.run_evolution_step` on a simulated clock. A simulator builds
the ``ExperimentCreate`` body (:func:`evolution_settings` for its genetic step) and serves
each window's page views; :class:`Platform` does the rest, and :class:`RunTrace` records
what a run served, measured and evolved, window by window. :class:`ScenarioClock` holds
what both scenarios' configurations share: their windows and the checks of their common
options.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
# An arm needs this many exposures before it can be called the best (the genetic step's
# min_exposures too): a fresh arm's prior mean of 1/2 says nothing about it.
MIN_EXPOSURES = 2000
# An arm the platform added, made known to the simulator: (arm id, origin, configuration,
# label).
Know = Callable[[int, str, dict[str, Any], str], None]


def require(checks: list[tuple[bool, str]]) -> None:
    """Raise ``ValueError`` with the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class ScenarioClock:
    """The tick windows of a scenario run through the platform, and the checks of the
    options every such scenario has; a mixin of the scenarios' configuration dataclasses."""

    hours: float
    views_per_minute: float
    random_arms: int
    tick_seconds: float
    evolve_minutes: float
    reference_share: float
    users: int
    bin_minutes: float
    grid_steps: int

    def scenario_checks(self) -> list[tuple[bool, str]]:
        return [
            (self.hours > 0 and math.isfinite(self.hours), "hours must be > 0"),
            (self.views_per_minute > 0, "views_per_minute must be > 0"),
            (self.random_arms >= 0, "random_arms must be >= 0"),
            (self.tick_seconds >= 1, "tick_seconds must be >= 1"),
            (self.evolve_minutes * 60 >= self.tick_seconds, "evolve_minutes must span a tick"),
            (0 < self.reference_share < 1, "reference_share must be in (0, 1)"),
            (self.users >= 1, "users must be >= 1"),
            (self.bin_minutes * 60 >= self.tick_seconds, "bin_minutes must span a tick"),
            (self.grid_steps >= 2, "grid_steps must be >= 2"),
        ]

    @property
    def n_windows(self) -> int:
        return max(1, round(self.hours * 3600 / self.tick_seconds))

    @property
    def windows_per_bin(self) -> int:
        return max(1, round(self.bin_minutes * 60 / self.tick_seconds))

    @property
    def windows_per_step(self) -> int:
        """Tick windows between two scheduled genetic steps."""
        return max(1, round(self.evolve_minutes * 60 / self.tick_seconds))

    @property
    def views_per_window(self) -> float:
        """Page views per tick window at the scenario's mean rate."""
        return self.views_per_minute * self.tick_seconds / 60.0


def evolution_settings(
    *, evolve_minutes: float, drop_count: int, arm_count: int, model_weight: float
) -> dict[str, Any]:
    """The scenarios' genetic step (``ExperimentCreate.evolution``): every
    ``evolve_minutes``, ``drop_count`` arms with ``min_exposures`` exposures retired and
    refilled, at most one arm more than the founders; with ``model_weight > 0`` the
    model's proposals in the mix beside random, mutation and crossover at 1 each."""
    settings: dict[str, Any] = {
        "enabled": True,
        "evolve_interval_s": evolve_minutes * 60,
        "min_exposures": float(MIN_EXPOSURES),
        "drop_count": drop_count,
        "min_arms": 4,
        "max_arms": arm_count + 1,
        "score": "mean",
    }
    if model_weight > 0:
        settings["mix"] = {"random": 1.0, "mutation": 1.0, "crossover": 1.0, "model": model_weight}
    return settings


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
class RunTrace:
    """What a run records window by window: the log, the genetic steps applied, the
    exposures served so far by arm, and the ticks the platform applied."""

    log: WindowLog = field(default_factory=WindowLog)
    generations: list[GenerationLog] = field(default_factory=list)
    served: dict[int, int] = field(default_factory=dict)
    ticks_applied: int = 0

    def record(
        self, arm_ids: IntArray, live: Any, contacts: npt.ArrayLike, expected: npt.ArrayLike
    ) -> IntArray:
        """Log one window's exposures, contacts and expected contacts by arm. Page views
        served while the experiment was not running (paused by the circuit breaker: the
        reference configuration, outside the comparison) are left out, as the platform
        does; returns the arm ids with ``-1`` for those."""
        counted = np.where(live, arm_ids, -1)
        log = self.log
        log.exposures.append(sum_by(counted, np.ones(len(counted), dtype=np.int64)))
        for arm_id, count in log.exposures[-1].items():
            self.served[arm_id] = self.served.get(arm_id, 0) + count
        log.contacts.append(sum_by(counted, contacts))
        log.expected_contacts.append(sum_by(counted, expected))
        return counted


@dataclass(frozen=True)
class Reported:
    """An event as a client reports it (the fields of api.schemas.EventIn)."""

    ticket: str
    type: str
    count: int
    event_id: str


def evolution_module() -> Any | None:
    """``api.services.evolution`` when this build has the genetic step, else ``None``."""
    try:
        from api.services import evolution
    except ImportError:
        return None
    return evolution if hasattr(evolution, "run_evolution_step") else None


class Platform:
    """The service layer of one replica, on its own database, with a simulated clock.

    ``streams`` holds the generators ``serving`` (the policy's draws), ``ticks`` (the
    runtime's generator) and ``evolution`` (the genetic step's draws).
    """

    def __init__(
        self, database_url: str, *, label: str, seed: int, tick_seconds: float, streams: Any
    ) -> None:
        from pydantic import SecretStr

        from api.db import upgrade_database
        from api.runtime import Runtime
        from api.serving import ServingState
        from api.settings import Settings

        upgrade_database(database_url)
        settings = Settings(
            database_url=database_url,
            admin_token=SecretStr(f"{label}-simulation"),
            scheduler_enabled=False,
            ticket_secret=SecretStr(f"{label}-simulation-{seed}"),
            tick_interval_s=tick_seconds,
            # A throwaway database: no fsync per commit.
            sqlite_synchronous="OFF",
        )
        self.seed = seed
        self.tick_seconds = tick_seconds
        self.runtime = Runtime(settings)
        self.runtime.serving = ServingState(self.runtime.signer, rng=streams["serving"])
        self.runtime.rng = streams["ticks"]
        self.evolution_rng = streams["evolution"]
        self.experiment_id = 0
        self.name = ""
        self.started_at = datetime.now().astimezone()
        self.folded_at_s = 0.0  # simulated seconds of the last fold of the report's counts

    def create(self, body: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
        """Create the experiment of ``body`` (an ``ExperimentCreate``); returns its arms as
        ``(arm id, origin, configuration)``."""
        from api import repositories as repo
        from api import schemas
        from api.services.experiments import create_experiment

        request = schemas.ExperimentCreate.model_validate(body)
        with self.runtime.transaction() as session:
            experiment = create_experiment(
                session, request, default_interval_s=self.tick_seconds, rng=self.runtime.rng
            )
            # A salt derived from the seed (instead of a random one) keeps the split of
            # users into groups, and with it the whole run, repeatable.
            experiment.salt = hashlib.sha256(f"salt-{self.seed}".encode()).hexdigest()[:16]
            self.experiment_id = experiment.id
            self.name = experiment.name
            self.started_at = experiment.created_at
            arms = [
                (a.id, str(a.origin), dict(a.config)) for a in repo.arms_of(session, experiment.id)
            ]
        self.refresh()
        return arms

    def refresh(self) -> Any:
        self.runtime.serving.refresh(self.runtime.session_factory)
        return self.runtime.serving.get(self.name)

    def snapshot(self) -> Any:
        return self.runtime.serving.get(self.name)

    def clock(self, seconds: float) -> datetime:
        return self.started_at + timedelta(seconds=seconds)

    def serve(self, snapshot: Any, units: npt.ArrayLike) -> tuple[list[Any], IntArray, Any]:
        """Serve one configuration to each unit (``user-<id>``), as the assignment route
        does; returns the assignments, their arm ids (``-1`` for traffic served while the
        experiment was not running, which the platform leaves out) and whether each was
        live."""
        served = [self.runtime.serving.assign(snapshot, f"user-{u}") for u in np.asarray(units)]
        n = len(served)
        arm_ids = np.fromiter((s.arm_id for s in served), dtype=np.int64, count=n)
        live = np.fromiter((s.active for s in served), dtype=bool, count=n)
        return served, arm_ids, live

    def flush_exposures(self) -> None:
        """Exposures counted by assign, flushed like the runtime's flush job."""
        self.runtime.flush_exposures()

    def submit_events(self, events: list[Reported]) -> None:
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
            applied = tick is not None and bool(tick.applied)
        self.maintain(seconds)
        return applied

    def maintain(self, seconds: float) -> None:
        """Fold the ticks' report counts on the service's maintenance cadence (every
        ``maintenance_interval_s`` of simulated time, as ``Runtime.run_maintenance`` does):
        else the report that every decision reads would sum every tick's batch so far."""
        if seconds - self.folded_at_s >= self.runtime.settings.maintenance_interval_s:
            self.runtime.fold_report_counts()
            self.folded_at_s = seconds

    def decide(self, seconds: float) -> Any:
        """The decisions after an applied tick, as the scheduler runs them
        (``api.services.decisions.DecisionOutcome``)."""
        from api.services.decisions import DecisionOutcome

        outcome = self.runtime.evaluate_decisions(self.experiment_id, now=self.clock(seconds))
        return DecisionOutcome() if outcome is None else outcome

    def paused_reason(self) -> dict[str, Any]:
        from api.models import Experiment

        with self.runtime.session_factory() as session:
            experiment = session.get(Experiment, self.experiment_id)
            return dict(experiment.paused_reason or {}) if experiment is not None else {}

    def report(self, seconds: float) -> dict[str, Any]:
        """The platform's report, as ``GET /v1/experiments/{name}/report`` answers it."""
        from api import repositories as repo
        from api.services.report import report_document

        with self.runtime.read_transaction() as session:
            experiment = repo.get_experiment(session, self.experiment_id)
            assert experiment is not None
            return report_document(session, experiment, now=self.clock(seconds))

    def retired_reason(self, arm_id: int) -> str:
        with self.runtime.session_factory() as session:
            from api.models import Arm

            arm = session.get(Arm, arm_id)
            return "" if arm is None or arm.retired_reason is None else arm.retired_reason

    def evolve(self, seconds: float) -> tuple[list[int], list[int]] | None:
        """A scheduled genetic step at ``seconds``: ``(retired, added)`` arm ids, or
        ``None`` when no step was due or applied (or the build has none)."""
        evolution = evolution_module()
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

    def evolve_on_schedule(self, trace: RunTrace, window: int, clock: ScenarioClock) -> None:
        """After ``window``, the scheduled genetic step when one is due, recorded in
        ``trace``; none after the last window (its new arms would never be served)."""
        done = window + 1
        if done % clock.windows_per_step or done == clock.n_windows:
            return
        now_s = done * clock.tick_seconds
        step = self.evolve(now_s)
        if step is not None:
            trace.generations.append(GenerationLog(now_s / 3600, step[0], step[1]))

    def look(self, trace: RunTrace, known: Container[int], know: Know) -> Any:
        """The serving snapshot after a window's tick (and step): new arms made known, the
        platform's best arm and the active count logged. Returns the snapshot."""
        snapshot = self.refresh()
        self.learn_new_arms(known, know)
        best_id, best_mean = best_arm(snapshot, trace.served, MIN_EXPOSURES)
        trace.log.best_arm_ids.append(best_id)
        trace.log.best_means.append(best_mean)
        trace.log.active_counts.append(len(snapshot.arm_ids))
        return snapshot

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

    def learn_new_arms(self, known: Container[int], know: Know) -> None:
        """Call ``know(arm id, origin, configuration, label)`` for every arm of the serving
        snapshot that is not in ``known`` (added by a genetic step since the last look)."""
        snapshot = self.snapshot()
        if snapshot is None or all(arm_id in known for arm_id in snapshot.arm_ids):
            return
        for row in self.arm_rows():
            if row["arm_id"] not in known:
                label = f"{row['origin']}-{row['arm_id']}"
                know(row["arm_id"], row["origin"], row["config"], label)

    def close(self) -> None:
        self.runtime.flush_exposures()
        self.runtime.engine.dispose()


def sum_by(keys: IntArray, values: npt.ArrayLike) -> dict[int, Any]:
    """Totals of ``values`` by arm id; negative keys (traffic left out) are skipped."""
    totals: dict[int, Any] = {}
    v = np.asarray(values)
    for key in np.unique(keys[keys >= 0]):
        totals[int(key)] = v[keys == key].sum().item()
    return totals


def best_arm(snapshot: Any, exposures: dict[int, int], min_exposures: float) -> tuple[int, float]:
    """The active target arm with the highest posterior mean among those with at least
    ``min_exposures`` exposures (all active arms while none has); ties: the older arm."""
    if not snapshot.arm_ids:
        return -1, math.nan
    means = snapshot.alphas / (snapshot.alphas + snapshot.betas)
    seasoned = np.array([exposures.get(a, 0) >= min_exposures for a in snapshot.arm_ids])
    if seasoned.any():
        means = np.where(seasoned, means, -np.inf)
    index = int(np.argmax(means))
    return int(snapshot.arm_ids[index]), float(means[index])


def seeded_streams(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent generators, one per name, spawned from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(s) for name, s in zip(names, children, strict=True)}
