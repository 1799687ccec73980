"""Retention (api.retention, api.services.retention, docs/retention.md): stored events are
pruned once no retry can refer to them any more, in short batches beside the writer;
finished webhook deliveries and their notifications go too; idle experiments write nothing.

The clock is moved by storing rows as if they had arrived earlier, through the real intake
and writer (``EventIntake.rows`` and ``insert_events`` take the time), and by pruning
with a given ``now``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from api.enums import DeliveryStatus, NotificationKind
from api.ingest import EventRow, insert_events
from api.models import (
    Base,
    Event,
    Notification,
    Tick,
    TickSegmentWindow,
    Webhook,
    WebhookDelivery,
)
from api.retention import RETRY_MARGIN_S, keep_s, longest_attribution_window_s
from api.runtime import Runtime
from api.schemas import EventIn
from api.services.events import CLOCK_SKEW_S
from api.services.report import RECENT_TICKS
from api.services.retention import prune
from api.services.ticks import apply_tick
from api.settings import Settings
from ranktune.cli import UsageError, load_settings
from tests.api.helpers import (
    ADMIN,
    assert_error_shape,
    create,
    event,
    post_events,
    tickets_by_arm,
)
from tests.conftest import ClientFactory, similar_items
from tests.pending import pending_sum

HOUR = 3600.0
# The shortest retention the settings allow is 5 hours; the tests use 6.
RETENTION_DAYS = 0.25
RETENTION_S = RETENTION_DAYS * 86_400


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def store_as_of(runtime: Runtime, moment: float, events: list[dict[str, Any]]) -> None:
    """Store reported events as the route does, but as if they had arrived at ``moment``
    (unix seconds): the intake checks their tickets at that time and the writer stamps
    ``received_at`` with it."""
    rows = runtime.event_intake().rows([EventIn(**e) for e in events], now=moment)
    with runtime.transaction() as session:
        insert_events(session.connection(), rows, datetime.fromtimestamp(moment, UTC))


def stored_ids(runtime: Runtime) -> list[str | None]:
    """The stored event ids, in storage order (server-counted exposures have none)."""
    with runtime.read_transaction() as session:
        query = select(Event.event_id).where(Event.event_id.is_not(None)).order_by(Event.id)
        return list(session.scalars(query))


def pending_total(runtime: Runtime, event_type: str) -> int:
    with runtime.read_transaction() as session:
        return pending_sum(session.connection(), type=event_type)


# -- the window ----------------------------------------------------------------------------
def test_the_retention_outlasts_every_retry() -> None:
    """The margin covers the clock differences the intake tolerates (the ticket's issuer
    and the pruner, each CLOCK_SKEW_S off) with room for queueing."""
    assert RETRY_MARGIN_S >= 2 * CLOCK_SKEW_S + 600
    assert longest_attribution_window_s(7) == 7 * 86_400 - 3600
    assert keep_s(7, None) == 7 * 86_400
    assert keep_s(7, 14_400) == 7 * 86_400
    assert keep_s(0.25, 30 * 86_400) == 30 * 86_400 + 3600  # a longer stored window wins


def test_a_retention_shorter_than_a_retry_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(event_retention_days=0.21).event_retention_days == 0.21
    monkeypatch.setenv("RANKTUNE_EVENT_RETENTION_DAYS", "0.2")
    with pytest.raises(UsageError) as refused:
        load_settings()
    message = str(refused.value)
    assert "RANKTUNE_EVENT_RETENTION_DAYS: 0.2 days; expected at least" in message
    assert "retry" in message
    for endless in ("inf", "nan", "3651"):  # a cut-off before year 1 would fail every run
        monkeypatch.setenv("RANKTUNE_EVENT_RETENTION_DAYS", endless)
        with pytest.raises(UsageError, match="RANKTUNE_EVENT_RETENTION_DAYS"):
            load_settings()


def test_the_attribution_window_is_bounded_by_the_retention(make_client: ClientFactory) -> None:
    longest = RETENTION_S - RETRY_MARGIN_S  # 5 hours
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        too_long = client.post(
            "/v1/experiments",
            json=similar_items(attribution_window_s=longest + 1),
            headers=ADMIN,
        )
        assert too_long.status_code == 422, too_long.text
        assert_error_shape(too_long.json(), "ValidationError", "attribution_window_s")
        assert "RANKTUNE_EVENT_RETENTION_DAYS" in too_long.json()["detail"]
        create(client, attribution_window_s=longest)
        patched = client.patch(
            "/v1/experiments/similar-items",
            json={"attribution_window_s": longest + 60},
            headers=ADMIN,
        )
        assert patched.status_code == 422, patched.text
        assert_error_shape(patched.json(), "ValidationError", "attribution_window_s")
        shorter = client.patch(
            "/v1/experiments/similar-items", json={"attribution_window_s": 600}, headers=ADMIN
        )
        assert shorter.status_code == 200, shorter.text


def test_an_event_pruned_after_the_window_is_never_counted_twice(
    make_client: ClientFactory,
) -> None:
    """An event stored longer ago than the window is pruned; its retry is refused as
    expired (its ticket is older than the attribution window), so it cannot be stored and
    counted a second time. A recent event stays and its retry stays a duplicate."""
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        created = create(client, attribution_window_s=HOUR)
        runtime = runtime_of(client)
        arm = created["arms"][1]["id"]
        now = datetime.now(UTC).timestamp()
        old_moment = now - RETENTION_S - 60
        old_ticket = runtime.signer.issue(created["id"], arm, "target", now=old_moment - 10)
        store_as_of(runtime, old_moment, [event(old_ticket, "old")])
        recent_ticket = tickets_by_arm(client)[arm]
        assert post_events(client, [event(recent_ticket, "recent")])["accepted"] == 1
        assert pending_total(runtime, "contact") == 2
        assert stored_ids(runtime) == ["old", "recent"]

        runtime.run_maintenance()  # the scheduler's job: ticket credits, then pruning

        assert stored_ids(runtime) == ["recent"]
        retry = client.post("/v1/events", json={"events": [event(old_ticket, "old")]})
        assert retry.status_code == 422, retry.text
        assert_error_shape(retry.json(), "ValidationError", "events[0].ticket")
        assert "expired" in retry.json()["detail"]
        assert post_events(client, [event(recent_ticket, "recent")]) == {
            "accepted": 0,
            "duplicates": 1,
        }
        assert stored_ids(runtime) == ["recent"]
        assert pending_total(runtime, "contact") == 2  # each counted once


def test_an_event_on_a_valid_ticket_is_kept_at_the_edges_of_the_bounds(
    make_client: ClientFactory,
) -> None:
    """The tightest case the bounds allow: the longest attribution window this retention
    admits, a ticket about to expire, issued by a replica a clock skew ahead of the one that
    stored the event, pruned by a replica a clock skew ahead: the event stays, and its
    retry is still a duplicate."""
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        window = longest_attribution_window_s(RETENTION_DAYS)
        created = create(client, attribution_window_s=window)
        runtime = runtime_of(client)
        arm = created["arms"][1]["id"]
        now = datetime.now(UTC).timestamp()
        issued = now - window + 30  # still valid for 30 s
        ticket = runtime.signer.issue(created["id"], arm, "target", now=issued)
        store_as_of(runtime, issued - CLOCK_SKEW_S + 1, [event(ticket, "edge")])
        pruner_clock = datetime.fromtimestamp(now + CLOCK_SKEW_S, UTC)
        assert (
            prune(runtime.transaction, now=pruner_clock, retention_days=RETENTION_DAYS).events == 0
        )
        assert post_events(client, [event(ticket, "edge")]) == {"accepted": 0, "duplicates": 1}


def test_a_longer_stored_attribution_window_keeps_its_events(
    make_client: ClientFactory, database_url: str
) -> None:
    """An experiment whose window is longer than this server's retention allows (created
    by a replica configured with a longer retention) keeps its events for its window plus
    the margin: a retry within its window is still a duplicate."""
    with make_client(event_retention_days=30) as client:
        created = create(client, attribution_window_s=20 * 86_400)
        runtime = runtime_of(client)
        arm = created["arms"][1]["id"]
        now = datetime.now(UTC).timestamp()
        week_ago = now - 7 * 86_400
        ticket = runtime.signer.issue(created["id"], arm, "target", now=week_ago)
        store_as_of(runtime, week_ago, [event(ticket, "late")])
        pruned = prune(runtime.transaction, now=datetime.now(UTC), retention_days=RETENTION_DAYS)
        assert pruned.events == 0
        assert post_events(client, [event(ticket, "late")]) == {"accepted": 0, "duplicates": 1}
        # Past its window plus the margin it goes.
        later = datetime.now(UTC) + timedelta(days=13, seconds=RETRY_MARGIN_S + 60)
        assert prune(runtime.transaction, now=later, retention_days=RETENTION_DAYS).events == 1


# -- batches beside the writer -------------------------------------------------------------
def exposure_rows(experiment_id: int, arm_id: int, prefix: str, count: int) -> list[EventRow]:
    return [
        EventRow(experiment_id, arm_id, "target", "exposure", 1, f"{prefix}-{i}", f"h{i}")
        for i in range(count)
    ]


def test_pruning_in_batches_loses_nothing_a_concurrent_writer_stores(
    make_client: ClientFactory,
) -> None:
    """Old rows go in many small transactions while the writer keeps committing new ones:
    every new row is stored and counted, every old one is gone, and the counts the ticks
    read (pending_batches) are untouched by pruning."""
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        created = create(client)
        runtime = runtime_of(client)
        experiment, arm = created["id"], created["arms"][1]["id"]
        old = datetime.now(UTC) - timedelta(seconds=RETENTION_S + 60)
        old_rows = exposure_rows(experiment, arm, "old", 4000)
        for start in range(0, len(old_rows), 1000):
            with runtime.transaction() as session:
                insert_events(session.connection(), old_rows[start : start + 1000], old)
        batches, per_batch = 40, 50
        written = threading.Event()

        def write() -> None:
            for index in range(batches):
                rows = exposure_rows(experiment, arm, f"new{index}", per_batch)
                assert runtime.writer.submit(rows).result(timeout=60).accepted == per_batch
            written.set()

        writer = threading.Thread(target=write)
        writer.start()
        pruned = prune(
            runtime.transaction,
            now=datetime.now(UTC),
            retention_days=RETENTION_DAYS,
            batch_rows=100,
            pause_s=0.001,
        )
        writer.join(timeout=120)
        assert written.is_set()
        assert pruned.events == len(old_rows) and pruned.finished
        assert pruned.batches >= len(old_rows) // 100
        ids = stored_ids(runtime)
        assert len(ids) == batches * per_batch
        assert not [event_id for event_id in ids if event_id and event_id.startswith("old")]
        assert pending_total(runtime, "exposure") == len(old_rows) + batches * per_batch
        # A second run finds nothing more to do.
        again = prune(runtime.transaction, now=datetime.now(UTC), retention_days=RETENTION_DAYS)
        assert again.events == 0 and again.batches == 1


def test_a_run_stops_at_its_budget_and_the_next_goes_on(make_client: ClientFactory) -> None:
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        created = create(client)
        runtime = runtime_of(client)
        old = datetime.now(UTC) - timedelta(seconds=RETENTION_S + 60)
        with runtime.transaction() as session:
            rows = exposure_rows(created["id"], created["arms"][1]["id"], "old", 500)
            insert_events(session.connection(), rows, old)
        now = datetime.now(UTC)
        first = prune(
            runtime.transaction,
            now=now,
            retention_days=RETENTION_DAYS,
            batch_rows=100,
            budget_s=0.0,
            sleep=lambda _s: None,
        )
        assert (first.events, first.finished) == (100, False)
        rest = prune(runtime.transaction, now=now, retention_days=RETENTION_DAYS, batch_rows=100)
        assert (rest.events, rest.finished) == (400, True)


# -- webhook deliveries and notifications --------------------------------------------------
def test_finished_deliveries_and_their_notifications_older_than_the_window_go(
    make_client: ClientFactory,
) -> None:
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        runtime = runtime_of(client)
        now = datetime.now(UTC)
        old = now - timedelta(seconds=RETENTION_S + 60)
        recent = now - timedelta(seconds=60)
        with runtime.transaction() as session:
            webhook = Webhook(
                url="http://127.0.0.1:9/hook",
                experiment_id=None,
                events=None,
                secret="s" * 32,
                active=True,
                created_at=old,
            )
            session.add(webhook)
            session.flush()
            cases = {
                # notification's age, delivery's status, when it finished
                "old delivered": (old, DeliveryStatus.DELIVERED, old),
                "old failed": (old, DeliveryStatus.FAILED, old),
                "old cancelled": (old, DeliveryStatus.CANCELLED, old),
                "old still pending": (old, DeliveryStatus.PENDING, None),
                "old, finished recently": (old, DeliveryStatus.DELIVERED, recent),
                "recent delivered": (recent, DeliveryStatus.DELIVERED, recent),
                "old without webhook": (old, None, None),
            }
            for name, (created_at, status, finished_at) in cases.items():
                notification = Notification(
                    experiment_id=None,
                    kind=NotificationKind.PING,
                    created_at=created_at,
                    payload={"case": name},
                )
                session.add(notification)
                session.flush()
                if status is not None:
                    session.add(
                        WebhookDelivery(
                            notification_id=notification.id,
                            webhook_id=webhook.id,
                            status=status,
                            attempts=1,
                            created_at=created_at,
                            next_attempt_at=created_at
                            if status == DeliveryStatus.PENDING
                            else None,
                            finished_at=finished_at,
                        )
                    )
        pruned = prune(runtime.transaction, now=now, retention_days=RETENTION_DAYS)
        assert (pruned.deliveries, pruned.notifications) == (3, 4)
        with runtime.read_transaction() as session:
            kept = sorted(n.payload["case"] for n in session.scalars(select(Notification)))
            deliveries = session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert kept == ["old still pending", "old, finished recently", "recent delivered"]
        assert deliveries == 3


# -- idle experiments ----------------------------------------------------------------------
def row_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.read_transaction() as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def test_an_idle_experiment_writes_no_row_however_many_windows_pass(
    make_client: ClientFactory, database_url: str
) -> None:
    """An hour of 10-second windows without traffic (360 scheduled ticks) adds no row to
    any table; on SQLite the file does not grow either (only the experiment's row is
    updated in place: the schedule and the count of empty windows)."""
    with make_client() as client:
        created = create(client, update_interval_s=10)
        runtime = runtime_of(client)
        before = row_counts(runtime)
        pages_before = sqlite_pages(runtime)
        start = datetime.now(UTC)
        rng = np.random.default_rng(7)
        windows = 360
        for window in range(1, windows + 1):
            with runtime.transaction() as session:
                recorded = apply_tick(
                    session,
                    created["id"],
                    now=start + timedelta(seconds=10 * window),
                    rng=rng,
                    only_if_due=True,
                )
            assert recorded is None
        assert row_counts(runtime) == before
        experiment = client.get("/v1/experiments/similar-items", headers=ADMIN).json()
        assert experiment["tick_count"] == 0
        if pages_before is not None:
            assert sqlite_pages(runtime) == pages_before


def sqlite_pages(runtime: Runtime) -> int | None:
    """The SQLite database's page count, the write-ahead log's pages included (None on
    PostgreSQL)."""
    if runtime.engine.dialect.name != "sqlite":
        return None
    with runtime.read_transaction() as session:
        return int(session.execute(text("PRAGMA page_count")).scalar_one())


def test_segmented_tick_records_older_than_the_window_go_but_the_latest_stay(
    make_client: ClientFactory,
) -> None:
    """A segmented tick's per-(segment, arm) record (``tick_segment_windows``, up to half a
    megabyte for a dense window) is pruned with the events once older than the window,
    except each experiment's latest RECENT_TICKS recorded ticks, which its segments'
    reports read."""
    ticks = RECENT_TICKS + 4
    with make_client(event_retention_days=RETENTION_DAYS) as client:
        runtime = runtime_of(client)
        create(client, salt="retention", segments={"max_segments": 3})
        for _ in range(ticks):
            snapshot = runtime.serving.get("similar-items")
            assert snapshot is not None
            for unit in range(40):  # with this salt, both groups every window
                runtime.serving.assign(snapshot, f"u{unit}")
            runtime.flush_exposures()
            response = client.post("/v1/experiments/similar-items/tick", headers=ADMIN)
            assert response.json()["applied"] is True, response.text
        now = datetime.now(UTC)
        with runtime.transaction() as session:
            # All but the two latest ticks are older than the window.
            session.execute(
                update(Tick)
                .where(Tick.number <= ticks - 2)
                .values(created_at=now - timedelta(seconds=RETENTION_S + 60))
            )
        pruned = prune(
            runtime.transaction, now=now, retention_days=RETENTION_DAYS, sleep=lambda _: None
        )
        assert pruned.segment_records == ticks - RECENT_TICKS
        with runtime.read_transaction() as session:
            kept = session.scalars(
                select(Tick.number)
                .join(TickSegmentWindow, TickSegmentWindow.tick_id == Tick.id)
                .order_by(Tick.number)
            ).all()
        assert kept == list(range(ticks - RECENT_TICKS + 1, ticks + 1))
        report = client.get(
            "/v1/experiments/similar-items/report", params={"segment": "default"}, headers=ADMIN
        )
        assert report.status_code == 200, report.text
        assert (
            prune(runtime.transaction, now=now, retention_days=RETENTION_DAYS).segment_records == 0
        )
