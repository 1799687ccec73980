"""Fixtures of the API tests that need only one store.

Most API tests use ``client`` (tests/conftest.py), which runs them on SQLite and on
PostgreSQL. Tests whose subject never touches the database (hashing, in-memory serving,
the convergence run) use ``sqlite_client`` to keep the suite fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import settings_for


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(sqlite_url))) as client:
        yield client
