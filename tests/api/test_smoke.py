"""The quickstart path through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import ADMIN, similar_items


def test_quickstart_flow_moves_posteriors(client: TestClient) -> None:
    created = client.post("/v1/experiments", json=similar_items(), headers=ADMIN)
    assert created.status_code == 201, created.text
    arms = created.json()["arms"]
    assert [arm["origin"] for arm in arms] == ["reference", "expert", "expert", "expert"]

    events = []
    groups = set()
    for unit in range(300):
        answer = client.get("/v1/experiments/similar-items/assignment", params={"unit": f"u{unit}"})
        assert answer.status_code == 200
        body = answer.json()
        groups.add(body["group"])
        events.append(
            {"ticket": body["ticket"], "type": "contact", "count": 1, "event_id": f"c-{unit}"}
        )
    assert groups == {"target", "reference"}
    stored = client.post("/v1/events", json={"events": events})
    assert stored.json() == {"accepted": 300, "duplicates": 0}

    tick = client.post("/v1/experiments/similar-items/tick", headers=ADMIN).json()
    assert tick["applied"] is True
    assert tick["reference_exposures"] + tick["target_exposures"] == 300
    assert tick["reference_events"] + tick["target_events"] == 300
    # Every unit contacted once, so each arm's alpha grows by its exposures and its beta by
    # c_r * n_k / n_r = n_k (the reference converts at 100% too).
    for row in tick["arms"]:
        assert row["alpha_after"] == 1.0 + row["target_events"]
        assert row["beta_after"] == 1.0 + row["exposures"]

    experiment = client.get("/v1/experiments/similar-items", headers=ADMIN).json()
    total = sum(arm["exposures"] for arm in experiment["arms"])
    assert total == 300
