"""``GET /ready``: whether this replica can serve, check by check.

- ``database``: a cheap query answers within ``DATABASE_TIMEOUT_S`` (run on a thread of its
  own, so a hung connection cannot hold the probe; while one is still hanging the next probe
  fails at once instead of piling up threads);
- ``migrations``: the database is at the packaged migrations' head (computed once, when the
  app starts), so a replica of a newer version does not serve an old schema or vice versa;
- ``snapshots``: the serving snapshots were checked against the database within
  :func:`snapshot_deadline_s` (a few ``snapshot_refresh_s``);
- ``event_writer``: its threads run, and none has been committing one group for longer
  than ``WRITER_STUCK_S``;
- ``scheduler``: it runs (it refreshes the snapshots; with ``scheduler_enabled`` also the
  ticks, genetic steps and maintenance), and so does the exposure flusher.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from api import repositories as repo
from api.runtime import Runtime

__all__ = ["Check", "Readiness", "snapshot_deadline_s"]

DATABASE_TIMEOUT_S = 2.0
WRITER_STUCK_S = 30.0


def snapshot_deadline_s(snapshot_refresh_s: float) -> float:
    """How old the last good snapshot refresh may be: four intervals, at least 2 s (a refresh
    can be late by a slow query or a busy machine without anything being wrong)."""
    return max(4 * snapshot_refresh_s, 2.0)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Readiness:
    """The checks of one runtime; ``heads()`` gives the migration heads the code expects.

    They are read when first needed, not at start-up: reading them imports Alembic (and with
    it Mako and every SQL dialect), a few tenths of a second before the first ``/health``
    that serving does not need (benchmarks/startup.py)."""

    def __init__(self, runtime: Runtime, heads: Callable[[], list[str]]) -> None:
        self.runtime = runtime
        self._heads = heads
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None

    @functools.cached_property
    def heads(self) -> list[str]:
        return sorted(self._heads())

    def checks(self) -> list[Check]:
        database, migrations = self._database()
        return [
            database,
            migrations,
            self._snapshots(),
            self._writer(),
            self._scheduler(),
        ]

    # -- the checks ------------------------------------------------------------------------
    def _database(self) -> tuple[Check, Check]:
        outcome: dict[str, object] = {}

        def probe() -> None:
            try:
                with self.runtime.read_transaction() as session:
                    outcome["revisions"] = repo.database_revisions(session)
            except Exception as error:  # any failure means "not reachable": say which
                outcome["error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"

        with self._lock:
            if self._probe is not None and self._probe.is_alive():
                unknown = Check("migrations", False, "unknown: the database did not answer")
                return Check("database", False, "an earlier query has not answered yet"), unknown
            thread = threading.Thread(target=probe, name="ranktune-ready-probe", daemon=True)
            self._probe = thread
            thread.start()
        thread.join(DATABASE_TIMEOUT_S)
        if thread.is_alive():
            return (
                Check("database", False, f"no answer within {DATABASE_TIMEOUT_S:g} s"),
                Check("migrations", False, "unknown: the database did not answer"),
            )
        if "error" in outcome:
            return (
                Check("database", False, f"query failed: {outcome['error']}"),
                Check("migrations", False, "unknown: the database did not answer"),
            )
        revisions = sorted(outcome.get("revisions", []))  # type: ignore[call-overload]
        database = Check("database", True, "reachable")
        if revisions == self.heads:
            return database, Check("migrations", True, f"at head {', '.join(self.heads)}")
        found = ", ".join(revisions) or "none"
        return database, Check(
            "migrations",
            False,
            f"database at revision {found}, this version expects {', '.join(self.heads)} "
            "(run `ranktune db upgrade`, or deploy the version that matches the database)",
        )

    def _snapshots(self) -> Check:
        refreshed = self.runtime.serving.refreshed_at
        deadline = snapshot_deadline_s(self.runtime.settings.snapshot_refresh_s)
        if refreshed is None:
            return Check("snapshots", False, "not loaded yet")
        age = time.monotonic() - refreshed
        if age > deadline:
            return Check(
                "snapshots",
                False,
                f"last refreshed {age:.1f} s ago; expected within {deadline:g} s "
                "(the database may be failing: see the log)",
            )
        count = len(self.runtime.serving.snapshots())
        return Check("snapshots", True, f"{count} loaded, refreshed {age:.1f} s ago")

    def _writer(self) -> Check:
        writer = self.runtime.writer
        if not writer.alive():
            return Check("event_writer", False, "not running")
        now = time.monotonic()
        busy = [now - since for since in list(writer.busy_since.values())]
        if busy and max(busy) > WRITER_STUCK_S:
            return Check(
                "event_writer",
                False,
                f"one commit has been running for {max(busy):.0f} s (stuck: expected under "
                f"{WRITER_STUCK_S:g} s)",
            )
        return Check("event_writer", True, f"running, {writer.queued()} requests queued")

    def _scheduler(self) -> Check:
        runtime = self.runtime
        scheduler = runtime.scheduler
        if scheduler is None or not scheduler.running:
            return Check("scheduler", False, "not running")
        if not runtime.flusher_alive():
            return Check("scheduler", False, "the exposure flusher is not running")
        jobs = (
            "snapshot refresh, ticks, genetic steps, maintenance"
            if runtime.settings.scheduler_enabled
            else "snapshot refresh only (RANKTUNE_SCHEDULER_ENABLED=false)"
        )
        return Check("scheduler", True, f"running: {jobs}")
