"""Arms restricted to some segments (issue 12's option, docs/segments.md "Restricted arms"):
the contract and its 422s, assignment never serving an arm outside its segments (block
draws, the nursery, the allocation path from 32 arms, sticky placements), a segment with no
allowed arm, the tick's overall posterior against the arm's own segments' reference, the
statistics per segment, the genetic step's weighting and its children, against values computed
here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import repositories as repo
from api.models import Arm
from api.services.segments import inherited_segments, traffic_weighted_posteriors
from tests.api.helpers import create, event, inspect, post_events, tick
from tests.api.test_segments import assign, open_segments, runtime_of, segment_of
from tests.conftest import ADMIN
from tests.pending import clear_pending, pending_rows
from tests.segment_state import Pair, set_pairs

ARMS = "/v1/experiments/similar-items/arms"
NEW = {"text_match": 0.3, "distance": 1.7, "price_diff": 0.2, "region": 3}
OTHER = {"text_match": 1.9, "distance": 0.1, "price_diff": 1.9, "region": 0}


def add(client: TestClient, config: dict[str, Any], segments: list[str] | None) -> Any:
    body: dict[str, Any] = {"config": config}
    if segments is not None:
        body["segments"] = segments
    return client.post(ARMS, json=body, headers=ADMIN)


@pytest.mark.parametrize(
    ("segments", "field", "expected"),
    [
        ([], "segments", "at least 1 item"),
        (["cars", "flats", "cars"], "segments[2]", "expected distinct names"),
        (["cars", "x" * 65], "segments[1]", "at most 64 characters"),
        (["cars", ""], "segments[1]", "at least 1 character"),
        (["a", "b", "c", "d"], "segments", "expected at most the experiment's max_segments (3)"),
        ("cars", "segments", "valid list"),
    ],
)
def test_invalid_restrictions_are_422_naming_the_field(
    sqlite_client: TestClient, segments: Any, field: str, expected: str
) -> None:
    create(sqlite_client, segments={"max_segments": 3})
    response = add(sqlite_client, NEW, segments)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert expected in body["detail"]
    assert len(inspect(sqlite_client)["arms"]) == 4  # the reference and 3 founders: unchanged


def test_an_unsegmented_experiment_refuses_a_restriction(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    response = add(sqlite_client, NEW, ["cars"])
    assert response.status_code == 422
    assert response.json()["field"] == "segments"
    assert "is not segmented; expected no segments" in response.json()["detail"]
    assert add(sqlite_client, NEW, None).status_code == 201


def targets_by_segment(client: TestClient, segment: str, units: int) -> dict[int, int]:
    """How often each target arm is served to ``units`` units in ``segment``."""
    counts: dict[int, int] = {}
    for index in range(units):
        answer = assign(client, f"{segment}-{index}", segment)
        if answer["group"] == "target":
            counts[answer["arm_id"]] = counts.get(answer["arm_id"], 0) + 1
    return counts


def test_a_restricted_arm_is_served_in_its_segments_only(client: TestClient) -> None:
    """Shown on the arm; never drawn outside its segments (400 units each, with the nursery
    on: a new arm is in it), drawn in them; restricted to a segment not opened yet, it is
    served there once the segment opens."""
    create(client, segments={"max_segments": 5}, nursery_exposures=100.0, nursery_share=0.5)
    open_segments(client, "cars", "phones")
    cars_arm = add(client, NEW, ["cars"]).json()
    flats_arm = add(client, OTHER, ["flats", "cars"]).json()
    assert cars_arm["segments"] == ["cars"]
    shown = {arm["id"]: arm["segments"] for arm in inspect(client)["arms"]}
    assert shown[cars_arm["id"]] == ["cars"] and shown[flats_arm["id"]] == ["flats", "cars"]
    assert sum(1 for value in shown.values() if value is None) == 4
    for segment in ("default", "phones", "unknown"):
        served = targets_by_segment(client, segment, 400)
        assert cars_arm["id"] not in served and flats_arm["id"] not in served, segment
        assert len(served) == 3  # the founders
    served = targets_by_segment(client, "cars", 400)
    assert {cars_arm["id"], flats_arm["id"]} <= set(served)
    open_segments(client, "flats")
    served = targets_by_segment(client, "flats", 400)
    assert flats_arm["id"] in served and cars_arm["id"] not in served


def test_sticky_and_allocation_paths_respect_restrictions(sqlite_client: TestClient) -> None:
    """The sticky placements and the allocations of 32 arms or more (in memory only: SQLite)."""
    many = [
        {"text_match": 0.05 * i, "distance": 0.5, "price_diff": 1.0, "region": 1}
        for i in range(1, 36)
    ]
    create(sqlite_client, segments={"max_segments": 3}, arms=many)
    create(sqlite_client, name="sticky", segments={"max_segments": 3}, assignment={"sticky": True})
    open_segments(sqlite_client, "cars")
    restricted = add(sqlite_client, NEW, ["cars"]).json()["id"]
    snapshot = runtime_of(sqlite_client).serving.get("similar-items")
    assert snapshot is not None and snapshot.segment_allocations[0] is not None
    assert restricted not in targets_by_segment(sqlite_client, "default", 300)
    assert restricted in targets_by_segment(sqlite_client, "cars", 1500)
    url = "/v1/experiments/sticky"
    for name in ("cars",):
        sqlite_client.get(f"{url}/assignment", params={"unit": "o", "segment": name})
    runtime_of(sqlite_client).flush_exposures()
    runtime_of(sqlite_client).serving.refresh(runtime_of(sqlite_client).read_session_factory)
    body = {"config": NEW, "segments": ["cars"]}
    sticky_arm = sqlite_client.post(f"{url}/arms", json=body, headers=ADMIN).json()["id"]
    seen: dict[str, set[int]] = {"default": set(), "cars": set()}
    for segment in seen:
        for index in range(300):
            answer = sqlite_client.get(
                f"{url}/assignment", params={"unit": f"u{index}", "segment": segment}
            ).json()
            if answer["group"] == "target":
                seen[segment].add(answer["arm_id"])
    assert sticky_arm not in seen["default"] and sticky_arm in seen["cars"]


def test_a_segment_without_allowed_arms_serves_the_reference_uncounted(client: TestClient) -> None:
    """Every founder retired, one arm left for cars: a target unit of phones gets the
    reference configuration on an inactive ticket, and no exposure is counted there."""
    created = create(client, segments={"max_segments": 3})
    open_segments(client, "cars", "phones")
    only = add(client, NEW, ["cars"]).json()["id"]
    for arm in created["arms"]:
        if arm["origin"] != "reference":
            assert client.delete(f"{ARMS}/{arm['id']}", headers=ADMIN).status_code == 200
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        clear_pending(session.connection())
    answers = [assign(client, f"p{i}", "phones") for i in range(60)]
    targets = [a for a in answers if a["group"] == "target"]
    assert targets and all(not a["active"] for a in targets)
    assert {a["arm_id"] for a in answers} == {created["reference_arm_id"]}
    assert all(a["active"] for a in answers if a["group"] == "reference")
    cars = [assign(client, f"c{i}", "cars") for i in range(30)]
    assert {a["arm_id"] for a in cars if a["group"] == "target"} == {only}
    runtime.flush_exposures()
    with runtime.read_transaction() as session:
        counted = [
            (row.segment, row.group, row.count)
            for row in pending_rows(session.connection(), 1)
            if row.type == "exposure"
        ]
    phones_target = [row for row in counted if row[0] == 2 and row[1] == "target"]
    assert phones_target == []
    phones_reference = sum(row[2] for row in counted if row[0] == 2 and row[1] == "reference")
    assert phones_reference == len(answers) - len(targets)


def test_the_overall_posterior_uses_the_reference_of_the_arms_segments(
    client: TestClient,
) -> None:
    """Cars converts at every 2nd exposure, phones at every 5th: the restricted arm's
    failures are counted against cars' reference rate, a founder's against the window's."""
    create(client, segments={"max_segments": 3})
    open_segments(client, "cars", "phones")
    restricted = add(client, NEW, ["cars"]).json()["id"]
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        clear_pending(session.connection())
    served: dict[tuple[int, str, str], list[str]] = {}
    for index in range(800):
        segment = ("cars", "phones")[index % 2]
        answer = assign(client, f"unit-{index}", segment)
        assert segment_of(client, answer["ticket"]) == (1 if segment == "cars" else 2)
        served.setdefault((answer["arm_id"], answer["group"], segment), []).append(answer["ticket"])
    events = []
    for (arm_id, group, segment), tickets in served.items():
        step = 2 if segment == "cars" else 5
        events += [
            event(t, f"{arm_id}-{group}-{segment}-{i}") for i, t in enumerate(tickets[::step])
        ]
    post_events(client, events)
    runtime.flush_exposures()
    assert tick(client)["applied"] is True

    def totals(group: str, segments: tuple[str, ...], arm: int | None = None) -> tuple[int, int]:
        chosen = [
            t
            for (a, g, s), t in served.items()
            if g == group and s in segments and (arm is None or a == arm)
        ]
        step = {"cars": 2, "phones": 5}
        exposures = sum(len(t) for t in chosen)
        events = sum(
            len(t[:: step[s]])
            for (a, g, s), t in served.items()
            if g == group and s in segments and (arm is None or a == arm)
        )
        return exposures, events

    with runtime.read_transaction() as session:
        arms = {a.id: a for a in repo.arms_of(session, 1) if a.origin != "reference"}
    n_r_cars, c_r_cars = totals("reference", ("cars",))
    n_r, c_r = totals("reference", ("cars", "phones"))
    n_k, c_k = totals("target", ("cars",), restricted)
    assert n_k > 0 and totals("target", ("phones",), restricted) == (0, 0)
    assert arms[restricted].alpha == pytest.approx(1.0 + c_k, rel=1e-12)
    assert arms[restricted].beta == pytest.approx(1.0 + c_r_cars * n_k / n_r_cars, rel=1e-12)
    for arm_id, arm in arms.items():
        if arm_id == restricted:
            continue
        n, _ = totals("target", ("cars", "phones"), arm_id)
        assert arm.beta == pytest.approx(1.0 + c_r * n / n_r, rel=1e-12)


def test_stats_per_segment_show_a_restricted_arm_as_not_served(client: TestClient) -> None:
    create(client, segments={"max_segments": 3})
    open_segments(client, "cars", "phones")
    restricted = add(client, NEW, ["cars"]).json()["id"]
    url = "/v1/experiments/similar-items/stats"
    for segment, served in (("phones", False), ("cars", True), (None, True)):
        params = {} if segment is None else {"segment": segment}
        body = client.get(url, params=params, headers=ADMIN).json()
        row = next(a for a in body["arms"] if a["arm_id"] == restricted)
        assert row["segments"] == ["cars"]
        assert row["served"] is served
        assert (row["prob_best"] is None) is (not served)
        others = [
            a for a in body["arms"] if a["arm_id"] != restricted and a["origin"] != "reference"
        ]
        assert all(a["served"] and a["segments"] is None for a in others)
        assert sum(a["prob_best"] for a in others) + (row["prob_best"] or 0.0) == pytest.approx(1.0)


def test_the_genetic_step_weights_a_restricted_arm_over_its_segments(client: TestClient) -> None:
    """The traffic-weighted Beta of a restricted arm: its own segments' shares renormalised,
    mean and variance computed here by hand (independently of bandit.hierarchy)."""
    create(client, segments={"max_segments": 3})
    open_segments(client, "cars", "phones")
    restricted = add(client, NEW, ["cars", "phones"]).json()["id"]
    runtime = runtime_of(client)
    exposures = {0: 600.0, 1: 300.0, 2: 100.0}  # per arm, so the shares are 0.6/0.3/0.1
    with runtime.transaction() as session:
        experiment = repo.get_experiment(session, 1)
        assert experiment is not None
        every = list(repo.arms_of(session, 1))
        for k, arm in enumerate(every):
            arm.pool_mu, arm.pool_kappa = 0.25, 4.0
            set_pairs(
                session,
                [
                    Pair(arm.id, segment, 1.0 + 5 * (k + 1) * (segment + 1), 1.0 + 20, n, 0.0)
                    for segment, n in exposures.items()
                    if not (arm.id == restricted and segment == 0)
                ],
            )
        session.flush()
        targets = [a for a in every if a.origin != "reference"]
        view = traffic_weighted_posteriors(session, experiment, targets)
    traffic = np.array([600.0 * (len(every) - 1), 300.0 * len(every), 100.0 * len(every)])
    for k, arm in enumerate(every):
        if arm.origin == "reference":
            continue
        segments = (1, 2) if arm.id == restricted else (0, 1, 2)
        shares = {s: traffic[s] / sum(traffic[t] for t in segments) for s in segments}
        mean = variance = 0.0
        for s in segments:
            a = 0.25 * 4.0 + 5 * (k + 1) * (s + 1)  # the pool plus the evidence alpha - 1
            b = 0.75 * 4.0 + 20
            m = a / (a + b)
            mean += shares[s] * m
            variance += shares[s] ** 2 * m * (1 - m) / (a + b + 1)
        concentration = mean * (1 - mean) / variance - 1
        assert view[arm.id] == pytest.approx(
            (mean * concentration, (1 - mean) * concentration), rel=1e-12
        )


def test_children_serve_where_a_parent_is_served() -> None:
    def arm(segments: list[str] | None) -> Arm:
        return Arm(segments=segments)

    assert inherited_segments([]) is None
    assert inherited_segments([arm(["cars"]), arm(None)]) is None
    assert inherited_segments([arm(["cars", "flats"])]) == ["cars", "flats"]
    assert inherited_segments([arm(["flats", "cars"]), arm(["phones", "cars"])]) == [
        "flats",
        "cars",
        "phones",
    ]


def test_a_genetic_steps_children_are_served_where_a_parent_is(client: TestClient) -> None:
    """Every arm restricted (the founders in the database): each mutation keeps its
    parent's segments, each crossover the union of its parents', as the step stores them."""
    evolution = {
        "min_exposures": 0,
        "drop_count": 1,
        "min_arms": 2,
        "max_arms": 6,
        "mix": {"random": 0, "mutation": 1, "crossover": 1},
    }
    created = create(client, segments={"max_segments": 4}, evolution=evolution)
    restrictions = [["cars"], ["flats"], ["cars", "phones"]]
    founders = [arm["id"] for arm in created["arms"] if arm["origin"] != "reference"]
    with runtime_of(client).transaction() as session:
        for arm_id, segments in zip(founders, restrictions, strict=True):
            arm = repo.get_arm(session, 1, arm_id)
            assert arm is not None
            arm.segments = segments
    added = client.post(ARMS, json={"config": NEW, "segments": ["default"]}, headers=ADMIN)
    assert added.status_code == 201
    step = client.post("/v1/experiments/similar-items/evolve", params={"seed": 3}, headers=ADMIN)
    assert step.status_code == 200, step.text
    children = step.json()["added"]
    assert {child["origin"] for child in children} == {"mutation", "crossover"}  # seed 3
    shown = {arm["id"]: arm["segments"] for arm in inspect(client)["arms"]}
    for child in children:
        expected: list[str] = []
        for parent in child["parent_ids"]:
            expected += [name for name in shown[parent] if name not in expected]
        assert shown[child["arm_id"]] == expected
