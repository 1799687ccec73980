"""Start-up refuses weak admin tokens: an empty one locked every admin out, a short one can
be guessed. Unset still means "generate one and print it" (``ranktune serve``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import MIN_ADMIN_TOKEN_LENGTH, Settings
from ranktune.cli import main
from tests.conftest import ADMIN_TOKEN

WEAK_TOKENS = {
    "empty": "",
    "one-character": "Z",
    "fifteen-characters": "dev-admin-token",
    "with-a-space": "correct horse battery staple",
    "non-ascii": "clé-d-administration-ü",
}


@pytest.mark.parametrize("token", WEAK_TOKENS.values(), ids=WEAK_TOKENS.keys())
def test_weak_admin_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(admin_token=token)
    (error,) = refused.value.errors()
    assert error["loc"] == ("admin_token",)
    if token:
        assert token not in error["msg"], "the message must not echo the token"


def test_the_empty_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKTUNE_ADMIN_TOKEN", "")
    with pytest.raises(ValidationError, match="empty"):
        Settings()


def test_strong_or_unset_tokens_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(ADMIN_TOKEN) == MIN_ADMIN_TOKEN_LENGTH == 16
    assert Settings(admin_token=ADMIN_TOKEN).admin_token is not None
    monkeypatch.delenv("RANKTUNE_ADMIN_TOKEN", raising=False)
    assert Settings().admin_token is None


@pytest.mark.parametrize("token", ["", "short-token"], ids=["empty", "short"])
def test_serve_prints_the_reason_and_exits_2(
    token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANKTUNE_ADMIN_TOKEN", token)
    monkeypatch.setenv("RANKTUNE_DATABASE_URL", "sqlite://")
    assert main(["serve", "--port", "1"]) == 2
    message = capsys.readouterr().err
    assert "RANKTUNE_ADMIN_TOKEN" in message
    assert f"at least {MIN_ADMIN_TOKEN_LENGTH} characters" in message
    assert "Traceback" not in message
    if token:
        assert token not in message
