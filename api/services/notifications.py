"""Notifications: what admins are told about, written in the decision's own transaction.

:func:`notify` only inserts a row of ``notifications`` (an outbox): a notification exists
exactly when the decision that caused it committed, and no tick or request ever waits on a
network call. Delivery (webhooks) reads the outbox after the commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.enums import NotificationKind
from api.models import Notification
from api.services.common import now_utc


def notify(
    session: Session, experiment_id: int | None, kind: NotificationKind, payload: dict[str, Any]
) -> Notification:
    """Record a notification in the caller's transaction; JSON-serialisable ``payload``."""
    notification = Notification(
        experiment_id=experiment_id, kind=kind, created_at=now_utc(), payload=payload
    )
    session.add(notification)
    session.flush()
    return notification
