"""The admin routes draw from the replica's generator (``Runtime.rng``), never a fresh one.

Window mode pins one arm for the whole target group; creating an experiment and retiring
its pinned arm both draw that arm. Reseeding the runtime's generator before each call must
therefore repeat the draw exactly. With priors only, every draw is uniform over the arms, so
unseeded draws would repeat by chance with probability 1/K per experiment: twelve
experiments make a chance pass impossible in practice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from api.runtime import Runtime
from tests.api.helpers import ADMIN, create

SEED = 20240611
EXPERIMENTS = 12
ARMS = [
    {"text_match": 0.1 * i, "distance": 1.0, "price_diff": 0.5, "region": i % 4}
    for i in range(1, 7)
]


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def target_ids(experiment: dict[str, Any]) -> list[int]:
    return [arm["id"] for arm in experiment["arms"] if arm["origin"] != "reference"]


def test_window_arm_draws_on_create_and_retire_come_from_the_runtime_generator(
    sqlite_client: TestClient,
) -> None:
    runtime = runtime_of(sqlite_client)
    drawn: list[tuple[int, int]] = []
    for number in range(EXPERIMENTS):
        name = f"window-{number}"
        runtime.rng = np.random.default_rng(SEED)
        experiment = create(sqlite_client, name=name, mode="window", arms=ARMS)
        targets = target_ids(experiment)
        pinned = experiment["window_arm_id"]
        runtime.rng = np.random.default_rng(SEED)
        retired = sqlite_client.delete(f"/v1/experiments/{name}/arms/{pinned}", headers=ADMIN)
        assert retired.status_code == 200, retired.text
        after = sqlite_client.get(f"/v1/experiments/{name}", headers=ADMIN).json()
        assert after["window_arm_id"] in targets and after["window_arm_id"] != pinned
        drawn.append((targets.index(pinned), targets.index(after["window_arm_id"])))
    assert drawn == [drawn[0]] * EXPERIMENTS
