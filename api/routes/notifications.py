"""Admin API (bearer token): webhooks, their delivery log, and the notifications outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api import schemas
from api.enums import DeliveryStatus, NotificationKind
from api.openapi import conflict, not_found
from api.routes.admin import Limit, runtime_of
from api.security import AdminOnly, AdminOnlyRoute
from api.services import webhooks as service

router = APIRouter(
    prefix="/v1",
    dependencies=[AdminOnly],
    tags=["notifications"],
    route_class=AdminOnlyRoute,
)
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the webhook's id")]
ExperimentFilter = Annotated[
    str | None,
    Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="only this experiment's"),
]
Before = Annotated[
    int | None, Query(ge=1, le=2**31 - 1, description="only ids below this (the next page)")
]


@router.post("/webhooks", status_code=201, response_model=schemas.WebhookCreated)
def create_webhook(request: Request, body: schemas.WebhookCreate) -> schemas.WebhookCreated:
    """Register a webhook for one experiment's notifications or every experiment's. The
    answer is the only one that shows the signing secret."""
    with runtime_of(request).transaction() as session:
        return service.create_webhook(session, body)


@router.get("/webhooks", response_model=list[schemas.WebhookOut])
def list_webhooks(request: Request) -> list[schemas.WebhookOut]:
    """Every webhook, deleted ones too; secrets are shown only by their last characters."""
    with runtime_of(request).read_transaction() as session:
        return service.list_webhooks(session)


@router.get(
    "/webhooks/deliveries",
    response_model=list[schemas.DeliveryOut],
    responses=not_found("no webhook has the id `webhook`, or no experiment is named `experiment`"),
)
def deliveries(
    request: Request,
    webhook: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="only this webhook's")
    ] = None,
    experiment: ExperimentFilter = None,
    status: Annotated[
        DeliveryStatus | None, Query(description="only deliveries with this status")
    ] = None,
    before: Before = None,
    limit: Limit = 100,
) -> list[schemas.DeliveryOut]:
    """The delivery log, newest first: what was sent where, how often, and what came back."""
    with runtime_of(request).read_transaction() as session:
        return service.delivery_log(
            session,
            webhook_id=webhook,
            experiment=experiment,
            status=status,
            before=before,
            limit=limit,
        )


@router.delete("/webhooks/{webhook_id}", response_model=schemas.WebhookOut)
def delete_webhook(request: Request, webhook_id: WebhookId) -> schemas.WebhookOut:
    """Deactivate a webhook: nothing more is sent to it (pending deliveries are cancelled);
    it and its deliveries stay in the lists. Idempotent."""
    with runtime_of(request).transaction() as session:
        return service.delete_webhook(session, webhook_id)


@router.post(
    "/webhooks/{webhook_id}/test",
    status_code=202,
    response_model=schemas.DeliveryOut,
    responses=conflict("the webhook is deleted"),
)
def test_webhook(request: Request, webhook_id: WebhookId) -> schemas.DeliveryOut:
    """Queue a "ping" notification for this webhook alone; follow its delivery in the log."""
    with runtime_of(request).transaction() as session:
        return service.test_webhook(session, webhook_id)


@router.get(
    "/notifications",
    response_model=list[schemas.NotificationOut],
    responses=not_found("no experiment is named `experiment`"),
)
def notifications(
    request: Request,
    experiment: ExperimentFilter = None,
    kind: Annotated[
        NotificationKind | None, Query(description="only notifications of this kind")
    ] = None,
    before: Before = None,
    limit: Limit = 100,
) -> list[schemas.NotificationOut]:
    """The outbox, newest first: everything notified, whether or not a webhook heard it."""
    with runtime_of(request).read_transaction() as session:
        return service.notification_log(
            session, experiment=experiment, kind=kind, before=before, limit=limit
        )
