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
from fastapi.responses import Response

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
    runtime: Runtime = request.app.state.runtime
    snapshot = runtime.serving.get(name)
    if snapshot is None:
        raise NotFound(f"experiment {name!r} does not exist", field="name")
    served = runtime.serving.assign(snapshot, unit)
    body = (
        f'{{"experiment":"{snapshot.name}","group":"{served.group}","arm_id":{served.arm_id},'
        f'"config":{served.config_json},"ticket":"{served.ticket}",'
        f'"active":{"true" if served.active else "false"}}}'
    )
    return Response(content=body, media_type="application/json")


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
    text = json.dumps([event.ticket, event.type, event.count], separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _event_row(
    index: int, event: schemas.EventIn, claims: TicketClaims | None, runtime: Runtime
) -> EventRow:
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
    if event.type == "exposure" and snapshot.exposure_source == "server":
        raise InvalidInput(
            f"events[{index}].type: experiment {snapshot.name!r} counts exposures on the server; "
            "expected a target event such as 'contact', not 'exposure'",
            field=f"events[{index}].type",
        )
    return EventRow(
        experiment_id=claims.experiment_id,
        arm_id=claims.arm_id,
        group=claims.group,
        type=event.type,
        count=event.count,
        event_id=event.event_id,
        payload_hash=_payload_hash(event),
    )


@router.post(
    "/events",
    response_model=schemas.EventsAccepted,
    responses={409: {"description": "an event_id was reused with another payload"}},
)
async def post_events(request: Request, batch: schemas.EventBatch) -> schemas.EventsAccepted:
    """Store a batch of events durably; the answer comes only after the commit."""
    runtime: Runtime = request.app.state.runtime
    limit = runtime.settings.max_batch_events
    if len(batch.events) > limit:
        raise PayloadTooLarge(
            f"events: at most {limit} events per request, got {len(batch.events)}", field="events"
        )
    verified: dict[str, TicketClaims | None] = {}
    rows = []
    for index, event in enumerate(batch.events):
        if event.ticket not in verified:
            verified[event.ticket] = runtime.signer.verify(event.ticket)
        rows.append(_event_row(index, event, verified[event.ticket], runtime))
    result = await asyncio.wrap_future(runtime.writer.submit(rows))
    if result.conflict_index is not None:
        index = result.conflict_index
        raise Conflict(
            f"events[{index}].event_id: {batch.events[index].event_id!r} was already stored with "
            "another payload; expected a new event_id or the same ticket, type and count",
            field=f"events[{index}].event_id",
        )
    return schemas.EventsAccepted(accepted=result.accepted, duplicates=result.duplicates)
