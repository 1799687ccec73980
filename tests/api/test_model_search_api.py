"""Model-guided proposals through the admin API (SQLite and PostgreSQL): the ``model``
origin of the mix, the dry run's predictions, the generation's model run and the lineage."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.api.test_evolution_api import URL, create, evolve, feed, get
from tests.conftest import ADMIN

FOUNDERS = [
    {"text_match": 1.2, "distance": 0.8, "price_diff": 1.0, "region": 1},
    {"text_match": 0.8, "distance": 1.2, "price_diff": 0.5, "region": 2},
    {"text_match": 1.5, "distance": 0.5, "price_diff": 1.5, "region": 0},
    {"text_match": 0.2, "distance": 1.8, "price_diff": 0.1, "region": 3},
    {"text_match": 1.9, "distance": 0.1, "price_diff": 1.9, "region": 2},
    {"text_match": 0.5, "distance": 0.5, "price_diff": 0.5, "region": 0},
]
MODEL_ONLY = {
    "min_exposures": 0,
    "drop_count": 2,
    "min_arms": 2,
    "max_arms": 7,
    "mix": {"random": 0, "mutation": 0, "crossover": 0, "model": 1},
}


def contact_rate(served: dict[str, Any]) -> float:
    """Contacts rise with text_match and fall with distance: the best arm is found by
    pushing text_match up and distance down."""
    config = served["config"]
    return float(0.1 + 0.15 * config["text_match"] / 2 - 0.05 * config["distance"] / 2)


def test_model_proposals_preview_apply_and_lineage(client: TestClient) -> None:
    create(client, arms=FOUNDERS, evolution=MODEL_ONLY)
    rng = np.random.default_rng(3)
    feed(client, 600, contact_rate, rng, "warm")

    preview = evolve(client, dry_run="true", seed=77)
    assert len(preview["retired"]) == 2
    added = preview["added"]
    assert [a["origin"] for a in added] == ["model", "model"]
    assert len({tuple(sorted(a["config"].items())) for a in added}) == 2
    for arm in added:
        prediction = arm["prediction"]
        assert 0 < prediction["mean"] < 1 and prediction["sd"] > 0
        assert prediction["ratio"] == prediction["mean"] / (1 - prediction["mean"])
        assert prediction["expected_improvement"] >= 0
        assert isinstance(arm["config"]["region"], int) and 0 <= arm["config"]["region"] <= 3
        assert all(0 <= arm["config"][name] <= 2 for name in ("text_match", "distance"))
        assert arm["parent_ids"] == [] and arm["expert_config_id"] is None
    run = preview["model"]
    assert run["model"] == "gp-matern52-ei"
    # the reference and the six founders, every one served
    assert run["n_observations"] == 7 and len(run["data_version"]) == 16
    active = {
        tuple(sorted(arm["config"].items()))
        for arm in get(client)["arms"]
        if arm["status"] == "active"
    }
    assert not active & {tuple(sorted(a["config"].items())) for a in added}

    applied = evolve(client, seed=77)
    assert [{k: v for k, v in a.items() if k != "arm_id"} for a in applied["added"]] == [
        {k: v for k, v in a.items() if k != "arm_id"} for a in added
    ]
    assert applied["model"] == run
    (generation,) = get(client, "/generations")
    assert generation["details"]["model"] == run
    assert generation["added"] == applied["added"]

    model_arm = applied["added"][0]["arm_id"]
    lineage = get(client, f"/arms/{model_arm}/lineage")
    assert lineage["arm"]["origin"] == "model"
    assert lineage["ancestors"] == [] and lineage["founder_ids"] == [model_arm]
    assert lineage["model"] == {
        "generation": 1,
        "run": run,
        "prediction": applied["added"][0]["prediction"],
    }
    founder = next(a["id"] for a in get(client)["arms"] if a["origin"] == "expert")
    assert get(client, f"/arms/{founder}/lineage")["model"] is None

    # Retired arms of the phase stay data: the next step learns from every arm served.
    feed(client, 300, contact_rate, rng, "next")
    second = evolve(client, dry_run="true", seed=5)
    assert second["model"]["n_observations"] == 9
    assert second["model"]["data_version"] != run["data_version"]


def test_too_little_data_falls_back_to_the_other_origins(client: TestClient) -> None:
    create(
        client,
        evolution={
            **MODEL_ONLY,
            "max_arms": 4,
            "drop_count": 1,
            "mix": {"random": 1, "mutation": 0, "crossover": 0, "model": 1},
        },
    )
    feed(client, 200, contact_rate, np.random.default_rng(4), "warm")
    step = evolve(client, dry_run="true", seed=9)
    assert [a["origin"] for a in step["added"]] == ["random"]
    assert step["added"][0]["prediction"] is None
    assert step["model"] is None
    assert "too little data for the model: no model proposals this step" in step["notes"]


def test_a_negative_model_weight_names_the_field(client: TestClient) -> None:
    body = {
        "name": "similar-items",
        "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}],
        "reference_config": {"x": 0.5},
        "arms": [{"x": 0.1}],
        "evolution": {"mix": {"model": -1}},
    }
    response = client.post("/v1/experiments", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["field"] == "evolution.mix.model"
    assert URL.endswith("similar-items")
