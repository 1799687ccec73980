"""Admin reads run in read transactions and heavy ones are bounded (SQLite and PostgreSQL).

On SQLite a read transaction is a deferred ``BEGIN`` on a ``query_only`` connection: it
never waits for the write lock, so every admin GET and the snapshot refresher answer while
another connection holds it. A read session refuses to flush on both stores. Heavy reads
(plots, stats, tick histories, reports) are bounded: the plot draws a bounded number of points per
arm, ``stats`` caps draws x arms and says how many draws it made, and beyond the allowed
number of heavy reads at once the answer is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api import schemas
from api.app import create_app
from api.db import ReadOnlySessionError
from api.models import Arm, AuditEntry, Experiment, Tick, TickArm
from api.repositories import TICK_ARM_FIELDS
from api.runtime import Runtime
from api.services.experiments import STATS_MAX_SAMPLES, tick_history
from tests.api.helpers import ADMIN, assert_error_shape, create, tick
from tests.conftest import ClientFactory, settings_for

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"


def _app(database_url: str) -> FastAPI:
    return create_app(settings_for(database_url))


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def arm_configs(count: int) -> list[dict[str, Any]]:
    """``count`` distinct configurations of the similar-items space, none the reference."""
    return [
        {
            "text_match": round(0.005 * (index + 1), 3),
            "distance": 0.5,
            "price_diff": round(0.5 + 0.01 * (index % 7), 2),
            "region": index % 4,
        }
        for index in range(count)
    ]


def seed_ticks(
    runtime: Runtime,
    experiment_id: int,
    arm_ids: list[int],
    count: int,
    *,
    applied: Callable[[int], bool] = lambda number: True,
    first: int = 1,
) -> None:
    """Tick rows ``first``.. ``first + count - 1`` inserted directly; every applied one
    updates every arm in ``arm_ids`` to Beta(number + k, number) for the k-th arm."""
    now = datetime.now(UTC)
    numbers = range(first, first + count)
    with runtime.transaction() as session:
        session.execute(
            insert(Tick),
            [
                {
                    "experiment_id": experiment_id,
                    "number": number,
                    "created_at": now,
                    "applied": applied(number),
                    "mode": "request",
                    "decay": 1.0,
                    "reference_exposures": 1.0,
                    "reference_events": 0.0,
                    "target_exposures": 1.0,
                    "target_events": 0.0,
                }
                for number in numbers
            ],
        )
        ids = {
            number: tick_id
            for number, tick_id in session.execute(
                select(Tick.number, Tick.id).where(Tick.experiment_id == experiment_id)
            )
        }
        rows = [
            {
                "tick_id": ids[number],
                "arm_id": arm_id,
                "exposures": 1.0,
                "target_events": 0.0,
                "alpha_increment": 1.0,
                "beta_increment": 1.0,
                "alpha_before": 1.0,
                "beta_before": 1.0,
                "alpha_after": float(number + k),
                "beta_after": float(number),
            }
            for number in numbers
            if applied(number)
            for k, arm_id in enumerate(arm_ids)
        ]
        if rows:
            session.execute(insert(TickArm), rows)
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(tick_count=first + count - 1)
        )


def target_ids(experiment: dict[str, Any]) -> list[int]:
    return [arm["id"] for arm in experiment["arms"] if arm["origin"] != "reference"]


# -- read transactions ---------------------------------------------------------------------
@contextmanager
def write_lock_held(database_url: str) -> Iterator[None]:
    """Another connection holding SQLite's write lock (as a long tick or writer would)."""
    path = database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


ADMIN_READS = [
    "/v1/experiments",
    URL,
    f"{URL}/ticks",
    f"{URL}/expert-configs",
    f"{URL}/generations",
    f"{URL}/arms/2/lineage",
    f"{URL}/stats",
    f"{URL}/plots/posteriors.png",
    f"{URL}/plots/posteriors.svg",
    f"{URL}/metrics",
    f"{URL}/report",
    f"{URL}/report?format=csv",
    f"{URL}/report/snapshots",
    "/v1/audit",
]


def test_admin_reads_and_the_refresher_never_wait_for_the_write_lock(sqlite_url: str) -> None:
    with TestClient(_app(sqlite_url)) as client:
        create(client)
        tick(client)
        answers: dict[str, int] = {}

        def read_everything() -> None:
            for path in ADMIN_READS:
                answers[path] = client.get(path, headers=ADMIN).status_code
            runtime_of(client).serving.refresh(runtime_of(client).read_session_factory)
            answers["refresh"] = 200

        with write_lock_held(sqlite_url):
            reader = threading.Thread(target=read_everything)
            reader.start()
            # The busy timeout is 30 s: a read that queued for the lock would still be
            # waiting long after 20 s, and every read answers in well under a second.
            reader.join(timeout=20)
            finished = not reader.is_alive()
        reader.join()
    assert finished, f"reads blocked by the write lock; answered so far: {answers}"
    assert answers == dict.fromkeys([*ADMIN_READS, "refresh"], 200)


def test_a_read_session_refuses_to_write(client: TestClient) -> None:
    create(client)
    runtime = runtime_of(client)
    with pytest.raises(ReadOnlySessionError), runtime.read_transaction() as session:
        experiment = session.scalars(select(Experiment)).one()
        experiment.status = "stopped"
    with pytest.raises(ReadOnlySessionError), runtime.read_transaction() as session:
        session.add(AuditEntry(at=datetime.now(UTC), actor="t", action="t", details={}))
        session.flush()
    with runtime.read_transaction() as session:
        assert session.scalars(select(Experiment.status)).one() == "running"


def test_sqlite_read_connections_are_query_only_and_writers_are_not(sqlite_url: str) -> None:
    with TestClient(_app(sqlite_url)) as client:
        create(client)
        runtime = runtime_of(client)
        for _ in range(3):  # the pool hands the same connections to readers and writers
            with pytest.raises(OperationalError, match="readonly"):  # noqa: SIM117
                with runtime.read_transaction() as session:
                    session.execute(text("UPDATE experiments SET status = 'stopped'"))
            with runtime.transaction() as session:
                session.execute(text("UPDATE experiments SET decay = decay"))
            assert client.post(f"{URL}/pause", headers=ADMIN).status_code == 200
            assert client.post(f"{URL}/resume", headers=ADMIN).status_code == 200
        with runtime.read_transaction() as session:
            assert session.scalars(select(Experiment.status)).one() == "running"


# -- bounded stats -------------------------------------------------------------------------
def test_stats_of_many_arms_caps_the_draws_and_reports_them(client: TestClient) -> None:
    created = create(client, arms=arm_configs(255))
    ids = target_ids(created)
    assert len(ids) == 255
    # Arm ids[0] ~ Beta(2, 1) against ids[1] ~ Beta(1, 1): P(best) = 2/3 exactly (the integral
    # of 2x * x over [0, 1]); the 253 others ~ Beta(1, 10^6) essentially never win (mean 1e-6).
    with runtime_of(client).transaction() as session:
        session.execute(update(Arm).where(Arm.id.in_(ids[2:])).values(beta=1e6))
        session.execute(update(Arm).where(Arm.id == ids[0]).values(alpha=2.0))
    answer = client.get(f"{URL}/stats", params={"draws": 200_000, "seed": 3}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    draws = STATS_MAX_SAMPLES // 255
    assert (stats["prob_best_draws"], stats["prob_best_draws_requested"]) == (draws, 200_000)
    by_id = {row["arm_id"]: row for row in stats["arms"]}
    standard_error = math.sqrt((2 / 3) * (1 / 3) / draws)
    assert abs(by_id[ids[0]]["prob_best"] - 2 / 3) < 5 * standard_error
    assert sum(row["prob_best"] or 0.0 for row in stats["arms"]) == pytest.approx(1.0)

    few = client.get(f"{URL}/stats", params={"draws": 1000}, headers=ADMIN).json()
    assert (few["prob_best_draws"], few["prob_best_draws_requested"]) == (1000, 1000)


def test_stats_of_few_arms_draws_as_requested(client: TestClient) -> None:
    create(client)
    stats = client.get(f"{URL}/stats", params={"draws": 200_000}, headers=ADMIN).json()
    assert (stats["prob_best_draws"], stats["prob_best_draws_requested"]) == (200_000, 200_000)


# -- bounded plots -------------------------------------------------------------------------
def test_a_long_history_is_plotted_with_a_bounded_number_of_points(client: TestClient) -> None:
    created = create(client)
    ids = target_ids(created)
    # Every 7th tick could not apply (no reference exposure): it has no point to draw.
    seed_ticks(runtime_of(client), created["id"], ids, 3000, applied=lambda n: n % 7 != 0)
    answer = client.get(f"{URL}/plots/posteriors.svg", params={"limit": 2800}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    applied = sum(1 for number in range(201, 3001) if number % 7 != 0)
    assert int(answer.headers["x-plot-applied-ticks"]) == applied == 2400
    assert int(answer.headers["x-plot-points-per-arm"]) == 400
    assert int(answer.headers["x-plot-arms"]) == 3

    short = client.get(f"{URL}/plots/posteriors.png", params={"limit": 10}, headers=ADMIN)
    assert short.status_code == 200
    assert short.headers["x-plot-applied-ticks"] == short.headers["x-plot-points-per-arm"] == "9"


def test_a_plot_of_many_arms_colours_the_top_arms_only(client: TestClient) -> None:
    created = create(client, arms=arm_configs(40))
    ids = target_ids(created)
    seed_ticks(runtime_of(client), created["id"], ids, 50)
    svg = client.get(f"{URL}/plots/posteriors.svg", headers=ADMIN)
    assert svg.status_code == 200, svg.text
    assert svg.headers["x-plot-arms"] == "40"
    # Beta(n + k, n): the arm with the largest k has the largest mean; the top 8 are named.
    named = [arm_id for arm_id in ids if f"arm {arm_id} (expert)".encode() in svg.content]
    assert named == ids[-8:]
    assert b"32 other arms" in svg.content


# -- bounded concurrency -------------------------------------------------------------------
def test_heavy_reads_beyond_the_limit_get_503_with_retry_after(make_client: ClientFactory) -> None:
    with make_client(heavy_reads=1, heavy_read_wait_s=0.05) as client:
        create(client)
        runtime = runtime_of(client)
        with runtime.heavy_reads.slot():
            heavy = (f"{URL}/plots/posteriors.png", f"{URL}/stats", f"{URL}/ticks", f"{URL}/report")
            for path in heavy:
                busy = client.get(path, headers=ADMIN)
                assert busy.status_code == 503, busy.text
                assert busy.headers["retry-after"] == "1"
                assert_error_shape(busy.json(), "ServiceUnavailable", None)
            # Light reads are not heavy: they do not queue behind plots.
            assert client.get(URL, headers=ADMIN).status_code == 200
        assert client.get(f"{URL}/stats", headers=ADMIN).status_code == 200


def test_tick_history_reads_columns_and_keeps_its_shape(client: TestClient) -> None:
    created = create(client)
    ids = target_ids(created)
    seed_ticks(runtime_of(client), created["id"], ids, 5, applied=lambda n: n != 3)
    history = client.get(f"{URL}/ticks", params={"after": 1, "limit": 3}, headers=ADMIN).json()
    assert [row["number"] for row in history] == [2, 3, 4]
    assert [len(row["arms"]) for row in history] == [3, 0, 3]
    first = history[0]["arms"][2]
    assert first == {
        "arm_id": ids[2],
        "exposures": 1.0,
        "target_events": 0.0,
        "alpha_increment": 1.0,
        "beta_increment": 1.0,
        "alpha_before": 1.0,
        "beta_before": 1.0,
        "alpha_after": 4.0,
        "beta_after": 2.0,
        "quarantined_events": 0.0,
    }
    with runtime_of(client).read_transaction() as session:
        assert session.scalar(select(Tick.applied).where(Tick.number == 3)) is False


def test_tick_history_json_is_the_models_rendering(client: TestClient) -> None:
    # The route writes its JSON from the columns; it must be what rendering the models (as
    # the tick route still does) gives, field for field.
    created = create(client)
    seed_ticks(runtime_of(client), created["id"], target_ids(created), 250)
    applied = tick(client)  # a real one, rendered from the models
    assert tuple(schemas.TickArmOut.model_fields) == TICK_ARM_FIELDS
    history = client.get(f"{URL}/ticks", params={"limit": 1000}, headers=ADMIN).json()
    assert [row["number"] for row in history] == list(range(1, 252))
    assert history[-1] == applied
    with runtime_of(client).read_transaction() as session:
        models = tick_history(session, NAME, limit=1000, after=None)
    assert history == [model.model_dump(mode="json") for model in models]


def test_posteriors_of_the_seeded_history_are_what_was_stored(client: TestClient) -> None:
    # Guards seed_ticks itself: the plot tests above rely on it.
    created = create(client)
    seed_ticks(runtime_of(client), created["id"], target_ids(created), 4)
    with Session(runtime_of(client).engine) as session:
        rows = session.execute(
            select(Tick.number, TickArm.alpha_after, TickArm.beta_after)
            .join(Tick, Tick.id == TickArm.tick_id)
            .where(TickArm.arm_id == target_ids(created)[1])
            .order_by(Tick.number)
        ).all()
    assert [tuple(row) for row in rows] == [(n, n + 1.0, float(n)) for n in range(1, 5)]
