"""GET /metrics after real traffic, request ids, and the metrics token; on SQLite and PostgreSQL.

The scrape is parsed with ``prometheus_client.parser`` and its values asserted exactly: the
assignments per arm and group are those the answers showed, the events those posted (one
over its ticket's limit, one duplicate, one forged ticket, one conflict), one manual tick,
one genetic step, one 404.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.runtime import Runtime
from tests.api.helpers import assert_error_shape, assign, create, event, tick
from tests.api.test_webhooks import SECRET, add_webhook, drain, receiving
from tests.conftest import ADMIN, ClientFactory, settings_for

NAME = "similar-items"
ASSIGNMENT_ROUTE = "/v1/experiments/{name}/assignment"
EAGER_EVOLUTION = {"min_exposures": 0, "drop_count": 1, "min_arms": 2, "max_arms": 5}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def test_metrics_count_real_traffic_exactly(client: TestClient) -> None:
    # The default limits: one contact credited per ticket.
    create(client, max_events_per_exposure=None, evolution=EAGER_EVOLUTION)
    served = [assign(client, f"unit-{index}") for index in range(30)]
    by_arm_group = Counter((answer["arm_id"], answer["group"]) for answer in served)
    first, second = served[0]["ticket"], served[1]["ticket"]

    accepted = client.post(
        "/v1/events",
        json={
            "events": [
                event(first, "e1"),
                event(first, "e2"),  # the ticket's second contact: over its limit
                event(second, "e3"),
            ]
        },
    )
    assert accepted.json() == {"accepted": 3, "duplicates": 0}
    retried = client.post("/v1/events", json={"events": [event(second, "e3")]})
    assert retried.json() == {"accepted": 0, "duplicates": 1}
    forged = client.post("/v1/events", json={"events": [event(first[:-2] + "xx", "e4")]})
    assert forged.status_code == 422
    conflict = client.post("/v1/events", json={"events": [event(second, "e3", count=2)]})
    assert conflict.status_code == 409
    assert tick(client)["applied"] is True
    evolved = client.post(f"/v1/experiments/{NAME}/evolve", headers=ADMIN)
    assert evolved.json()["applied"] is True, evolved.text
    assert client.get("/no/such/path").status_code == 404

    samples = scrape(client)

    for (arm_id, group), count in by_arm_group.items():
        assert (
            value(
                samples, "ranktune_assignments_total", experiment=NAME, arm=str(arm_id), group=group
            )
            == count
        )
    assert sum(
        sample for (name, _), sample in samples.items() if name == "ranktune_assignments_total"
    ) == len(served)
    assert value(samples, "ranktune_events_total", outcome="accepted") == 3
    assert value(samples, "ranktune_events_total", outcome="duplicate") == 1
    uncredited = {
        labels: sample
        for (name, labels), sample in samples.items()
        if name == "ranktune_events_uncredited_total"
    }
    assert uncredited == {(("experiment", NAME), ("reason", "over_ticket_limit")): 1}
    assert value(samples, "ranktune_event_requests_rejected_total", status="422") == 1
    assert value(samples, "ranktune_event_requests_rejected_total", status="409") == 1
    assert value(samples, "ranktune_ticks_total", experiment=NAME, outcome="applied") == 1
    assert ("ranktune_ticks_total", (("experiment", NAME), ("outcome", "carried"))) not in samples
    assert value(samples, "ranktune_tick_duration_seconds_count") == 1
    assert value(samples, "ranktune_genetic_steps_total", experiment=NAME) == 1

    http = "ranktune_http_requests_total"
    assert value(samples, http, route=ASSIGNMENT_ROUTE, method="GET", status="200") == 30
    assert value(samples, http, route="/v1/events", method="POST", status="200") == 2
    assert value(samples, http, route="/v1/events", method="POST", status="422") == 1
    assert value(samples, http, route="unmatched", method="GET", status="404") == 1
    assert (
        value(
            samples,
            "ranktune_http_request_duration_seconds_bucket",
            route=ASSIGNMENT_ROUTE,
            method="GET",
            status="200",
            le="+Inf",
        )
        == 30
    )
    # No raw path is a label value: every route label is a template or "unmatched".
    routes = {dict(labels)["route"] for (name, labels) in samples if name == http}
    assert not any("unit-" in route or NAME in route for route in routes), routes

    # Three requests stored events and the tick flushed exposures: at least one commit each
    # time (groups may join); nothing is queued now.
    assert value(samples, "ranktune_event_writer_commit_duration_seconds_count") >= 2
    assert value(samples, "ranktune_event_writer_queue_depth") == 0
    assert 0 <= value(samples, "ranktune_exposure_flush_lag_seconds") < 60
    assert 0 <= value(samples, "ranktune_snapshot_age_seconds", experiment=NAME) < 60
    assert 0 <= value(samples, "ranktune_snapshot_refresh_age_seconds") < 60
    assert value(samples, "process_cpu_seconds_total") > 0


def test_uncredited_events_by_reason(client: TestClient) -> None:
    """Events on a paused experiment's ticket are stored and never credited (inactive)."""
    create(client)
    ticket = assign(client, "someone")["ticket"]
    paused = client.post(f"/v1/experiments/{NAME}/pause", headers=ADMIN)
    assert paused.status_code == 200, paused.text
    client.post("/v1/events", json={"events": [event(ticket, "p1"), event(ticket, "p2")]})
    samples = scrape(client)
    assert (
        value(samples, "ranktune_events_uncredited_total", experiment=NAME, reason="inactive") == 2
    )


def test_webhook_deliveries_by_outcome(client: TestClient) -> None:
    with receiving() as receiver:
        receiver.script["/refuses"] = [403]
        ok = add_webhook(client, receiver.url("/ok"), secret=SECRET)
        refuses = add_webhook(client, receiver.url("/refuses"), secret=SECRET)
        for hook in (ok, refuses):
            assert client.post(f"/v1/webhooks/{hook['id']}/test", headers=ADMIN).status_code == 202
        assert drain(runtime_of(client).deliverer) == 2
    samples = scrape(client)
    assert value(samples, "ranktune_webhook_deliveries_total", outcome="delivered") == 1
    assert value(samples, "ranktune_webhook_deliveries_total", outcome="failed") == 1


def test_each_app_has_its_own_metrics(make_client: ClientFactory) -> None:
    with make_client() as one, make_client() as other:
        create(one)
        assign(one, "a")
        assert assign(one, "b")
        samples = scrape(other)
        assert not [name for name, _ in samples if name == "ranktune_assignments_total"]
        assert (
            sum(
                sample
                for (name, _), sample in scrape(one).items()
                if name == "ranktune_assignments_total"
            )
            == 2
        )


def test_metrics_is_not_in_the_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/metrics" not in paths
    assert {"/health", "/ready"} <= set(paths)


def test_metrics_token(make_client: ClientFactory) -> None:
    token = "metrics-token-0123456789"
    with make_client(metrics_token=token) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert_error_shape(missing.json(), "Unauthorized", "Authorization")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong-token-000000000"})
        assert wrong.status_code == 403
        assert_error_shape(wrong.json(), "Forbidden", "Authorization")
        # The admin token is not the metrics token.
        assert client.get("/metrics", headers=ADMIN).status_code == 403
        assert scrape(client, {"Authorization": f"Bearer {token}"})


# -- request ids ---------------------------------------------------------------------------
@pytest.fixture
def app_client(sqlite_url: str) -> Any:
    with TestClient(create_app(settings_for(sqlite_url))) as client:
        yield client


def test_a_valid_request_id_is_echoed(app_client: TestClient) -> None:
    for given in ("abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "x" * 128, "a.b:c_d"):
        answer = app_client.get("/health", headers={"X-Request-ID": given})
        assert answer.headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", ["", "x" * 129, "has space", "semi;colon", "é"])
def test_an_invalid_request_id_is_replaced(app_client: TestClient, given: str) -> None:
    answer = app_client.get("/health", headers={"X-Request-ID": given.encode("utf-8")})
    assert answer.status_code == 200
    generated = answer.headers["X-Request-ID"]
    assert generated != given and len(generated) == 16 and int(generated, 16) >= 0


def test_every_answer_gets_a_fresh_request_id(app_client: TestClient) -> None:
    answers = [
        app_client.get("/health"),
        app_client.get("/no/such/path"),
        app_client.get("/v1/experiments/none/assignment", params={"unit": "u"}),
        app_client.post("/v1/experiments", json={}),  # 401 before anything else
    ]
    ids = [answer.headers["X-Request-ID"] for answer in answers]
    assert len(set(ids)) == len(ids)
    assert [answer.status_code for answer in answers] == [200, 404, 404, 401]


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapis_opentelemetry_follows_the_setting(sqlite_url: str, enabled: bool) -> None:
    """Off by default: FastAPI then skips its per-request check for OpenTelemetry providers."""
    app = create_app(settings_for(sqlite_url, opentelemetry=enabled))
    config = app._telemetry  # FastAPI's own record of the `telemetry` argument
    assert (config["tracing"], config["metrics"], config["logs"]) == (enabled,) * 3
