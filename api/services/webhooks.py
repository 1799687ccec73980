"""Webhooks: their admin use cases, the logs, and the bookkeeping of deliveries.

The deliverer (``api.deliverer``) does the HTTP; here is what it records: which deliveries
it claims, and what an attempt's outcome makes of a delivery (delivered, retried later
with a backoff, or failed for good).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import DeliveryStatus, NotificationKind
from api.errors import Conflict, InvalidInput, NotFound
from api.models import Experiment, Notification, Webhook, WebhookDelivery
from api.services.common import now_utc
from api.services.notifications import ping


# -- admin ---------------------------------------------------------------------------------
def create_webhook(session: Session, request: schemas.WebhookCreate) -> schemas.WebhookCreated:
    """A new active webhook, audited (without its secret); the answer shows the secret."""
    experiment = _named_experiment(session, request.experiment)
    now = now_utc()
    webhook = Webhook(
        url=request.url,
        experiment_id=None if experiment is None else experiment.id,
        events=None if request.events is None else [str(kind) for kind in request.events],
        secret=request.secret or secrets.token_urlsafe(32),
        active=True,
        created_at=now,
    )
    session.add(webhook)
    session.flush()
    repo.add_audit(
        session,
        at=now,
        action="webhook.create",
        experiment_id=webhook.experiment_id,
        details={
            "webhook_id": webhook.id,
            "url": webhook.url,
            "experiment": request.experiment,
            "events": webhook.events,
            "secret_generated": request.secret is None,
        },
    )
    shown = webhook_out(webhook, request.experiment)
    return schemas.WebhookCreated(**shown.model_dump(), secret=webhook.secret)


def list_webhooks(session: Session) -> list[schemas.WebhookOut]:
    """Every webhook, the deleted ones too (their deliveries are in the log)."""
    return [webhook_out(webhook, name) for webhook, name in repo.webhooks_with_experiment(session)]


def delete_webhook(session: Session, webhook_id: int) -> schemas.WebhookOut:
    """Deactivate the webhook and cancel its pending deliveries; audited. Idempotent: a
    deleted webhook is answered as it is."""
    webhook = _require_webhook(session, webhook_id)
    if webhook.active:
        now = now_utc()
        webhook.active = False
        webhook.deactivated_at = now
        cancelled = repo.cancel_pending_deliveries(session, webhook.id, now)
        repo.add_audit(
            session,
            at=now,
            action="webhook.delete",
            experiment_id=webhook.experiment_id,
            details={"webhook_id": webhook.id, "url": webhook.url, "cancelled": cancelled},
        )
    return webhook_out(webhook, _experiment_name(session, webhook))


def test_webhook(session: Session, webhook_id: int) -> schemas.DeliveryOut:
    """Queue a "ping" notification for this webhook alone; its delivery, audited."""
    webhook = _require_webhook(session, webhook_id)
    if not webhook.active:
        raise Conflict(
            f"webhook_id: webhook {webhook_id} is deleted; expected an active webhook",
            field="webhook_id",
        )
    notification, delivery = ping(session, webhook)
    repo.add_audit(
        session,
        at=notification.created_at,
        action="webhook.test",
        experiment_id=webhook.experiment_id,
        details={"webhook_id": webhook.id, "delivery_id": delivery.id},
    )
    return delivery_out(delivery, notification, _experiment_name(session, webhook))


def delivery_log(
    session: Session,
    *,
    webhook_id: int | None,
    experiment: str | None,
    status: DeliveryStatus | None,
    before: int | None,
    limit: int,
) -> list[schemas.DeliveryOut]:
    """The deliveries, newest first. An unknown webhook or experiment is a 404 naming the
    parameter (an empty list would read as "nothing was sent")."""
    if webhook_id is not None:
        _require_webhook(session, webhook_id, field="webhook")
    found = _named_experiment(session, experiment, field="experiment", missing=NotFound)
    rows = repo.deliveries(
        session,
        webhook_id=webhook_id,
        experiment_id=None if found is None else found.id,
        status=status,
        before=before,
        limit=limit,
    )
    return [delivery_out(row.delivery, row.notification, row.experiment) for row in rows]


def notification_log(
    session: Session,
    *,
    experiment: str | None,
    kind: NotificationKind | None,
    before: int | None,
    limit: int,
) -> list[schemas.NotificationOut]:
    """The outbox, newest first: every notification, whether or not a webhook heard it."""
    found = _named_experiment(session, experiment, field="experiment", missing=NotFound)
    rows = repo.notifications(
        session,
        experiment_id=None if found is None else found.id,
        kind=kind,
        before=before,
        limit=limit,
    )
    return [
        schemas.NotificationOut(
            id=notification.id,
            experiment=name,
            kind=notification.kind,
            created_at=notification.created_at,
            payload=notification.payload,
        )
        for notification, name in rows
    ]


def webhook_out(webhook: Webhook, experiment: str | None) -> schemas.WebhookOut:
    return schemas.WebhookOut(
        id=webhook.id,
        url=webhook.url,
        experiment=experiment,
        events=None if webhook.events is None else [NotificationKind(k) for k in webhook.events],
        active=webhook.active,
        secret_hint=f"...{webhook.secret[-4:]}",
        created_at=webhook.created_at,
        deactivated_at=webhook.deactivated_at,
    )


def delivery_out(
    delivery: WebhookDelivery, notification: Notification, experiment: str | None
) -> schemas.DeliveryOut:
    return schemas.DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.webhook_id,
        notification_id=notification.id,
        experiment=experiment,
        kind=notification.kind,
        payload=notification.payload,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=delivery.next_attempt_at,
        finished_at=delivery.finished_at,
    )


def _require_webhook(session: Session, webhook_id: int, *, field: str = "webhook_id") -> Webhook:
    webhook = repo.get_webhook(session, webhook_id)
    if webhook is None:
        raise NotFound(f"{field}: webhook {webhook_id} does not exist", field=field)
    return webhook


def _named_experiment(
    session: Session,
    name: str | None,
    *,
    field: str = "experiment",
    missing: type[NotFound] | type[InvalidInput] = InvalidInput,
) -> Experiment | None:
    """The experiment called ``name`` (None for None). Unknown: 422 for a field of a body
    (the request names something that is not there), 404 for a filter of a read."""
    if name is None:
        return None
    experiment = repo.get_experiment_by_name(session, name)
    if experiment is None:
        raise missing(
            f"{field}: experiment {name!r} does not exist; expected an existing experiment's "
            "name, or null for every experiment",
            field=field,
        )
    return experiment


def _experiment_name(session: Session, webhook: Webhook) -> str | None:
    if webhook.experiment_id is None:
        return None
    experiment = repo.get_experiment(session, webhook.experiment_id)
    return None if experiment is None else experiment.name


# -- delivering ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a delivery is attempted (RANKTUNE_WEBHOOK_* settings)."""

    max_attempts: int
    backoff_s: float
    max_backoff_s: float

    def delay_s(self, attempts: int, fraction: float) -> float:
        """The wait after the ``attempts``-th failed attempt: ``backoff_s`` doubled per
        earlier failure, at most ``max_backoff_s``, and drawn between half of that and all
        of it by ``fraction`` in [0, 1) ("equal jitter": receivers that failed together are
        not retried together, and no wait is shorter than half the schedule's)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempts - 1))
        return ceiling / 2 + fraction * ceiling / 2


class AttemptOutcome(NamedTuple):
    """What one POST of a delivery came to."""

    delivered: bool
    retryable: bool  # a timeout, a connection error, 5xx or 429: worth another attempt
    status_code: int | None  # the receiver's HTTP status; None: no answer
    error: str | None  # why it was not delivered


def claim_due(
    session: Session, now: datetime, *, limit: int, claimed_by: str, lease_s: float
) -> list[repo.ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries for ``lease_s`` (see
    :func:`api.repositories.claim_due_deliveries`): another deliverer takes one over only
    if this one has not recorded an attempt by then (it died)."""
    return repo.claim_due_deliveries(
        session, now, limit=limit, claimed_by=claimed_by, until=now + timedelta(seconds=lease_s)
    )


def record_attempt(
    session: Session,
    claimed: repo.ClaimedDelivery,
    outcome: AttemptOutcome,
    *,
    now: datetime,
    policy: RetryPolicy,
    fraction: float,
) -> DeliveryStatus | None:
    """Record an attempt made at ``now``: delivered; pending again after the policy's delay
    if it may be retried and has attempts left; else failed. The status, or None when the
    claim was lost (the delivery took longer than its lease and is another deliverer's)."""
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        status = DeliveryStatus.DELIVERED
    elif outcome.retryable and attempts < policy.max_attempts:
        status = DeliveryStatus.PENDING
        values["next_attempt_at"] = now + timedelta(seconds=policy.delay_s(attempts, fraction))
    else:
        status = DeliveryStatus.FAILED
        if outcome.retryable:
            values["last_error"] = f"{outcome.error}; gave up after {attempts} attempts"
    if status != DeliveryStatus.PENDING:
        values.update(next_attempt_at=None, finished_at=now)
    held = repo.record_delivery_attempt(
        session, claimed.id, claimed.claimed_by, {"status": status, **values}
    )
    return status if held else None


def record_cancelled(session: Session, claimed: repo.ClaimedDelivery, *, now: datetime) -> None:
    """A claimed delivery whose webhook was deleted meanwhile: cancelled, not sent (the
    deletion cancels the pending ones; this catches one queued by a notification that
    committed at the same moment)."""
    repo.record_delivery_attempt(
        session,
        claimed.id,
        claimed.claimed_by,
        {
            "attempts": claimed.attempts,
            "status": DeliveryStatus.CANCELLED,
            "next_attempt_at": None,
            "finished_at": now,
            "last_error": "the webhook was deleted",
        },
    )
