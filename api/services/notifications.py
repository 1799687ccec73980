"""Notifications: what admins are told about, written in the decision's own transaction.

:func:`notify` only inserts rows: the ``notifications`` row (an outbox) and one
``webhook_deliveries`` row for each active webhook the notification matches. So a
notification exists exactly when the decision that caused it committed, it is delivered to
exactly the webhooks that matched at that moment (the pair is a unique key), and no tick or
request ever waits on a network call: the deliverer (``api.deliverer``) sends the pending
deliveries after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from api import repositories as repo
from api.enums import DeliveryStatus, NotificationKind
from api.models import Notification, Webhook, WebhookDelivery
from api.services.common import now_utc


def notify(
    session: Session, experiment_id: int | None, kind: NotificationKind, payload: dict[str, Any]
) -> Notification:
    """Record a notification in the caller's transaction, and its deliveries to the active
    webhooks that want it (one query of the small ``webhooks`` table, then inserts; no IO
    beyond the database). ``payload`` must be JSON-serialisable."""
    webhooks = [
        webhook
        for webhook in repo.active_webhooks_for(session, experiment_id)
        if subscribes(webhook, kind)
    ]
    notification, _deliveries = _record(session, experiment_id, kind, payload, webhooks)
    return notification


def ping(session: Session, webhook: Webhook) -> tuple[Notification, WebhookDelivery]:
    """A test notification ("ping") for this webhook alone, whatever kinds it subscribes to:
    testing one webhook must not ping every other global one."""
    payload = {"webhook_id": webhook.id, "message": "a test notification from ranktune"}
    notification, (delivery,) = _record(
        session, webhook.experiment_id, NotificationKind.PING, payload, [webhook]
    )
    return notification, delivery


def subscribes(webhook: Webhook, kind: NotificationKind) -> bool:
    """Whether the webhook wants notifications of ``kind`` (``events`` NULL: every kind)."""
    return webhook.events is None or kind in webhook.events


def _record(
    session: Session,
    experiment_id: int | None,
    kind: NotificationKind,
    payload: dict[str, Any],
    webhooks: Sequence[Webhook],
) -> tuple[Notification, list[WebhookDelivery]]:
    now = now_utc()
    notification = Notification(
        experiment_id=experiment_id, kind=kind, created_at=now, payload=payload
    )
    session.add(notification)
    session.flush()
    deliveries = [
        WebhookDelivery(
            notification_id=notification.id,
            webhook_id=webhook.id,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for webhook in webhooks
    ]
    if deliveries:
        session.add_all(deliveries)
        session.flush()
    return notification, deliveries
