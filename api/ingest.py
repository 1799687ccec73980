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

Bounds: the same transaction adds each accepted event to its ticket's row of
``ticket_credits`` (an atomic upsert, so replicas agree) and credits at most the ticket's
limit of each event type (``api.limits``); the excess is stored but marked
``over_ticket_limit``.

Counting: the same transaction adds the accepted rows' totals (per arm, group, type, reason,
report bucket and segment) to ``pending_batches`` as one packed row per experiment
(``api.pending``), which is what the ticks read; duplicates and refused requests add
nothing, and a rolled-back group adds nothing either. Events that can never be credited
(reason ``inactive``) are stored only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from api.db import driver_rows as _driver_rows
from api.limits import CREDITED, INACTIVE, OVER_TICKET_LIMIT
from api.models import Event
from api.pending import PendingRow, pack_batch
from api.repositories import insert_pending_batches
from api.telemetry import Telemetry

logger = logging.getLogger("ranktune.ingest")


class EventRow(NamedTuple):
    """One event to store: the first seven fields in the column order of ``INSERT_COLUMNS``
    (a tuple: cheap to build for every event of every request), then how it is bounded."""

    experiment_id: int
    arm_id: int
    group: str
    type: str
    # Shadows tuple.count(), which nothing here uses; the name is the column's and the API's.
    count: int  # type: ignore[assignment]
    event_id: str | None
    payload_hash: str | None
    # The ticket's key (TicketClaims.key) and the most events of this type it may credit;
    # None for server-counted exposures, which are credited whole.
    ticket: bytes | None = None
    limit: int | None = None
    reason: str = CREDITED  # why it will not be credited, if it will not (api.limits)
    bucket: int = 0  # the unit's report bucket (api.serving.REPORT_BUCKETS)
    segment: int = 0  # the segment's index (the ticket's; 0 when not segmented)


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
    """Threads that commit queued event batches in groups (one per connection).

    One thread on SQLite, whose writers take turns anyway. On PostgreSQL a second thread on
    a second connection lets one group's COPY and upserts run while another commits: the
    database does the work of both at once, where one connection kept it half idle. Two
    groups that touch the same keys stay correct: the unique event id makes one of them
    retry (and see the other's rows), the ``ticket_credits`` upserts lock their rows in key
    order, and the pending counts are only inserted (``pending_batches``).
    """

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        max_group_rows: int = 20_000,
        retries: int = 5,
        threads: int = 1,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._session_factory = session_factory
        # Commit latencies and uncredited events for /metrics (api.observability).
        self.telemetry = telemetry or Telemetry()
        # time.monotonic() at which each writer thread began the group it is committing
        # (absent while it waits for work): /ready calls a long-running one stuck.
        self.busy_since: dict[int, float] = {}
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._max_group_rows = max_group_rows
        self._retries = retries
        self._thread_count = threads
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._run, name=f"ranktune-writer-{index}", daemon=True)
                for index in range(self._thread_count)
            ]
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        """Commit everything queued, then stop (one end marker per thread: each thread
        stops at the first it takes, after everything queued before it)."""
        if self._threads:
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()
            self._threads = []

    def alive(self) -> bool:
        """Whether every writer thread runs (False before start and after stop)."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def queued(self) -> int:
        """Requests waiting for a writer thread (approximate, as Queue.qsize is)."""
        return self._queue.qsize()

    def submit(self, rows: list[EventRow]) -> Future[IngestResult]:
        pending = _Pending(rows)
        if not self._threads:
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
        me = threading.get_ident()
        started = self.busy_since[me] = time.monotonic()
        try:
            self._write_group_timed(group, started)
        finally:
            self.busy_since.pop(me, None)

    def _write_group_timed(self, group: list[_Pending], started: float) -> None:
        for attempt in range(self._retries):
            try:
                results, uncredited = self._commit(group)
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
            self.telemetry.record_commit(time.monotonic() - started, uncredited)
            for pending, result in zip(group, results, strict=True):
                pending.future.set_result(result)
            return

    @staticmethod
    def _fail(group: list[_Pending], error: Exception) -> None:
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _commit(
        self, group: list[_Pending]
    ) -> tuple[list[IngestResult], dict[tuple[int, str], int]]:
        """Store the group in one transaction: each request's result, and the stored events
        that will not be (fully) credited, by experiment and reason."""
        now = datetime.now(UTC)
        keys: set[tuple[int, str]] = set()
        with_id = 0
        for pending in group:
            for row in pending.rows:
                if row.event_id is not None:
                    keys.add((row.experiment_id, row.event_id))
                    with_id += 1
        if len(keys) == with_id:
            # No event_id repeats inside the group, so if none is stored yet every event is
            # new and the screening below would accept everything: insert straight away and
            # let the unique constraint say otherwise. Retries are the exception, and they
            # cost one rolled-back transaction before the screened path; new events skip a
            # lookup of every id (about a fifth of the writer's time).
            try:
                with self._session_factory() as session, session.begin():
                    uncredited = insert_events(
                        session.connection(),
                        [row for pending in group for row in pending.rows],
                        now,
                    )
                return [IngestResult(accepted=len(pending.rows)) for pending in group], uncredited
            except IntegrityError:
                pass
        with self._session_factory() as session, session.begin():
            connection = session.connection()
            seen = existing_event_hashes(connection, keys)
            results: list[IngestResult] = []
            to_insert: list[EventRow] = []
            for pending in group:
                result, new_rows = _screen(pending.rows, seen)
                results.append(result)
                to_insert.extend(new_rows)
            uncredited = insert_events(connection, to_insert, now)
        return results, uncredited


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


# -- the writer's queries -----------------------------------------------------------------
# They are the only queries outside api.repositories: they run for every event, and going
# straight to the driver (executemany / unnest) instead of through the ORM's bulk insert
# and an expanding IN took the writer from about 40-130 us to a few us per event (COPY on
# PostgreSQL). They
# store exactly what the ORM stored: the same columns, and ``received_at`` passed through
# the column type's own bind processing (UTCDateTime), done once per group.
INSERT_COLUMNS = (
    "experiment_id",
    "arm_id",
    "assignment_group",
    "type",
    "count",
    "event_id",
    "payload_hash",
    "received_at",
    "credited",
)
# The columns' PostgreSQL types, for COPY's binary format (which the server reads without
# parsing text).
COPY_TYPES = (
    "int4",
    "int4",
    "varchar",
    "varchar",
    "int4",
    "varchar",
    "varchar",
    "timestamptz",
    "int4",
)
_ID_CHUNK = 5000  # SQLite allows 32,766 bound variables per statement since 3.32


def existing_event_hashes(
    connection: Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], str | None]:
    """Payload hashes of already stored events, keyed by (experiment_id, event_id)."""
    by_experiment: dict[int, list[str]] = {}
    for experiment_id, event_id in keys:
        by_experiment.setdefault(experiment_id, []).append(event_id)
    postgres = connection.dialect.name == "postgresql"
    found: dict[tuple[int, str], str | None] = {}
    for experiment_id, event_ids in by_experiment.items():
        for start in range(0, len(event_ids), _ID_CHUNK):
            chunk = event_ids[start : start + _ID_CHUNK]
            if postgres:
                sql = (
                    "SELECT event_id, payload_hash FROM events "
                    "WHERE experiment_id = %s AND event_id = ANY(%s)"
                )
                params: tuple[Any, ...] = (experiment_id, chunk)
            else:
                sql = (
                    "SELECT event_id, payload_hash FROM events WHERE experiment_id = ? "
                    f"AND event_id IN ({','.join('?' * len(chunk))})"
                )
                params = (experiment_id, *chunk)
            for event_id, payload_hash in connection.exec_driver_sql(sql, params):
                found[(experiment_id, event_id)] = payload_hash
    return found


def insert_events(
    connection: Connection, rows: list[EventRow], now: datetime
) -> dict[tuple[int, str], int]:
    """Store the rows, bound their credit, add them to ``pending_batches``: in the caller's
    transaction, so that all or none of it happens. Returns how many of the rows will not be
    (fully) credited, by experiment and reason (:func:`uncredited_events`).

    What a tick counts (``pending_batches``) is exactly what is stored, split by reason.
    """
    if not rows:
        return {}
    dialect = connection.dialect
    process = Event.__table__.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    received_at = process(now) if process is not None else now
    credited = credit_tickets(connection, rows)
    values = [(*row[:7], received_at, part) for row, part in zip(rows, credited, strict=True)]
    columns = ", ".join(INSERT_COLUMNS)
    if dialect.name == "postgresql":
        _copy_events(connection, columns, values)
    else:
        placeholders = ", ".join("?" * len(INSERT_COLUMNS))
        connection.exec_driver_sql(
            f"INSERT INTO events ({columns}) VALUES ({placeholders})", values
        )
    add_pending_counts(connection, rows, credited)
    return uncredited_events(rows, credited)


def uncredited_events(
    rows: Iterable[EventRow], credited: Iterable[int]
) -> dict[tuple[int, str], int]:
    """Events (rows, whatever their count) stored without full credit, by (experiment id,
    reason): the row's reason, or ``over_ticket_limit`` when its ticket could credit only
    part of it (or nothing)."""
    tally: dict[tuple[int, str], int] = {}
    for row, part in zip(rows, credited, strict=True):
        reason = row.reason
        if reason == CREDITED:
            if part >= row.count:
                continue
            reason = OVER_TICKET_LIMIT
        key = (row.experiment_id, reason)
        tally[key] = tally.get(key, 0) + 1
    return tally


def credit_tickets(connection: Connection, rows: Sequence[EventRow]) -> list[int]:
    """The part of each row's count that its ticket may still credit, in row order.

    Adds every bounded row to its ticket's running total in ``ticket_credits`` (one upsert
    per batch that returns the new totals, so two replicas' writers never both credit the
    same allowance), then hands out what is left of each ticket's ``limit`` in the order of
    the rows. Rows that will not be credited anyway credit 0; server-counted exposures (no
    ticket) credit their whole count.
    """
    added: dict[bytes, int] = {}
    keys: list[bytes | None] = []
    for row in rows:
        if row.ticket is not None and row.reason == CREDITED:
            bounded = row.ticket + row.type.encode()
            added[bounded] = added.get(bounded, 0) + row.count
            keys.append(bounded)
        else:
            keys.append(None)
    totals = _add_ticket_credits(connection, added) if added else {}
    reported = {key: totals[key] - count for key, count in added.items()}  # before this batch
    credited: list[int] = []
    for row, ticket_key in zip(rows, keys, strict=True):
        if row.reason != CREDITED:
            credited.append(0)
        elif ticket_key is None or row.limit is None:
            credited.append(row.count)
        else:
            before = reported[ticket_key]
            reported[ticket_key] = before + row.count
            credited.append(max(0, min(row.count, row.limit - before)))
    return credited


_CREDIT_CHUNK = 10_000  # keys per statement (SQLite: 2 bound values each, under 32,766)


def _add_ticket_credits(connection: Connection, added: dict[bytes, int]) -> dict[bytes, int]:
    """Upsert the counts into ``ticket_credits``; the new totals by key.

    Keys go in sorted order, so that concurrent writers on PostgreSQL lock the rows in one
    order and cannot deadlock (SQLite's writer holds the only write lock anyway). On
    PostgreSQL the keys and counts travel as two comma-separated strings that the server
    splits: the driver's dumping of Python lists, element by element, cost more than the
    upsert itself.
    """
    keys = sorted(added)
    totals: dict[bytes, int] = {}
    postgres = connection.dialect.name == "postgresql"
    for start in range(0, len(keys), _CREDIT_CHUNK):
        chunk = keys[start : start + _CREDIT_CHUNK]
        params: tuple[Any, ...]
        if postgres:
            rows = (
                "SELECT decode(k, 'hex'), c::bigint FROM unnest("
                "string_to_array(%s, ','), string_to_array(%s, ',')) AS t(k, c)"
            )
            params = (",".join(key.hex() for key in chunk), ",".join(str(added[k]) for k in chunk))
        else:
            rows = "VALUES " + ", ".join(["(?, ?)"] * len(chunk))
            params = tuple(chain.from_iterable((key, added[key]) for key in chunk))
        statement = (
            f"INSERT INTO ticket_credits (key, count) {rows} ON CONFLICT (key) "
            "DO UPDATE SET count = ticket_credits.count + excluded.count RETURNING key, count"
        )
        totals.update(
            (bytes(key), total) for key, total in _driver_rows(connection, statement, params)
        )
    return totals


def pending_totals(
    rows: Iterable[EventRow], credited: Iterable[int]
) -> list[tuple[int, int, str, str, str, int, int, int]]:
    """(experiment_id, arm_id, group, type, reason, bucket, segment, total count) of the
    rows, each key once (in no particular order).

    The credited part of a row counts under reason "", the rest under the row's reason (or
    ``over_ticket_limit``); rows that can never be credited (``inactive``) count nowhere.
    """
    totals: dict[tuple[int, int, str, str, str, int, int], int] = {}
    for row, part in zip(rows, credited, strict=True):
        if row.reason == INACTIVE:
            continue
        if part:
            key = (
                row.experiment_id,
                row.arm_id,
                row.group,
                row.type,
                CREDITED,
                row.bucket,
                row.segment,
            )
            totals[key] = totals.get(key, 0) + part
        if row.count > part:
            reason = row.reason or OVER_TICKET_LIMIT
            key = (
                row.experiment_id,
                row.arm_id,
                row.group,
                row.type,
                reason,
                row.bucket,
                row.segment,
            )
            totals[key] = totals.get(key, 0) + row.count - part
    return [(*key, total) for key, total in totals.items()]


def add_pending_counts(
    connection: Connection, rows: Iterable[EventRow], credited: Iterable[int]
) -> None:
    """Insert the rows' totals into ``pending_batches``: one packed batch per experiment
    (``api.pending``). Append-only: no row is updated, so concurrent writers (and a tick)
    never wait on each other here."""
    by_experiment: dict[int, list[PendingRow]] = {}
    for experiment_id, arm_id, group, type_, reason, bucket, segment, total in pending_totals(
        rows, credited
    ):
        by_experiment.setdefault(experiment_id, []).append(
            PendingRow(arm_id, group, type_, reason, bucket, total, segment)
        )
    insert_pending_batches(
        connection,
        [(experiment_id, pack_batch(keys)) for experiment_id, keys in by_experiment.items()],
    )


def _copy_events(connection: Connection, columns: str, values: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY FROM STDIN, about 1.6x the rows per second of a multi-row INSERT.

    COPY checks the same constraints as INSERT; a driver error is re-raised as SQLAlchemy's
    exception (IntegrityError for a stored event_id), as exec_driver_sql would.
    """
    statement = f"COPY events ({columns}) FROM STDIN (FORMAT BINARY)"
    # psycopg's own connection: its cursor has copy(), which the DBAPI protocol types lack.
    dbapi_connection: Any = connection.connection.dbapi_connection
    try:
        with dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(COPY_TYPES)
            for value in values:
                copy.write_row(value)
    except connection.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            statement, None, error, connection.dialect.loaded_dbapi.Error
        ) from error
