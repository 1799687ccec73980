"""Admin changes racing on two real replicas over one PostgreSQL database: nothing is lost.

Both replicas run their tick scheduler (a tick is due 0.1 s after the previous one) while
admin ticks, then admin ticks and pause/resume requests, hit both replicas at once, round
after round (a barrier lines the requests up). Afterwards the database must hold every
tick once (numbers 1..n and ``tick_count`` n), ``version`` must be 1 plus every change that
committed (ticks and status changes; a lost increment leaves another replica serving an old
state), and both replicas, refreshing by ``version``, must serve exactly the final status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from api.models import AuditEntry, Experiment, Tick
from tests.conftest import ADMIN, similar_items
from tests.process.conftest import ServerFactory, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NAME = "raced"
URL = f"/v1/experiments/{NAME}"
ROUNDS = 30
INTERVAL_S = 0.1  # the experiment's update interval: the schedules tick whenever they can
# Generous for a loaded 2-core machine: a replica refreshes every 0.25 s.
SETTLE_DEADLINE_S = 20.0


def _race(
    rounds: int, actions: list[Callable[[], httpx.Response]], *, pause_s: float = 0.0
) -> list[str]:
    """Each action in its own thread, ``rounds`` times, all lined up before every round
    (``pause_s`` after it, to let a scheduled tick fall due); returns what went wrong
    (answers other than 200, transport errors)."""
    barrier = threading.Barrier(len(actions), timeout=120)
    failures: list[str] = []

    def worker(action: Callable[[], httpx.Response]) -> None:
        for _ in range(rounds):
            try:
                barrier.wait()
                response = action()
            except (threading.BrokenBarrierError, httpx.HTTPError) as error:
                failures.append(repr(error))
                barrier.abort()
                return
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
            time.sleep(pause_s)

    threads = [threading.Thread(target=worker, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    return failures


def _settled_snapshot(replica: ServerProcess, version: int) -> dict[str, object]:
    """The replica's snapshot once it shows ``version`` (or the last one seen)."""
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    with replica.client() as client:
        while True:
            body: dict[str, object] = client.get(f"{URL}/snapshot").json()
            if body["version"] == version or time.monotonic() > deadline:
                return body
            time.sleep(0.05)


def test_admin_ticks_and_status_storms_on_two_replicas_lose_nothing(
    postgres_url: str, server_factory: ServerFactory
) -> None:
    replicas = server_factory.many(
        2,
        postgres_url,
        RANKTUNE_SCHEDULER_ENABLED="true",
        RANKTUNE_SCHEDULER_POLL_S="0.05",
    )
    clients = [replica.client(timeout=30.0) for replica in replicas]
    engine = create_engine(postgres_url, pool_size=2)
    try:
        created = clients[0].post(
            "/v1/experiments",
            json=similar_items(name=NAME, update_interval_s=INTERVAL_S),
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        first, second = clients

        admin_tick_on_both = [
            lambda: first.post(f"{URL}/tick", headers=ADMIN),
            lambda: second.post(f"{URL}/tick", headers=ADMIN),
        ]
        # Admin ticks on both replicas, with the schedules of both running between them.
        assert _race(ROUNDS, admin_tick_on_both, pause_s=INTERVAL_S) == []
        # The same, plus status changes on both replicas.
        storm = [
            lambda: first.post(f"{URL}/pause", headers=ADMIN),
            lambda: second.post(f"{URL}/resume", headers=ADMIN),
        ]
        assert _race(ROUNDS, admin_tick_on_both + storm) == []
        # Stop the schedule for good; a scheduled tick may still race this very request.
        stopped = first.post(f"{URL}/stop", headers=ADMIN)
        assert stopped.status_code == 200, stopped.text

        with Session(engine) as session:
            experiment = session.get(Experiment, experiment_id)
            assert experiment is not None
            numbers = list(
                session.scalars(
                    select(Tick.number)
                    .where(Tick.experiment_id == experiment_id)
                    .order_by(Tick.number)
                )
            )
            status_changes = session.scalar(
                select(func.count()).where(
                    AuditEntry.experiment_id == experiment_id,
                    AuditEntry.action.in_(
                        ["experiment.pause", "experiment.resume", "experiment.stop"]
                    ),
                )
            )
            admin_ticks = session.scalar(
                select(func.count()).where(
                    AuditEntry.experiment_id == experiment_id,
                    AuditEntry.action == "experiment.tick",
                )
            )
            version, tick_count, status = (
                experiment.version,
                experiment.tick_count,
                experiment.status,
            )
    finally:
        for client in clients:
            client.close()
        engine.dispose()

    assert admin_ticks == 4 * ROUNDS
    # The schedules ticked too (about 30 times in 30 idle gaps of 0.1 s on an idle machine;
    # a loaded one leaves them more time, not less).
    assert len(numbers) > admin_ticks
    assert numbers == list(range(1, len(numbers) + 1))
    assert tick_count == len(numbers)
    assert status == "stopped"
    assert version == 1 + len(numbers) + status_changes
    for replica in replicas:
        snapshot = _settled_snapshot(replica, version)
        assert (snapshot["status"], snapshot["version"]) == (status, version)
