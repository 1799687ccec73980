"""The open-file limit ``ranktune serve`` raises so that max_connections can be honoured (the
deadlines, limits and disconnects themselves are tested on real servers in
tests/process/test_server_limits.py)."""

from __future__ import annotations

import logging
import resource

import pytest

from api import server


class FakeLimits:
    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)
        self.set_to: tuple[int, int] | None = None

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def set(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.set_to = limits


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> FakeLimits:
    fake = FakeLimits(1024, 1024)
    monkeypatch.setattr(resource, "getrlimit", fake.get)
    monkeypatch.setattr(resource, "setrlimit", fake.set)
    return fake


def test_the_soft_limit_is_raised_to_what_the_connections_need(limits: FakeLimits) -> None:
    limits.limits = (1024, 65536)
    server._raise_file_limit(1128)
    assert limits.set_to == (1128, 65536)


def test_a_sufficient_limit_is_left_alone(limits: FakeLimits) -> None:
    limits.limits = (4096, 65536)
    server._raise_file_limit(1128)
    assert limits.set_to is None


def test_a_hard_limit_too_low_is_used_whole_and_reported(
    limits: FakeLimits, caplog: pytest.LogCaptureFixture
) -> None:
    limits.limits = (256, 1024)
    with caplog.at_level(logging.WARNING, logger="ranktune.server"):
        server._raise_file_limit(1128)
    assert limits.set_to == (1024, 1024)
    assert "RANKTUNE_MAX_CONNECTIONS needs 1128" in caplog.text
