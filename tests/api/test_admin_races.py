"""Admin changes racing each other and the ticks, on SQLite and PostgreSQL: nothing is lost.

Every admin change and every tick of an experiment locks its row and reads it fresh under
that lock, and counters (``version``, ``tick_count``) move in the database, so whatever the
interleaving: tick rows are numbered 1..n and ``tick_count`` is n; ``version`` is 1 (the
creation) plus the number of changes that committed; a status history is a chain (each
change starts from the status the previous one left); a second replica, refreshing by
``version``, serves exactly the final state; two genetic steps never collide (generations
1..g, no 500).

The races are real: each test runs its actions in threads, lined up by a barrier before
every round so that they hit the database together, for many rounds. SQLite serialises
writers with ``BEGIN IMMEDIATE``; the PostgreSQL runs are the ones that could lose updates.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import pairwise
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

import api.routes.admin
from api import repositories as repo
from api.app import create_app
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.ticks import apply_tick
from tests.api.helpers import assert_error_shape, create
from tests.conftest import ADMIN, settings_for

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"
ROUNDS = 25
# Generous: a round is a few admin requests; on a loaded 2-core machine one can take seconds,
# and a barrier that times out only turns a hang into a failure.
BARRIER_TIMEOUT_S = 120.0

Replica = TestClient
ReplicaFactory = Callable[[], AbstractContextManager[TestClient]]


# -- helpers -------------------------------------------------------------------------------
@pytest.fixture
def replica(database_url: str) -> ReplicaFactory:
    """``with replica() as client:`` one app (one Runtime) on the test's database; a 500
    comes back as a response instead of being raised in the test."""

    @contextmanager
    def factory() -> Iterator[TestClient]:
        app = create_app(settings_for(database_url))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return factory


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def race(rounds: int, actions: list[Callable[[int], Any]]) -> list[list[Any]]:
    """Run each action in its own thread ``rounds`` times (called with the round number);
    before every round the threads wait for each other, so each round's calls overlap.
    Returns each action's results in round order; re-raises the first error of a thread."""
    barrier = threading.Barrier(len(actions), timeout=BARRIER_TIMEOUT_S)
    results: list[list[Any]] = [[] for _ in actions]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for number in range(rounds):
                barrier.wait()
                results[index].append(actions[index](number))
        except BaseException as error:  # surfaced below, after the others are released
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return results


def post(client: TestClient, path: str, **kwargs: Any) -> httpx.Response:
    return client.post(URL + path, headers=ADMIN, **kwargs)


def stored_counters(client: TestClient, experiment_id: int) -> tuple[int, int, str]:
    """(version, tick_count, status) as the database holds them."""
    with runtime_of(client).transaction() as session:
        experiment = repo.get_experiment(session, experiment_id)
        assert experiment is not None
        return experiment.version, experiment.tick_count, experiment.status


def audit(client: TestClient) -> list[dict[str, Any]]:
    """The experiment's audit entries, oldest first."""
    response = client.get("/v1/audit", params={"experiment": NAME, "limit": 1000}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


def tick_numbers(client: TestClient) -> list[int]:
    response = client.get(f"{URL}/ticks", params={"limit": 1000}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return [tick["number"] for tick in response.json()]


def assert_all_ok(results: list[list[httpx.Response]], allowed: tuple[int, ...] = (200,)) -> None:
    for responses in results:
        for response in responses:
            assert response.status_code in allowed, response.text


def config_for(number: int) -> dict[str, Any]:
    """A configuration of the similar-items space for each number, all distinct and none
    equal to the example's arms or reference."""
    return {
        "text_match": round(0.01 + 0.001 * number, 6),
        "distance": 1.9,
        "price_diff": 0.1,
        "region": 3,
    }


# -- ticks ---------------------------------------------------------------------------------
def test_admin_ticks_racing_scheduler_ticks_count_every_tick(replica: ReplicaFactory) -> None:
    with replica() as client:
        experiment_id = create(client)["id"]
        runtime = runtime_of(client)

        def admin_tick(_round: int) -> int:
            response = post(client, "/tick")
            assert response.status_code == 200, response.text
            return int(response.json()["number"])

        def scheduler_tick(_round: int) -> int:
            # What the scheduler of a replica does (run_due_ticks), whatever the schedule.
            with runtime.transaction() as session:
                tick = apply_tick(
                    session,
                    experiment_id,
                    now=now_utc(),
                    rng=runtime.rng,
                    only_if_due=False,
                    replica="scheduler",
                )
                assert tick is not None
                return tick.number

        results = race(ROUNDS, [admin_tick, admin_tick, scheduler_tick])
        total = 3 * ROUNDS
        assert sorted(n for numbers in results for n in numbers) == list(range(1, total + 1))
        assert tick_numbers(client) == list(range(1, total + 1))
        version, tick_count, _ = stored_counters(client, experiment_id)
        assert tick_count == total
        assert version == 1 + total
        assert client.get(URL, headers=ADMIN).json()["tick_count"] == total


# -- status changes ------------------------------------------------------------------------
def test_pause_resume_storm_keeps_every_version_and_both_replicas_serve_the_final_status(
    replica: ReplicaFactory,
) -> None:
    with replica() as first, replica() as second:
        experiment_id = create(first)["id"]
        runtime_of(second).refresh_snapshots()
        assert second.get(f"{URL}/snapshot").json()["version"] == 1

        results = race(
            ROUNDS,
            [
                lambda _: post(first, "/pause"),
                lambda _: post(second, "/resume"),
                lambda _: post(first, "/tick"),
            ],
        )
        assert_all_ok(results)
        entries = audit(first)
        changes = [e for e in entries if e["action"] in ("experiment.pause", "experiment.resume")]
        ticks = [e for e in entries if e["action"] == "experiment.tick"]
        assert len(ticks) == ROUNDS
        assert changes, "the storm changed nothing"
        # A chain: every change starts where the previous one left the experiment.
        statuses = ["running"] + [e["details"]["to"] for e in changes]
        assert [e["details"]["from"] for e in changes] == statuses[:-1]
        assert all(a != b for a, b in pairwise(statuses))
        version, tick_count, status = stored_counters(first, experiment_id)
        assert status == statuses[-1]
        assert tick_count == ROUNDS
        assert version == 1 + len(changes) + len(ticks)

        for client in (first, second):
            runtime_of(client).refresh_snapshots()  # the replica's periodic job, by version
            snapshot = client.get(f"{URL}/snapshot").json()
            assert (snapshot["status"], snapshot["version"]) == (status, version)
            answer = client.get(f"{URL}/assignment", params={"unit": "someone"}).json()
            assert answer["active"] is (status == "running")


# -- arms ----------------------------------------------------------------------------------
def test_arm_adds_and_retires_racing_leave_the_exact_arm_set_and_version(
    replica: ReplicaFactory,
) -> None:
    with replica() as first, replica() as second:
        experiment = create(first)
        # Arms for the retirers to retire, one per round (added before the race).
        doomed = []
        for number in range(ROUNDS):
            response = post(first, "/arms", json={"config": config_for(1000 + number)})
            assert response.status_code == 201, response.text
            doomed.append(response.json()["id"])
        version_before, _, _ = stored_counters(first, experiment["id"])
        assert version_before == 1 + ROUNDS

        def add(client: TestClient) -> Callable[[int], httpx.Response]:
            # Both replicas add the same configuration in the same round: one of them wins.
            return lambda number: post(client, "/arms", json={"config": config_for(number)})

        def retire(number: int) -> httpx.Response:
            return first.delete(f"{URL}/arms/{doomed[number]}", headers=ADMIN)

        adds_first, adds_second, retires = race(ROUNDS, [add(first), add(second), retire])
        assert_all_ok([retires])
        added: list[int] = []
        for one, other in zip(adds_first, adds_second, strict=True):
            assert sorted([one.status_code, other.status_code]) == [201, 409], (one, other)
            loser = other if one.status_code == 201 else one
            assert_error_shape(loser.json(), "Conflict", "config")
            added.append((one if one.status_code == 201 else other).json()["id"])

        arms = first.get(URL, headers=ADMIN).json()["arms"]
        active = {arm["id"] for arm in arms if arm["status"] == "active"}
        founders = {arm["id"] for arm in experiment["arms"]}
        assert active == founders | set(added)
        assert {arm["id"] for arm in arms if arm["status"] == "retired"} == set(doomed)
        version, _, _ = stored_counters(first, experiment["id"])
        assert version == version_before + 2 * ROUNDS  # one add and one retirement a round
        counted = Counter(e["action"] for e in audit(first))
        assert (counted["arm.add"], counted["arm.retire"]) == (2 * ROUNDS, ROUNDS)

        runtime_of(second).refresh_snapshots()
        snapshot = second.get(f"{URL}/snapshot").json()
        assert snapshot["version"] == version
        assert {arm["arm_id"] for arm in snapshot["arms"]} == active - {
            experiment["reference_arm_id"]
        }


# -- genetic steps -------------------------------------------------------------------------
EAGER = {"min_exposures": 0, "drop_count": 1, "min_arms": 2, "max_arms": 5}


def test_concurrent_genetic_steps_apply_consecutive_generations_without_a_500(
    replica: ReplicaFactory,
) -> None:
    with replica() as first, replica() as second:
        experiment_id = create(first, evolution={**EAGER, "evolve_interval_s": 3600})["id"]
        results = race(
            ROUNDS // 2,
            [lambda _: post(first, "/evolve"), lambda _: post(second, "/evolve")],
        )
        assert_all_ok(results)
        applied = [r.json()["generation"] for responses in results for r in responses]
        generations = first.get(f"{URL}/generations", params={"limit": 1000}, headers=ADMIN)
        numbers = [g["number"] for g in generations.json()]
        assert numbers == list(range(1, len(numbers) + 1))
        assert sorted(applied) == numbers
        assert first.get(URL, headers=ADMIN).json()["generation"] == len(numbers)
        version, _, _ = stored_counters(first, experiment_id)
        assert version == 1 + len(numbers)


# -- the error shape of a concurrent change ------------------------------------------------
def test_a_concurrent_change_the_database_refuses_is_a_409_not_a_500(
    replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def collides(*_args: Any, **_kwargs: Any) -> Any:
        # What the database raises when another transaction committed the same key first.
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key value"))

    with replica() as client:
        create(client)
        monkeypatch.setattr(api.routes.admin.service, "change_status", collides)
        response = post(client, "/pause")
        assert response.status_code == 409, response.text
        assert_error_shape(response.json(), "Conflict", "name")
