"""Log lines: JSON and text formats, the request id of the request being handled (on the event
loop and in the worker threads of synchronous routes), and no secrets in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.logs import make_handler, redact, request_id
from tests.conftest import ADMIN_TOKEN, settings_for

TICKET_SECRET = "ticket-secret-abcdefghijklmnop"
SECRETS = [ADMIN_TOKEN, TICKET_SECRET]


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing to two buffers: one JSON handler, one text handler."""
    logger = logging.getLogger("ranktune.test_logs")
    json_out, text_out = io.StringIO(), io.StringIO()
    handlers = [
        make_handler("json", secrets=SECRETS, stream=json_out),
        make_handler("text", secrets=SECRETS, stream=text_out),
    ]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, json_out, text_out
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_have_time_level_logger_message_and_extras(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, json_out, text_out = captured
    token = request_id.set("req-42")
    try:
        logger.warning("tick of %s failed", "checkout", extra={"experiment": "checkout"})
    finally:
        request_id.reset(token)
    logger.info("outside any request")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("with a traceback")

    first, second, third = json_lines(json_out)
    assert set(first) == {"time", "level", "logger", "message", "request_id", "experiment"}
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert (first["level"], first["logger"], first["message"]) == (
        "WARNING",
        "ranktune.test_logs",
        "tick of checkout failed",
    )
    assert (first["request_id"], first["experiment"]) == ("req-42", "checkout")
    assert "request_id" not in second and second["message"] == "outside any request"
    assert third["exception"].startswith("Traceback") and "ValueError: boom" in third["exception"]

    text_lines = text_out.getvalue().splitlines()
    assert text_lines[0].endswith(
        "WARNING ranktune.test_logs tick of checkout failed request_id=req-42"
    )
    assert text_lines[1].endswith("INFO ranktune.test_logs outside any request")


@pytest.mark.parametrize(
    ("message", "hidden"),
    [
        (f"header Authorization: Bearer {'z' * 30}", "z" * 30),
        ("sent {'authorization': 'Bearer sk-live-1234567890'}", "sk-live-1234567890"),
        ("token bearer abc.def.ghi-123 refused", "abc.def.ghi-123"),
        ("connecting to postgresql+psycopg://ranktune:hunter2-pass@db:5432/rt", "hunter2-pass"),
        (f"the admin token is {ADMIN_TOKEN}", ADMIN_TOKEN),
        (f"key={TICKET_SECRET}!", TICKET_SECRET),
    ],
)
def test_secrets_never_reach_a_line(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO], message: str, hidden: str
) -> None:
    logger, json_out, text_out = captured
    logger.info(message)
    logger.info("in args: %s", message, extra={"detail": message})
    try:
        raise RuntimeError(message)
    except RuntimeError:
        logger.exception("failed")
    for output in (json_out.getvalue(), text_out.getvalue()):
        assert hidden not in output
        assert "[redacted]" in output


def test_redact_keeps_what_is_not_secret() -> None:
    assert redact("GET /v1/experiments/x/assignment?unit=u1 200") == (
        "GET /v1/experiments/x/assignment?unit=u1 200"
    )
    assert redact("sqlite:////var/lib/ranktune.db") == "sqlite:////var/lib/ranktune.db"
    assert redact("postgresql://user:pw@host/db") == "postgresql://user:[redacted]@host/db"


def test_lines_logged_while_handling_a_request_carry_its_id(sqlite_url: str) -> None:
    app = create_app(settings_for(sqlite_url))
    logger = logging.getLogger("ranktune.test_logs.requests")
    out = io.StringIO()
    handler = make_handler("json", stream=out)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def on_the_loop() -> dict[str, str]:
        logger.info("async route")
        return {}

    def in_a_thread() -> dict[str, str]:
        logger.info("sync route")
        return {}

    app.add_api_route("/test-log-async", on_the_loop)
    app.add_api_route("/test-log-sync", in_a_thread)
    try:
        with TestClient(app) as client:
            client.get("/test-log-async", headers={"X-Request-ID": "async-1"})
            answer = client.get("/test-log-sync")
            logger.info("after the requests")
    finally:
        logger.removeHandler(handler)
    lines = json_lines(out)
    assert [(line["message"], line.get("request_id")) for line in lines] == [
        ("async route", "async-1"),
        ("sync route", answer.headers["X-Request-ID"]),
        ("after the requests", None),
    ]
