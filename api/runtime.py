"""What one replica holds while it runs: engine, serving snapshots, event writer, scheduler,
webhook deliverer."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import datetime

import numpy as np
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api import repositories as repo
from api.db import is_sqlite, make_engine, make_session_factory
from api.deliverer import WebhookDeliverer
from api.heavy_reads import HeavyReadLimit
from api.ingest import EventRow, EventWriter, IngestResult
from api.schemas import event_batch_model
from api.services.common import now_utc
from api.services.decisions import DecisionOutcome, evaluate_decisions
from api.services.events import CLOCK_SKEW_S, EventIntake
from api.services.evolution import run_evolution_step
from api.services.experiments import discard_pending_of_stopped
from api.services.retention import prune
from api.services.segments import register_segments
from api.services.ticks import apply_tick, prepare_propensities
from api.services.tokens import active_tokens, note_use
from api.serving import ServingState
from api.settings import Settings
from api.telemetry import Telemetry
from api.tickets import TicketSigner, new_secret
from api.tokens import TokenTable

logger = logging.getLogger("ranktune.runtime")
TICKET_KEY = "ticket_key"
# How often a replica writes which stored tokens were used (``api_tokens.last_used_at``).
TOKEN_USE_WRITE_S = 60.0


class DatabaseNotReady(RuntimeError):
    pass


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        self.session_factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.read_session_factory: sessionmaker[Session] = make_session_factory(
            self.engine, read_only=True
        )
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.signer = TicketSigner(self._ticket_key())
        self.serving = ServingState(self.signer)
        # What this replica counts for /metrics (api.telemetry, api.observability).
        self.telemetry = telemetry or Telemetry()
        # The active stored tokens (api.tokens), reloaded with the snapshots.
        self.tokens = TokenTable()
        self._tokens_used_written = time.monotonic()
        self.writer = EventWriter(
            self.session_factory,
            threads=settings.event_writers or (1 if is_sqlite(settings.database_url) else 2),
            telemetry=self.telemetry,
        )
        self.rng = np.random.default_rng()
        self.heavy_reads = HeavyReadLimit(settings.heavy_reads, settings.heavy_read_wait_s)
        self.deliverer = WebhookDeliverer(
            self.session_factory, self.read_session_factory, settings, replica=self.replica
        )
        self.scheduler: BackgroundScheduler | None = None
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        # One flush at a time: a flush that finds the counters empty because another flush
        # has just drained them must still wait for that one to commit (a tick or a stop
        # flushes first, and must then see everything counted before it).
        self._flush_lock = threading.Lock()
        # time.monotonic() of the last exposure flush that succeeded (or found nothing to
        # write): /metrics shows the time since as the flush lag.
        self.flushed_at = time.monotonic()
        self.event_batch_model = event_batch_model(settings.max_batch_events)

    def event_intake(self) -> EventIntake:
        """The checks of reported events, against this replica's tickets and snapshots."""
        return EventIntake(self.signer, self.serving)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits when the block ends (rolls back on an exception)."""
        with self.session_factory() as session, session.begin():
            yield session

    @contextmanager
    def read_transaction(self) -> Iterator[Session]:
        """A session that only reads (``api.db.read_only_view``): on SQLite it never waits
        for, nor holds up, the write lock, however long it takes."""
        with self.read_session_factory() as session, session.begin():
            yield session

    def _ticket_key(self) -> str:
        if self.settings.ticket_secret is not None:
            return self.settings.ticket_secret.get_secret_value()
        try:
            with self.transaction() as session:
                key = repo.get_secret(session, TICKET_KEY)
                if key is None:
                    key = new_secret()
                    repo.add_secret(session, TICKET_KEY, key)
                return key
        except IntegrityError:
            # Another replica created it first; use theirs.
            with self.transaction() as session:
                key = repo.get_secret(session, TICKET_KEY)
                assert key is not None
                return key
        except SQLAlchemyError as error:
            raise DatabaseNotReady(
                f"the database at {self.engine.url.render_as_string(hide_password=True)} is not "
                "ready; run `ranktune db upgrade` first"
            ) from error

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.serving.refresh(self.read_session_factory)
        self.refresh_tokens()
        self.writer.start()
        scheduler = BackgroundScheduler(timezone="UTC")
        jobs = [(self.refresh_snapshots, self.settings.snapshot_refresh_s)]
        if self.settings.scheduler_enabled:
            jobs += [
                (self.run_due_ticks, self.settings.scheduler_poll_s),
                (self.run_due_evolutions, self.settings.scheduler_poll_s),
                (self.run_maintenance, self.settings.maintenance_interval_s),
            ]
        for job, seconds in jobs:
            # One run at a time per job; a run that is late is coalesced, not queued.
            scheduler.add_job(
                job, "interval", seconds=seconds, id=job.__name__, max_instances=1, coalesce=True
            )
        scheduler.start()
        self.scheduler = scheduler
        if self.settings.scheduler_enabled:
            self.deliverer.start()  # a thread of its own: a slow receiver delays no job
        self._flusher = threading.Thread(
            target=self._flush_every_interval, name="ranktune-exposure-flush", daemon=True
        )
        self._flusher.start()

    def flusher_alive(self) -> bool:
        return self._flusher is not None and self._flusher.is_alive()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        self.deliverer.stop()
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush_exposures()
        self.writer.stop()
        self.write_token_use()
        self.engine.dispose()

    # -- jobs ------------------------------------------------------------------------------
    def _flush_every_interval(self) -> None:
        """Flush server-counted exposures every ``exposure_flush_s``, on a fixed cadence.

        A thread of its own rather than a scheduler job: a job whose run is late (the writer
        busy with a big group) is skipped until the next interval, which let a crash lose up
        to twice the interval. Here a slow flush is followed at once by the next one, so a
        kill loses at most the interval plus the commit under way (tests/process/
        test_crash.py measures it).
        """
        interval = self.settings.exposure_flush_s
        due = time.monotonic() + interval
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            try:
                self.flush_exposures()
            except Exception:
                logger.exception("exposure flush failed; the counts wait for the next one")
            due = max(due + interval, time.monotonic())

    def refresh_snapshots(self) -> None:
        try:
            self.serving.refresh(self.read_session_factory)
        except SQLAlchemyError:
            logger.warning("snapshot refresh failed; serving the previous snapshots", exc_info=True)
        self.refresh_tokens()

    def refresh_tokens(self) -> None:
        """Reload the active stored tokens (so a revocation anywhere reaches this replica
        within one snapshot refresh), and now and then write which ones were used. On a
        database error the previous table stays."""
        try:
            with self.read_transaction() as session:
                self.tokens.replace(active_tokens(session))
        except SQLAlchemyError:
            logger.warning("token refresh failed; keeping the previous tokens", exc_info=True)
            return
        if time.monotonic() - self._tokens_used_written >= TOKEN_USE_WRITE_S:
            self.write_token_use()

    def write_token_use(self) -> None:
        """Write ``last_used_at`` of the stored tokens used since the last write."""
        self._tokens_used_written = time.monotonic()
        used = self.tokens.drain_used()
        if not used:
            return
        try:
            with self.transaction() as session:
                note_use(session, used)
        except SQLAlchemyError:
            logger.warning("could not note which tokens were used", exc_info=True)

    def flush_exposures(self, timeout_s: float = 60.0) -> None:
        """Write the exposures counted in memory; on failure keep them for the next flush.

        The counts go back only when the write has failed for certain (the writer reports
        an exception). A write that is merely slow is waited for, never restored, since it
        may still commit: restoring it too would count those exposures twice.
        """
        with self._flush_lock:
            self._flush_exposures(timeout_s)

    def _flush_exposures(self, timeout_s: float) -> None:
        started = time.monotonic()
        self.register_new_segments()
        counts = self.serving.drain_exposures()
        if not counts:
            self.flushed_at = started
            return
        rows = [
            EventRow(
                experiment_id,
                arm_id,
                group,
                "exposure",
                count,
                None,
                None,
                bucket=bucket,
                segment=segment,
            )
            for (experiment_id, arm_id, group, bucket, segment), count in counts.items()
        ]
        future = self.writer.submit(rows)

        def restore_if_failed(done: Future[IngestResult]) -> None:
            if done.exception() is not None:
                logger.warning("exposure flush failed; keeping the counts for the next flush")
                self.serving.restore_exposures(counts)

        future.add_done_callback(restore_if_failed)
        with contextlib.suppress(FutureTimeout, SQLAlchemyError):
            future.result(timeout=timeout_s)
            self.flushed_at = started

    def register_new_segments(self) -> None:
        """Open the segments this replica saw first (api.services.segments), each
        experiment in a transaction of its own; on failure they wait for the next flush.
        Snapshots reload at once when some segment opened, so this replica serves it from
        its own posteriors without waiting for the refresher."""
        pending = self.serving.drain_new_segments()
        opened = False
        for experiment_id, names in pending.items():
            try:
                with self.transaction() as session:
                    opened |= bool(register_segments(session, experiment_id, names, now_utc()))
            except SQLAlchemyError:
                logger.warning("segments of experiment %s not registered yet", experiment_id)
                self.serving.restore_new_segments({experiment_id: names})
        if opened:
            with contextlib.suppress(SQLAlchemyError):
                self.serving.refresh(self.read_session_factory)

    def run_due_ticks(self) -> None:
        """Due ticks of the running experiments; after each applied one, the decisions
        (:meth:`evaluate_decisions`, once the tick has committed)."""
        applied: list[int] = []

        def tick(session: Session, experiment_id: int) -> bool:
            started = time.perf_counter()
            with self.read_transaction() as reading:  # before the lock: see apply_tick
                prepared = prepare_propensities(reading, experiment_id, now_utc())
            recorded = apply_tick(
                session,
                experiment_id,
                now=now_utc(),
                rng=self.rng,
                only_if_due=True,
                replica=self.replica,
                prepared=prepared,
            )
            if recorded is not None:
                self.telemetry.record_tick(
                    experiment_id, recorded.applied, time.perf_counter() - started
                )
                if recorded.applied:
                    applied.append(experiment_id)
            return recorded is not None

        self._for_each_experiment(repo.running_experiment_ids, tick, "tick")
        outcomes = [self.evaluate_decisions(experiment_id) for experiment_id in applied]
        if any(outcome is not None and outcome.serving_changed for outcome in outcomes):
            self.refresh_snapshots()

    def evaluate_decisions(
        self, experiment_id: int, *, now: datetime | None = None
    ) -> DecisionOutcome | None:
        """Guardrails, circuit breaker and winner after an applied tick, in a transaction
        of their own: a failure is logged and returns None, and the tick stays applied
        (the next applied tick evaluates again)."""
        try:
            with self.transaction() as session:
                return evaluate_decisions(
                    session,
                    experiment_id,
                    now=now or now_utc(),
                    rng=self.rng,
                    replica=self.replica,
                )
        except Exception:
            logger.exception(
                "decisions of experiment %s failed; the tick stays applied", experiment_id
            )
            return None

    def run_due_evolutions(self) -> None:
        """Scheduled genetic steps of the experiments that enabled them.

        Each step locks its experiment row like a tick, so it never overlaps a tick of the
        same experiment and only one replica applies it (the others find it not due).
        """

        def evolve(session: Session, experiment_id: int) -> bool:
            outcome = run_evolution_step(
                session,
                experiment_id,
                now=now_utc(),
                rng=self.rng,
                only_if_due=True,
                replica=self.replica,
                trigger="schedule",
            )
            if outcome is not None and outcome.applied:
                self.telemetry.record_genetic_step(experiment_id)
                return True
            return False

        self._for_each_experiment(repo.evolving_experiment_ids, evolve, "genetic step")

    def _for_each_experiment(
        self,
        experiment_ids: Callable[[Session], list[int]],
        step: Callable[[Session, int], bool],
        what: str,
    ) -> None:
        """``step`` for every experiment ``experiment_ids`` lists, each in its own
        transaction: one whose step fails (a lock timeout, a broken row) is rolled back,
        logged and retried at the next poll, and does not stop the others. Snapshots are
        reloaded when some step changed what is served."""
        try:
            with self.read_session_factory() as session:
                listed = experiment_ids(session)
        except SQLAlchemyError:
            logger.warning("%s schedule unavailable; it will be retried", what, exc_info=True)
            return
        changed = False
        for experiment_id in listed:
            try:
                with self.transaction() as session:
                    changed = step(session, experiment_id) or changed
            except Exception:
                logger.exception(
                    "%s of experiment %s failed; it will be retried", what, experiment_id
                )
        if changed:
            self.refresh_snapshots()

    def run_maintenance(self) -> None:
        """Forget per-ticket counts past their attribution window (with a minute's margin for
        clock differences), drop pending counts that no tick will consume (stopped
        experiments), fold the ticks' report count batches (:meth:`fold_report_counts`), and
        prune what is older than the retention window
        (``api.services.retention``: stored events, finished webhook deliveries)."""
        try:
            with self.transaction() as session:
                purged = repo.purge_expired_ticket_credits(session, time.time(), CLOCK_SKEW_S)
            with self.transaction() as session:
                discarded = discard_pending_of_stopped(session)
        except SQLAlchemyError:
            logger.warning("maintenance failed; it will be retried", exc_info=True)
            return
        self.fold_report_counts()
        if purged:
            logger.info("forgot the counts of %d expired tickets", purged)
        for name, totals in discarded.items():
            logger.info("experiment %r is stopped: discarded pending counts %s", name, totals)
        self.prune()

    def fold_report_counts(self) -> None:
        """Fold the report counts the applied ticks appended (``metric_count_batches``)
        into ``metric_counts``, each experiment in its own transaction: the report reads
        both, so this only keeps the batches few (a tick of a segmented experiment appends
        its counts instead of upserting one row per key under the experiment's lock)."""

        def fold(session: Session, experiment_id: int) -> bool:
            repo.fold_metric_batches(session, experiment_id)
            return False  # nothing served changes

        self._for_each_experiment(repo.experiments_with_metric_batches, fold, "report count fold")

    def prune(self, *, now: datetime | None = None) -> None:
        """Delete the events (and finished deliveries, notifications) older than
        ``event_retention_days``, in short batches; logged, retried at the next run when it
        fails."""
        try:
            pruned = prune(
                self.transaction,
                now=now or now_utc(),
                retention_days=self.settings.event_retention_days,
            )
        except SQLAlchemyError:
            logger.warning("pruning failed; it will be retried", exc_info=True)
            return
        if pruned.events or pruned.deliveries or pruned.notifications or pruned.segment_records:
            logger.info(
                "pruned %d events, %d webhook deliveries, %d notifications and %d segmented "
                "ticks' records older than %g days in %d batches%s",
                pruned.events,
                pruned.deliveries,
                pruned.notifications,
                pruned.segment_records,
                self.settings.event_retention_days,
                pruned.batches,
                "" if pruned.finished else " (more at the next run)",
            )
