"""The genetic step through the admin API, on SQLite and PostgreSQL.

Settings on creation, evolve now and its dry run, the expert queue, generations, lineage,
the audit trail, the schedule, locking against ticks and other replicas, and atomicity
(a step that fails half-way leaves exactly the old arm set).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import repositories as repo
from api.runtime import Runtime
from api.services import evolution as evolution_service
from api.services.common import now_utc
from tests.conftest import ADMIN, similar_items

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"


# -- helpers -------------------------------------------------------------------------------
def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/experiments", json=similar_items(**overrides), headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(client: TestClient, path: str = "", **params: Any) -> Any:
    response = client.get(URL + path, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def evolve(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.post(f"{URL}/evolve", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def feed(
    client: TestClient,
    units: int,
    contact_probability: Callable[[dict[str, Any]], float],
    rng: np.random.Generator,
    prefix: str,
) -> None:
    """Serve ``units`` units, report a contact with the given probability, and tick."""
    events = []
    for unit in range(units):
        served = client.get(f"{URL}/assignment", params={"unit": f"{prefix}-{unit}"}).json()
        if rng.random() < contact_probability(served):
            events.append(
                {"ticket": served["ticket"], "type": "contact", "event_id": f"{prefix}-{unit}"}
            )
    if events:
        assert client.post("/v1/events", json={"events": events}).status_code == 200
    assert client.post(f"{URL}/tick", headers=ADMIN).json()["applied"] is True


def state(client: TestClient) -> dict[str, Any]:
    """Everything a step may change, as the API shows it."""
    experiment = get(client)
    return {
        "experiment": experiment,
        "generations": get(client, "/generations"),
        "expert_configs": get(client, "/expert-configs"),
        "snapshot": {k: v for k, v in get(client, "/snapshot").items() if k != "loaded_at"},
    }


def audit_actions(client: TestClient) -> list[str]:
    response = client.get("/v1/audit", params={"experiment": NAME}, headers=ADMIN)
    return [entry["action"] for entry in response.json()]


EAGER = {"min_exposures": 0, "drop_count": 1, "min_arms": 2, "max_arms": 5}
# The pure settings' defaults as the API shows them (bandit.evolution.EvolutionSettings).
DEFAULTS_SHOWN = {
    "min_exposures": 100.0,
    "drop_count": 1,
    "min_arms": 2,
    "max_arms": 10,
    "score": "mean",
    "retire_below_prob_beat_reference": None,
    "mix": {"random": 1.0, "mutation": 1.0, "crossover": 1.0, "model": 0.0},
    "parent_pool_size": 3,
    "mutation_scale": 0.1,
    "crossover_blend": False,
    "inherit_posterior": False,
    "inherited_pseudo_count_cap": 10.0,
    "prob_best_draws": 10_000,
    "max_draw_attempts": 20,
}


# -- settings ------------------------------------------------------------------------------
def test_evolution_is_off_unless_configured_and_settings_are_shown(client: TestClient) -> None:
    plain = create(client)
    # No settings given: every setting in force is shown, scheduled steps off, and max_arms
    # is the arm set's size (reference and 3 arms), not a hidden default of 10.
    assert plain["evolution"] == {
        **DEFAULTS_SHOWN,
        "enabled": False,
        "evolve_interval_s": 3600.0,
        "max_arms": 4,
    }
    assert plain["evolve_interval_s"] is None
    assert plain["generation"] == 0 and plain["last_evolved_at"] is None
    assert get(client)["evolution"] == plain["evolution"]

    body = create(
        client,
        name="evolving",
        evolution={"evolve_interval_s": 600, "max_arms": 6, "mix": {"crossover": 0}},
    )
    assert body["evolve_interval_s"] == 600
    assert body["evolution"] == {
        **DEFAULTS_SHOWN,
        "enabled": True,
        "evolve_interval_s": 600.0,
        "max_arms": 6,
        "mix": {"random": 1.0, "mutation": 1.0, "crossover": 0.0, "model": 0.0},
    }

    paused_schedule = create(client, name="manual-only", evolution={"enabled": False})
    assert paused_schedule["evolve_interval_s"] is None
    assert paused_schedule["evolution"]["enabled"] is False


@pytest.mark.parametrize(
    ("evolution", "field"),
    [
        ({"min_arms": 5, "max_arms": 3}, "evolution.max_arms"),
        ({"mix": {"random": -1}}, "evolution.mix.random"),
        ({"score": "median"}, "evolution.score"),
        ({"mutation_scale": 0}, "evolution.mutation_scale"),
        ({"evolve_interval_s": 0.5}, "evolution.evolve_interval_s"),
        ({"drop_cuont": 1}, "evolution.drop_cuont"),
    ],
)
def test_invalid_evolution_settings_name_the_field(
    client: TestClient, evolution: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/v1/experiments", json=similar_items(evolution=evolution), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(field)
    assert client.get(URL, headers=ADMIN).status_code == 404


# -- evolve now and dry run ----------------------------------------------------------------
def test_dry_run_changes_nothing_and_the_same_seed_applies_what_it_previewed(
    client: TestClient,
) -> None:
    create(client, evolution={**EAGER, "max_arms": 6})
    rng = np.random.default_rng(5)
    feed(client, 200, lambda served: 0.3, rng, "warm")
    client.post(
        f"{URL}/expert-configs",
        json={"config": {"text_match": 0.1, "distance": 0.2, "price_diff": 0.3, "region": 3}},
        headers=ADMIN,
    )
    before = state(client)

    preview = evolve(client, dry_run="true", seed=1234)
    assert preview["dry_run"] is True and preview["applied"] is False
    assert preview["generation"] == 1 and preview["seed"] == 1234
    assert len(preview["retired"]) == 1
    # 4 active - 1 retired, filled up to max_arms=6: the expert first, then two others.
    assert preview["added"][0]["origin"] == "expert"
    assert len(preview["added"]) == 3
    assert all(a["arm_id"] is None for a in preview["added"])
    assert state(client) == before

    applied = evolve(client, seed=1234)
    assert applied["applied"] is True and applied["generation"] == 1
    for key in ("retired", "best_arm_id", "ranking", "n_active_after", "notes"):
        assert applied[key] == preview[key]
    strip = [{k: v for k, v in a.items() if k != "arm_id"} for a in applied["added"]]
    assert strip == [{k: v for k, v in a.items() if k != "arm_id"} for a in preview["added"]]
    after = get(client)
    assert after["generation"] == 1
    active_ids = {arm["id"] for arm in after["arms"] if arm["status"] == "active"}
    assert {a["arm_id"] for a in applied["added"]} <= active_ids
    assert applied["retired"][0]["arm_id"] not in active_ids
    # Replicas reload: this one already serves the new arm set.
    snapshot_ids = {arm["arm_id"] for arm in get(client, "/snapshot")["arms"]}
    reference_id = after["reference_arm_id"]
    assert snapshot_ids == active_ids - {reference_id}
    assert audit_actions(client)[:2] == ["experiment.evolve", "experiment.evolve_preview"]


def test_step_records_generation_reasons_origins_and_lineage(client: TestClient) -> None:
    created = create(
        client,
        evolution={
            **EAGER,
            "max_arms": 6,
            "mix": {"random": 0, "mutation": 1, "crossover": 1},
            "parent_pool_size": 1,
            "inherit_posterior": True,
            "inherited_pseudo_count_cap": 4,
        },
    )
    founders = [arm["id"] for arm in created["arms"] if arm["origin"] == "expert"]
    rng = np.random.default_rng(11)
    favourite = founders[1]
    feed(client, 300, lambda s: 0.6 if s["arm_id"] == favourite else 0.15, rng, "g0")
    first = evolve(client, seed=1)
    assert first["applied"] is True
    (retired,) = first["retired"]
    assert retired["reason"] == "lowest_score"
    assert first["best_arm_id"] == favourite
    assert retired["score"] == min(arm["score"] for arm in first["ranking"])
    # One parent in the pool: no crossover, every child a mutation of the best arm.
    assert [a["parent_ids"] for a in first["added"]] == [[favourite]] * 3
    assert {a["origin"] for a in first["added"]} == {"mutation"}

    experiment = get(client)
    arms = {arm["id"]: arm for arm in experiment["arms"]}
    retired_arm = arms[retired["arm_id"]]
    assert retired_arm["status"] == "retired"
    assert retired_arm["retired_reason"].startswith("generation 1: lowest_score")
    for added in first["added"]:
        arm = arms[added["arm_id"]]
        assert (arm["origin"], arm["generation"], arm["parent_ids"]) == (
            added["origin"],
            1,
            added["parent_ids"],
        )
        # inherited: the parents' posterior means, at most 4 pseudo-counts
        assert arm["alpha"] + arm["beta"] == pytest.approx(4.0)
    stats = get(client, "/stats")
    by_id = {row["arm_id"]: row for row in stats["arms"]}
    assert all(by_id[a["arm_id"]]["generation"] == 1 for a in first["added"])
    assert {by_id[a["arm_id"]]["origin"] for a in first["added"]} == {"mutation"}

    # Make a child of generation 1 the best arm, so that generation 2 breeds from it.
    child = first["added"][0]["arm_id"]
    feed(client, 400, lambda s: 0.9 if s["arm_id"] == child else 0.1, rng, "g1")
    second = evolve(client, seed=2)
    assert second["best_arm_id"] == child
    grandchild = next(a for a in second["added"] if child in a["parent_ids"])

    history = get(client, "/generations")
    assert [g["number"] for g in history] == [1, 2]
    assert history[0]["retired"] == first["retired"]
    assert history[0]["added"] == first["added"]
    for key in ("score", "best_arm_id", "ranking", "skipped", "expert_outcomes", "notes"):
        assert history[0]["details"][key] == first[key], key
    assert history[0]["details"]["settings"] == first["settings"] == created["evolution"]
    assert set(first["ranking"][0]) == {
        "arm_id",
        "score",
        "mean",
        "prob_beat_reference",
        "exposures",
        "eligible",
    }
    assert history[1]["trigger"] == "admin" and history[1]["details"]["seed"] == 2
    assert get(client, "/generations", after=1)[0]["number"] == 2

    lineage = get(client, f"/arms/{grandchild['arm_id']}/lineage")
    assert lineage["arm"]["id"] == grandchild["arm_id"]
    depth_of = {a["id"]: a["depth"] for a in lineage["ancestors"]}
    assert depth_of == {child: 1, favourite: 2}
    # Back to the founders: every ancestor chain ends at arms that have no parents.
    all_arms = {arm["id"]: arm for arm in get(client)["arms"]}
    expected: set[int] = set()
    frontier = list(grandchild["parent_ids"])
    while frontier:
        arm_id = frontier.pop()
        if arm_id not in expected:
            expected.add(arm_id)
            frontier.extend(all_arms[arm_id]["parent_ids"])
    assert set(depth_of) == expected
    assert set(lineage["founder_ids"]) == {i for i in expected if not all_arms[i]["parent_ids"]}
    assert set(lineage["founder_ids"]) <= set(founders)

    founder_lineage = get(client, f"/arms/{favourite}/lineage")
    assert founder_lineage["ancestors"] == [] and founder_lineage["founder_ids"] == [favourite]
    missing = client.get(f"{URL}/arms/999999/lineage", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["field"] == "arm_id"


def test_a_step_with_nothing_to_do_records_no_generation(client: TestClient) -> None:
    # Every arm young (no exposures yet) and the arm set full: nothing to retire or add.
    create(client, evolution={"min_exposures": 100, "max_arms": 4})
    result = evolve(client)
    assert result["applied"] is False and result["generation"] is None
    assert result["retired"] == [] and result["added"] == []
    assert get(client, "/generations") == []
    assert get(client)["generation"] == 0
    assert audit_actions(client)[0] == "experiment.evolve_noop"


def test_evolve_on_demand_uses_defaults_and_refuses_stopped_or_missing(
    client: TestClient,
) -> None:
    create(client)  # no evolution settings: the defaults, max_arms = the 4 active arms
    result = evolve(client, dry_run="true")
    assert result["retired"] == []  # no arm has min_exposures=100 yet
    assert result["n_active_before"] == result["n_active_after"] == 4
    assert result["settings"] == get(client)["evolution"]
    assert result["settings"]["max_arms"] == 4
    assert client.post(f"{URL}/stop", headers=ADMIN).status_code == 200
    stopped = client.post(f"{URL}/evolve", headers=ADMIN)
    assert stopped.status_code == 409 and stopped.json()["field"] == "status"
    missing = client.post("/v1/experiments/nope/evolve", headers=ADMIN)
    assert missing.status_code == 404
    assert client.post(f"{URL}/evolve").status_code == 401


def test_a_step_without_settings_replaces_arms_instead_of_growing_the_set(
    client: TestClient,
) -> None:
    created = create(client)
    config = {"text_match": 0.3, "distance": 0.3, "price_diff": 0.3, "region": 2}
    assert client.post(f"{URL}/arms", json={"config": config}, headers=ADMIN).status_code == 201
    # Old enough to be ranked (min_exposures defaults to 100): one arm clearly the worst.
    with runtime_of(client).transaction() as session:
        for arm in repo.arms_of(session, created["id"]):
            arm.exposures = 500.0
            if arm.origin == "manual":
                arm.beta += 400.0
    before = get(client)
    assert before["evolution"]["max_arms"] == 5  # the arm added by hand counts too
    step = evolve(client, seed=3)
    assert step["applied"] is True
    assert [r["config"] for r in step["retired"]] == [config]
    assert len(step["added"]) == 1
    assert step["n_active_before"] == step["n_active_after"] == 5
    assert step["settings"]["max_arms"] == 5 and step["settings"]["enabled"] is False


def test_the_openapi_documents_every_part_of_a_step(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    def ref(model: str, field: str) -> str:
        prop = schemas[model]["properties"][field]
        target: str = prop.get("items", prop).get("$ref") or prop["anyOf"][0]["$ref"]
        return target.rsplit("/", 1)[-1]

    step = "EvolutionStepOut"
    assert ref(step, "ranking") == "RankedArmOut"
    assert ref(step, "skipped") == "SkippedSlotOut"
    assert ref(step, "expert_outcomes") == "ExpertOutcomeOut"
    assert ref(step, "retired") == "RetiredArmOut"
    assert ref(step, "added") == "AddedArmOut"
    assert ref(step, "settings") == "EvolutionSettingsOut"
    assert ref("GenerationOut", "retired") == "RetiredArmOut"
    assert ref("GenerationOut", "added") == "AddedArmOut"
    assert ref("GenerationOut", "details") == "GenerationDetailsOut"
    assert ref("GenerationDetailsOut", "ranking") == "RankedArmOut"
    assert ref("ExperimentOut", "evolution") == "EvolutionSettingsOut"
    shown = schemas["EvolutionSettingsOut"]
    assert (
        set(shown["required"])
        == set(shown["properties"])
        == {*DEFAULTS_SHOWN, "enabled", "evolve_interval_s"}
    )


def test_generations_recorded_before_the_typed_plan_read_as_they_were(
    client: TestClient,
) -> None:
    """A generation row exactly as the untyped service wrote it answers unchanged."""
    created = create(client)
    worst, newcomer = created["arms"][1]["id"], created["arms"][2]["id"]
    config = {"text_match": 1.0, "distance": 0.5, "price_diff": 0.25, "region": 2}
    row = {
        "retired": [
            {
                "arm_id": worst,
                "config": created["arms"][1]["config"],
                "reason": "lowest_score",
                "score": 0.25,
                "exposures": 120.0,
                "prob_beat_reference": 0.125,
                "alpha": 30.0,
                "beta": 90.0,
            }
        ],
        "added": [
            {
                "arm_id": newcomer,
                "config": config,
                "origin": "mutation",
                "parent_ids": [created["arms"][3]["id"]],
                "alpha": 1.0,
                "beta": 1.0,
                "expert_config_id": None,
            }
        ],
        "details": {
            "score": "mean",
            "best_arm_id": created["arms"][3]["id"],
            "ranking": [
                {
                    "arm_id": worst,
                    "score": 0.25,
                    "mean": 0.25,
                    "prob_beat_reference": 0.125,
                    "exposures": 120.0,
                    "eligible": True,
                }
            ],
            "skipped": [
                {"origin": "random", "parent_ids": [], "attempts": 20, "reason": "every draw"}
            ],
            "expert_outcomes": [
                {"queue_index": 0, "status": "invalid", "detail": "x", "expert_config_id": 7}
            ],
            "n_active_before": 4,
            "n_active_after": 4,
            "notes": ["a note"],
            "seed": 42,
            "settings": None,
        },
    }
    with runtime_of(client).transaction() as session:
        session.add(
            evolution_service.Generation(
                experiment_id=created["id"],
                number=1,
                created_at=now_utc(),
                trigger="admin",
                replica="old-replica",
                **row,
            )
        )
    (generation,) = get(client, "/generations")
    # Unchanged, plus the field guardrail retirements fill (null for a genetic step's) and
    # those of model proposals (null for the other origins, and for a step without model).
    row["retired"][0]["guardrail"] = None
    row["added"][0]["prediction"] = None
    row["details"]["model"] = None
    assert {key: generation[key] for key in row} == row


# -- precision of generated values ---------------------------------------------------------
STEPPED = [
    {"name": "text_match", "type": "float", "low": 0.0, "high": 2.0, "step": 0.05},
    {"name": "distance", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "price_diff", "type": "float", "low": 0.0, "high": 2.0, "step": 0.25},
    {"name": "region", "type": "int", "low": 0, "high": 3},
]


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def test_generated_arms_have_the_precision_of_their_parameters(client: TestClient) -> None:
    created = create(
        client,
        parameters=STEPPED,
        evolution={**EAGER, "max_arms": 12, "mix": {"random": 1, "mutation": 1, "crossover": 1}},
    )
    shown = {p["name"]: p for p in created["parameters"]}
    assert shown["text_match"]["step"] == 0.05 and "step" not in shown["distance"]
    feed(client, 200, lambda served: 0.3, np.random.default_rng(2), "warm")
    step = evolve(client, seed=5)
    origins = {a["origin"] for a in step["added"]}
    assert {"random", "mutation", "crossover"} <= origins, origins
    for added in step["added"]:
        config = added["config"]
        assert round(config["text_match"] / 0.05, 9) % 1 == 0, config
        assert config["price_diff"] in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
        assert decimals(config["text_match"]) <= 2 and decimals(config["distance"]) <= 4
        assert 0.0 <= config["distance"] <= 2.0 and config["region"] in (0, 1, 2, 3)
    configs = [arm["config"] for arm in get(client)["arms"] if arm["status"] == "active"]
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0.0, "greater than 0"),
        (-1.0, "greater than 0"),
        (2.5, "no larger than high - low (2.0)"),
    ],
)
def test_an_invalid_step_names_the_parameter(client: TestClient, step: Any, expected: str) -> None:
    parameters = [dict(p) for p in STEPPED]
    parameters[1]["step"] = step
    response = client.post(
        "/v1/experiments", json=similar_items(parameters=parameters), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "parameters[1].step"
    assert expected in response.json()["detail"]


def test_an_int_step_must_be_integral(client: TestClient) -> None:
    parameters = [dict(p) for p in STEPPED]
    parameters[3]["step"] = 1.5
    response = client.post(
        "/v1/experiments", json=similar_items(parameters=parameters), headers=ADMIN
    )
    assert response.status_code == 422 and response.json()["field"] == "parameters[3].step"


# -- expert queue --------------------------------------------------------------------------
def test_expert_queue_submit_list_withdraw_and_consume(client: TestClient) -> None:
    created = create(client, evolution={**EAGER, "max_arms": 6, "mix": {"random": 1}})
    url = f"{URL}/expert-configs"
    first = {"text_match": 0.1, "distance": 0.2, "price_diff": 0.3, "region": 3}
    second = {"text_match": 1.9, "distance": 1.8, "price_diff": 1.7, "region": 0}

    submitted = client.post(
        url, json={"config": first, "note": "from the catalogue team"}, headers=ADMIN
    )
    assert submitted.status_code == 201, submitted.text
    entry = submitted.json()
    assert entry["status"] == "waiting" and entry["note"] == "from the catalogue team"
    other = client.post(url, json={"config": second}, headers=ADMIN).json()

    cases = [
        ({**first, "text_match": 2.5}, 422, "config.text_match"),
        ({**first, "bogus": 1.0}, 422, "config.bogus"),
        ({k: v for k, v in first.items() if k != "region"}, 422, "config.region"),
        ({**first, "region": 1.5}, 422, "config.region"),
        (first, 409, "config"),  # already waiting
        (created["arms"][1]["config"], 409, "config"),  # equal to an active arm
    ]
    for config, status, field in cases:
        response = client.post(url, json={"config": config}, headers=ADMIN)
        assert response.status_code == status, (config, response.text)
        assert response.json()["field"] == field

    nul = client.post(url, json={"config": {**first, "region": 0}, "note": "a\x00b"}, headers=ADMIN)
    assert nul.status_code == 422 and nul.json()["field"] == "note"

    listed = get(client, "/expert-configs")
    assert [e["id"] for e in listed] == [entry["id"], other["id"]]
    withdrawn = client.delete(f"{url}/{entry['id']}", headers=ADMIN)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    again = client.delete(f"{url}/{entry['id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["status"] == "withdrawn"
    missing = client.delete(f"{url}/999999", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["field"] == "expert_config_id"
    assert [e["id"] for e in get(client, "/expert-configs", status="waiting")] == [other["id"]]

    step = evolve(client)
    experts = [a for a in step["added"] if a["origin"] == "expert"]
    assert [a["expert_config_id"] for a in experts] == [other["id"]]
    assert experts[0]["config"] == second
    consumed = get(client, "/expert-configs", status="consumed")
    assert [(e["id"], e["consumed_by_arm_id"], e["generation"]) for e in consumed] == [
        (other["id"], experts[0]["arm_id"], 1)
    ]
    assert [e["id"] for e in get(client, "/expert-configs", status="withdrawn")] == [entry["id"]]
    late = client.delete(f"{url}/{other['id']}", headers=ADMIN)
    assert late.status_code == 409 and late.json()["field"] == "expert_config_id"
    assert first not in [arm["config"] for arm in get(client)["arms"]]

    actions = audit_actions(client)
    assert actions.count("expert_config.submit") == 2
    assert actions.count("expert_config.withdraw") == 1
    assert actions[0] == "experiment.evolve"


def test_an_expert_entry_that_became_a_duplicate_is_rejected_not_added(
    client: TestClient,
) -> None:
    create(client, evolution={**EAGER, "max_arms": 6})
    config = {"text_match": 0.1, "distance": 0.2, "price_diff": 0.3, "region": 3}
    entry = client.post(f"{URL}/expert-configs", json={"config": config}, headers=ADMIN).json()
    # An admin adds the same configuration as an arm before the step runs.
    assert client.post(f"{URL}/arms", json={"config": config}, headers=ADMIN).status_code == 201
    step = evolve(client)
    assert [a for a in step["added"] if a["origin"] == "expert"] == []
    (rejected,) = get(client, "/expert-configs")
    assert rejected["id"] == entry["id"] and rejected["status"] == "rejected"
    assert rejected["detail"].startswith("duplicate")
    assert step["expert_outcomes"][0]["expert_config_id"] == entry["id"]


# -- atomicity -----------------------------------------------------------------------------
def test_a_step_that_crashes_half_way_leaves_the_old_arm_set(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(client, evolution={**EAGER, "max_arms": 6})
    feed(client, 150, lambda served: 0.3, np.random.default_rng(3), "warm")
    client.post(
        f"{URL}/expert-configs",
        json={"config": {"text_match": 0.1, "distance": 0.2, "price_diff": 0.3, "region": 3}},
        headers=ADMIN,
    )
    before = state(client)
    reached: list[int] = []
    real_generation = evolution_service.Generation

    def crash(**kwargs: Any) -> Any:
        # By now the arms are retired and the new ones inserted (flushed) in the transaction.
        reached.append(len(kwargs["retired"]) + len(kwargs["added"]))
        raise RuntimeError("power cut in the middle of a genetic step")

    monkeypatch.setattr(evolution_service, "Generation", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        client.post(f"{URL}/evolve", headers=ADMIN)
    assert reached and reached[0] >= 2
    assert state(client) == before

    monkeypatch.setattr(evolution_service, "Generation", real_generation)
    assert evolve(client)["applied"] is True
    assert get(client)["generation"] == 1


def test_window_mode_pins_a_surviving_arm_when_the_pinned_one_retires(
    client: TestClient,
) -> None:
    created = create(client, mode="window", evolution={**EAGER, "max_arms": 4})
    newest = max(arm["id"] for arm in created["arms"])
    runtime = runtime_of(client)
    # Ties everywhere: the newest arm is the worst, so it retires; pin the window on it.
    with runtime.transaction() as session:
        experiment = repo.get_experiment_by_name(session, NAME)
        assert experiment is not None
        experiment.window_arm_id = newest
    step = evolve(client)
    assert [r["arm_id"] for r in step["retired"]] == [newest]
    after = get(client)
    active = {
        a["id"] for a in after["arms"] if a["status"] == "active" and a["origin"] != "reference"
    }
    assert after["window_arm_id"] in active


# -- schedule and locking ------------------------------------------------------------------
def test_scheduler_steps_only_enabled_running_experiments_when_due(client: TestClient) -> None:
    create(client, evolution={**EAGER, "evolve_interval_s": 1})
    create(client, name="plain")
    create(client, name="paused", evolution={**EAGER, "evolve_interval_s": 1})
    create(client, name="manual", evolution={**EAGER, "evolve_interval_s": 1, "enabled": False})
    client.post("/v1/experiments/paused/pause", headers=ADMIN)
    runtime = runtime_of(client)

    runtime.run_due_evolutions()  # created less than a second ago: not due
    assert get(client)["generation"] == 0
    time.sleep(1.1)
    runtime.run_due_evolutions()
    experiment = get(client)
    assert experiment["generation"] == 1 and experiment["last_evolved_at"] is not None
    (generation,) = get(client, "/generations")
    assert generation["trigger"] == "schedule" and generation["replica"] == runtime.replica
    for other in ("plain", "paused", "manual"):
        body = client.get(f"/v1/experiments/{other}", headers=ADMIN).json()
        assert body["generation"] == 0, other
    runtime.run_due_evolutions()  # just evolved: not due again for a second
    assert get(client)["generation"] == 1
    audit = client.get("/v1/audit", params={"experiment": NAME}, headers=ADMIN).json()
    assert (audit[0]["action"], audit[0]["actor"]) == ("experiment.evolve", "scheduler")


def test_a_step_waits_for_a_tick_holding_the_experiment_and_replicas_apply_it_once(
    client: TestClient,
) -> None:
    experiment_id = create(client, evolution={**EAGER, "evolve_interval_s": 1})["id"]
    runtime = runtime_of(client)
    time.sleep(1.05)
    results: list[Any] = []
    errors: list[BaseException] = []

    def scheduled_step() -> None:
        try:
            with runtime.transaction() as session:
                outcome = evolution_service.run_evolution_step(
                    session,
                    experiment_id,
                    now=now_utc(),
                    rng=np.random.default_rng(),
                    only_if_due=True,
                    replica=f"replica-{threading.get_ident()}",
                )
                results.append(outcome is not None and outcome.applied)
        except BaseException as error:  # surfaced below
            errors.append(error)

    # A tick holds the experiment row (as apply_tick does) while two replicas try to evolve.
    with runtime.transaction() as session:
        assert repo.get_experiment(session, experiment_id, lock=True) is not None
        threads = [threading.Thread(target=scheduled_step) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        assert results == [] and errors == []  # both wait for the lock
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results) == [False, True]
    assert [g["number"] for g in get(client, "/generations")] == [1]


def test_a_failing_scheduled_step_does_not_stop_the_others(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.runtime

    broken = create(client, evolution={**EAGER, "evolve_interval_s": 1})["id"]
    create(client, name="healthy", evolution={**EAGER, "evolve_interval_s": 1})
    real_step = api.runtime.run_evolution_step

    def step(session: Any, experiment_id: int, **kwargs: Any) -> Any:
        if experiment_id == broken:
            raise ValueError("corrupt experiment")
        return real_step(session, experiment_id, **kwargs)

    monkeypatch.setattr(api.runtime, "run_evolution_step", step)
    time.sleep(1.1)
    runtime_of(client).run_due_evolutions()
    assert get(client)["generation"] == 0
    assert client.get("/v1/experiments/healthy", headers=ADMIN).json()["generation"] == 1
