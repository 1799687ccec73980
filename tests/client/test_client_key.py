"""``client_key=``: the SDK against a server with RANKTUNE_CLIENT_KEY_REQUIRED."""

from __future__ import annotations

import asyncio

import pytest

from ranktune_client import AsyncClient, Client, Unauthorized
from ranktune_client._shared import Settings
from tests.client.conftest import EXPERIMENT, Stored, create_experiment, stored_events
from tests.conftest import ADMIN
from tests.process.conftest import ServerFactory


def test_the_client_key_opens_every_client_route(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url, ranktune_client_key_required="true")
    create_experiment(server)
    with server.client() as admin:
        created = admin.post("/v1/tokens", json={"name": "web", "role": "client"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = created.json()["token"]

    with Client(server.base_url, timeout=5.0, client_key=key, experiments=[EXPERIMENT]) as client:
        answers = [client.get_config(EXPERIMENT, f"user-{unit}") for unit in range(20)]
        assert all(client.track(answer, "contact") for answer in answers)
        assert client.flush(timeout=15)
        stats = client.stats()
    assert not any(answer.fallback for answer in answers)
    assert (stats.events_accepted, stats.events_rejected) == (20, 0)
    assert stored_events(sqlite_url, "contact") == Stored(20, 20, 20)

    async def served_by_async_client() -> bool:
        async with AsyncClient(server.base_url, timeout=5.0, client_key=key) as client:
            return not (await client.get_config(EXPERIMENT, "async-user")).fallback

    assert asyncio.run(served_by_async_client())

    with (
        Client(server.base_url, timeout=5.0) as keyless,
        pytest.raises(Unauthorized, match="Authorization"),
    ):
        keyless.get_config(EXPERIMENT, "user-0")


def test_the_client_key_is_never_shown_and_excludes_an_authorization_header() -> None:
    settings = Settings(base_url="http://ranktune", client_key="rt_secret-key")
    assert "rt_secret-key" not in repr(settings)
    with pytest.raises(ValueError, match="client_key: headers already has Authorization"):
        Settings(base_url="x", client_key="rt_k", headers={"authorization": "Bearer other"})
    with pytest.raises(ValueError, match="client_key: expected"):
        Settings(base_url="x", client_key="has space")
