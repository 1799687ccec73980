"""Schemathesis: fuzz every operation against the service's own OpenAPI schema.

Positive and negative cases, the admin token supplied, and experiments pre-created (one in
request mode with server exposures, one in window mode with client exposures) so that the
deep paths are reached: generated requests are sometimes pointed at a real experiment, a
real arm and real tickets. On SQLite and on PostgreSQL. The properties: no input, however
malformed, gets a 5xx (the TestClient also re-raises any unhandled server exception), and
every answer conforms to the schema: its status code and content type are documented for
the operation, and its body matches the documented schema (errors included: ErrorOut).
Seeded and bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.settings import Settings
from tests.api.helpers import ADMIN, assign, create
from tests.conftest import ADMIN_TOKEN, fresh_postgres_database, settings_for

# The schema does not depend on the database; the app that answers is built per module.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite://", admin_token=ADMIN_TOKEN)).openapi()
)
# The request bodies' documented examples are not replayed: schemathesis refuses to combine
# them with the strategies of ``@schema.given`` below (``IncorrectUsage``), and the fuzzing
# phase generates valid bodies of every schema anyway.
schema.config.phases.examples.enabled = False

EXPERIMENTS = ("fuzz-request", "fuzz-window")
# Per operation and store. Round one ran 30; each run of the suite now tries 100.
EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    allow_header_conformance,
]
# Hypothesis's explicit phase would run the schema's request-body examples, which
# Schemathesis cannot combine with the strategies of @schema.given (real_name, ...); the
# examples are posted, in an order that makes each one valid, by
# tests/api/test_openapi_contract.py.
PHASES = [phase for phase in Phase if phase is not Phase.explicit]
# `stop` is final: it gets an experiment of its own so that the others stay running.
STOPPABLE = "fuzz-stop"


class Target:
    """The running app, its real experiment names, arm ids and tickets."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        create(client, name=EXPERIMENTS[0])
        create(client, name=STOPPABLE)
        window = create(client, name=EXPERIMENTS[1], mode="window", exposure_source="client")
        self.arm_ids = [arm["id"] for arm in window["arms"]]
        self.tickets = [
            assign(client, f"u{i}", name)["ticket"] for name in EXPERIMENTS for i in range(4)
        ]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    from api.db import upgrade_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'ranktune.db'}"
        upgrade_database(url)
        with TestClient(create_app(settings_for(url))) as client:
            yield Target(client)
        return
    with (
        fresh_postgres_database(migrated=True) as url,
        TestClient(create_app(settings_for(url))) as client,
    ):
        yield Target(client)


def aim(
    case: Any, target: Target, real_name: int | None, real_arm: int | None, real_ticket: bool
) -> None:
    """Point a generated case at existing objects (some of the time) to reach deep paths."""
    path = case.path_parameters or {}
    if real_name is not None and "name" in path:
        path["name"] = STOPPABLE if case.path.endswith("/stop") else EXPERIMENTS[real_name]
    body = case.body
    if real_ticket and case.path == "/v1/experiments" and isinstance(body, dict):
        # A reference configuration that fits the generated space reaches the creation path.
        specs = body.get("parameters")
        if isinstance(specs, list) and all(isinstance(spec, dict) for spec in specs):
            for spec in specs:
                low, high = spec.get("low"), spec.get("high")
                if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                    spec["low"], spec["high"] = high, low
            body["reference_config"] = {
                spec.get("name"): spec.get("low")
                for spec in specs
                if isinstance(spec.get("name"), str)
            }
            body["arms"] = []
    if real_arm is not None and "arm_id" in path:
        path["arm_id"] = target.arm_ids[real_arm % len(target.arm_ids)]
    if real_ticket and isinstance(case.body, dict) and isinstance(case.body.get("events"), list):
        for index, item in enumerate(case.body["events"]):
            if isinstance(item, dict):
                item["ticket"] = target.tickets[index % len(target.tickets)]


def send(client: TestClient, case: Any) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=ADMIN)
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers"),
        "params": kwargs.get("params"),
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif "data" in kwargs:
        data = kwargs["data"]
        request["content" if isinstance(data, bytes | str) else "data"] = data
    return client.request(**request)


@schema.parametrize()
@schema.given(
    real_name=st.none() | st.integers(0, len(EXPERIMENTS) - 1),
    real_arm=st.none() | st.integers(0, 10),
    real_ticket=st.booleans(),
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_gets_a_5xx(
    case: Any, target: Target, real_name: int | None, real_arm: int | None, real_ticket: bool
) -> None:
    aim(case, target, real_name, real_arm, real_ticket)
    response = send(target.client, case)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        body = response.json()
        assert (
            set(body) <= {"error", "detail", "field"} and body.get("error") and body.get("detail")
        )
