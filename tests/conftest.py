"""Shared fixtures: a migrated database on SQLite and on a real PostgreSQL, and API clients.

PostgreSQL tests use ``RANKTUNE_TEST_POSTGRES_URL`` (default: the local server with trust
auth). Without a reachable server they are skipped with the reason, except under CI
(``CI=true``), where a missing PostgreSQL is a failure: CI must prove both stores.
"""

from __future__ import annotations

import copy
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api import schemas
from api.app import create_app
from api.db import upgrade_database
from api.settings import Settings

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POSTGRES_SERVER_URL = os.environ.get(
    "RANKTUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_postgres_error: str | None = None
_postgres_checked = False


def postgres_unavailable() -> str | None:
    """None if PostgreSQL answers, else why not (checked once per session)."""
    global _postgres_checked, _postgres_error
    if not _postgres_checked:
        _postgres_checked = True
        try:
            engine = create_engine(POSTGRES_SERVER_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as error:  # any failure to connect means "not available"
            _postgres_error = f"PostgreSQL at {POSTGRES_SERVER_URL} unreachable: {error}"
    return _postgres_error


_TEMPLATE_NAME = f"ranktune_template_{uuid.uuid4().hex[:8]}"
_template_ready = False


def _require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)


def _postgres_url(database: str) -> str:
    return (
        make_url(POSTGRES_SERVER_URL).set(database=database).render_as_string(hide_password=False)
    )


def _postgres_template() -> str:
    """A database migrated once per test session; tests get copies of it (fast)."""
    global _template_ready
    if not _template_ready:
        admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{_TEMPLATE_NAME}"'))
        admin.dispose()
        upgrade_database(_postgres_url(_TEMPLATE_NAME))
        _template_ready = True
    return _TEMPLATE_NAME


@contextmanager
def fresh_postgres_database(*, migrated: bool = False) -> Iterator[str]:
    """Create a database for one test (empty, or migrated) and drop it afterwards."""
    _require_postgres()
    name = f"ranktune_test_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{_postgres_template()}"' if migrated else ""
    admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield _postgres_url(name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_template() -> Iterator[None]:
    yield
    if _template_ready:
        admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{_TEMPLATE_NAME}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ranktune.db"
    upgrade_database(f"sqlite:///{path}")
    return path


def migrated_sqlite_url(template: Path, directory: Path) -> str:
    """A copy of the migrated template database (WAL checkpointed by the migration's close)."""
    target = directory / "ranktune.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    return migrated_sqlite_url(_sqlite_template, tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database(migrated=True) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, _sqlite_template: Path, tmp_path: Path
) -> Iterator[str]:
    """Every test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield migrated_sqlite_url(_sqlite_template, tmp_path)
    else:
        with fresh_postgres_database(migrated=True) as url:
            yield url


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "scheduler_enabled": False,
        "snapshot_refresh_s": 0.1,
        "exposure_flush_s": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


ClientFactory = Callable[..., Any]


@pytest.fixture
def make_client(database_url: str) -> Iterator[ClientFactory]:
    """``with make_client(**settings) as client:`` a TestClient running the whole app."""
    opened: list[TestClient] = []

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        client = TestClient(create_app(settings_for(database_url, **overrides)))
        opened.append(client)
        with client:
            yield client

    yield factory


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


# The README's example experiment (api.schemas.SIMILAR_ITEMS, which the OpenAPI examples
# use too), a copy of its own so that no test can change the documented one.
SIMILAR_ITEMS: dict[str, Any] = {
    **copy.deepcopy(schemas.SIMILAR_ITEMS),
    # Most tests aggregate many events on one ticket with ``count``; the per-ticket limits
    # (default one event of each type per ticket) have tests of their own
    # (tests/api/test_event_bounds.py), which pass ``max_events_per_exposure=None``.
    "max_events_per_exposure": {"*": 1_000_000, "exposure": 1_000_000},
}


def similar_items(**overrides: Any) -> dict[str, Any]:
    body = {key: value for key, value in SIMILAR_ITEMS.items()}
    body.update(overrides)
    return body
