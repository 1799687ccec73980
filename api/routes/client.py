"""Client API: get a configuration for a unit, report events. No admin token.

The assignment path reads only the in-memory snapshot (no database) and writes its JSON
by hand from pre-serialised configurations: it is the request every page view makes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from api import schemas
from api.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from api.ingest import EventRow
from api.runtime import Runtime
from api.serving import ExperimentSnapshot
from api.tickets import TicketClaims

router = APIRouter(prefix="/v1", tags=["client"])


@router.get(
    "/experiments/{name}/assignment",
    response_model=schemas.Assignment,
    responses={404: {"description": "unknown experiment"}},
)
async def assignment(
    request: Request,
    name: Annotated[str, Path(max_length=64)],
    unit: Annotated[str, Query(min_length=1, max_length=256, description="the randomised unit")],
) -> Response:
    """A configuration for the unit. Well-formed requests for a known experiment are
    answered by :class:`api.app.AssignmentFastPath` before they reach this route (same
    answer, without the framework's routing); this route serves the rest: its errors, and
    the OpenAPI description."""
    runtime: Runtime = request.app.state.runtime
    snapshot = runtime.serving.get(name)
    if snapshot is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    return Response(content=assignment_json(runtime, snapshot, unit), media_type="application/json")


def assignment_json(runtime: Runtime, snapshot: ExperimentSnapshot, unit: str) -> bytes:
    """Assign the unit and write the answer's JSON by hand (names are slugs, tickets are
    base64url, configurations are pre-serialised, so nothing needs escaping)."""
    served = runtime.serving.assign(snapshot, unit)
    return (
        f'{{"experiment":"{snapshot.name}","group":"{served.group}","arm_id":{served.arm_id},'
        f'"config":{served.config_json},"ticket":"{served.ticket}",'
        f'"active":{"true" if served.active else "false"}}}'
    ).encode()


@router.get("/experiments/{name}/snapshot", response_model=schemas.SnapshotOut)
async def snapshot(
    request: Request, name: Annotated[str, Path(max_length=64)]
) -> schemas.SnapshotOut:
    """What this replica serves from memory: posteriors and the version they were loaded at."""
    runtime: Runtime = request.app.state.runtime
    snap = runtime.serving.get(name)
    if snap is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    return schemas.SnapshotOut(
        experiment=snap.name,
        version=snap.version,
        tick_count=snap.tick_count,
        status=snap.status,
        loaded_at=snap.loaded_at,
        arms=[
            schemas.SnapshotArm(arm_id=arm_id, alpha=float(a), beta=float(b))
            for arm_id, a, b in zip(snap.arm_ids, snap.alphas, snap.betas, strict=True)
        ],
    )


def _payload_hash(event: schemas.EventIn) -> str:
    """BLAKE2b-128 of the JSON text ``[ticket, type, count]``: what makes a retry a duplicate."""
    text = json.dumps([event.ticket, event.type, event.count], separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# What the events of one request share per distinct ticket: its claims, its experiment's
# snapshot, and the start of the hashed JSON text, ``["<ticket>"`` exactly as json.dumps
# writes it (escapes included). The rest of the text, ``,"<type>",<count>]``, is written by
# hand: ``type`` matches ^[a-z][a-z0-9_]*$ and ``count`` is an int, so json.dumps would
# write them as they are. Same hash as _payload_hash, about five times cheaper.
_TicketCheck = tuple[TicketClaims, ExperimentSnapshot, str]


def _check_ticket(index: int, ticket: str, runtime: Runtime) -> _TicketCheck:
    claims = runtime.signer.verify(ticket)
    if claims is None:
        raise InvalidInput(
            f"events[{index}].ticket: expected a ticket issued by this server's assignment "
            "endpoint (this one is forged, corrupted or from another deployment)",
            field=f"events[{index}].ticket",
        )
    snapshot: ExperimentSnapshot | None = runtime.serving.get_by_id(claims.experiment_id)
    if snapshot is None:
        raise InvalidInput(
            f"events[{index}].ticket: its experiment does not exist here",
            field=f"events[{index}].ticket",
        )
    return claims, snapshot, json.dumps([ticket], separators=(",", ":"))[:-1]


def _event_rows(events: list[schemas.EventIn], runtime: Runtime) -> list[EventRow]:
    checked: dict[str, _TicketCheck] = {}
    rows: list[EventRow] = []
    blake2b = hashlib.blake2b
    for index, event in enumerate(events):
        ticket = event.ticket
        check = checked.get(ticket)
        if check is None:
            check = checked[ticket] = _check_ticket(index, ticket, runtime)
        claims, snapshot, hash_prefix = check
        kind = event.type
        if kind == "exposure" and snapshot.exposure_source == "server":
            raise InvalidInput(
                f"events[{index}].type: experiment {snapshot.name!r} counts exposures on the "
                "server; expected a target event such as 'contact', not 'exposure'",
                field=f"events[{index}].type",
            )
        text = f'{hash_prefix},"{kind}",{event.count}]'
        rows.append(
            EventRow(
                claims.experiment_id,
                claims.arm_id,
                claims.group,
                kind,
                event.count,
                event.event_id,
                blake2b(text.encode("utf-8"), digest_size=16).hexdigest(),
            )
        )
    return rows


EVENT_BATCH_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
}


async def parse_event_batch(request: Request) -> schemas.EventBatch:
    """The request body as an :class:`~api.schemas.EventBatch`, parsed by pydantic-core
    straight from the bytes (``model_validate_json``): about half the cost of decoding the
    JSON to Python objects and validating those, on every batch. Errors are raised as the
    framework's own validation errors, so they are rendered exactly as before."""
    body = await request.body()
    try:
        return schemas.EventBatch.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        for item in errors:
            item["loc"] = ("body", *item["loc"])
        raise RequestValidationError(errors) from None


@router.post(
    "/events",
    response_model=schemas.EventsAccepted,
    responses={409: {"description": "an event_id was reused with another payload"}},
    openapi_extra={"requestBody": EVENT_BATCH_BODY},
)
async def post_events(request: Request) -> schemas.EventsAccepted:
    """Store a batch of events durably; the answer comes only after the commit."""
    batch = await parse_event_batch(request)
    runtime: Runtime = request.app.state.runtime
    limit = runtime.settings.max_batch_events
    if len(batch.events) > limit:
        raise PayloadTooLarge(
            f"events: at most {limit} events per request, got {len(batch.events)}", field="events"
        )
    rows = _event_rows(batch.events, runtime)
    result = await asyncio.wrap_future(runtime.writer.submit(rows))
    if result.conflict_index is not None:
        index = result.conflict_index
        raise Conflict(
            f"events[{index}].event_id: {batch.events[index].event_id!r} was already stored with "
            "another payload; expected a new event_id or the same ticket, type and count",
            field=f"events[{index}].event_id",
        )
    return schemas.EventsAccepted(accepted=result.accepted, duplicates=result.duplicates)
