"""The webhook deliverer: a thread of each replica that POSTs due deliveries.

Every ``webhook_poll_s`` it looks for due deliveries (a read), claims a few (a short write
transaction; ``api.repositories.claim_due_deliveries`` keeps two replicas from claiming the
same one), POSTs them side by side with the standard library's HTTP client and a short
timeout, and records each outcome in a transaction of its own. No transaction is open
while it waits on the network, and nothing else waits on it: ticks and requests only insert
rows (``api.services.notifications.notify``).

Delivery is at least once: a replica that dies after the receiver answered and before the
outcome is recorded leaves the delivery claimed until its lease ends, and then another
replica sends it again, with the same ``X-Ranktune-Delivery`` id, which receivers use to
drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import secrets
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api import repositories as repo
from api.enums import DeliveryStatus
from api.services import webhooks as service
from api.services.common import now_utc
from api.services.webhooks import AttemptOutcome, RetryPolicy
from api.settings import Settings

logger = logging.getLogger("ranktune.webhooks")

# Deliveries claimed and sent at once, one thread each: a receiver that times out holds up
# only its own delivery, and a claim lasts one round of sends.
BATCH = 4
# The part of an error answer kept in last_error.
ERROR_EXCERPT = 200
USER_AGENT = "ranktune-webhooks/0.1"


def delivery_body(claimed: repo.ClaimedDelivery) -> bytes:
    """The JSON body of a delivery; the same bytes at every attempt."""
    document = {
        "id": claimed.id,
        "kind": str(claimed.kind),
        "experiment": claimed.experiment,
        "created_at": claimed.created_at.isoformat(),
        "payload": claimed.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    """``X-Ranktune-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new address: following it would send a signed body
    to a URL no admin configured (and turn the POST into a GET on 301-303)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> AttemptOutcome:
    """POST once and classify the answer: 2xx delivered; 5xx, 429, a timeout or a connection
    error retryable; anything else (4xx, a redirect) a permanent failure."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            return AttemptOutcome(True, False, response.status, None)
    except urllib.error.HTTPError as answer:
        with answer:
            return _refused(answer.code, _excerpt(answer))
    except urllib.error.URLError as error:  # connecting failed (or timed out)
        if isinstance(error.reason, TimeoutError):
            return _timed_out(timeout_s, "connecting")
        return AttemptOutcome(False, True, None, _clean(f"connection failed: {error.reason}"))
    except TimeoutError:
        return _timed_out(timeout_s, "waiting for the answer")
    except (http.client.HTTPException, OSError) as error:
        return AttemptOutcome(False, True, None, _clean(f"{type(error).__name__}: {error}"))


def _timed_out(timeout_s: float, doing: str) -> AttemptOutcome:
    return AttemptOutcome(False, True, None, f"timed out {doing} ({timeout_s:g} s)")


def _refused(code: int, excerpt: str) -> AttemptOutcome:
    if 200 <= code < 300:  # not raised by urllib; here for completeness of the rule
        return AttemptOutcome(True, False, code, None)
    retryable = code >= 500 or code == 429
    reason = "a redirect, not followed" if 300 <= code < 400 else f"HTTP {code}"
    return AttemptOutcome(False, retryable, code, _clean(f"{reason}: {excerpt}".rstrip(": ")))


def _excerpt(answer: urllib.error.HTTPError) -> str:
    """The start of an error answer's body (it often says why), or nothing if it cannot be
    read in time."""
    try:
        return answer.read(ERROR_EXCERPT).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return ""


def _clean(text: str) -> str:
    """``text`` as a database can store it (PostgreSQL text has no NUL) and a log shows it."""
    return text.replace("\x00", "")[: ERROR_EXCERPT + 100]


class WebhookDeliverer:
    """Claims due deliveries, sends them, records the outcomes; ``start`` runs that every
    ``webhook_poll_s`` on a thread until ``stop``, and tests call :meth:`run_once`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        read_session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        replica: str,
        rng: random.Random | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.read_session_factory = read_session_factory
        self.replica = replica[:48]
        self.timeout_s = settings.webhook_timeout_s
        self.poll_s = settings.webhook_poll_s
        self.policy = RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            max_backoff_s=settings.webhook_max_backoff_s,
        )
        # A claim outlives a round of sends: each send can take a timeout to connect, one
        # to send, one to answer; the minute covers slow commits.
        self.lease_s = 3 * self.timeout_s + 60.0
        self.rng = rng or random.Random()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Recorded attempts by outcome (delivered, retrying, failed, cancelled, claim_lost)
        # for /metrics; only the deliverer's thread (or a test's run_once) adds to it.
        self.outcomes: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._poll, name="ranktune-webhook-deliverer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a round of sends under way finishes (each bounded by the timeout)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                # A full batch suggests more are due: go on without waiting for the next poll.
                while self.run_once() == BATCH and not self._stopping.is_set():
                    pass
            except Exception:
                logger.exception("webhook delivery failed; it will be retried at the next poll")

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    # -- one round -------------------------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> int:
        """Claim the deliveries due at ``now`` (up to :data:`BATCH`), send them side by side
        and record each outcome as of ``now``; how many were claimed."""
        now = now or now_utc()
        with self.read_session_factory() as session, session.begin():
            if not repo.has_due_delivery(session, now):
                return 0
        claimed_by = f"{self.replica}/{secrets.token_hex(4)}"
        with self.session_factory() as session, session.begin():
            claimed = service.claim_due(
                session, now, limit=BATCH, claimed_by=claimed_by, lease_s=self.lease_s
            )
        if not claimed:
            return 0
        with ThreadPoolExecutor(len(claimed), thread_name_prefix="ranktune-webhook") as pool:
            sends = {pool.submit(self._attempt, delivery): delivery for delivery in claimed}
            for done in as_completed(sends):
                self._record(sends[done], done.result(), now)
        return len(claimed)

    def _attempt(self, claimed: repo.ClaimedDelivery) -> AttemptOutcome | None:
        """Send one delivery (None: its webhook was deleted, so it is not sent)."""
        if not claimed.webhook_active:
            return None
        body = delivery_body(claimed)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Ranktune-Signature": signature(claimed.secret, body),
            "X-Ranktune-Delivery": str(claimed.id),
            "X-Ranktune-Event": str(claimed.kind),
        }
        try:
            return post(claimed.url, body, headers, self.timeout_s)
        except Exception as error:  # a bug or an unforeseen failure: logged, and retried
            logger.exception("webhook delivery %d: unexpected failure", claimed.id)
            return AttemptOutcome(False, True, None, _clean(f"{type(error).__name__}: {error}"))

    def _record(
        self, claimed: repo.ClaimedDelivery, outcome: AttemptOutcome | None, now: datetime
    ) -> None:
        with self.session_factory() as session, session.begin():
            if outcome is None:
                service.record_cancelled(session, claimed, now=now)
                self._count("cancelled")
                return
            status = service.record_attempt(
                session, claimed, outcome, now=now, policy=self.policy, fraction=self.rng.random()
            )
        self._count(
            "claim_lost"
            if status is None
            else "retrying"
            if status == DeliveryStatus.PENDING
            else str(status)
        )
        if status is None:
            logger.warning(
                "webhook delivery %d outlived its claim; another replica has taken it over",
                claimed.id,
            )
        elif not outcome.delivered:
            logger.info(
                "webhook delivery %d to %s: %s (%s)", claimed.id, claimed.url, outcome.error, status
            )
