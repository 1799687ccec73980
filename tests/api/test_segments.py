"""Segmented experiments end to end (issue 12): the contract, segments opened on first
sight, tickets carrying the segment, the tick within each segment, the hierarchical pools,
the statistics per segment, the genetic step's traffic weighting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import repositories as repo
from api.models import Arm, TicketCredit
from api.runtime import Runtime
from api.tickets import key_before
from bandit import Prior
from bandit.hierarchy import fit_hierarchy, traffic_weighted
from tests.api.helpers import create, event, inspect, post_events, tick
from tests.conftest import ADMIN, similar_items
from tests.pending import clear_pending, pending_rows, rewrite_pending
from tests.segment_state import Pair, recorded_pairs, set_pairs, stored_pairs

SEGMENTED = {"segments": {"max_segments": 3}}


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def assign(client: TestClient, unit: str, segment: str | None = None) -> dict[str, Any]:
    params = {"unit": unit} if segment is None else {"unit": unit, "segment": segment}
    response = client.get("/v1/experiments/similar-items/assignment", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def segment_of(client: TestClient, ticket: str) -> int:
    claims = runtime_of(client).signer.verify(ticket)
    assert claims is not None
    return claims.segment


def open_segments(client: TestClient, *names: str) -> None:
    """Each name seen once, then registered by the exposure flush (as a replica does), and
    served once this replica's snapshot has them (the flush reloads it; the refresher may
    hold the lock a moment)."""
    for name in names:
        assign(client, "opener", name)
    runtime = runtime_of(client)
    runtime.flush_exposures()
    with runtime.read_transaction() as session:
        opened = set(repo.segment_names(session, 1))
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        snapshot = runtime.serving.get("similar-items")
        if snapshot is not None and opened <= set(snapshot.segments or ()):
            return
        time.sleep(0.01)
    raise AssertionError("the opened segments were not served within 5 s")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"mode": "window"}, "expected mode 'request'"),
        ({"policy": "ucb1"}, "expected policy 'thompson'"),
    ],
)
def test_segments_need_thompson_per_request(
    sqlite_client: TestClient, overrides: dict[str, Any], expected: str
) -> None:
    response = sqlite_client.post(
        "/v1/experiments", json=similar_items(**SEGMENTED, **overrides), headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["field"] == "segments"
    assert expected in response.json()["detail"]


@pytest.mark.parametrize("maximum", [1, 10_001, "many", 2.5])
def test_max_segments_bounds_are_named(sqlite_client: TestClient, maximum: object) -> None:
    response = sqlite_client.post(
        "/v1/experiments",
        json=similar_items(segments={"max_segments": maximum}),
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "segments.max_segments"


def test_segment_query_is_bounded(sqlite_client: TestClient) -> None:
    create(sqlite_client, **SEGMENTED)
    response = sqlite_client.get(
        "/v1/experiments/similar-items/assignment", params={"unit": "u", "segment": "x" * 65}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "segment"


def test_unsegmented_experiments_keep_version_2_tickets(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    answer = assign(sqlite_client, "u1", "cars")  # ignored: not segmented
    assert len(answer["ticket"]) == 52
    assert inspect(sqlite_client)["segments"] is None


def test_segments_open_on_first_sight_up_to_the_maximum(client: TestClient) -> None:
    create(client, **SEGMENTED)
    assert inspect(client)["segments"] == {"max_segments": 3, "opened": ["default"]}
    first = assign(client, "u1", "cars")
    assert len(first["ticket"]) == 56
    assert segment_of(client, first["ticket"]) == 0  # not open yet: the default segment
    open_segments(client, "cars", "phones", "flats")  # flats: beyond max_segments
    assert inspect(client)["segments"]["opened"] == ["default", "cars", "phones"]
    assert segment_of(client, assign(client, "u1", "cars")["ticket"]) == 1
    assert segment_of(client, assign(client, "u1", "phones")["ticket"]) == 2
    assert segment_of(client, assign(client, "u1", "flats")["ticket"]) == 0
    assert segment_of(client, assign(client, "u1")["ticket"]) == 0
    assert segment_of(client, assign(client, "u1", "default")["ticket"]) == 0


def test_two_replicas_registering_at_once_agree_on_every_index(client: TestClient) -> None:
    """Two registrations racing (two replicas' exposure flushes, each its own transaction):
    the second takes the experiment's lock after the first commits, sees its segment, and
    opens only its own, at the next index. No index is given twice, no name gets two, and
    an index reaches tickets only once its row is committed (the snapshot reads committed
    rows)."""
    from api.services.segments import register_segments

    create(client, **SEGMENTED)
    runtime = runtime_of(client)
    registered = threading.Event()
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def second() -> None:
        registered.wait(5.0)
        try:
            with runtime.transaction() as session:
                results["second"] = register_segments(
                    session, 1, ["phones", "cars"], datetime.now(UTC)
                )
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with runtime.transaction() as session:
        results["first"] = register_segments(session, 1, ["cars"], datetime.now(UTC))
        registered.set()
        time.sleep(0.3)  # the second waits for this commit (or starts after it)
        runtime.serving.refresh(runtime.read_session_factory)
        snapshot = runtime.serving.get("similar-items")
        assert snapshot is not None and snapshot.segments == {"default": 0}
    thread.join(10.0)
    assert not thread.is_alive() and errors == []
    assert results == {"first": ["cars"], "second": ["phones"]}
    with runtime.read_transaction() as session:
        assert repo.segment_names(session, 1) == ["default", "cars", "phones"]
    runtime.serving.refresh(runtime.read_session_factory)
    assert segment_of(client, assign(client, "u1", "cars")["ticket"]) == 1
    assert segment_of(client, assign(client, "u1", "phones")["ticket"]) == 2


def test_the_tick_applies_each_segment_against_its_own_reference(client: TestClient) -> None:
    """Exact reference-ratio increments per segment, the carry-forward of a segment without
    reference exposures, and the pools fitted over the segments (against
    bandit.hierarchy called on the stored evidence)."""
    create(client, **SEGMENTED)
    open_segments(client, "cars", "phones")
    runtime = runtime_of(client)
    with runtime.transaction() as session:  # what the opener's assignments counted
        clear_pending(session.connection())
    served: dict[tuple[int, str, int], list[str]] = {}
    for index in range(600):
        segment = ("cars", "phones")[index % 2]
        answer = assign(client, f"unit-{index}", segment)
        key = (answer["arm_id"], answer["group"], segment_of(client, answer["ticket"]))
        served.setdefault(key, []).append(answer["ticket"])
    # Contacts: in cars, every 2nd ticket of every arm; in phones only target contacts.
    events = []
    for (arm_id, group, segment), tickets in served.items():
        if segment == 1:
            events += [event(t, f"c-{arm_id}-{group}-{i}") for i, t in enumerate(tickets[::2])]
        elif group == "target":
            events += [event(t, f"p-{arm_id}-{i}") for i, t in enumerate(tickets[::3])]
    post_events(client, events)
    runtime.flush_exposures()
    # Phones has no reference exposure: drop them, so that only cars can be applied.
    with runtime.transaction() as session:
        rewrite_pending(
            session.connection(), 1, lambda row: not (row.segment == 2 and row.group == "reference")
        )
    result = tick(client)
    assert result["applied"] is True
    reference_exposures = sum(
        len(t) for (_, g, s), t in served.items() if g == "reference" and s == 1
    )
    reference_events = sum(
        len(t[::2]) for (_, g, s), t in served.items() if g == "reference" and s == 1
    )
    assert result["reference_exposures"] == reference_exposures
    with runtime.read_transaction() as session:
        stored = {(row.arm_id, row.segment): row for row in stored_pairs(session)}
        recorded = recorded_pairs(session)
        arms = [a for a in repo.arms_of(session, 1) if a.origin != "reference"]
        pending_phones = [row for row in pending_rows(session.connection(), 1) if row.segment == 2]
    assert {row.segment for row in recorded} == {1}
    assert pending_phones, "the phones window waits for reference exposures"
    for arm in arms:
        tickets = served.get((arm.id, "target", 1), [])
        row = stored[(arm.id, 1)]
        assert row.exposures == len(tickets)
        assert row.target_events == len(tickets[::2])
        assert row.alpha == pytest.approx(1.0 + len(tickets[::2]))
        assert row.beta == pytest.approx(
            1.0 + reference_events * len(tickets) / reference_exposures, rel=1e-12
        )
        assert (arm.id, 2) not in stored
    # The ratio moments: n^2 / n_r of the one window applied.
    with runtime.read_transaction() as session:
        states = repo.arm_segment_states(session, [arm.id for arm in arms])
    for arm in arms:
        n = len(served.get((arm.id, "target", 1), []))
        assert states[arm.id].ratio_moments[1] == pytest.approx(n * n / reference_exposures)
    # The pools: bandit.hierarchy on the stored evidence of segments 0..2, each divided by
    # its dispersion factor max(1, (1 - theta) + theta n / n_r), written out here.
    successes = np.zeros((len(arms), 3))
    failures = np.zeros((len(arms), 3))
    for k, arm in enumerate(arms):
        for (arm_id, segment), row in stored.items():
            if arm_id == arm.id:
                x, m = row.alpha - 1.0, row.beta - 1.0
                theta = x / (x + m) if x + m > 0 else 0.0
                phi = max(1.0, (1 - theta) + theta * row.exposures / reference_exposures)
                successes[k, segment], failures[k, segment] = x / phi, m / phi
    fit = fit_hierarchy(successes, failures, prior=Prior())
    for k, arm in enumerate(arms):
        assert arm.pool_mu == pytest.approx(float(fit.mu[k]), rel=1e-12)
        assert arm.pool_kappa == pytest.approx(float(fit.kappa[k]), rel=1e-12)


def stats_by_arm(client: TestClient, segment: str | None = None) -> dict[int, dict[str, Any]]:
    """``GET .../stats`` (of one segment, or overall), its rows by arm id."""
    params = {} if segment is None else {"segment": segment}
    response = client.get("/v1/experiments/similar-items/stats", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return {row["arm_id"]: row for row in response.json()["arms"]}


def cars_and_phones(
    client: TestClient,
) -> tuple[dict[tuple[str, int], str], dict[tuple[str, int], str], int]:
    """Open segments cars and phones; a ticket of each (group, arm) in each, and the
    reference arm's id."""
    open_segments(client, "cars", "phones")
    cars, phones = served_in(client, "cars"), served_in(client, "phones")
    return cars, phones, next(arm_id for group, arm_id in cars if group == "reference")


def served_in(client: TestClient, segment: str) -> dict[tuple[str, int], str]:
    """One ticket of each (group, arm) served in ``segment``: the reference and every
    target arm."""
    experiment = inspect(client)
    wanted = {("reference", experiment["reference_arm_id"])} | {
        ("target", arm["id"])
        for arm in experiment["arms"]
        if arm["status"] == "active" and arm["id"] != experiment["reference_arm_id"]
    }
    found: dict[tuple[str, int], str] = {}
    for index in range(2000):
        answer = assign(client, f"{segment}-{index}", segment)
        assert segment_of(client, answer["ticket"]) != 0
        found.setdefault((answer["group"], answer["arm_id"]), answer["ticket"])
        if wanted <= set(found):
            return found
    raise AssertionError(f"not every arm served in {segment}: {sorted(wanted - set(found))}")


def test_contacts_a_segment_cannot_credit_are_quarantined_not_dropped(client: TestClient) -> None:
    """An arm's target events in a segment where it has no exposures yet are over that
    (arm, segment)'s cap, even when the arm has exposures in another segment: the tick
    quarantines them (recorded, on the arm and the tick) instead of crediting them to the
    arm while its segment drops them. Every credited count is then in exactly one
    segment: the arms' totals are their segments' sums (the crash test's failure: a
    contact reported before its ticket's exposure, counted overall, missing per segment)."""
    create(client, exposure_source="client", **SEGMENTED)
    cars, phones, reference_id = cars_and_phones(client)
    target_id = min(arm_id for group, arm_id in cars if group == "target")
    post_events(
        client,
        [
            event(cars[("reference", reference_id)], "r-cars-x", "exposure", 4),
            event(cars[("reference", reference_id)], "r-cars-c", "contact", 1),
            event(phones[("reference", reference_id)], "r-phones-x", "exposure", 5),
            event(phones[("target", target_id)], "t-phones-x", "exposure", 3),
            event(phones[("target", target_id)], "t-phones-c", "contact", 2),
            # The arm's contact in cars, its ticket's exposure not reported yet.
            event(cars[("target", target_id)], "t-cars-c", "contact", 1),
        ],
    )
    first = tick(client)
    assert first["applied"] is True
    assert first["target_events"] == 2.0
    assert first["uncredited"] == {"over_exposure_limit": {"contact": 1.0}}
    assert first["quarantined_events"] == 1.0
    # Its exposure arrives in the next window: the cap is cumulative, the contact stays out.
    post_events(
        client,
        [
            event(cars[("reference", reference_id)], "r-cars-x2", "exposure", 1),
            event(cars[("target", target_id)], "t-cars-x", "exposure", 1),
        ],
    )
    assert tick(client)["applied"] is True
    with runtime_of(client).read_transaction() as session:
        arms = {arm.id: arm for arm in repo.arms_of(session, 1)}
        by_pair = {
            (row.segment, row.arm_id): (row.exposures, row.target_events)
            for row in stored_pairs(session)
        }
    assert by_pair[(1, target_id)] == (1.0, 0.0)
    assert by_pair[(2, target_id)] == (3.0, 2.0)
    assert by_pair[(1, reference_id)] == (5.0, 1.0)
    assert by_pair[(2, reference_id)] == (5.0, 0.0)
    target = arms[target_id]
    assert (target.exposures, target.target_events, target.quarantined_events) == (4.0, 2.0, 1.0)
    for arm_id, arm in arms.items():
        pairs = [totals for (_, pair_arm), totals in by_pair.items() if pair_arm == arm_id]
        assert (arm.exposures, arm.target_events) == (
            sum(exposures for exposures, _ in pairs),
            sum(events for _, events in pairs),
        )
    # Each segment's statistics show the events quarantined there: the arm's are in cars.
    quarantined = {
        segment: {
            arm_id: row["quarantined_events"]
            for arm_id, row in stats_by_arm(client, segment).items()
        }
        for segment in ("default", "cars", "phones")
    }
    assert quarantined["cars"][target_id] == 1.0
    assert quarantined["phones"][target_id] == quarantined["default"][target_id] == 0.0
    for arm_id, arm in arms.items():
        assert sum(by_arm[arm_id] for by_arm in quarantined.values()) == arm.quarantined_events


def test_events_over_a_tickets_limit_are_quarantined_in_their_segment(
    client: TestClient,
) -> None:
    """Target events beyond their ticket's limit (``over_ticket_limit``) are quarantined
    on the arm and, per segment, in the segment of the ticket: the segments' quarantined
    events sum to the arm's."""
    limit = 2  # contacts a ticket may credit
    create(
        client,
        exposure_source="client",
        max_events_per_exposure={"*": limit, "exposure": 1_000},
        **SEGMENTED,
    )
    cars, phones, reference_id = cars_and_phones(client)
    target_id = min(arm_id for group, arm_id in phones if group == "target")
    post_events(
        client,
        [
            event(cars[("reference", reference_id)], "r-cars-x", "exposure", 4),
            event(phones[("reference", reference_id)], "r-phones-x", "exposure", 5),
            event(phones[("target", target_id)], "t-phones-x", "exposure", 1),
            # More contacts than one ticket may credit: the rest is over its limit.
            event(phones[("target", target_id)], "t-phones-c", "contact", limit + 3),
        ],
    )
    assert tick(client)["applied"] is True
    stats = {segment: stats_by_arm(client, segment) for segment in ("cars", "phones")}
    overall = stats_by_arm(client)
    assert overall[target_id]["quarantined_events"] == 3.0
    assert stats["phones"][target_id]["quarantined_events"] == 3.0
    assert stats["cars"][target_id]["quarantined_events"] == 0.0


def test_stats_per_segment(client: TestClient) -> None:
    create(client, **SEGMENTED)
    open_segments(client, "cars")
    for index in range(300):
        answer = assign(client, f"unit-{index}", "cars")
        if index % 3 == 0:
            post_events(client, [event(answer["ticket"], f"e-{index}")])
    runtime_of(client).flush_exposures()
    tick(client)
    response = client.get(
        "/v1/experiments/similar-items/stats", params={"segment": "cars"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["segment"] == "cars"
    with runtime_of(client).read_transaction() as session:
        arms = {a.id: a for a in repo.arms_of(session, 1)}
        rows = {r.arm_id: r for r in stored_pairs(session) if r.segment == 1}
    for stats in body["arms"]:
        row = rows.get(stats["arm_id"])
        assert stats["exposures"] == (row.exposures if row else 0.0)
        arm: Arm = arms[stats["arm_id"]]
        if arm.origin == "reference":
            continue
        assert arm.pool_mu is not None and arm.pool_kappa is not None
        x = (row.alpha - 1.0) if row else 0.0
        m = (row.beta - 1.0) if row else 0.0
        assert stats["alpha"] == pytest.approx(arm.pool_mu * arm.pool_kappa + x, rel=1e-12)
        assert stats["beta"] == pytest.approx((1 - arm.pool_mu) * arm.pool_kappa + m, rel=1e-12)
    for segment, expected in (("nowhere", 422), ("default", 200)):
        answer = client.get(
            "/v1/experiments/similar-items/stats", params={"segment": segment}, headers=ADMIN
        )
        assert answer.status_code == expected
        if expected == 422:
            assert answer.json()["field"] == "segment"


def test_stats_refuse_a_segment_of_an_unsegmented_experiment(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    answer = sqlite_client.get(
        "/v1/experiments/similar-items/stats", params={"segment": "cars"}, headers=ADMIN
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "segment"


def test_assignment_draws_from_the_segments_pooled_posteriors(sqlite_client: TestClient) -> None:
    """With the segments' posteriors far apart, each segment's draws go to its own best arm."""
    create(sqlite_client, **SEGMENTED)
    open_segments(sqlite_client, "cars", "phones")
    runtime = runtime_of(sqlite_client)
    with runtime.transaction() as session:
        experiment = repo.get_experiment(session, 1)
        assert experiment is not None
        targets = [a for a in repo.arms_of(session, 1) if a.origin != "reference"]
        for k, arm in enumerate(targets):
            arm.pool_mu, arm.pool_kappa = 0.5, 2.0
            set_pairs(
                session,
                [
                    Pair(
                        arm.id,
                        segment,
                        1.0 + (900 if k == best else 100),
                        1.0 + (100 if k == best else 900),
                        1000.0,
                        0.0,
                    )
                    for segment, best in ((1, 0), (2, 1))
                ],
            )
        repo.bump_version(experiment, experiment.updated_at)
    runtime.serving.refresh(runtime.read_session_factory)
    for segment, best in (("cars", 0), ("phones", 1)):
        arms = [
            a["arm_id"]
            for a in (assign(sqlite_client, f"u{i}", segment) for i in range(200))
            if a["group"] == "target"
        ]
        assert set(arms) == {targets[best].id}


def test_traffic_weighted_retirement_view(client: TestClient) -> None:
    """The genetic step judges a segmented experiment's arms by their pooled segment
    posteriors weighted by the segments' traffic (bandit.hierarchy.traffic_weighted)."""
    from api.services.segments import traffic_weighted_posteriors

    create(client, **SEGMENTED)
    open_segments(client, "cars")
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        experiment = repo.get_experiment(session, 1)
        assert experiment is not None
        every = list(repo.arms_of(session, 1))
        targets = [a for a in every if a.origin != "reference"]
        exposures = {0: 900.0, 1: 100.0}
        for k, arm in enumerate(every):
            arm.pool_mu, arm.pool_kappa = 0.5, 4.0
            set_pairs(
                session,
                [
                    Pair(arm.id, segment, 1.0 + 10 * (k + 1) * (segment + 1), 1.0 + 30, n, 0.0)
                    for segment, n in exposures.items()
                ],
            )
        session.flush()
        view = traffic_weighted_posteriors(session, experiment, targets)
    weights = np.array([900.0, 100.0]) * len(every)
    for k, arm in enumerate(every):
        if arm.origin == "reference":
            continue
        alphas = np.array([2.0 + 10 * (k + 1) * (s + 1) for s in (0, 1)])
        betas = np.array([2.0 + 30, 2.0 + 30])
        expected = traffic_weighted(alphas, betas, weights)
        assert view[arm.id] == pytest.approx((float(expected[0]), float(expected[1])))


def test_maintenance_purges_expired_credits_of_both_ticket_versions(client: TestClient) -> None:
    """Credit keys start with the ticket's version, then its issue time: each version's
    expired range is purged, and a live key of either version is kept."""
    create(client, **SEGMENTED)
    create(client, name="plain")
    segmented = assign(client, "u1")["ticket"]
    plain = client.get("/v1/experiments/plain/assignment", params={"unit": "u1"}).json()["ticket"]
    post_events(client, [event(segmented, "s1"), event(plain, "p1")])
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        live = set(session.scalars(select(TicketCredit.key)).all())
        assert {key[0] for key in live} == {2, 3}
        for version in (2, 3):
            session.add(TicketCredit(key=key_before(1, version) + b"old", count=1))
    runtime.run_maintenance()
    with runtime.read_transaction() as session:
        assert set(session.scalars(select(TicketCredit.key)).all()) == live
