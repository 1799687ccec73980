"""Client API: get a configuration for a unit, report events. No admin token; a client
key (a stored client token, or an admin token) when RANKTUNE_CLIENT_KEY_REQUIRED is on
(``api.security.check_client_key``, checked before anything else, the body included).

The assignment path reads only the in-memory snapshot (no database) and writes its JSON
by hand from pre-serialised configurations: it is the request every page view makes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import schemas
from api.enums import ExposureSource
from api.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    validation_failure,
)
from api.openapi import CLIENT_KEY
from api.routes.direct import DirectRoute
from api.runtime import Runtime
from api.security import check_client_key
from api.serving import ExperimentSnapshot

router = APIRouter(prefix="/v1", tags=["client"], responses=CLIENT_KEY)


async def assignment(
    request: Request,
    name: Annotated[str, Path(max_length=64, description="the experiment's name")],
    unit: Annotated[str, Query(min_length=1, max_length=256, description="the randomised unit")],
    segment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=schemas.MAX_SEGMENT_LENGTH,
            description="segmented experiments: the request's segment (a category id, say; "
            "1 to 64 characters). A new one opens on first sight, up to the experiment's "
            "max_segments; absent, not open yet (for about a second after its first sight) or "
            "beyond the maximum: the default segment. Ignored by unsegmented experiments",
        ),
    ] = None,
) -> Response:
    """A configuration for the unit (in its segment, for a segmented experiment)."""
    runtime: Runtime = request.app.state.runtime
    if runtime.settings.client_key_required:
        check_client_key(request)
    snapshot = runtime.serving.get(name)
    if snapshot is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    return Response(
        content=assignment_json(runtime, snapshot, unit, segment), media_type="application/json"
    )


# The request every page view makes: served by a DirectRoute (api/routes/direct.py), which
# skips FastAPI's per-request dependency solving and response handling.
router.add_api_route(
    "/experiments/{name}/assignment",
    assignment,
    methods=["GET"],
    response_model=schemas.Assignment,
    route_class_override=DirectRoute,
)


def assignment_json(
    runtime: Runtime, snapshot: ExperimentSnapshot, unit: str, segment: str | None = None
) -> bytes:
    """Assign the unit and write the answer's JSON by hand (names are slugs, tickets are
    base64url, configurations are pre-serialised, so nothing needs escaping)."""
    served = runtime.serving.assign(snapshot, unit, segment)
    return (
        f'{{"experiment":"{snapshot.name}","group":"{served.group}","arm_id":{served.arm_id},'
        f'"config":{served.config_json},"ticket":"{served.ticket}",'
        f'"active":{"true" if served.active else "false"}}}'
    ).encode()


@router.get("/experiments/{name}/snapshot", response_model=schemas.SnapshotOut)
async def snapshot(
    request: Request,
    name: Annotated[str, Path(max_length=64, description="the experiment's name")],
) -> schemas.SnapshotOut:
    """What this replica serves from memory: posteriors and the version they were loaded at,
    the reference configuration and who counts exposures (what the client SDK caches)."""
    runtime: Runtime = request.app.state.runtime
    if runtime.settings.client_key_required:
        check_client_key(request)
    snap = runtime.serving.get(name)
    if snap is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    return schemas.SnapshotOut(
        experiment=snap.name,
        version=snap.version,
        tick_count=snap.tick_count,
        status=snap.status,
        loaded_at=snap.loaded_at,
        exposure_source=ExposureSource(snap.exposure_source),
        reference=schemas.SnapshotReference(
            arm_id=snap.reference_arm_id, config=json.loads(snap.reference_config_json)
        ),
        arms=[
            schemas.SnapshotArm(
                arm_id=arm_id,
                alpha=float(snap.alphas[index]),
                beta=float(snap.betas[index]),
                exposures=float(snap.exposures[index]),
                in_nursery=snap.nursery is not None and index in snap.nursery.arms,
            )
            for index, arm_id in enumerate(snap.arm_ids)
        ],
    )


async def post_events(request: Request) -> Response:
    """Store a batch of events durably; the answer comes only after the commit.

    Events are checked against their tickets (api.services.events) and each ticket credits
    at most its experiment's limit per event type: the rest is stored but quarantined.
    """
    runtime: Runtime = request.app.state.runtime
    if runtime.settings.client_key_required:
        check_client_key(request)
    batch = await read_event_batch(
        request, runtime.event_batch_model, runtime.settings.max_batch_events
    )
    rows = runtime.event_intake().rows(batch.events, now=time.time())
    result = await asyncio.wrap_future(runtime.writer.submit(rows))
    telemetry = runtime.telemetry  # on the event loop: no lock (api.telemetry)
    telemetry.events_accepted += result.accepted
    telemetry.events_duplicate += result.duplicates
    if result.conflict_index is not None:
        index = result.conflict_index
        raise Conflict(
            f"events[{index}].event_id: {batch.events[index].event_id!r} was already stored with "
            "another payload; expected a new event_id or the same ticket, type and count",
            field=f"events[{index}].event_id",
        )
    return Response(
        content=f'{{"accepted":{result.accepted},"duplicates":{result.duplicates}}}',
        media_type="application/json",
    )


# It reads its own body (read_event_batch) and has no other parameter: the framework's
# dependency solving and response rendering are pure cost here, as for the assignment.
router.add_api_route(
    "/events",
    post_events,
    methods=["POST"],
    response_model=schemas.EventsAccepted,
    responses={
        409: {"description": "an event_id was stored before with another payload"},
        413: {
            "description": "more events than RANKTUNE_MAX_BATCH_EVENTS, or a body larger than "
            "RANKTUNE_MAX_EVENTS_BODY_BYTES"
        },
        415: {"description": "the body is not declared as `Content-Type: application/json`"},
    },
    openapi_extra={"requestBody": schemas.event_batch_request_body()},
    route_class_override=DirectRoute,
)


async def read_event_batch(
    request: Request, model: type[schemas.EventBatch], limit: int
) -> schemas.EventBatch:
    """The body as an EventBatch, or a 415, 413 or 422 naming what was wrong.

    The route reads the body itself instead of declaring it, because validation runs on the
    event loop (pydantic-core holds the GIL, so a worker thread would not help) and must stay
    cheap whatever the client sends: the body is bounded (RANKTUNE_MAX_EVENTS_BODY_BYTES,
    checked by api.app.BodySizeLimit), a body with more JSON objects than the batch limit
    allows is refused before parsing (``_json_values_bound``), and the model stops at the
    first event past the limit;
    pydantic-core parses straight from the bytes (``model_validate_json``), about half the
    cost of decoding to Python objects first.
    """
    require_json(request)
    body = await request.body()
    if _json_values_bound(body) > VALUES_PER_EVENT * (limit + 1):
        raise PayloadTooLarge(
            f"events: at most {limit} events per request (this body holds more JSON values "
            f"than {limit} events can)",
            field="events",
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise validation_failure(error, prefix=()) from None


# An event is one object with at most four members: 1 "{" and 4 "," (one between events).
# Legitimate tickets, types and event ids contain none of "{[,", so a body with more of them
# than this per event holds more events than the limit, or values that are not events.
VALUES_PER_EVENT = 8


def _json_values_bound(body: bytes) -> int:
    """An upper bound on the number of values (objects, arrays, members, items) in a JSON
    document, whose parse cost grows with it: 512 kB of nested empty arrays take pydantic-
    core 300 ms to parse, on the event loop. Counting bytes runs at memchr speed."""
    return body.count(b"{") + body.count(b"[") + body.count(b",")


def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON: a web page can post ``text/plain`` to any
    site without a CORS preflight, but not ``application/json``."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json, got {media_type or 'nothing'}",
            field="Content-Type",
        )
