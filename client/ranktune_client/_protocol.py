"""ranktune's client API as the SDK speaks it: the paths, the limits the server enforces
(checked here first, so that bad input raises in the caller instead of failing later in
the background), and what each answer means. No I/O."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard
from urllib.parse import quote

from ranktune_client._errors import invalid, refusal
from ranktune_client._models import (
    SERVER_ERROR,
    UNKNOWN_EXPERIMENT,
    Assignment,
    Config,
)

# The server's limits (api/schemas.py): checked before sending.
MAX_NAME_LENGTH = 64
MAX_UNIT_LENGTH = 256
MAX_SEGMENT_LENGTH = 64  # the server's bound on ?segment= (api.schemas.MAX_SEGMENT_LENGTH)
MAX_EVENT_COUNT = 1000
# RANKTUNE_MAX_BATCH_EVENTS' default; a server with a lower limit answers 413, and the
# worker halves its batches until they fit.
MAX_BATCH_EVENTS = 1000
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EVENT_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
EXPOSURE = "exposure"
CLIENT_EXPOSURES = "client"
# Retry-After beyond this is read as this: a misconfigured proxy must not park the worker.
MAX_RETRY_AFTER_S = 300.0


def check_experiment(experiment: object) -> str:
    if _text(experiment, MAX_NAME_LENGTH):
        return experiment
    raise invalid("experiment", f"a name of 1 to {MAX_NAME_LENGTH} characters")


def check_unit(unit: object) -> str:
    if _text(unit, MAX_UNIT_LENGTH):
        return unit
    raise invalid("unit", f"a string of 1 to {MAX_UNIT_LENGTH} characters (valid Unicode)")


def check_segment(segment: object) -> str | None:
    """None (the default segment), or the server's bound on a segment: 1 to 64 characters."""
    if segment is None or _text(segment, MAX_SEGMENT_LENGTH):
        return segment
    raise invalid("segment", f"None or a string of 1 to {MAX_SEGMENT_LENGTH} characters")


def assignment_params(unit: str, segment: str | None) -> dict[str, str]:
    """The assignment's query: the unit, and the segment when there is one."""
    return {"unit": unit} if segment is None else {"unit": unit, "segment": segment}


def _text(value: object, longest: int) -> TypeGuard[str]:
    """A str of 1 to ``longest`` characters that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_event(event_type: object, count: object, event_id: object) -> None:
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise invalid("event_type", "a name matching ^[a-z][a-z0-9_]{0,63}$ such as 'contact'")
    if event_type == EXPOSURE:
        raise invalid(
            "event_type",
            "another name than 'exposure': track_exposure() reports exposures, and only to "
            "experiments that count them from clients",
        )
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_EVENT_COUNT:
        raise invalid("count", f"an integer from 1 to {MAX_EVENT_COUNT}")
    if event_id is not None and (
        not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id)
    ):
        raise invalid("event_id", "None, or 1 to 128 characters of A-Za-z0-9._:/+=-")


def assignment_path(experiment: str) -> str:
    return f"/v1/experiments/{quote(experiment, safe='')}/assignment"


def snapshot_path(experiment: str) -> str:
    return f"/v1/experiments/{quote(experiment, safe='')}/snapshot"


EVENTS_PATH = "/v1/events"
JSON_HEADERS = {"Content-Type": "application/json"}


def new_event_id() -> str:
    """Unique per event, made once when the event is tracked, so every retry of it carries
    the same id and the server stores it once."""
    return uuid.uuid4().hex


def exposure_event_id(ticket: str) -> str:
    """One exposure per ticket (one configuration served): tracking the same assignment's
    exposure twice sends the same id, which the server stores once."""
    return "exposure:" + hashlib.blake2b(ticket.encode(), digest_size=16).hexdigest()


# -- answers ---------------------------------------------------------------------------
def assignment_or_reason(experiment: str, unit: str, status: int, body: bytes) -> Assignment | str:
    """What an answer of the assignment endpoint means: an Assignment, or why to fall back
    (404: no such experiment; 5xx, 408, 429 or a body that is not an assignment: a server
    problem). Any other 4xx is an explicit refusal and raises its typed exception."""
    if status == 200:
        return _parse_assignment(experiment, unit, body) or SERVER_ERROR
    if status == 404:
        return UNKNOWN_EXPERIMENT
    if status in (408, 429) or status >= 500 or status < 400:
        return SERVER_ERROR
    raise refusal(status, body)


def _parse_assignment(experiment: str, unit: str, body: bytes) -> Assignment | None:
    try:
        answer = json.loads(body)
        config = _config(answer["config"])
        group = answer["group"]
        arm_id = answer["arm_id"]
        ticket = answer["ticket"]
        active = answer.get("active", True)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if (
        config is None
        or group not in ("target", "reference")
        or not isinstance(arm_id, int)
        or not isinstance(ticket, str)
        or not isinstance(active, bool)
    ):
        return None
    return Assignment(experiment, unit, config, group, arm_id, ticket, active)


def _config(value: Any) -> Config | None:
    if not isinstance(value, dict):
        return None
    if not all(
        isinstance(key, str) and isinstance(number, int | float) and not isinstance(number, bool)
        for key, number in value.items()
    ):
        return None
    return value


@dataclass(frozen=True, slots=True)
class Reference:
    """What the SDK caches per experiment from the snapshot endpoint."""

    config: Config
    arm_id: int
    exposure_source: str  # "server" or "client"


def parse_reference(body: bytes) -> Reference | None:
    """The snapshot's reference configuration and exposure source, or None if the answer
    does not hold them (a server older than the SDK, or not ranktune)."""
    try:
        answer = json.loads(body)
        config = _config(answer["reference"]["config"])
        arm_id = answer["reference"]["arm_id"]
        source = answer["exposure_source"]
    except (ValueError, KeyError, TypeError):
        return None
    if config is None or not isinstance(arm_id, int) or source not in ("server", "client"):
        return None
    return Reference(config, arm_id, source)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped; None if absent or
    unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


# -- events ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One event waiting to be sent. ``exposure`` events are sent only if their experiment
    counts client exposures, which the worker checks against the cached snapshot."""

    ticket: str
    type: str
    count: int
    event_id: str
    experiment: str
    exposure: bool = False


def events_body(events: list[QueuedEvent]) -> bytes:
    return json.dumps(
        {
            "events": [
                {"ticket": e.ticket, "type": e.type, "count": e.count, "event_id": e.event_id}
                for e in events
            ]
        },
        separators=(",", ":"),
    ).encode()


_EVENT_FIELD = re.compile(r"events\[(\d+)\]")


def event_index(field: str | None, size: int) -> int | None:
    """The index of the event a 4xx names (``events[3].ticket`` -> 3), if it names one of
    the ``size`` events sent."""
    match = _EVENT_FIELD.match(field or "")
    if match is None:
        return None
    index = int(match.group(1))
    return index if index < size else None
