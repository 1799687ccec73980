"""The open-file limit ``ranktune serve`` raises so that max_connections can be honoured (the
deadlines, limits and disconnects themselves are tested on real servers in
tests/process/test_server_limits.py), and the heap it freezes once started."""

from __future__ import annotations

import gc
import logging
import resource

import pytest
from fastapi.testclient import TestClient

from api import server
from api.app import create_app
from tests.conftest import settings_for


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


def test_the_started_app_is_frozen_out_of_the_collector(sqlite_url: str) -> None:
    """tune_gc_after_startup: once the lifespan has started the runtime, the objects alive
    (the runtime among them) are frozen, the young generation's threshold is raised, and
    the app serves as before."""
    app = create_app(settings_for(sqlite_url))
    server.tune_gc_after_startup(app)
    frozen_before = gc.get_freeze_count()
    thresholds = gc.get_threshold()
    try:
        with TestClient(app) as client:
            runtime = app.state.runtime
            assert gc.get_freeze_count() > frozen_before
            assert not any(obj is runtime for obj in gc.get_objects())  # frozen: untracked
            assert gc.get_threshold() == (server.YOUNG_GC_THRESHOLD, *thresholds[1:])
            assert client.get("/health").status_code == 200
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
