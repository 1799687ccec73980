"""The tick's bulk writes (one statement per table, no ORM object per arm) and the window's
propensities computed before the lock, on SQLite and PostgreSQL: the rows stored are the
values computed here independently."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api import repositories as repo
from api.db import array_params
from api.pending import pack_batch, sum_batches
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.segments import _window_counts
from api.services.ticks import PreparedPropensities, apply_tick, prepare_propensities
from tests.api.helpers import ADMIN, create, event, post_events, tick, tickets_by_arm
from tests.pending import clear_pending, insert_pending


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def stored(client: TestClient, query: str, **params: Any) -> list[tuple[Any, ...]]:
    with runtime_of(client).read_transaction() as session:
        return [tuple(row) for row in session.execute(text(query), params)]


SERIAL = itertools.count()


def feed(client: TestClient, tickets: dict[int, str], *counts: tuple[int, str, int]) -> None:
    batch = [event(tickets[arm], f"ev-{next(SERIAL)}", kind, n) for arm, kind, n in counts]
    assert post_events(client, batch)["accepted"] == len(batch)


TICK_ARM_QUERY = (
    "SELECT arm_id, exposures, target_events, alpha_increment, beta_increment, "
    "alpha_before, beta_before, alpha_after, beta_after, quarantined_events, propensity, "
    "draw_probability FROM tick_arms WHERE tick_id = :tick ORDER BY arm_id"
)


def test_a_tick_writes_each_arm_once_with_the_values_of_the_update(client: TestClient) -> None:
    experiment = create(client, exposure_source="client")
    reference, a, b, c = (arm["id"] for arm in experiment["arms"])
    tickets = tickets_by_arm(client)
    feed(client, tickets, (reference, "exposure", 100), (reference, "contact", 10))
    feed(client, tickets, (a, "exposure", 50), (a, "contact", 8), (b, "exposure", 40))
    first = tick(client)
    assert first["applied"] is True
    (tick_id,) = stored(client, "SELECT id FROM ticks WHERE number = 1")[0]
    rows = stored(client, TICK_ARM_QUERY, tick=tick_id)
    # Reference rate 10 / 100: beta grows by 0.1 x exposures, alpha by the contacts; the
    # three arms start at Beta(1, 1) and are served with probability 1/3 each.
    third = pytest.approx(1 / 3, abs=1e-6)
    assert rows == [
        (a, 50, 8, 8, 5.0, 1, 1, 9, 6.0, 0, third, None),
        (b, 40, 0, 0, 4.0, 1, 1, 1, 5.0, 0, third, None),
        (c, 0, 0, 0, 0.0, 1, 1, 1, 1.0, 0, third, None),
    ]
    arms = stored(
        client,
        "SELECT id, alpha, beta, exposures, target_events, quarantined_events FROM arms "
        "ORDER BY id",
    )
    assert arms == [
        (reference, 1, 1, 100, 10, 0),
        (a, 9, 6.0, 50, 8, 0),
        (b, 1, 5.0, 40, 0, 0),
        (c, 1, 1.0, 0, 0, 0),
    ]
    # The second window's propensities come from the posteriors the first one left:
    # P(arm k's Beta draw is the largest), by a midpoint sum on a fine grid here.
    feed(client, tickets, (reference, "exposure", 100), (reference, "contact", 20))
    feed(client, tickets, (c, "exposure", 10), (c, "contact", 3))
    assert tick(client)["applied"] is True
    (second,) = stored(client, "SELECT id FROM ticks WHERE number = 2")[0]
    rows = stored(client, TICK_ARM_QUERY, tick=second)
    expected = argmax_by_grid([(9, 6), (1, 5), (1, 1)])
    assert [row[10] for row in rows] == pytest.approx(expected, abs=2e-6)
    assert rows[2][:9] == (c, 10, 3, 3, 2.0, 1, 1, 4, 3.0)
    assert stored(client, "SELECT alpha, beta, exposures FROM arms WHERE id = :c", c=c) == [
        (4, 3.0, 10)
    ]


def argmax_by_grid(posteriors: list[tuple[float, float]], points: int = 200_000) -> list[float]:
    """P(draw k is the largest) = integral of f_k(x) prod_{j != k} F_j(x) dx, for integer
    parameters, with the Beta pdf and cdf from their polynomial forms (midpoint rule)."""
    from math import comb

    x = (np.arange(points) + 0.5) / points

    def pdf(a: int, b: int) -> np.ndarray:
        return np.asarray((a + b - 1) * comb(a + b - 2, a - 1) * x ** (a - 1) * (1 - x) ** (b - 1))

    def cdf(a: int, b: int) -> np.ndarray:
        n = a + b - 1
        return np.asarray(
            sum(comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1)), dtype=float
        )

    cdfs = [cdf(int(a), int(b)) for a, b in posteriors]
    result = []
    for k, (a, b) in enumerate(posteriors):
        others = np.prod([cdfs[j] for j in range(len(posteriors)) if j != k], axis=0)
        result.append(float(np.sum(pdf(int(a), int(b)) * others) / points))
    return result


def test_propensities_prepared_before_the_lock_are_used_only_for_the_same_state(
    client: TestClient,
) -> None:
    experiment = create(client, exposure_source="client")
    reference, a, b, c = (arm["id"] for arm in experiment["arms"])
    tickets = tickets_by_arm(client)
    runtime = runtime_of(client)
    feed(client, tickets, (reference, "exposure", 100), (reference, "contact", 10))
    feed(client, tickets, (b, "exposure", 10))
    with runtime.read_transaction() as session:
        prepared = prepare_propensities(session, experiment["id"])
    assert prepared is not None
    assert prepared.value.served == pytest.approx({a: 1 / 3, b: 1 / 3, c: 1 / 3}, abs=1e-6)
    # Same state: the prepared numbers are what the tick records (marked here to tell).
    marked = PreparedPropensities(prepared.state, type(prepared.value)({a: 0.5, c: 0.5}, None))
    with runtime.transaction() as session:
        applied = apply_tick(
            session,
            experiment["id"],
            now=now_utc(),
            rng=np.random.default_rng(0),
            only_if_due=False,
            prepared=marked,
        )
        assert applied is not None and applied.applied
        number = applied.number
    (tick_id,) = stored(client, "SELECT id FROM ticks WHERE number = :n", n=number)[0]
    assert [row[10] for row in stored(client, TICK_ARM_QUERY, tick=tick_id)] == [0.5, 0.0, 0.5]
    # The arms moved since (arm a retired, b updated): computed again under the lock.
    feed(client, tickets, (reference, "exposure", 100), (b, "exposure", 10))
    with runtime.read_transaction() as session:
        stale = prepare_propensities(session, experiment["id"])
    assert stale is not None
    retired = client.delete(f"/v1/experiments/similar-items/arms/{a}", headers=ADMIN)
    assert retired.status_code == 200, retired.text
    with runtime.transaction() as session:
        second = apply_tick(
            session,
            experiment["id"],
            now=now_utc(),
            rng=np.random.default_rng(0),
            only_if_due=False,
            prepared=stale,
        )
        assert second is not None and second.applied
        second_id = second.id
    rows = stored(client, TICK_ARM_QUERY, tick=second_id)
    assert [row[0] for row in rows] == [b, c]
    propensities = [row[10] for row in rows]
    # b is Beta(1, 2) after the first window, c Beta(1, 1): P(b's draw is larger) = 1/3.
    assert propensities == pytest.approx([1 / 3, 2 / 3], abs=1e-6)


def test_nothing_is_prepared_for_a_window_that_cannot_apply_or_is_not_due(
    client: TestClient,
) -> None:
    experiment = create(client, exposure_source="client", update_interval_s=3600)
    reference, a = (arm["id"] for arm in experiment["arms"][:2])
    runtime = runtime_of(client)
    with runtime.read_transaction() as session:
        assert prepare_propensities(session, experiment["id"]) is None
    tickets = tickets_by_arm(client)
    feed(client, tickets, (a, "exposure", 5), (reference, "contact", 1))
    with runtime.read_transaction() as session:  # no reference exposure: carried forward
        assert prepare_propensities(session, experiment["id"]) is None
    feed(client, tickets, (reference, "exposure", 5))
    with runtime.read_transaction() as session:
        assert prepare_propensities(session, experiment["id"]) is not None
        assert prepare_propensities(session, experiment["id"], now_utc()) is None


def pending_rows(arm: int, plus: int = 0) -> list[repo.PendingRow]:
    """Counts of three segments, two types, two buckets."""
    return [
        repo.PendingRow(arm, "target", kind, "", bucket, 1 + segment + bucket + plus, segment)
        for segment in range(3)
        for kind in ("contact", "exposure")
        for bucket in (0, 1)
    ]


def test_consuming_segments_deletes_the_batches_read_and_keeps_the_rest(
    client: TestClient,
) -> None:
    experiment = create(client)
    arm = experiment["arms"][1]["id"]
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        clear_pending(session.connection())  # what creating the experiment counted
        insert_pending(session.connection(), experiment["id"], pending_rows(arm))
        insert_pending(session.connection(), experiment["id"], pending_rows(arm, plus=10)[::2])
    with runtime.transaction() as session:
        read = repo.pending_counts_for_update(session, experiment["id"])
        assert len(read.batch_ids) == 2
        rows = read.window.rows()
        assert len(rows) == 12  # summed by key over the two batches
        assert rows[0] == repo.PendingRow(arm, "target", "contact", "", 0, 1 + 11, 0)
        assert rows[1] == repo.PendingRow(arm, "target", "contact", "", 0, 2 + 12, 1)
        # A batch that arrives after the read (a writer on PostgreSQL) is not the tick's.
        late = [repo.PendingRow(arm, "reference", "exposure", "", 3, 7, 2)]
        insert_pending(session.connection(), experiment["id"], late)
        kept = read.window.select(read.window.segment == 1)
        repo.consume_pending_counts(session, experiment["id"], read.batch_ids, kept)
    with runtime.read_transaction() as session:
        left = repo.pending_counts_for_update(session, experiment["id"])
        assert repo.has_reference_exposures_pending(session, experiment["id"])
    assert len(left.batch_ids) == 2 and not set(left.batch_ids) & set(read.batch_ids)
    assert left.window.rows() == sorted(kept.rows() + late)


def test_batches_sum_by_key_whatever_their_vocabularies() -> None:
    rng = np.random.default_rng(3)
    kinds = [
        (group, kind, reason)
        for group in ("reference", "target")
        for kind in ("exposure", "contact", "view")
        for reason in ("", "over_ticket_limit")
    ]
    expected: dict[tuple[int, str, str, str, int, int], int] = {}
    batches = []
    for _ in range(7):
        keys: dict[tuple[int, str, str, str, int, int], int] = {}
        for _ in range(int(rng.integers(0, 60))):
            g, t, r = kinds[int(rng.integers(len(kinds)))]
            key = (int(rng.integers(1, 6)), g, t, r, int(rng.integers(0, 4)), int(rng.integers(3)))
            keys[key] = keys.get(key, 0) + int(rng.integers(1, 2**40))
        for key, count in keys.items():
            expected[key] = expected.get(key, 0) + count
        rows = [repo.PendingRow(a, g, t, r, b, n, s) for (a, g, t, r, b, s), n in keys.items()]
        if rows:
            batches.append(pack_batch(rows)[1:])

    def summed_rows(parts: list[Any]) -> list[repo.PendingRow]:
        return repo.PendingWindow.of_columns(sum_batches(parts)).rows()

    summed = summed_rows(batches)
    assert summed == sorted(summed, key=lambda r: (r.arm_id, r[1:4], r.bucket, r.segment))
    assert {
        (r.arm_id, r.group, r.type, r.reason, r.bucket, r.segment): r.count for r in summed
    } == (expected)
    assert summed_rows(batches[:1]) == sorted(
        summed_rows(batches[:1]), key=lambda r: (r.arm_id, r[1:4], r.bucket, r.segment)
    )
    assert summed_rows([]) == []


@pytest.mark.postgres
def test_array_literals_carry_any_text_exact_floats_and_nulls(postgres_url: str) -> None:
    rows = [
        (1, 'a"b\\c', None, 0.1, 2**40),
        (-2, "x,y {z} NULL", 1.5, 1e-300, 3),
        (3, "", -0.0, 123456.789012345678, -(2**62)),
        (4, None, 2.0 / 3.0, float.fromhex("0x1.fffffffffffffp+1023"), 0),
    ]
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            back = connection.exec_driver_sql(
                "SELECT * FROM unnest(%s::int[], %s::varchar[], %s::float8[], %s::float8[], "
                "%s::bigint[])",
                array_params(("int", "varchar", "float8", "float8", "bigint"), rows),
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in back] == rows


def test_a_window_sums_the_credited_counts_of_each_segment_and_arm() -> None:
    rng = np.random.default_rng(5)
    reference, targets = 1, [2, 3, 4]
    arms = rng.choice([1, 2, 3, 4, 9], 400)  # 9: an arm the window does not update
    rows = [
        repo.PendingRow(
            int(arm),
            "reference" if arm == reference else "target",
            str(rng.choice(["exposure", "contact", "view"])),
            str(rng.choice(["", "", "over_ticket_limit"])),
            int(rng.integers(0, 3)),
            int(rng.integers(1, 100)),
            int(rng.integers(0, 6)),
        )
        for arm in arms
    ]
    window = repo.PendingWindow.of(rows)
    arm_ids, *got = _window_counts(window, reference, targets, "contact", 4)
    exposures, events, over = np.zeros((6, 4)), np.zeros((6, 4)), np.zeros((6, 4))
    for row in rows:
        if row.type == "view":
            continue
        if row.group == "reference":
            column = 0
        elif row.arm_id in targets:
            column = 1 + targets.index(row.arm_id)
        else:
            continue
        if row.reason == "":
            (exposures if row.type == "exposure" else events)[row.segment, column] += row.count
        elif row.type == "contact":  # over its ticket's limit: quarantined in its segment
            over[row.segment, column] += row.count
    assert arm_ids == (1, 2, 3, 4)
    assert over.any()
    for array, wanted in zip(got, (exposures, events, over), strict=True):
        assert np.array_equal(array, wanted)
    empty = repo.PendingWindow.of([])
    _, *nothing = _window_counts(empty, reference, targets, "contact", 2)
    assert all(array.shape == (2, 4) and not array.any() for array in nothing)
