"""The tick's window as columns (``repo.PendingWindow``) against the row-wise definitions:
on random windows (mixed groups, types and reasons, ``previous_phase`` and
``over_ticket_limit`` included, buckets, segments, zero counts, rows in no particular
order), every columnar function gives exactly what a loop over the rows, written out here,
gives: the same sums, the same rows, the same keys in the same order. And the window read
from ``pending_batches`` (SQLite and PostgreSQL) is the rows stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import repositories as repo
from api.limits import CREDITED, OVER_TICKET_LIMIT, PREVIOUS_PHASE
from api.services.common import by_group_and_type
from api.services.segments import _window_counts, ready_segments
from api.services.ticks import aggregate, of_this_phase, report_counts
from tests.api.helpers import create
from tests.pending import clear_pending, insert_pending

REFERENCE, PREVIOUS_REFERENCE, TARGETS = 1, 2, [3, 4, 5]
TARGET_EVENT = "contact"


def random_rows(seed: int, size: int = 600) -> list[repo.PendingRow]:
    """Rows with distinct keys (as a pending batch holds them), shuffled."""
    rng = np.random.default_rng(seed)
    keys: dict[tuple[Any, ...], int] = {}
    for _ in range(size):
        group = str(rng.choice(["reference", "target", "target", "inactive"]))
        if group == "reference":
            arm = int(rng.choice([REFERENCE, REFERENCE, PREVIOUS_REFERENCE]))
        else:
            arm = int(rng.choice([*TARGETS, 9]))  # 9: an arm the tick does not update
        key = (
            arm,
            group,
            str(rng.choice(["exposure", "exposure", "contact", "view", "click"])),
            str(rng.choice([CREDITED, CREDITED, OVER_TICKET_LIMIT, PREVIOUS_PHASE, "arm_retired"])),
            int(rng.integers(0, 4)),
        )
        # Segments 6 and 7 have no reference traffic: they are never ready.
        segment = int(rng.integers(0, 6 if group == "reference" else 8))
        keys[(*key, segment)] = int(rng.choice([0, *range(1, 50)]))
    rows = [repo.PendingRow(*key[:5], count, key[5]) for key, count in keys.items()]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


# -- the row-wise definitions ------------------------------------------------------------
def rowwise_aggregate(rows: list[repo.PendingRow], target_event: str) -> tuple[Any, ...]:
    reference_exposures = reference_events = 0.0
    arm_exposures: dict[int, float] = {}
    arm_events: dict[int, float] = {}
    uncredited: dict[str, dict[str, float]] = {}
    quarantined: dict[int, float] = {}
    for arm_id, group, event_type, reason, _bucket, total, _segment in rows:
        if reason != CREDITED:
            by_type = uncredited.setdefault(reason, {})
            by_type[event_type] = by_type.get(event_type, 0.0) + total
            if reason == OVER_TICKET_LIMIT and event_type == target_event:
                quarantined[arm_id] = quarantined.get(arm_id, 0.0) + total
        elif group == "reference":
            if event_type == "exposure":
                reference_exposures += total
            elif event_type == target_event:
                reference_events += total
        elif group == "target":
            if event_type == "exposure":
                arm_exposures[arm_id] = arm_exposures.get(arm_id, 0.0) + total
            elif event_type == target_event:
                arm_events[arm_id] = arm_events.get(arm_id, 0.0) + total
    return reference_exposures, reference_events, arm_exposures, arm_events, uncredited, quarantined


def rowwise_of_this_phase(rows: list[repo.PendingRow], reference: int) -> list[repo.PendingRow]:
    return [
        row._replace(reason=PREVIOUS_PHASE)
        if row.group == "reference" and row.reason == CREDITED and row.arm_id != reference
        else row
        for row in rows
    ]


def rowwise_ready(rows: list[repo.PendingRow]) -> set[int]:
    return {
        row.segment
        for row in rows
        if row.group == "reference"
        and row.reason == CREDITED
        and row.type == "exposure"
        and row.count > 0
    }


def rowwise_window_counts(
    rows: list[repo.PendingRow], n_segments: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Credited exposures, credited target events, target events over a ticket's limit."""
    columns = [REFERENCE, *TARGETS]
    size = max([n_segments, *(row.segment + 1 for row in rows)])
    exposures, events, over = (np.zeros((size, len(columns))) for _ in range(3))
    for row in rows:
        if row.group == "reference":
            column = 0
        elif row.group == "target" and row.arm_id in columns:
            column = columns.index(row.arm_id)
        else:
            continue
        if row.reason == CREDITED and row.type == "exposure":
            exposures[row.segment, column] += row.count
        elif row.reason == CREDITED and row.type == TARGET_EVENT:
            events[row.segment, column] += row.count
        elif row.reason == OVER_TICKET_LIMIT and row.type == TARGET_EVENT:
            over[row.segment, column] += row.count
    return exposures, events, over


def rowwise_by_group_and_type(rows: list[repo.PendingRow]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        by_type = totals.setdefault(row.group, {})
        by_type[row.type] = by_type.get(row.type, 0) + row.count
    return totals


def ordered(value: Any) -> Any:
    """Dicts as lists of items, recursively: equal only with the same keys in the same order."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    return value


# -- the comparison ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_the_columnar_window_gives_what_the_rows_give(seed: int) -> None:
    rows = random_rows(seed)
    window = repo.PendingWindow.of(rows)
    assert len(window) == len(rows)
    assert window.rows() == rows

    phased_rows = rowwise_of_this_phase(rows, REFERENCE)
    phased = of_this_phase(window, REFERENCE)
    assert phased.rows() == phased_rows
    assert any(row.reason == PREVIOUS_PHASE for row in phased_rows)

    ready = rowwise_ready(phased_rows)
    assert ready_segments(phased) == ready
    assert ready and ready != set(range(8))  # some segments wait, some are ready
    in_ready = np.isin(phased.segment, sorted(ready))
    counted_rows = [row for row in phased_rows if row.segment in ready]
    counted = phased.select(in_ready)
    assert counted.rows() == counted_rows
    assert window.select(in_ready).rows() == [row for row in rows if row.segment in ready]
    assert np.unique(counted.segment).tolist() == sorted(ready)

    for target_event in (TARGET_EVENT, "view", "absent"):
        totals = aggregate(counted, target_event)
        got = (
            totals.reference_exposures,
            totals.reference_events,
            totals.arm_exposures,
            totals.arm_events,
            totals.uncredited,
            totals.quarantined,
        )
        assert ordered(got) == ordered(rowwise_aggregate(counted_rows, target_event))
        assert all(type(value) is float for value in totals.arm_exposures.values())

    types = {"exposure", TARGET_EVENT, "click", "undeclared"}
    reported = report_counts(counted, types)
    assert reported.rows() == [
        row for row in counted_rows if row.reason == CREDITED and row.type in types
    ]

    for n_segments in (2, 12):
        arm_ids, *got = _window_counts(counted, REFERENCE, TARGETS, TARGET_EVENT, n_segments)
        assert arm_ids == (REFERENCE, *TARGETS)
        for array, wanted in zip(got, rowwise_window_counts(counted_rows, n_segments), strict=True):
            assert np.array_equal(array, wanted)

    assert ordered(by_group_and_type(window)) == ordered(rowwise_by_group_and_type(rows))


def test_an_empty_window() -> None:
    window = repo.PendingWindow.of([])
    assert len(window) == 0 and window.rows() == []
    assert ready_segments(window) == set()
    assert of_this_phase(window, REFERENCE).rows() == []
    assert report_counts(window, {"exposure"}).rows() == []
    totals = aggregate(window, TARGET_EVENT)
    assert (totals.reference_exposures, totals.arm_exposures, totals.uncredited) == (0.0, {}, {})
    assert by_group_and_type(window) == {}


def test_the_window_read_is_the_rows_stored_and_consumes_exactly_its_batches(
    client: TestClient,
) -> None:
    experiment = create(client)["id"]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    rows = random_rows(7)
    with runtime.transaction() as session:
        clear_pending(session.connection())
        insert_pending(session.connection(), experiment, rows)
    key_order = sorted(rows, key=lambda row: (*row[:5], row.segment))
    with runtime.transaction() as session:
        read = repo.pending_counts_for_update(session, experiment)
        assert read.window.rows() == key_order  # summed by key, in key order
        kept = read.window.select(read.window.bucket == 2)
        repo.consume_pending_counts(session, experiment, read.batch_ids, kept)
    with runtime.transaction() as session:
        left = repo.pending_counts_for_update(session, experiment).window
        assert left.rows() == [row for row in key_order if row.bucket == 2]
        assert by_group_and_type(repo.discard_pending_counts(session, experiment)) == (
            rowwise_by_group_and_type(left.rows())
        )
    with runtime.transaction() as session:
        assert len(repo.pending_counts_for_update(session, experiment).window) == 0
