"""Retention: stored events, finished webhook deliveries and their notifications are
deleted once they are older than the retention window (docs/retention.md).

Events. Every stored event was added to ``pending_batches`` in the transaction that stored
it (``api.ingest``), so the ticks never need the rows, and nothing else reads them: their
one use after the commit is the idempotency check of a retry, which only needs them while a
retry can still be accepted (``api.retention``). The job deletes them in small batches,
each its own short transaction in the primary key's order (the insertion order), with a
pause after each: on SQLite each batch holds the write lock for some tens of milliseconds
and the pause lets the event writer in; on PostgreSQL deleting old rows does not conflict with
inserting new ones.

Webhook deliveries that are over (delivered, failed, cancelled) and older than the window
go too, then notifications older than it that no delivery refers to, and the
per-(segment, arm) records of segmented ticks older than it (``tick_segment_windows``:
up to half a megabyte per tick of a dense window), each experiment's latest
``RECENT_TICKS`` kept for its segments' reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from api import repositories as repo
from api.errors import InvalidInput
from api.retention import DAY_S, RETRY_MARGIN_S, keep_s, longest_attribution_window_s
from api.services.report import RECENT_TICKS

# Rows per transaction: on SQLite the write lock's hold time, which delays the event
# writer's next commit. 2000 events took 24-33 ms on the shared test machine (5000: 70 ms,
# up to 530 ms under load); benchmarks/db_growth.py prints the mean and the longest.
BATCH_ROWS = 2000
# After each batch the job waits at least this long (and at least as long as the batch
# took): SQLite's busy handler retries a waiting writer at most 100 ms apart, so the
# writer always gets its turn between two batches.
PAUSE_S = 0.1
# One run stops after about this long; the next maintenance run goes on where it stopped
# (a first run on a large table may have millions of rows to delete).
RUN_BUDGET_S = 20.0
# Segmented ticks' records per transaction: each is up to 0.5 MB (a dense window of 1,000
# segments x 20 arms); the run deletes batches until the backlog or its budget is done.
RECORD_ROWS = 50


def check_attribution_window(window_s: float, retention_days: float | None, field: str) -> None:
    """Refuse an attribution window longer than the retention window allows (422 naming
    ``field``): a retry accepted after its original was pruned would count twice."""
    if retention_days is None:
        return
    longest = longest_attribution_window_s(retention_days)
    if window_s > longest:
        raise InvalidInput(
            f"{field}: {window_s:g} s; expected at most {longest:g} s: events are kept "
            f"(and retries recognised) for {retention_days:g} days "
            f"(RANKTUNE_EVENT_RETENTION_DAYS), and a ticket must expire {RETRY_MARGIN_S:g} s "
            "before that; raise the retention to allow a longer window",
            field=field,
        )


@dataclass
class Pruned:
    """What one run of :func:`prune` deleted, and whether it got through the backlog."""

    events: int = 0
    deliveries: int = 0
    notifications: int = 0
    segment_records: int = 0
    batches: int = 0
    busy_s: float = 0.0  # time in the event batches' transactions (on SQLite: holding the lock)
    longest_batch_s: float = 0.0  # the longest of them
    finished: bool = True  # False: the run's time budget ran out; the next run goes on


def cutoff(session: Session, now: datetime, retention_days: float) -> datetime:
    """Rows received before this are pruned: the retention window before ``now``, or the
    longest stored attribution window plus the margin when that is longer (an experiment
    created by a replica that allowed a longer window keeps its retries idempotent)."""
    keep = keep_s(retention_days, repo.longest_attribution_window_s(session))
    return now - timedelta(seconds=keep)


def prune(
    transaction: Callable[[], AbstractContextManager[Session]],
    *,
    now: datetime,
    retention_days: float,
    batch_rows: int = BATCH_ROWS,
    pause_s: float = PAUSE_S,
    budget_s: float = RUN_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Pruned:
    """Delete what is older than the window, ``batch_rows`` per ``transaction()``.

    ``now`` is the caller's clock (tests move it); the pauses and the budget use the
    process's monotonic clock.
    """
    pruned = Pruned()
    started = time.monotonic()
    with transaction() as session:
        before = cutoff(session, now, retention_days)
    after_id = 0
    while True:
        batch_started = time.monotonic()
        with transaction() as session:
            batch = repo.prune_events(session, before=before, after_id=after_id, limit=batch_rows)
        pruned.events += batch.deleted
        pruned.batches += 1
        took = time.monotonic() - batch_started
        pruned.busy_s += took
        pruned.longest_batch_s = max(pruned.longest_batch_s, took)
        if batch.last_id is None or batch.deleted < batch.examined:
            break
        after_id = batch.last_id
        if time.monotonic() - started > budget_s:
            pruned.finished = False
            return pruned
        sleep(max(pause_s, took))
    # Deliveries and notifications: decisions write a few a day; one batch each is plenty,
    # and what is left goes at the next run.
    purge_before = now - timedelta(seconds=retention_days * DAY_S)
    with transaction() as session:
        pruned.deliveries = repo.purge_finished_deliveries(
            session, before=purge_before, limit=batch_rows
        )
    with transaction() as session:
        pruned.notifications = repo.purge_notifications(
            session, before=purge_before, limit=batch_rows
        )
    while time.monotonic() - started <= budget_s:
        with transaction() as session:
            deleted = repo.purge_tick_segment_records(
                session, before=purge_before, keep_latest=RECENT_TICKS, limit=RECORD_ROWS
            )
        pruned.segment_records += deleted
        if deleted < RECORD_ROWS:
            return pruned
        sleep(pause_s)
    pruned.finished = False
    return pruned
