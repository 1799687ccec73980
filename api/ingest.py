"""Durable, idempotent event ingestion with group commit.

Requests hand their validated rows to one writer thread per replica. The writer takes every
request waiting in its queue, checks idempotency for all of them, inserts the new rows in a
single transaction and commits once; only then does each request get its answer. One fsync
then acknowledges many requests, so durability does not cost throughput.

Idempotency: ``(experiment_id, event_id)`` is unique. A retried event with the same payload
is a duplicate (accepted, counted once); the same id with another payload is a conflict, and
the whole request is refused, storing nothing of it. If another replica inserts the same id
between our check and our insert, the unique constraint fails the transaction and the
writer simply runs the group again: the second check sees the other replica's row.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from api import repositories as repo

logger = logging.getLogger("ranktune.ingest")


@dataclass(frozen=True)
class EventRow:
    experiment_id: int
    arm_id: int
    group: str
    type: str
    count: int
    event_id: str | None
    payload_hash: str | None


@dataclass(frozen=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    conflict_index: int | None = None  # index in the request of the first conflicting event


@dataclass
class _Pending:
    rows: list[EventRow]
    future: Future[IngestResult] = field(default_factory=Future)


class EventWriter:
    """One thread that commits queued event batches in groups."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        max_group_rows: int = 20_000,
        retries: int = 5,
    ) -> None:
        self._session_factory = session_factory
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._max_group_rows = max_group_rows
        self._retries = retries
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ranktune-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit everything queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, rows: list[EventRow]) -> Future[IngestResult]:
        pending = _Pending(rows)
        if self._thread is None:
            # Not started (e.g. a command-line tool): write synchronously.
            self._write_group([pending])
        else:
            self._queue.put(pending)
        return pending.future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            size = len(first.rows)
            while size < self._max_group_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item.rows)
            self._write_group(group)

    def _write_group(self, group: list[_Pending]) -> None:
        for attempt in range(self._retries):
            try:
                results = self._commit(group)
            except (IntegrityError, OperationalError) as error:
                if attempt + 1 == self._retries:
                    self._fail(group, error)
                    return
                logger.info("event group retried after %s", type(error).__name__)
                continue
            except Exception as error:
                logger.exception("event group failed")
                self._fail(group, error)
                return
            for pending, result in zip(group, results, strict=True):
                pending.future.set_result(result)
            return

    @staticmethod
    def _fail(group: list[_Pending], error: Exception) -> None:
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _commit(self, group: list[_Pending]) -> list[IngestResult]:
        now = datetime.now(UTC)
        with self._session_factory() as session, session.begin():
            keys = {
                (row.experiment_id, row.event_id)
                for pending in group
                for row in pending.rows
                if row.event_id is not None
            }
            seen = repo.existing_event_hashes(session, keys)
            results: list[IngestResult] = []
            to_insert: list[dict[str, Any]] = []
            for pending in group:
                result, new_rows = _screen(pending.rows, seen)
                results.append(result)
                to_insert.extend(_as_record(row, now) for row in new_rows)
            repo.insert_events(session, to_insert)
        return results


def _screen(
    rows: list[EventRow], seen: dict[tuple[int, str], str | None]
) -> tuple[IngestResult, list[EventRow]]:
    """Split one request into new rows and duplicates; refuse it whole on a conflict.

    ``seen`` holds the payload hashes known so far (stored, or added earlier in this group)
    and is updated only when the request is accepted.
    """
    added: dict[tuple[int, str], str | None] = {}
    new_rows: list[EventRow] = []
    duplicates = 0
    for index, row in enumerate(rows):
        if row.event_id is None:
            new_rows.append(row)
            continue
        key = (row.experiment_id, row.event_id)
        known = added[key] if key in added else seen.get(key, _MISSING)
        if known is _MISSING:
            added[key] = row.payload_hash
            new_rows.append(row)
        elif known == row.payload_hash:
            duplicates += 1
        else:
            return IngestResult(conflict_index=index), []
    seen.update(added)
    return IngestResult(accepted=len(new_rows), duplicates=duplicates), new_rows


_MISSING: Any = object()


def _as_record(row: EventRow, now: datetime) -> dict[str, Any]:
    return {
        "experiment_id": row.experiment_id,
        "arm_id": row.arm_id,
        "group": row.group,
        "type": row.type,
        "count": row.count,
        "event_id": row.event_id,
        "payload_hash": row.payload_hash,
        "received_at": now,
        "tick_id": None,
    }
