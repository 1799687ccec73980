"""End to end through HTTP: a seeded simulated client drives a running experiment whose three
arms have known true contact rates; Thompson sampling on the reference-ratio posteriors must
find the best arm.

Each tick: 16 units drawn from a population of 5,000 ask for a configuration, each contacts
with its served arm's true probability, the contacts go in one event batch, and the tick is
triggered through the admin API. Runs on SQLite only: the store's semantics are covered by
the tick and event tests on both stores, and this run is about the loop converging.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.helpers import ADMIN, create, inspect, post_events, tick
from tests.conftest import SIMILAR_ITEMS, settings_for

TICKS = 200
REQUESTS_PER_TICK = 16
REFERENCE_RATE = 0.3
# SIMILAR_ITEMS arms in order: half as good as, equal to, and twice as good as the reference.
TRUE_RATES = (0.15, 0.3, 0.6)
SEED = 20240611


@pytest.fixture
def fast_client(sqlite_url: str) -> Iterator[TestClient]:
    # Durability is not under test here; without fsync a tick costs a few ms instead of ~30.
    settings = settings_for(sqlite_url, sqlite_synchronous="OFF")
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime
        # Seed the server's Thompson draws too, so that a failure can be replayed.
        runtime.rng = np.random.default_rng(SEED + 1)
        runtime.serving.rng = np.random.default_rng(SEED + 2)
        yield client


def test_thompson_sampling_over_http_finds_the_best_arm(fast_client: TestClient) -> None:
    client = fast_client
    experiment = create(client, salt="end-to-end")  # a fixed salt makes the run exact
    reference_id = experiment["reference_arm_id"]
    arm_ids = [arm["id"] for arm in experiment["arms"][1:]]
    rate_of = {reference_id: REFERENCE_RATE, **dict(zip(arm_ids, TRUE_RATES, strict=True))}
    assert [arm["config"] for arm in experiment["arms"][1:]] == SIMILAR_ITEMS["arms"]

    rng = np.random.default_rng(SEED)
    served_late = {arm_id: 0 for arm_id in arm_ids}
    serial = 0
    for number in range(1, TICKS + 1):
        units = rng.integers(0, 5000, size=REQUESTS_PER_TICK)
        events = []
        for unit in units:
            answer = client.get(
                "/v1/experiments/similar-items/assignment", params={"unit": f"user-{unit}"}
            ).json()
            if answer["group"] == "target" and number > TICKS * 2 // 3:
                served_late[answer["arm_id"]] += 1
            if rng.random() < rate_of[answer["arm_id"]]:
                serial += 1
                events.append(
                    {"ticket": answer["ticket"], "type": "contact", "event_id": f"c{serial}"}
                )
        if events:
            post_events(client, events)
        tick(client)

    arms = {arm["id"]: arm for arm in inspect(client)["arms"]}
    worst, middle, best = arm_ids
    # Most target traffic of the last third goes to the best arm. (The two others are starved
    # by then, so their order is noise and is not asserted.)
    late_total = sum(served_late.values())
    assert served_late[best] / late_total > 0.75, served_late

    def mean(arm_id: int) -> float:
        return arms[arm_id]["alpha"] / (arms[arm_id]["alpha"] + arms[arm_id]["beta"])

    # theta = lambda_k / (lambda_k + lambda_r): 1/3, 1/2 and 2/3.
    assert mean(best) > max(mean(middle), mean(worst))
    assert abs(mean(best) - 2 / 3) < 0.08, mean(best)
    assert arms[best]["exposures"] > arms[middle]["exposures"] + arms[worst]["exposures"]

    stats = client.get("/v1/experiments/similar-items/stats", headers=ADMIN).json()
    by_id = {row["arm_id"]: row for row in stats["arms"]}
    assert by_id[best]["prob_best"] > 0.9
    assert by_id[best]["lift_ci_low"] > 0
    history = client.get(
        "/v1/experiments/similar-items/ticks", params={"limit": 1000}, headers=ADMIN
    ).json()
    assert len(history) == TICKS
    # A window without reference exposure is carried into the next tick (whose record then
    # includes it): every exposure is in an applied tick or, at the end, still waiting.
    counted = [row for row in history if row["applied"]]
    if not history[-1]["applied"]:
        counted.append(history[-1])
    assert sum(row["target_exposures"] + row["reference_exposures"] for row in counted) == (
        TICKS * REQUESTS_PER_TICK
    )
