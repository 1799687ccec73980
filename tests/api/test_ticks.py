"""The tick through HTTP: golden posteriors, decay, carried windows, window mode.

Exposures come from the clients' exposure events (``exposure_source="client"``) wherever a
test needs exact counts per arm, so that every number below is chosen, not sampled.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    ADMIN,
    assign,
    create,
    event,
    inspect,
    post_events,
    tick,
    tickets_by_arm,
)


def arm_ids(experiment: dict[str, Any]) -> tuple[int, int, int, int]:
    reference, a, b, c = (arm["id"] for arm in experiment["arms"])
    return reference, a, b, c


def rows_of(window: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["arm_id"]: row for row in window["arms"]}


def posteriors(client: TestClient) -> dict[int, tuple[float, float]]:
    return {arm["id"]: (arm["alpha"], arm["beta"]) for arm in inspect(client)["arms"]}


class Feed:
    """Events with fresh ids, sent as one batch per window."""

    def __init__(self, client: TestClient, tickets: dict[int, str]) -> None:
        self.client, self.tickets, self.serial = client, tickets, 0

    def send(self, *counts: tuple[int, str, int]) -> None:
        batch = []
        for arm_id, type_, count in counts:
            self.serial += 1
            batch.append(event(self.tickets[arm_id], f"ev-{self.serial}", type_, count))
        assert post_events(self.client, batch)["accepted"] == len(batch)


def test_golden_request_mode_posteriors_over_two_ticks(client: TestClient) -> None:
    experiment = create(client, exposure_source="client")
    reference, a, b, c = arm_ids(experiment)
    feed = Feed(client, tickets_by_arm(client))

    feed.send((reference, "exposure", 100), (reference, "contact", 10))
    feed.send((a, "exposure", 50), (a, "contact", 8), (b, "exposure", 40), (b, "contact", 2))
    first = tick(client)
    assert first["applied"] is True and first["number"] == 1
    assert (first["reference_exposures"], first["reference_events"]) == (100, 10)
    assert (first["target_exposures"], first["target_events"]) == (90, 10)
    rows = rows_of(first)
    assert set(rows) == {a, b, c}  # every active target arm is recorded, even without data
    # alpha_k += c_k; beta_k += c_r * n_k / n_r = 10 * n_k / 100
    assert rows[a] == {
        "arm_id": a,
        "exposures": 50,
        "target_events": 8,
        "alpha_increment": 8,
        "beta_increment": 5,
        "alpha_before": 1,
        "beta_before": 1,
        "alpha_after": 9,
        "beta_after": 6,
        "quarantined_events": 0,
    }
    assert (rows[b]["alpha_after"], rows[b]["beta_after"]) == (3, 5)
    assert (rows[c]["alpha_increment"], rows[c]["beta_increment"]) == (0, 0)
    assert (rows[c]["alpha_after"], rows[c]["beta_after"]) == (1, 1)

    feed.send((reference, "exposure", 200), (reference, "contact", 30))
    feed.send((a, "exposure", 20), (a, "contact", 1), (c, "exposure", 60), (c, "contact", 12))
    second = tick(client)
    rows = rows_of(second)
    # ratio 30/200 = 0.15
    assert (rows[a]["alpha_before"], rows[a]["beta_before"]) == (9, 6)
    assert (rows[a]["alpha_after"], rows[a]["beta_after"]) == pytest.approx((10, 9))
    assert (rows[b]["alpha_after"], rows[b]["beta_after"]) == (3, 5)
    assert (rows[c]["alpha_after"], rows[c]["beta_after"]) == pytest.approx((13, 10))

    expected = {reference: (1, 1), a: (10, 9), b: (3, 5), c: (13, 10)}
    for arm_id, pair in posteriors(client).items():
        assert pair == pytest.approx(expected[arm_id]), arm_id
    totals = {
        arm["id"]: (arm["exposures"], arm["target_events"]) for arm in inspect(client)["arms"]
    }
    assert totals == {reference: (300, 40), a: (70, 9), b: (40, 2), c: (60, 12)}
    history = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert history == [first, second]


def test_decay_shrinks_old_evidence_towards_the_prior(sqlite_client: TestClient) -> None:
    experiment = create(
        sqlite_client, exposure_source="client", decay=0.5, prior_alpha=2, prior_beta=3
    )
    reference, a, b, _ = arm_ids(experiment)
    feed = Feed(sqlite_client, tickets_by_arm(sqlite_client))

    feed.send((reference, "exposure", 100), (reference, "contact", 10))
    feed.send((a, "exposure", 50), (a, "contact", 8))
    first = rows_of(tick(sqlite_client))
    # Nothing to forget yet: alpha = 2 + 8, beta = 3 + 10 * 50 / 100.
    assert (first[a]["alpha_after"], first[a]["beta_after"]) == (10, 8)

    feed.send((reference, "exposure", 100), (reference, "contact", 20))
    feed.send((a, "exposure", 10), (a, "contact", 1))
    second = rows_of(tick(sqlite_client))
    # alpha = 2 + 0.5 * (10 - 2) + 1 = 7; beta = 3 + 0.5 * (8 - 3) + 20 * 10 / 100 = 7.5
    assert (second[a]["alpha_after"], second[a]["beta_after"]) == pytest.approx((7, 7.5))
    # An arm that never saw data stays at the prior.
    assert (second[b]["alpha_after"], second[b]["beta_after"]) == (2, 3)
    assert second[a]["alpha_increment"] == 1 and second[a]["beta_increment"] == 2


def test_window_without_reference_exposure_is_carried_forward_and_counted_once(
    client: TestClient,
) -> None:
    experiment = create(client, exposure_source="client")
    reference, a, b, _ = arm_ids(experiment)
    feed = Feed(client, tickets_by_arm(client))

    feed.send((a, "exposure", 30), (a, "contact", 6), (reference, "contact", 1))
    waiting = tick(client)
    assert waiting["applied"] is False
    assert waiting["arms"] == []
    assert posteriors(client) == {
        arm_id: (1, 1) for arm_id in (reference, a, b, arm_ids(experiment)[3])
    }

    feed.send((reference, "exposure", 100), (reference, "contact", 9))
    feed.send((a, "exposure", 20), (a, "contact", 4), (b, "exposure", 10))
    applied = tick(client)
    assert applied["applied"] is True
    # The carried window and this one together, each event once.
    assert (applied["reference_exposures"], applied["reference_events"]) == (100, 10)
    rows = rows_of(applied)
    assert (rows[a]["exposures"], rows[a]["target_events"]) == (50, 10)
    assert (rows[a]["alpha_after"], rows[a]["beta_after"]) == pytest.approx((11, 1 + 0.1 * 50))
    assert (rows[b]["alpha_after"], rows[b]["beta_after"]) == pytest.approx((1, 2))

    after = posteriors(client)
    empty = tick(client)
    assert empty["applied"] is False
    assert empty["reference_exposures"] == empty["target_exposures"] == 0
    assert empty["reference_events"] == empty["target_events"] == 0
    assert posteriors(client) == after
    totals = {arm["id"]: arm["exposures"] for arm in inspect(client)["arms"]}
    assert (totals[reference], totals[a], totals[b]) == (100, 50, 10)


def test_window_mode_pins_one_arm_per_window_and_credits_it(sqlite_client: TestClient) -> None:
    experiment = create(sqlite_client, mode="window")
    target_ids = {arm["id"] for arm in experiment["arms"][1:]}
    pinned = experiment["window_arm_id"]
    serial = 0
    for window in range(6):
        answers = [assign(sqlite_client, f"w{window}-u{unit}") for unit in range(60)]
        served = {answer["arm_id"] for answer in answers if answer["group"] == "target"}
        assert served == {pinned}, (window, served)
        # Every other unit contacts once; each reference unit contacts once.
        events = []
        for index, answer in enumerate(answers):
            if answer["group"] == "reference" or index % 2 == 0:
                serial += 1
                events.append(event(answer["ticket"], f"c{serial}"))
        post_events(sqlite_client, events)
        before = posteriors(sqlite_client)
        record = tick(sqlite_client)
        n_t = sum(answer["group"] == "target" for answer in answers)
        n_r = len(answers) - n_t
        c_t = sum(a["group"] == "target" for i, a in enumerate(answers) if i % 2 == 0)
        assert record["window_arm_id"] == pinned
        assert (record["target_exposures"], record["reference_exposures"]) == (n_t, n_r)
        assert (record["target_events"], record["reference_events"]) == (c_t, n_r)
        after = posteriors(sqlite_client)
        # window mode: alpha_k* += c_t, beta_k* += c_r * n_t / n_r = n_t; other arms unchanged
        assert after[pinned] == pytest.approx((before[pinned][0] + c_t, before[pinned][1] + n_t))
        assert all(after[k] == before[k] for k in target_ids - {pinned})
        assert record["next_window_arm_id"] in target_ids
        pinned = record["next_window_arm_id"]
        assert inspect(sqlite_client)["window_arm_id"] == pinned


def test_window_mode_keeps_the_arm_while_its_window_waits_for_reference_data(
    client: TestClient,
) -> None:
    experiment = create(client, mode="window", exposure_source="client")
    reference = experiment["reference_arm_id"]
    pinned = experiment["window_arm_id"]
    tickets: dict[int, str] = {}
    for unit in range(100):
        answer = assign(client, f"user-{unit}")
        tickets.setdefault(answer["arm_id"], answer["ticket"])
    assert set(tickets) == {reference, pinned}
    feed = Feed(client, tickets)
    for _ in range(6):
        feed.send((pinned, "exposure", 10), (pinned, "contact", 2))
        waiting = tick(client)
        assert waiting["applied"] is False
        # The waiting data were served by `pinned`; a new draw would credit them to another arm.
        assert waiting["next_window_arm_id"] == pinned
    feed.send((reference, "exposure", 60), (reference, "contact", 6))
    applied = tick(client)
    rows = rows_of(applied)
    assert rows[pinned]["alpha_increment"] == 12
    assert rows[pinned]["beta_increment"] == pytest.approx(6 * 60 / 60)
    others = [row for arm_id, row in rows.items() if arm_id != pinned]
    assert all(row["alpha_increment"] == row["beta_increment"] == 0 for row in others)


def test_one_experiment_whose_tick_fails_does_not_stop_the_others(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's tick job runs each experiment in its own transaction: a failure (a
    lock timeout, a broken row) is logged and retried at the next poll, and the experiments
    after it still tick."""
    import api.runtime

    broken = create(client, name="broken", update_interval_s=0.1)
    create(client, name="healthy", update_interval_s=0.1)
    real_apply_tick = api.runtime.apply_tick

    def apply_tick(session: Any, experiment_id: int, **kwargs: Any) -> Any:
        if experiment_id == broken["id"]:
            raise RuntimeError("simulated failure of one experiment's tick")
        return real_apply_tick(session, experiment_id, **kwargs)

    monkeypatch.setattr(api.runtime, "apply_tick", apply_tick)
    time.sleep(0.15)  # both are due
    client.app.state.runtime.run_due_ticks()  # type: ignore[attr-defined]
    # (Both windows are empty: the healthy one only moves its schedule on.)
    assert inspect(client, "healthy")["last_tick_at"] is not None
    assert inspect(client, "broken")["last_tick_at"] is None


def test_ticks_newest_first_page_back_with_before(client: TestClient) -> None:
    create(client)
    for _ in range(5):
        tick(client)
    url = "/v1/experiments/similar-items/ticks"
    newest = client.get(url, params={"order": "newest", "limit": 2}, headers=ADMIN).json()
    assert [row["number"] for row in newest] == [5, 4]
    older = client.get(
        url, params={"order": "newest", "limit": 2, "before": 4}, headers=ADMIN
    ).json()
    assert [row["number"] for row in older] == [3, 2]
    oldest = client.get(url, params={"limit": 2}, headers=ADMIN).json()
    assert [row["number"] for row in oldest] == [1, 2]


def test_empty_windows_are_counted_not_recorded(client: TestClient) -> None:
    """An idle experiment does not write a tick row every interval: scheduled windows in
    which nothing arrived only move the schedule on, and the next recorded tick says how
    many it follows."""
    created = create(client, update_interval_s=0.1, exposure_source="client")
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    for _ in range(3):
        time.sleep(0.12)
        runtime.run_due_ticks()
    assert inspect(client)["tick_count"] == 0
    assert client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json() == []
    tickets = tickets_by_arm(client)
    reference = created["reference_arm_id"]
    post_events(client, [event(tickets[reference], "x", "exposure")])
    time.sleep(0.12)
    runtime.run_due_ticks()
    (recorded,) = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert recorded["number"] == 1 and recorded["empty_windows_before"] == 3
    # The count starts again after a recorded tick.
    time.sleep(0.12)
    runtime.run_due_ticks()
    post_events(client, [event(tickets[reference], "y", "exposure")])
    time.sleep(0.12)
    runtime.run_due_ticks()
    assert tick(client)["empty_windows_before"] == 0
    history = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert [row["empty_windows_before"] for row in history] == [3, 1, 0]


def test_a_carried_window_is_recorded_once_while_nothing_new_arrives(client: TestClient) -> None:
    """Without reference traffic the data wait: the first window that carries them is
    recorded (applied: false); later windows with exactly the same counts are not."""
    created = create(client, update_interval_s=0.1, exposure_source="client")
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    tickets = tickets_by_arm(client)
    arm = created["arms"][1]["id"]
    post_events(client, [event(tickets[arm], "t", "exposure")])
    for _ in range(3):
        time.sleep(0.12)
        runtime.run_due_ticks()
    post_events(client, [event(tickets[arm], "t2", "exposure")])  # something new: recorded
    time.sleep(0.12)
    runtime.run_due_ticks()
    history = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    assert [(row["applied"], row["target_exposures"]) for row in history] == [
        (False, 1),
        (False, 2),
    ]
    assert history[1]["empty_windows_before"] == 2
