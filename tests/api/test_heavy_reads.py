"""Admin reads run in read transactions (SQLite and PostgreSQL).

On SQLite a read transaction is a deferred ``BEGIN`` on a ``query_only`` connection: it
never waits for the write lock, so every admin GET and the snapshot refresher answer while
another connection holds it. A read session refuses to flush on both stores.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.db import ReadOnlySessionError
from api.models import AuditEntry, Experiment
from api.runtime import Runtime
from tests.api.helpers import ADMIN, create, tick
from tests.conftest import settings_for

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"


def _app(database_url: str) -> FastAPI:
    return create_app(settings_for(database_url))


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


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
