"""``ranktune tokens``: create, list and revoke on the database of RANKTUNE_DATABASE_URL."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ranktune.cli import main
from tests.conftest import ADMIN, settings_for


def test_create_list_and_revoke_from_the_command_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKTUNE_DATABASE_URL", database_url)
    assert main(["tokens", "create", "--role", "viewer", "--name", "grafana"]) == 0
    created = capsys.readouterr()
    token = created.out.strip()
    assert token.startswith("rt_") and "shown only now" in created.err

    assert main(["tokens", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["role"], row["prefix"]) == ("grafana", "viewer", token[:9])
    assert main(["tokens", "list"]) == 0
    table = capsys.readouterr().out
    assert "grafana" in table and token[:9] in table and token not in table

    with TestClient(create_app(settings_for(database_url))) as client:
        assert (
            client.get("/v1/experiments", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        audit = client.get("/v1/audit", headers=ADMIN).json()
    assert audit[0]["action"] == "token.create"
    assert audit[0]["token"] == "ranktune tokens (command line)"

    assert main(["tokens", "revoke", str(row["id"])]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tokens", "revoke", "999"]) == 1
    assert "token 999 does not exist" in capsys.readouterr().err
    with TestClient(create_app(settings_for(database_url))) as client:
        assert (
            client.get("/v1/experiments", headers={"Authorization": f"Bearer {token}"}).status_code
            == 403
        )


def test_a_bad_role_or_name_is_a_usage_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKTUNE_DATABASE_URL", sqlite_url)
    with pytest.raises(SystemExit) as exit_info:
        main(["tokens", "create", "--role", "owner", "--name", "x"])
    assert exit_info.value.code == 2
    assert main(["tokens", "create", "--role", "viewer", "--name", "<b>"]) == 2
    assert "--name" in capsys.readouterr().err
