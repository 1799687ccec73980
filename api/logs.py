"""How ranktune logs: text (the default) or JSON lines, request ids, no secrets.

- :func:`configure_logging` installs one handler on the root logger, writing to stderr in
  the chosen format; uvicorn's loggers propagate to it (``api.server`` passes uvicorn no
  logging configuration of its own), so every line of the process has one format.
- JSON: one object per line with ``time`` (UTC, ISO 8601), ``level``, ``logger``,
  ``message``, then the request id and any ``extra`` fields the call passed (such as
  ``experiment``), and ``exception`` with the traceback.
- The request id of the request being handled (``api.observability`` sets
  :data:`request_id`) is attached to every line logged while handling it, on the event loop
  and in the worker threads FastAPI runs synchronous routes in (they copy the context).
- Secrets never reach the output: bearer tokens, ``Authorization`` headers, passwords in
  URLs, and the configured secret values (admin token, ticket secret, metrics token) are
  replaced by ``[redacted]`` in every line, whoever logged it.
- Start-up is quiet: Alembic's and APScheduler's INFO lines (a dozen per migration run,
  one per job run) are dropped; their warnings are kept.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

__all__ = ["LogFormat", "configure_logging", "make_handler", "redact", "request_id"]

LogFormat = Literal["text", "json"]

# The id of the request being handled, if any (set by api.observability.RequestObservation).
request_id: ContextVar[str | None] = ContextVar("ranktune_request_id", default=None)

REDACTED = "[redacted]"
# Chatty at INFO, useful at WARNING: APScheduler logs every run of every job, Alembic a dozen
# set-up lines per migration run.
QUIET_LOGGERS = ("apscheduler", "alembic")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
TRACE = 5

_PATTERNS = (
    # An Authorization header or the word Bearer followed by its credentials.
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+(\s+[^\s\"',}]+)?"),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"), rf"\g<1>{REDACTED}"),
    # user:password@ in a URL (a database URL with its password).
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@"), rf"\g<1>{REDACTED}@"),
)
# The attributes every LogRecord has; anything else was passed as ``extra``.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
    "taskName",
}


class _Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without bearer tokens, Authorization values, URL passwords and ``secrets``."""
    return _Redactor(secrets)(text)


class _RequestIdFilter(logging.Filter):
    """Attaches the current request id to the record (``record.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """The classic line, `` request_id=...`` appended while handling a request, redacted."""

    def __init__(self, redactor: _Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid:
            first, newline, rest = line.partition("\n")
            line = f"{first} request_id={rid}{newline}{rest}"
        return self.redactor(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def __init__(self, redactor: _Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.redactor(json.dumps(entry, default=str, ensure_ascii=False))


def make_handler(
    log_format: LogFormat, *, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in ``log_format``, with the request id
    attached and ``secrets`` redacted."""
    redactor = _Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor)
    )
    handler.addFilter(_RequestIdFilter())
    return handler


def configure_logging(
    log_format: LogFormat = "text", *, level: str = "INFO", secrets: Iterable[str] = ()
) -> logging.Handler:
    """Log to stderr in ``log_format`` at ``level``, redacting ``secrets``; returns the
    handler (it replaces any handler the root logger had)."""
    handler = make_handler(log_format, secrets=secrets)
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    # uvicorn's "trace" is level 5, below DEBUG.
    logging.addLevelName(TRACE, "TRACE")
    root.setLevel(TRACE if level.lower() == "trace" else level.upper())
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # uvicorn's loggers write through the root handler (api.server gives uvicorn no
    # logging configuration of its own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    return handler
