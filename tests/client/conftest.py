"""The client SDK against real ``ranktune serve`` processes (tests/process/conftest.py).

``live`` is a server on a migrated database (SQLite; the tests that count rows after
crashes take ``database_url`` and run on PostgreSQL too) with the similar-items experiment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN, similar_items
from tests.process.conftest import ServerFactory, ServerProcess, free_port, server_factory

__all__ = ["server_factory"]  # the fixture, for the tests of this folder

EXPERIMENT = "similar-items"


def create_experiment(server: ServerProcess, **overrides: Any) -> dict[str, Any]:
    with server.client() as client:
        created = client.post("/v1/experiments", json=similar_items(**overrides), headers=ADMIN)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


@dataclass(frozen=True)
class Stored:
    rows: int
    distinct_ids: int
    total_count: int


def stored_events(database_url: str, event_type: str, experiment: str = EXPERIMENT) -> Stored:
    """The client-reported event rows (with an event id: server-counted exposures have none)
    of one type and experiment, as the database has them (through a connection of ours)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows, distinct, total = connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT event_id), coalesce(sum(count), 0) "
                    "FROM events WHERE type = :type AND event_id IS NOT NULL AND experiment_id "
                    "= (SELECT id FROM experiments WHERE name = :experiment)"
                ),
                {"type": event_type, "experiment": experiment},
            ).one()
    finally:
        engine.dispose()
    return Stored(int(rows), int(distinct), int(total))


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` (a background thread's doing) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ranktune-client")]


@pytest.fixture
def live(sqlite_url: str, server_factory: ServerFactory) -> Iterator[ServerProcess]:
    server = server_factory(sqlite_url)
    create_experiment(server)
    yield server


def dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"
