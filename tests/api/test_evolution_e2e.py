"""Acceptance: evolution finds a configuration that none of the founders is, through HTTP.

A seeded simulated client drives the whole app (SQLite) through its public API: it asks
for assignments, reports exposures and contacts, and an admin ticks and runs genetic steps.

The simulated marketplace. A unit's visit shows the similar-items block ``VIEWS`` times
with the configuration it was assigned (so the client reports its own exposures,
``exposure_source=client``), and each view leads to a contact with probability

    rate(c) = BASE + SPAN * exp(-d(c)^2 / (2 SIGMA^2)) * REGION_FACTOR[c.region]

where ``d`` is the Euclidean distance of the three float weights from ``OPTIMUM``, each
divided by its span.  The best possible rate is ``BASE + SPAN`` (at ``OPTIMUM`` with
``region = 1``).  The reference and the three founders are far from it (rates 0.21 and
0.08-0.13 against 0.30), so the best configuration is not among the founders; it is
reachable by random draws and, mostly, by mutation of the best survivors, generation
after generation.  With 40 generations of two ticks of 75 visits, an offline run of the
same model on the pure bandit and genetic code met both criteria below in 38 of 40 seeds,
and this test through HTTP met them in each of seven runs tried (best found 92-98% of
the best possible).  The client, the server's Thompson draws, the genetic steps and the
experiment's salt (which decides the reference group) are all fixed, so the run is exact.

Criteria: after the run, (1) an active arm's true rate is within ``MARGIN`` (10%) of the
best possible, and (2) over the second half of the run, the target group's contact rate
(what the client observed) beats the reference group's.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.runtime import Runtime
from api.serving import ServingState
from tests.conftest import ADMIN, settings_for

SEED = 20261125
# A fixed salt fixes which units form the reference group, which makes the run exact.
SALT = "evolution-e2e"
NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"
OPTIMUM = {"text_match": 1.5, "distance": 0.5, "price_diff": 1.3}
REGION_FACTOR = {0: 0.8, 1: 1.0, 2: 0.95, 3: 0.8}
BASE, SPAN, SIGMA = 0.05, 0.25, 0.4
BEST_POSSIBLE = BASE + SPAN
MARGIN = 0.10
VIEWS = 20
GENERATIONS, TICKS_PER_GENERATION, VISITS_PER_TICK = 40, 2, 75

PARAMETERS = [
    {"name": "text_match", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "distance", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "price_diff", "type": "float", "low": 0.0, "high": 2.0},
    {"name": "region", "type": "int", "low": 0, "high": 3},
]
REFERENCE = {"text_match": 1.0, "distance": 1.0, "price_diff": 1.0, "region": 1}
FOUNDERS = [
    {"text_match": 0.5, "distance": 1.5, "price_diff": 0.5, "region": 0},
    {"text_match": 0.8, "distance": 1.2, "price_diff": 0.6, "region": 2},
    {"text_match": 0.3, "distance": 0.8, "price_diff": 1.8, "region": 3},
]


def contact_rate(config: dict[str, Any]) -> float:
    d2 = sum(((config[name] - best) / 2.0) ** 2 for name, best in OPTIMUM.items())
    return BASE + SPAN * math.exp(-d2 / (2 * SIGMA**2)) * REGION_FACTOR[int(config["region"])]


def test_the_scenario_puts_the_best_configuration_outside_the_founders() -> None:
    assert contact_rate({**OPTIMUM, "region": 1}) == pytest.approx(BEST_POSSIBLE)
    threshold = (1 - MARGIN) * BEST_POSSIBLE
    assert max(contact_rate(c) for c in FOUNDERS) < 0.45 * BEST_POSSIBLE
    assert contact_rate(REFERENCE) < 0.75 * BEST_POSSIBLE
    rng = np.random.default_rng(0)
    draws = [
        {**{n: rng.uniform(0, 2) for n in OPTIMUM}, "region": int(rng.integers(0, 4))}
        for _ in range(20_000)
    ]
    hits = np.mean([contact_rate(c) >= threshold for c in draws])
    assert 0.001 < hits < 0.05  # reachable by a random draw, but rarely: evolution must work


@pytest.mark.slow
def test_evolution_finds_a_near_best_configuration_and_beats_the_reference(
    sqlite_url: str,
) -> None:
    rng = np.random.default_rng(SEED)
    runtime = Runtime(settings_for(sqlite_url))
    runtime.rng = np.random.default_rng(SEED + 1)
    runtime.serving = ServingState(runtime.signer, rng=np.random.default_rng(SEED + 2))
    started = time.perf_counter()
    with TestClient(create_app(runtime.settings, runtime=runtime)) as client:
        created = client.post(
            "/v1/experiments",
            json={
                "name": NAME,
                "parameters": PARAMETERS,
                "reference_config": REFERENCE,
                "arms": FOUNDERS,
                "reference_share": 0.2,
                "exposure_source": "client",
                # One assignment shows the block VIEWS times, each view may lead to a contact.
                "max_events_per_exposure": {"exposure": VIEWS, "contact": VIEWS},
                "salt": SALT,
                # The founders are far worse than the reference: the circuit breaker would
                # pause the experiment at once (docs/decisions.md). This test is the search.
                "decisions": {"circuit_breaker": False},
                "evolution": {
                    "enabled": False,  # the test drives the steps itself
                    "min_exposures": 300,
                    "drop_count": 2,
                    "min_arms": 3,
                    "max_arms": 8,
                    "mix": {"random": 1, "mutation": 2, "crossover": 1},
                    "mutation_scale": 0.15,
                    "inherit_posterior": True,
                },
            },
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text

        observed = {group: [0, 0] for group in ("target", "reference")}  # second half
        overall = {group: [0, 0] for group in ("target", "reference")}
        visit = 0
        for generation in range(GENERATIONS):
            for _ in range(TICKS_PER_GENERATION):
                events = []
                for _ in range(VISITS_PER_TICK):
                    visit += 1
                    served = client.get(f"{URL}/assignment", params={"unit": f"u{visit}"}).json()
                    contacts = int(rng.binomial(VIEWS, contact_rate(served["config"])))
                    for totals in (
                        (overall, observed) if generation >= GENERATIONS // 2 else (overall,)
                    ):
                        totals[served["group"]][0] += VIEWS
                        totals[served["group"]][1] += contacts
                    events.append(
                        {
                            "ticket": served["ticket"],
                            "type": "exposure",
                            "count": VIEWS,
                            "event_id": f"x{visit}",
                        }
                    )
                    if contacts:
                        events.append(
                            {
                                "ticket": served["ticket"],
                                "type": "contact",
                                "count": contacts,
                                "event_id": f"c{visit}",
                            }
                        )
                stored = client.post("/v1/events", json={"events": events})
                assert stored.status_code == 200, stored.text
                assert client.post(f"{URL}/tick", headers=ADMIN).status_code == 200
            step = client.post(f"{URL}/evolve", headers=ADMIN)
            assert step.status_code == 200, step.text

        experiment = client.get(URL, headers=ADMIN).json()
        generations = client.get(f"{URL}/generations", params={"limit": 1000}, headers=ADMIN)
    elapsed = time.perf_counter() - started

    active = [
        a for a in experiment["arms"] if a["status"] == "active" and a["origin"] != "reference"
    ]
    best = max(active, key=lambda arm: contact_rate(arm["config"]))
    best_rate = contact_rate(best["config"])
    target_rate = observed["target"][1] / observed["target"][0]
    reference_rate = observed["reference"][1] / observed["reference"][0]
    print(
        f"\nevolution e2e: best active arm {best['id']} ({best['origin']}, generation "
        f"{best['generation']}) true rate {best_rate:.4f} vs best possible {BEST_POSSIBLE:.4f} "
        f"({best_rate / BEST_POSSIBLE:.1%}); second half target {target_rate:.4f} vs reference "
        f"{reference_rate:.4f} (whole run {overall['target'][1] / overall['target'][0]:.4f} vs "
        f"{overall['reference'][1] / overall['reference'][0]:.4f}); {experiment['generation']} "
        f"generations, {len(experiment['arms'])} arms, {elapsed:.1f} s"
    )
    assert experiment["generation"] == len(generations.json()) > GENERATIONS // 2
    assert best["config"] not in FOUNDERS and best["generation"] > 0
    assert best_rate >= (1 - MARGIN) * BEST_POSSIBLE
    assert target_rate > reference_rate
