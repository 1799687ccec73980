"""GET /ready: 200 with every check passing, 503 naming each failing check's reason.

Each failure is produced for real: the database's recorded revision moved back, the
alembic_version table gone, the snapshots not refreshed for longer than the deadline, the
event writer stopped or stuck in a commit, the scheduler shut down. On SQLite and PostgreSQL
where the database is involved.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api import readiness
from api.runtime import Runtime

# The newest migration, read off the files (independently of api.db.migration_heads).
HEAD = max(
    path.name.split("_")[0]
    for path in (Path(__file__).parents[2] / "migrations" / "versions").glob("[0-9]*_*.py")
)
CHECKS = ["database", "migrations", "snapshots", "event_writer", "scheduler"]


@pytest.fixture(autouse=True)
def heads_read(client: TestClient) -> None:
    """The first /ready reads the migration files for the heads the code expects (a second
    on a loaded machine; not at start-up: api.readiness), which would age what the tests
    below age by hand: read them before the clock matters."""
    assert client.app.state.readiness.heads == [HEAD]  # type: ignore[attr-defined]


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/ready")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert [check["name"] for check in body["checks"]] == CHECKS
    return response.status_code, body


def failing(body: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["detail"] for check in body["checks"] if not check["ok"]}


def test_ready_when_everything_runs(client: TestClient) -> None:
    status, body = ready(client)
    assert (status, body["status"], failing(body)) == (200, "ready", {})
    details = {check["name"]: check["detail"] for check in body["checks"]}
    assert details["migrations"] == f"at head {HEAD}"
    assert (
        details["scheduler"] == "running: snapshot refresh only (RANKTUNE_SCHEDULER_ENABLED=false)"
    )


def test_a_database_at_an_older_revision_is_not_ready(client: TestClient) -> None:
    with runtime_of(client).transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0013'"))
    status, body = ready(client)
    assert (status, body["status"]) == (503, "not_ready")
    assert failing(body) == {
        "migrations": f"database at revision 0013, this version expects {HEAD} (run `ranktune db "
        "upgrade`, or deploy the version that matches the database)"
    }


def test_a_database_that_fails_the_query_is_not_ready(client: TestClient) -> None:
    with runtime_of(client).transaction() as session:
        session.execute(text("DROP TABLE alembic_version"))
    status, body = ready(client)
    assert status == 503
    reasons = failing(body)
    assert set(reasons) == {"database", "migrations"}
    assert reasons["database"].startswith("query failed: ProgrammingError") or reasons[
        "database"
    ].startswith("query failed: OperationalError")
    assert "alembic_version" in reasons["database"]
    assert reasons["migrations"] == "unknown: the database did not answer"


def test_a_database_that_does_not_answer_is_not_ready(client: TestClient, monkeypatch: Any) -> None:
    checker: readiness.Readiness = client.app.state.readiness  # type: ignore[attr-defined]
    runtime = runtime_of(client)
    release = threading.Event()
    original = runtime.read_transaction

    def hanging() -> Any:
        release.wait(10)
        return original()

    monkeypatch.setattr(readiness, "DATABASE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(runtime, "read_transaction", hanging)
    try:
        status, body = ready(client)
        assert status == 503
        assert failing(body)["database"] == "no answer within 0.2 s"
        # The hung query is not joined by another one: the next probe fails at once.
        status, body = ready(client)
        assert failing(body)["database"] == "an earlier query has not answered yet"
    finally:
        release.set()
    assert checker._probe is not None
    checker._probe.join(5)
    monkeypatch.setattr(runtime, "read_transaction", original)
    assert ready(client)[0] == 200


def test_stale_snapshots_are_not_ready(client: TestClient) -> None:
    serving = runtime_of(client).serving
    deadline = readiness.snapshot_deadline_s(runtime_of(client).settings.snapshot_refresh_s)
    assert deadline == 2.0  # the tests refresh every 0.1 s; the floor applies
    # The scheduler would refresh them again: stop it first, then age the last refresh.
    scheduler = runtime_of(client).scheduler
    assert scheduler is not None
    scheduler.pause()
    try:
        # A refresh already under way when the scheduler paused would set refreshed_at
        # again: hold the refresh lock (every refresh takes it) while the replica is asked.
        with serving._refresh_lock:
            serving.refreshed_at = time.monotonic() - 30
            status, body = ready(client)
        assert status == 503
        reason = failing(body)["snapshots"]
        assert reason.startswith("last refreshed 30.") and reason.endswith(
            "expected within 2 s (the database may be failing: see the log)"
        )
    finally:
        scheduler.resume()


def test_a_stopped_event_writer_is_not_ready(client: TestClient) -> None:
    writer = runtime_of(client).writer
    writer.stop()
    try:
        status, body = ready(client)
        assert (status, failing(body)) == (503, {"event_writer": "not running"})
    finally:
        writer.start()
    assert ready(client)[0] == 200


def test_a_stuck_event_writer_is_not_ready(client: TestClient) -> None:
    writer = runtime_of(client).writer
    writer.busy_since[-1] = time.monotonic() - 45  # a commit under way for 45 s
    try:
        status, body = ready(client)
        assert status == 503
        # 45 s, or some seconds more when a loaded machine is slow to answer.
        assert set(failing(body)) == {"event_writer"}
        stuck = re.fullmatch(
            r"one commit has been running for (\d+) s \(stuck: expected under 30 s\)",
            failing(body)["event_writer"],
        )
        assert stuck is not None, failing(body)
        assert 45 <= int(stuck.group(1)) < 75
    finally:
        del writer.busy_since[-1]


def test_a_stopped_scheduler_is_not_ready(client: TestClient) -> None:
    runtime = runtime_of(client)
    scheduler = runtime.scheduler
    assert scheduler is not None
    scheduler.shutdown(wait=True)
    runtime.scheduler = None
    status, body = ready(client)
    assert status == 503
    assert failing(body)["scheduler"] == "not running"
