"""Migration 0020 (sticky assignment), both ways: the column appears false for experiments
from before it, goes on the way down (a sticky experiment then draws per request) and comes
back false; the experiments keep serving and ticking throughout."""

from __future__ import annotations

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from api.db import migrations_config
from tests.api.helpers import assign, create, tick
from tests.api.helpers import inspect as inspect_experiment
from tests.conftest import settings_for


def test_sticky_migration_both_ways(database_url: str) -> None:
    config = migrations_config(database_url)
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client)
        create(client, name="sticky", assignment={"sticky": True})
    engine = create_engine(database_url)
    command.downgrade(config, "0019")
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("experiments")}
    assert "sticky" not in columns
    command.upgrade(config, "head")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT sticky FROM experiments ORDER BY id")).all()
    engine.dispose()
    # The downgrade forgot that the second experiment was sticky: both draw per request.
    assert [bool(row[0]) for row in stored] == [False, False]
    with TestClient(create_app(settings_for(database_url))) as client:
        for name in ("similar-items", "sticky"):
            assert inspect_experiment(client, name)["assignment"] == {"sticky": False}
            answers = [assign(client, f"u{i}", name) for i in range(40)]
            assert {answer["group"] for answer in answers} == {"reference", "target"}
            assert tick(client, name)["applied"] in (True, False)
        created = create(client, name="sticky-again", assignment={"sticky": True})
        assert created["assignment"] == {"sticky": True}
