"""A long synthetic history for an experiment: what weeks of live traffic would have left.

The dashboard's benchmark (20 arms, 100,000 ticks) and its browser tests (screenshots of a
page with days of history) need an experiment whose tables look like those of a real run,
without running one for weeks. :func:`write_history` creates the experiment through the
service layer, then writes what its ticks would have recorded, in bulk:

- every ``interval_s`` a window of Poisson traffic split between the reference group and
  the arms (shares follow the arms' posteriors, recomputed every ``reallocate_every``
  ticks, as a Thompson sampler's would drift), Binomial target events at each arm's true
  rate with a daily swing shared by all groups;
- each arm's posterior after every tick by the reference-ratio update of request mode
  (``alpha += c_k``, ``beta += c_r n_k / n_r``), so the lift curves converge as real ones;
- a genetic step every ``evolve_every`` ticks: the two arms with the lowest posterior
  mean are retired and two mutations of the best are added (generations rows, audit);
- one pause and resume; the report's per-bucket counts of the whole run.

Only the bandit's bookkeeping is simulated; nothing here is used by the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from api import repositories as repo
from api import schemas
from api.enums import ArmStatus, Group
from api.models import Arm, AuditEntry, Experiment, Generation, MetricCount, Tick
from api.services import experiments as experiment_service
from api.serving import REPORT_BUCKETS
from arms.origins import Origin

PARAMETERS = [
    {"name": "text_match", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "distance", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "price_diff", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "region", "type": "int", "low": 0, "high": 3},
]
_ROWS_PER_INSERT = 50_000
_TICK_ARM_COLUMNS = (
    "tick_id",
    "arm_id",
    "exposures",
    "target_events",
    "alpha_increment",
    "beta_increment",
    "alpha_before",
    "beta_before",
    "alpha_after",
    "beta_after",
    "quarantined_events",
)


@dataclass(frozen=True)
class HistoryShape:
    arms: int = 20  # active target arms at any time
    ticks: int = 100_000
    interval_s: float = 10.0
    requests_per_s: float = 40.0
    base_rate: float = 0.05
    reference_share: float = 0.2
    evolve_every: int = 8_640  # a day of 10 s ticks
    reallocate_every: int = 60
    seed: int = 7


def _config(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "text_match": round(float(rng.uniform(0.2, 1.8)), 3),
        "distance": round(float(rng.uniform(0.2, 1.8)), 3),
        "price_diff": round(float(rng.uniform(0.2, 1.8)), 3),
        "region": int(rng.integers(0, 4)),
    }


def _true_lift(config: dict[str, Any]) -> float:
    """A smooth landscape: the best weights give about +12% contacts."""
    distance = (
        (config["text_match"] - 1.4) ** 2
        + (config["distance"] - 0.7) ** 2
        + 0.5 * (config["price_diff"] - 1.1) ** 2
    )
    return 0.12 - 0.15 * distance + (0.01 if config["region"] == 1 else 0.0)


def write_history(
    session_factory: sessionmaker[Session],
    name: str,
    shape: HistoryShape = HistoryShape(),
    *,
    end: datetime | None = None,
) -> int:
    """Create experiment ``name`` and its history ending at ``end`` (default now); its id."""
    rng = np.random.default_rng(shape.seed)
    end = end or datetime.now(UTC)
    start = end - timedelta(seconds=shape.interval_s * shape.ticks)
    reference = {"text_match": 1.0, "distance": 1.0, "price_diff": 1.0, "region": 1}
    founders: list[dict[str, Any]] = []
    while len(founders) < shape.arms:
        config = _config(rng)
        if config not in founders and config != reference:
            founders.append(config)
    body = schemas.ExperimentCreate(
        name=name,
        parameters=[schemas.ParameterIn(**p) for p in PARAMETERS],  # type: ignore[arg-type]
        reference_config=reference,
        arms=founders,
        reference_share=shape.reference_share,
        update_interval_s=shape.interval_s,
        evolution=schemas.EvolutionIn(enabled=False, drop_count=2, max_arms=shape.arms + 1),
    )
    with session_factory() as session, session.begin():
        experiment = experiment_service.create_experiment(
            session, body, default_interval_s=shape.interval_s, rng=rng
        )
        experiment.created_at = start
        experiment_id = experiment.id
        for arm in repo.arms_of(session, experiment_id):
            arm.created_at = start
    with session_factory() as session, session.begin():
        arms = list(repo.arms_of(session, experiment_id))
        _simulate(session, experiment_id, arms, shape, rng, start)
    return experiment_id


@dataclass
class _ArmState:
    arm_id: int
    config: dict[str, Any]
    lift: float
    alpha: float = 1.0
    beta: float = 1.0
    exposures: float = 0.0
    events: float = 0.0
    active: bool = True


def _simulate(
    session: Session,
    experiment_id: int,
    arms: list[Arm],
    shape: HistoryShape,
    rng: np.random.Generator,
    start: datetime,
) -> None:
    experiment = session.get(Experiment, experiment_id)
    assert experiment is not None
    reference = next(arm for arm in arms if arm.origin == Origin.REFERENCE)
    states = {
        arm.id: _ArmState(arm.id, dict(arm.config), _true_lift(arm.config))
        for arm in arms
        if arm.origin != Origin.REFERENCE
    }
    by_id = {arm.id: arm for arm in arms}
    tick_rows: list[dict[str, Any]] = []
    arm_rows: list[tuple[Any, ...]] = []
    ref_exposures = ref_events = 0.0
    next_tick_id = _next_id(session, Tick)
    generation = 0
    pause_at = int(shape.ticks * 0.6)
    per_window = shape.requests_per_s * shape.interval_s
    shares = np.array([])
    active: list[_ArmState] = []
    for number in range(1, shape.ticks + 1):
        at = start + timedelta(seconds=shape.interval_s * number)
        if number % shape.evolve_every == 0:
            generation += 1
            _evolve(session, experiment, states, by_id, generation, at, rng)
            active = []
        if not active or number % shape.reallocate_every == 1:
            active = [state for state in states.values() if state.active]
            shares = _allocation(active, rng)
        if number == pause_at:
            _audit(session, experiment_id, at, "experiment.pause", {"from": "running"})
            _audit(
                session,
                experiment_id,
                at + timedelta(seconds=shape.interval_s / 2),
                "experiment.resume",
                {"from": "paused"},
            )
        swing = 1.0 + 0.3 * math.sin(2 * math.pi * number * shape.interval_s / 86_400)
        rate = shape.base_rate * swing
        n_reference = float(rng.poisson(per_window * shape.reference_share))
        c_reference = float(rng.binomial(int(n_reference), rate))
        n_target = rng.poisson(per_window * (1 - shape.reference_share) * shares)
        rates = np.clip(rate * (1 + np.array([state.lift for state in active])), 0, 1)
        c_target = rng.binomial(n_target, rates)
        applied = n_reference > 0
        tick_id = next_tick_id
        next_tick_id += 1
        tick_rows.append(
            {
                "id": tick_id,
                "experiment_id": experiment_id,
                "number": number,
                "created_at": at,
                "applied": applied,
                "mode": "request",
                "decay": 1.0,
                "reference_exposures": n_reference,
                "reference_events": c_reference,
                "target_exposures": float(n_target.sum()),
                "target_events": float(c_target.sum()),
                "window_arm_id": None,
                "next_window_arm_id": None,
                "replica": "synthetic",
                "empty_windows_before": 0,
                "quarantined_events": 0.0,
                "uncredited": None,
            }
        )
        if not applied:
            continue
        ref_exposures += n_reference
        ref_events += c_reference
        for state, n, c in zip(active, n_target.tolist(), c_target.tolist(), strict=True):
            alpha_before, beta_before = state.alpha, state.beta
            beta_increment = c_reference * n / n_reference
            state.alpha += c
            state.beta += beta_increment
            state.exposures += n
            state.events += c
            arm_rows.append(
                (
                    tick_id,
                    state.arm_id,
                    float(n),
                    float(c),
                    float(c),
                    beta_increment,
                    alpha_before,
                    beta_before,
                    state.alpha,
                    state.beta,
                    0.0,
                )
            )
        if len(arm_rows) >= _ROWS_PER_INSERT:
            _flush(session, tick_rows, arm_rows)
    _flush(session, tick_rows, arm_rows)
    for state in states.values():
        arm = by_id[state.arm_id]
        arm.alpha, arm.beta = state.alpha, state.beta
        arm.exposures, arm.target_events = state.exposures, state.events
    reference.exposures, reference.target_events = ref_exposures, ref_events
    end = start + timedelta(seconds=shape.interval_s * shape.ticks)
    experiment.tick_count = shape.ticks
    experiment.last_tick_at = end
    experiment.generation = generation
    experiment.version = shape.ticks + 1
    _metric_counts(session, experiment, states, reference, rng)


def _next_id(session: Session, model: type[Tick]) -> int:
    from sqlalchemy import func, select

    return int(session.scalar(select(func.max(model.id))) or 0) + 1


def _flush(session: Session, ticks: list[dict[str, Any]], arm_rows: list[tuple[Any, ...]]) -> None:
    """Bulk inserts: the ticks through the table (few), the per-arm rows through the driver
    as plain tuples (millions)."""
    if ticks:
        session.execute(insert(Tick.__table__), ticks)
    if arm_rows:
        connection = session.connection()
        mark = "%s" if connection.dialect.name == "postgresql" else "?"
        connection.exec_driver_sql(
            f"INSERT INTO tick_arms ({', '.join(_TICK_ARM_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_TICK_ARM_COLUMNS))})",
            arm_rows,
        )
    ticks.clear()
    arm_rows.clear()


def _allocation(active: list[_ArmState], rng: np.random.Generator) -> np.ndarray:
    """Each arm's share of the target group: its probability of being drawn best (Thompson
    sampling's allocation), from 400 joint draws of the posteriors."""
    alphas = np.array([state.alpha for state in active])
    betas = np.array([state.beta for state in active])
    wins = np.bincount(
        np.argmax(rng.beta(alphas, betas, size=(400, len(active))), axis=1), minlength=len(active)
    )
    shares = (wins + 0.5) / (wins.sum() + 0.5 * len(active))
    return shares / shares.sum()


def _evolve(
    session: Session,
    experiment: Experiment,
    states: dict[int, _ArmState],
    by_id: dict[int, Arm],
    generation: int,
    at: datetime,
    rng: np.random.Generator,
) -> None:
    """Retire the two arms with the lowest posterior mean, add two mutations of the best."""
    active = sorted(
        (state for state in states.values() if state.active),
        key=lambda s: s.alpha / (s.alpha + s.beta),
    )
    retired, best = active[:2], active[-1]
    for state in retired:
        state.active = False
        arm = by_id[state.arm_id]
        arm.status = ArmStatus.RETIRED
        arm.retired_at = at
        arm.retired_reason = f"lowest posterior mean in generation {generation}"
        arm.alpha, arm.beta = state.alpha, state.beta
        arm.exposures, arm.target_events = state.exposures, state.events
    added = []
    for _ in range(2):
        config = {
            key: (
                value
                if key == "region"
                else round(float(np.clip(value + rng.normal(0, 0.15), 0, 2)), 3)
            )
            for key, value in best.config.items()
        }
        arm = Arm(
            experiment_id=experiment.id,
            config=config,
            signature=repr(sorted(config.items())),
            origin=Origin.MUTATION,
            parent_ids=[best.arm_id],
            generation=generation,
            status=ArmStatus.ACTIVE,
            alpha=1.0,
            beta=1.0,
            exposures=0.0,
            target_events=0.0,
            created_at=at,
        )
        session.add(arm)
        session.flush()
        by_id[arm.id] = arm
        states[arm.id] = _ArmState(arm.id, config, _true_lift(config))
        added.append(arm)
    session.add(
        Generation(
            experiment_id=experiment.id,
            number=generation,
            created_at=at,
            trigger="schedule",
            replica="synthetic",
            retired=[
                {
                    "arm_id": s.arm_id,
                    "config": s.config,
                    "reason": "lowest_score",
                    "score": s.alpha / (s.alpha + s.beta),
                    "exposures": s.exposures,
                    "prob_beat_reference": 0.0,
                    "alpha": s.alpha,
                    "beta": s.beta,
                }
                for s in retired
            ],
            added=[
                {
                    "arm_id": arm.id,
                    "config": arm.config,
                    "origin": "mutation",
                    "parent_ids": [best.arm_id],
                    "alpha": 1.0,
                    "beta": 1.0,
                    "expert_config_id": None,
                }
                for arm in added
            ],
            details={
                "score": "mean",
                "best_arm_id": best.arm_id,
                "ranking": [],
                "skipped": [],
                "expert_outcomes": [],
                "n_active_before": len(active) + 1,
                "n_active_after": len(active) + 1,
                "notes": ["synthetic history"],
                "seed": 0,
                "settings": None,
            },
        )
    )
    _audit(session, experiment.id, at, "experiment.evolve", {"generation": generation})


def _audit(
    session: Session, experiment_id: int, at: datetime, action: str, details: dict[str, Any]
) -> None:
    session.add(
        AuditEntry(
            at=at, actor="admin", action=action, experiment_id=experiment_id, details=details
        )
    )


def _metric_counts(
    session: Session,
    experiment: Experiment,
    states: dict[int, _ArmState],
    reference: Arm,
    rng: np.random.Generator,
) -> None:
    """The report's counts of the whole run, spread over the unit buckets."""
    rows = []
    groups = [(reference.id, Group.REFERENCE, reference.exposures, reference.target_events)]
    groups += [(s.arm_id, Group.TARGET, s.exposures, s.events) for s in states.values()]
    for arm_id, group, exposures, events in groups:
        if exposures <= 0:
            continue
        weights = rng.dirichlet(np.full(REPORT_BUCKETS, 50.0))
        for kind, total in (("exposure", exposures), (experiment.target_event, events)):
            counts = rng.multinomial(int(total), weights)
            rows += [
                {
                    "experiment_id": experiment.id,
                    "phase": experiment.phase,
                    "arm_id": arm_id,
                    "group": str(group),
                    "type": kind,
                    "bucket": bucket,
                    "count": int(count),
                }
                for bucket, count in enumerate(counts.tolist())
                if count
            ]
    if rows:
        session.execute(insert(MetricCount), rows)
