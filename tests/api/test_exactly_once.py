"""Exactly-once counting while event writers and ticks run concurrently (SQLite, PostgreSQL).

Writer threads post batches with unique event ids, and sometimes post a batch again (a
client retry), while two ticker threads call the admin tick as fast as they can. After a
final tick, every acknowledged event must have been counted by exactly one applied tick:
the tick records add up to the acknowledged events, per group and type the applied ticks
plus what still waits in ``pending_batches`` add up to the stored rows (nothing is left
waiting after the final tick), and no event id is stored twice.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from api import repositories as repo
from api.models import (
    Arm,
    Event,
    Experiment,
    MetricCount,
    Tick,
    TickArm,
)
from api.tickets import TicketClaims
from tests.conftest import ADMIN, ClientFactory, similar_items
from tests.pending import pending_rows
from tests.segment_state import recorded_pairs, stored_pairs

WRITERS = 4
BATCHES_PER_WRITER = 25
BATCHES_PER_TICK = 4
EVENTS_PER_BATCH = 20
DEADLINE_S = 60.0
COUNTED_TYPES = ("exposure", "contact")


def _tickets(client: TestClient, name: str, segment: str | None = None) -> dict[str, list[str]]:
    """Tickets of both groups (a few units each), in ``segment`` if given."""
    by_group: dict[str, list[str]] = {"reference": [], "target": []}
    query = {} if segment is None else {"segment": segment}
    for unit in range(200):
        body = client.get(
            f"/v1/experiments/{name}/assignment", params={"unit": f"u{unit}", **query}
        ).json()
        if len(by_group[body["group"]]) < 8:
            by_group[body["group"]].append(body["ticket"])
    assert all(by_group.values()), by_group
    return by_group


# A segmented run: tickets of every segment mixed in the batches (docs/segments.md).
SEGMENTS = ("cars", "phones", "flats")


def _batch(rng: random.Random, tickets: dict[str, list[str]], prefix: str) -> list[dict[str, Any]]:
    events = []
    for index in range(EVENTS_PER_BATCH):
        group = "reference" if rng.random() < 0.3 else "target"
        # Mostly the counted types; "click" is stored and consumed but counts for nothing.
        kind = rng.choices(["exposure", "contact", "click"], weights=[6, 3, 1])[0]
        events.append(
            {
                "ticket": rng.choice(tickets[group]),
                "type": kind,
                "count": rng.randint(1, 3),
                "event_id": f"{prefix}-{index}",
            }
        )
    return events


class Ledger:
    """What the server acknowledged, keyed by event id (a retry acknowledges the same id)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acknowledged: dict[str, dict[str, Any]] = {}
        self.accepted = 0
        self.duplicates = 0
        self.failures: list[str] = []

    def record(self, events: list[dict[str, Any]], answer: dict[str, int]) -> None:
        with self.lock:
            for event in events:
                self.acknowledged[event["event_id"]] = event
            self.accepted += answer["accepted"]
            self.duplicates += answer["duplicates"]


def _writer(
    client: TestClient,
    tickets: dict[str, list[str]],
    ledger: Ledger,
    writer: int,
    deadline: float,
    ticks: list[int],
) -> None:
    rng = random.Random(writer)
    sent: list[list[dict[str, Any]]] = []
    for batch_number in range(BATCHES_PER_WRITER):
        # Keep the writes and the ticks interleaved however fast either side is: a writer
        # waits for a tick every BATCHES_PER_TICK batches.
        while len(ticks) < batch_number // BATCHES_PER_TICK and time.monotonic() < deadline:
            time.sleep(0.001)
        if time.monotonic() > deadline:
            ledger.failures.append(f"writer {writer} ran out of time")
            return
        if sent and rng.random() < 0.25:
            events = rng.choice(sent)  # a client retry: same ids, same payloads
        else:
            events = _batch(rng, tickets, f"w{writer}-b{batch_number}")
            sent.append(events)
        answer = client.post("/v1/events", json={"events": events})
        if answer.status_code != 200:
            ledger.failures.append(f"writer {writer}: {answer.status_code} {answer.text}")
            return
        ledger.record(events, answer.json())


def _ticker(
    client: TestClient, name: str, stop: threading.Event, ticks: list[int], failures: list[str]
) -> None:
    while not stop.is_set() and len(ticks) < 500:
        answer = client.post(f"/v1/experiments/{name}/tick", headers=ADMIN)
        if answer.status_code != 200:
            failures.append(f"tick: {answer.status_code} {answer.text}")
            return
        ticks.append(answer.json()["number"])
        time.sleep(0.005)


@pytest.mark.parametrize("segmented", [False, True], ids=["unsegmented", "segmented"])
def test_concurrent_writers_and_ticks_count_every_event_once(
    make_client: ClientFactory, database_url: str, segmented: bool
) -> None:
    name = "exactly-once"
    segments = {"segments": {"max_segments": 8}} if segmented else {}
    with make_client() as client:
        created = client.post(
            "/v1/experiments",
            json=similar_items(name=name, exposure_source="client", **segments),
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        if segmented:
            for segment in SEGMENTS:  # first sight, then registered by the flush
                client.get(
                    f"/v1/experiments/{name}/assignment", params={"unit": "u", "segment": segment}
                )
            runtime.flush_exposures()
            by_segment = [_tickets(client, name, segment) for segment in SEGMENTS]
            tickets = {
                group: [t for part in by_segment for t in part[group]]
                for group in ("reference", "target")
            }
            closing_tickets = [part["reference"][0] for part in by_segment]
        else:
            tickets = _tickets(client, name)
            closing_tickets = [tickets["reference"][0]]

        ledger = Ledger()
        # One exposure on every ticket before the race: an arm's contacts are capped by its
        # exposures so far (ticks.bound_by_exposures), so a contact of an arm whose first
        # exposure lands in a later window would be quarantined, not counted. That rule has
        # tests of its own (test_event_bounds.py); this test counts what is credited.
        warmup = [
            {"ticket": ticket, "type": "exposure", "count": 1, "event_id": f"warmup-{index}"}
            for index, ticket in enumerate(tickets["reference"] + tickets["target"])
        ]
        answer = client.post("/v1/events", json={"events": warmup})
        assert answer.json() == {"accepted": len(warmup), "duplicates": 0}
        ledger.record(warmup, answer.json())
        tick_numbers: list[int] = []
        tick_failures: list[str] = []
        stop = threading.Event()
        deadline = time.monotonic() + DEADLINE_S
        writers = [
            threading.Thread(
                target=_writer, args=(client, tickets, ledger, w, deadline, tick_numbers)
            )
            for w in range(WRITERS)
        ]
        # Two tickers: manual ticks race each other for the experiment lock as well.
        tickers = [
            threading.Thread(target=_ticker, args=(client, name, stop, tick_numbers, tick_failures))
            for _ in range(2)
        ]
        try:
            for thread in [*tickers, *writers]:
                thread.start()
            for thread in writers:
                thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        finally:
            stop.set()
            for thread in [*writers, *tickers]:
                thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in [*writers, *tickers])
        assert ledger.failures == [] and tick_failures == []
        # The ticks really ran during the writes, and numbers were never handed out twice.
        assert len(tick_numbers) >= 5
        assert len(set(tick_numbers)) == len(tick_numbers)

        # One last reference exposure (in every segment) so that the final window can be
        # normalised.
        closing = [
            {"ticket": ticket, "type": "exposure", "count": 1, "event_id": f"closing-{index}"}
            for index, ticket in enumerate(closing_tickets)
        ]
        answer = client.post("/v1/events", json={"events": closing})
        assert answer.json() == {"accepted": len(closing), "duplicates": 0}
        ledger.record(closing, answer.json())
        pair_of = {
            event["ticket"]: _segment_and_arm(runtime.signer.verify(event["ticket"]))
            for event in ledger.acknowledged.values()
        }
        final = client.post(f"/v1/experiments/{name}/tick", headers=ADMIN).json()
        assert final["applied"] is True
        history = client.get(
            f"/v1/experiments/{name}/ticks", params={"limit": 1000}, headers=ADMIN
        ).json()

    acknowledged = ledger.acknowledged
    # Every accepted answer was a new id, every duplicate a retry: nothing counted twice.
    assert ledger.accepted == len(acknowledged)
    assert ledger.duplicates > 0
    expected = {
        kind: sum(e["count"] for e in acknowledged.values() if e["type"] == kind)
        for kind in COUNTED_TYPES
    }
    applied = [tick for tick in history if tick["applied"]]
    assert [tick["uncredited"] for tick in history if tick["uncredited"]] == []
    assert [tick["number"] for tick in history] == list(range(1, len(history) + 1))
    counted_exposures = sum(t["reference_exposures"] + t["target_exposures"] for t in applied)
    counted_events = sum(t["reference_events"] + t["target_events"] for t in applied)
    assert counted_exposures == expected["exposure"]
    assert counted_events == expected["contact"]
    # Per tick, the per-arm rows add up to the tick's target totals.
    for tick in applied:
        assert sum(row["exposures"] for row in tick["arms"]) == tick["target_exposures"]
        assert sum(row["target_events"] for row in tick["arms"]) == tick["target_events"]

    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            experiment_id = session.scalar(select(Experiment.id).where(Experiment.name == name))
            rows = session.execute(
                select(Event.event_id, Event.group, Event.type, Event.count).where(
                    Event.experiment_id == experiment_id
                )
            ).all()
            assert experiment_id is not None
            pending = pending_rows(session.connection(), experiment_id)
            applied_totals = session.execute(
                select(
                    func.sum(Tick.reference_exposures),
                    func.sum(Tick.reference_events),
                    func.sum(Tick.target_exposures),
                    func.sum(Tick.target_events),
                ).where(Tick.experiment_id == experiment_id, Tick.applied)
            ).one()
            applied_ids = set(
                session.scalars(
                    select(Tick.id).where(Tick.experiment_id == experiment_id, Tick.applied)
                )
            )
            arm_totals = session.execute(
                select(func.sum(Arm.exposures), func.sum(Arm.target_events)).where(
                    Arm.experiment_id == experiment_id
                )
            ).one()
            tick_arm_rows = session.scalar(
                select(func.count()).select_from(TickArm).where(TickArm.tick_id.in_(applied_ids))
            )
    finally:
        engine.dispose()

    stored_ids = [row.event_id for row in rows]
    assert len(stored_ids) == len(set(stored_ids)), "an event id was stored twice"
    assert set(stored_ids) == set(acknowledged)
    # The final tick applied and nothing was written after it: nothing is left waiting, and
    # per group and type the applied ticks counted exactly the stored rows.
    assert [tuple(row) for row in pending if row.count] == [], "stored events left uncounted"
    stored: dict[tuple[str, str], float] = {}
    for row in rows:
        stored[(row.group, row.type)] = stored.get((row.group, row.type), 0.0) + row.count
    assert tuple(applied_totals) == (
        stored.get(("reference", "exposure"), 0.0),
        stored.get(("reference", "contact"), 0.0),
        stored.get(("target", "exposure"), 0.0),
        stored.get(("target", "contact"), 0.0),
    )
    for row in rows:
        sent = acknowledged[row.event_id]
        assert (row.type, row.count) == (sent["type"], sent["count"])
    # The arms' running totals (reference arm included) agree with the tick records.
    assert tuple(arm_totals) == (expected["exposure"], expected["contact"])
    assert tick_arm_rows == 3 * len(applied)
    if segmented:
        _check_segments(database_url, experiment_id, acknowledged, pair_of, applied_ids)


def _segment_and_arm(claims: TicketClaims | None) -> tuple[int, int]:
    assert claims is not None
    return claims.segment, claims.arm_id


def _check_segments(
    database_url: str,
    experiment_id: int | None,
    acknowledged: dict[str, dict[str, Any]],
    pair_of: dict[str, tuple[int, int]],
    applied_ids: set[int],
) -> None:
    """Per (segment, arm), the tick records and the ``arm_segments`` totals count every
    acknowledged event of that segment and arm exactly once (``pair_of``: each ticket's
    segment and arm; the reference arm's rows hold the reference group's counts), and so do
    the report's counts (``metric_counts``) per segment."""
    expected: dict[tuple[int, int, str], int] = {}
    for event in acknowledged.values():
        if event["type"] in COUNTED_TYPES:
            key = (*pair_of[event["ticket"]], event["type"])
            expected[key] = expected.get(key, 0) + event["count"]
    assert {segment for segment, _, _ in expected} == {1, 2, 3}
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            arm_ids = set(session.scalars(select(Arm.id).where(Arm.experiment_id == experiment_id)))
            sums: dict[tuple[int, int], list[float]] = {}
            for pair in recorded_pairs(session, sorted(applied_ids)):
                total = sums.setdefault((pair.segment, pair.arm_id), [0.0, 0.0])
                total[0] += pair.exposures
                total[1] += pair.target_events
            recorded = [(*key, *total) for key, total in sums.items()]
            totals = [
                (pair.segment, pair.arm_id, pair.exposures, pair.target_events)
                for pair in stored_pairs(session)
                if pair.arm_id in arm_ids
            ]
            # What the report reads (the folded counts and the ticks' batches), then the
            # same after maintenance folds the batches into metric_counts.
            assert experiment_id is not None
            read: dict[tuple[int, str], int] = {}
            for segment in range(4):
                for _, _, kind, _, count in repo.metric_counts(session, experiment_id, 1, segment):
                    read[(segment, kind)] = read.get((segment, kind), 0) + count
            repo.fold_metric_batches(session, experiment_id)
            session.commit()
            assert not repo.experiments_with_metric_batches(session)
            reported = session.execute(
                select(MetricCount.segment, MetricCount.type, func.sum(MetricCount.count))
                .where(MetricCount.experiment_id == experiment_id)
                .group_by(MetricCount.segment, MetricCount.type)
            ).all()
            assert {(row[0], row[1]): int(row[2]) for row in reported} == read
    finally:
        engine.dispose()
    wanted = {
        (segment, arm_id): (
            float(expected.get((segment, arm_id, "exposure"), 0)),
            float(expected.get((segment, arm_id, "contact"), 0)),
        )
        for segment, arm_id, _ in expected
    }
    assert {(row[0], row[1]): (float(row[2]), float(row[3])) for row in recorded} == wanted
    assert {(row[0], row[1]): (float(row[2]), float(row[3])) for row in totals} == wanted
    per_segment: dict[tuple[int, str], int] = {}
    for (segment, _, kind), count in expected.items():
        per_segment[(segment, kind)] = per_segment.get((segment, kind), 0) + count
    assert {(row[0], row[1]): int(row[2]) for row in reported} == {
        key: count for key, count in per_segment.items() if count
    }
