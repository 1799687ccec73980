"""What a real ``ranktune serve`` prints: a quiet start-up, one JSON object per line with
``--log-format json``, the request id on the access log line, and no secret anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.process.conftest import RANKTUNE, STARTUP_DEADLINE_S, free_port

pytestmark = pytest.mark.slow

TICKET_SECRET = "process-ticket-secret-0123456789"
METRICS_TOKEN = "process-metrics-token-0123456789"


def serve(tmp_path: Path, *args: str, **env: str) -> str:
    """Start ``ranktune serve --upgrade`` on a new SQLite database (the migrations run, and
    the scheduler with them), make a few requests that carry secrets, stop it with SIGTERM;
    everything it printed."""
    port = free_port()
    environment = {
        **os.environ,
        "RANKTUNE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "RANKTUNE_ADMIN_TOKEN": ADMIN_TOKEN,
        "RANKTUNE_TICKET_SECRET": TICKET_SECRET,
        "RANKTUNE_METRICS_TOKEN": METRICS_TOKEN,
        "RANKTUNE_SCHEDULER_ENABLED": "true",
        **env,
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*RANKTUNE, "serve", "--upgrade", "--port", str(port), *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            _wait_ready(client, process)
            client.get("/ready", headers={"X-Request-ID": "trace-ready-1", **ADMIN})
            client.get("/v1/experiments", headers=ADMIN)
            # A careless client puts the tokens in the URL, which the access log prints.
            client.get(f"/v1/experiments?token={ADMIN_TOKEN}&m={METRICS_TOKEN}")
            client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return log_path.read_text()


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "ranktune serve exited"
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("ranktune serve did not start")


def assert_no_secret(output: str) -> None:
    for secret in (ADMIN_TOKEN, TICKET_SECRET, METRICS_TOKEN):
        assert secret not in output


def test_json_logs_of_a_real_server(tmp_path: Path) -> None:
    output = serve(tmp_path, "--log-format", "json", "--access-log")
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines, output
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    # APScheduler's warnings still show (a job run skipped on a loaded machine): they are
    # not start-up noise, as in the text format below.
    loggers = {
        line["logger"]
        for line in lines
        if not (line["logger"].startswith("apscheduler") and line["level"] == "WARNING")
    }
    assert loggers <= {"ranktune", "uvicorn.error", "uvicorn.access"}, loggers
    (ready_line,) = [line for line in lines if "GET /ready" in line["message"]]
    assert ready_line["logger"] == "uvicorn.access"
    assert ready_line["request_id"] == "trace-ready-1"
    access = [
        line
        for line in lines
        if line["logger"] == "uvicorn.access" and "GET /health" not in line["message"]
    ]
    assert len(access) == 4
    assert all(len(line["request_id"]) >= 1 for line in access)
    assert len({line["request_id"] for line in access}) == 4
    assert_no_secret(output)


def test_a_default_start_is_quiet_text(tmp_path: Path) -> None:
    output = serve(tmp_path)
    # The migrations ran and the scheduler ran its jobs: neither Alembic nor APScheduler
    # printed an INFO line. Their warnings would still show (a job run skipped because the
    # previous one is still running, on a loaded machine): they are not start-up noise.
    chatty = (" alembic", " apscheduler")
    assert not [
        line for line in output.splitlines() if " INFO " in line and any(c in line for c in chatty)
    ]
    lines = [
        line
        for line in output.splitlines()
        if not (" WARNING " in line and any(c in line for c in chatty))
    ]
    messages = [line.split(" ", 4)[-1] for line in lines]
    assert messages[0].startswith("database at sqlite:///") and messages[0].endswith(
        "is at the latest revision"
    )
    assert [message.split(" [")[0] for message in messages[1:]] == [
        "Started server process",
        "Waiting for application startup.",
        "Application startup complete.",
        f"Uvicorn running on {messages[4].split('running on ')[1]}",
        "Shutting down",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
        "Finished server process",
    ]
    assert all(line[:4].isdigit() for line in lines)  # every line: "<date> <time> LEVEL ..."
    assert_no_secret(output)
