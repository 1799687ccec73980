"""The nursery over HTTP: its settings, and a new arm added to a running experiment gets
about nursery_share of the target traffic until it has nursery_exposures, then is drawn by
the policy. Window mode's pinned arm is drawn the same way at each tick.

The traffic test runs on SQLite only: what it checks happens in memory (the replica's
snapshot and draws); the settings' storage is checked on both stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api.app import create_app
from api.enums import ArmStatus, Mode
from api.models import Arm, Experiment
from api.runtime import Runtime
from api.services.ticks import draw_window_arm
from arms.origins import Origin
from bandit import ThompsonSampling, choose_with_nursery, nursery_of
from bandit.nursery import probabilities_with_nursery
from tests.api.helpers import ADMIN, assert_error_shape, create, event, inspect, post_events, tick
from tests.conftest import settings_for, similar_items

NAME = "nursery"
URL = f"/v1/experiments/{NAME}"
SEED = 20240611
NURSERY_EXPOSURES = 100
NURSERY_SHARE = 0.1
NEW_ARM = {"text_match": 0.2, "distance": 1.7, "price_diff": 0.3, "region": 2}


def test_the_settings_are_stored_and_shown(client: TestClient) -> None:
    created = create(client, name=NAME, nursery_exposures=250, nursery_share=0.25)
    assert (created["nursery_exposures"], created["nursery_share"]) == (250, 0.25)
    shown = inspect(client, NAME)
    assert (shown["nursery_exposures"], shown["nursery_share"]) == (250, 0.25)
    default = create(client, name="no-nursery")
    assert (default["nursery_exposures"], default["nursery_share"]) == (0, 0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nursery_exposures", -1),
        ("nursery_exposures", "many"),
        ("nursery_share", 0),
        ("nursery_share", 1),
        ("nursery_share", 1.5),
    ],
)
def test_invalid_settings_are_422_naming_the_field(
    sqlite_client: TestClient, field: str, value: Any
) -> None:
    answer = sqlite_client.post(
        "/v1/experiments", json=similar_items(name=NAME, **{field: value}), headers=ADMIN
    )
    assert answer.status_code == 422, answer.text
    assert_error_shape(answer.json(), "ValidationError", field)


# -- traffic ---------------------------------------------------------------------------------
@pytest.fixture
def seeded_client(sqlite_url: str) -> Iterator[TestClient]:
    # Durability is not under test; without fsync a tick costs a few ms instead of ~30.
    with TestClient(create_app(settings_for(sqlite_url, sqlite_synchronous="OFF"))) as client:
        runtime_of(client).serving.rng = np.random.default_rng(SEED)
        yield client


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def snapshot_arm(client: TestClient, arm_id: int) -> dict[str, Any]:
    arms = client.get(f"{URL}/snapshot").json()["arms"]
    arm: dict[str, Any] = next(arm for arm in arms if arm["arm_id"] == arm_id)
    return arm


class Traffic:
    """Serves rounds of units; the new arm's units report a contact each, so that its
    posterior is soon far better than the others' (which report nothing)."""

    def __init__(self, client: TestClient, new_arm: int) -> None:
        self.client = client
        self.new_arm = new_arm
        self.units = 0

    def round(self, size: int) -> tuple[int, int]:
        """Serve ``size`` units, credit their exposures and events with a tick; the number
        of target answers and of those that served the new arm."""
        targets = new = 0
        contacts = []
        for _ in range(size):
            self.units += 1
            answer = self.client.get(f"{URL}/assignment", params={"unit": f"u{self.units}"})
            served = answer.json()
            if served["group"] != "target":
                continue
            targets += 1
            if served["arm_id"] == self.new_arm:
                new += 1
                contacts.append(event(served["ticket"], f"c{self.units}"))
        if contacts:
            post_events(self.client, contacts)
        runtime_of(self.client).flush_exposures(timeout_s=10)
        tick(self.client, NAME)
        return targets, new


def test_a_new_arm_gets_the_nursery_share_until_it_has_its_exposures(
    seeded_client: TestClient,
) -> None:
    client = seeded_client
    experiment = create(
        client,
        name=NAME,
        salt="nursery-test",
        arms=[
            {"text_match": 1.2, "distance": 0.8, "price_diff": 1.0, "region": 1},
            {"text_match": 0.8, "distance": 1.2, "price_diff": 0.5, "region": 2},
        ],
        nursery_exposures=NURSERY_EXPOSURES,
        nursery_share=NURSERY_SHARE,
    )
    founders = [arm["id"] for arm in experiment["arms"] if arm["origin"] != "reference"]
    # A running experiment: both founders grow up (until then every arm is in the nursery,
    # so the policy draws them all, as without a nursery).
    traffic = Traffic(client, new_arm=-1)
    while any(snapshot_arm(client, arm)["exposures"] < NURSERY_EXPOSURES for arm in founders):
        traffic.round(200)
    assert not any(snapshot_arm(client, arm)["in_nursery"] for arm in founders)

    added = client.post(f"{URL}/arms", json={"config": NEW_ARM}, headers=ADMIN)
    assert added.status_code == 201, added.text
    new_arm = added.json()["id"]
    assert snapshot_arm(client, new_arm)["in_nursery"]
    traffic.new_arm = new_arm

    # In the nursery: about NURSERY_SHARE of the target answers, although after the first
    # round its posterior (a contact on every exposure) is far better than the founders'.
    targets = served = rounds = 0
    while snapshot_arm(client, new_arm)["in_nursery"]:
        round_targets, round_served = traffic.round(300)
        targets, served, rounds = targets + round_targets, served + round_served, rounds + 1
        assert rounds < 20, "the new arm never left the nursery"
    mean = inspect(client, NAME)["arms"][-1]
    assert mean["id"] == new_arm and mean["alpha"] / (mean["alpha"] + mean["beta"]) > 0.9
    assert snapshot_arm(client, new_arm)["exposures"] >= NURSERY_EXPOSURES
    # Binomial bound, 5 standard deviations: with the fixed seed the counts are exact, and a
    # correct server fails it with probability below 1e-6 for another seed.
    sd = np.sqrt(targets * NURSERY_SHARE * (1 - NURSERY_SHARE))
    assert abs(served - NURSERY_SHARE * targets) < 5 * sd, (served, targets)

    # Grown up: the policy draws it, and it is by far the best arm.
    round_targets, round_served = traffic.round(300)
    assert round_served > 0.8 * round_targets, (round_served, round_targets)


def test_the_replica_draws_with_the_pure_nursery_probabilities(seeded_client: TestClient) -> None:
    client = seeded_client
    create(client, name=NAME, nursery_exposures=NURSERY_EXPOSURES, nursery_share=0.3)
    runtime = runtime_of(client)
    snapshot = runtime.serving.get(NAME)
    assert snapshot is not None
    # Give the snapshot a nursery (arm 1 young, the others grown), as a refresh would.
    exposures = np.array([500.0, 10.0, 300.0])
    successes, failures = np.array([4.0, 0.0, 9.0]), np.array([6.0, 0.0, 8.0])
    nursery = nursery_of(exposures, NURSERY_EXPOSURES, 0.3)
    assert nursery is not None
    policy = ThompsonSampling()
    grown = list(nursery.grown)
    snapshot = replace(
        snapshot,
        successes=successes,
        failures=failures,
        exposures=exposures,
        nursery=nursery,
        policy_arms=nursery.grown,
        policy_successes=successes[grown],
        policy_failures=failures[grown],
        thompson_params=policy.posterior_parameters(successes[grown], failures[grown]),
    )
    runtime.serving.rng = np.random.default_rng(SEED)
    runs = 30_000
    served = np.bincount([runtime.serving._choose(snapshot) for _ in range(runs)], minlength=3)
    # The exact probabilities of the pure function (the nursery's share, then Thompson's
    # P(best) among the grown arms by integration), and its own draws as a second check.
    exact = probabilities_with_nursery(
        policy, successes, failures, exposures, min_exposures=NURSERY_EXPOSURES, share=0.3
    )
    assert exact[1] == pytest.approx(0.3)
    assert stats.chisquare(served, runs * exact).pvalue > 1e-4
    pure = np.random.default_rng(SEED)
    drawn = np.bincount(
        [
            choose_with_nursery(
                policy,
                successes,
                failures,
                exposures,
                min_exposures=NURSERY_EXPOSURES,
                share=0.3,
                rng=pure,
            )
            for _ in range(runs)
        ],
        minlength=3,
    )
    assert stats.chisquare(drawn, runs * exact).pvalue > 1e-4


# -- window mode -----------------------------------------------------------------------------
def _window_experiment(nursery_exposures: float) -> tuple[Experiment, list[Arm]]:
    """A window-mode experiment (not stored): two grown arms and a young one."""
    experiment = Experiment(
        mode=Mode.WINDOW,
        policy="thompson",
        policy_params={},
        prior_alpha=1.0,
        prior_beta=1.0,
        nursery_exposures=nursery_exposures,
        nursery_share=NURSERY_SHARE,
    )
    arms = [
        Arm(id=arm_id, origin=origin, status=ArmStatus.ACTIVE, alpha=a, beta=b, exposures=n)
        for arm_id, origin, a, b, n in [
            (1, Origin.REFERENCE, 1.0, 1.0, 900.0),
            (2, Origin.EXPERT, 20.0, 30.0, 900.0),
            (3, Origin.EXPERT, 30.0, 20.0, 900.0),
            (4, Origin.MANUAL, 1.0, 1.0, 5.0),
        ]
    ]
    return experiment, arms


def test_window_mode_pins_a_nursery_arm_for_the_nursery_share_of_the_ticks() -> None:
    experiment, arms = _window_experiment(NURSERY_EXPOSURES)
    rng = np.random.default_rng(SEED)
    ticks = 5_000
    pinned = [draw_window_arm(experiment, arms, rng) for _ in range(ticks)]
    sd = np.sqrt(ticks * NURSERY_SHARE * (1 - NURSERY_SHARE))
    assert abs(pinned.count(4) - NURSERY_SHARE * ticks) < 5 * sd
    # The grown arms are drawn by Thompson sampling: arm 3 (Beta(30, 20)) against arm 2
    # (Beta(20, 30)) wins almost always.
    assert pinned.count(3) > 0.85 * ticks
    assert 1 not in pinned  # never the reference


def test_window_mode_without_a_nursery_draws_as_before() -> None:
    experiment, arms = _window_experiment(0.0)
    rng, alone = np.random.default_rng(SEED), np.random.default_rng(SEED)
    candidates = arms[1:]
    successes = np.array([arm.alpha - 1.0 for arm in candidates])
    failures = np.array([arm.beta - 1.0 for arm in candidates])
    for _ in range(500):
        index = ThompsonSampling().choose_one(successes, failures, alone)
        assert draw_window_arm(experiment, arms, rng) == candidates[index].id
