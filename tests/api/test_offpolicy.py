"""Propensities recorded with every applied window, the tick export, and off-policy
estimates through the admin API, with numbers chosen (client-counted exposures)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bandit.policies import ThompsonSampling
from ranktune.cli import main
from tests.api.helpers import (
    ADMIN,
    assert_error_shape,
    assign,
    create,
    event,
    post_events,
    tick,
    tickets_by_arm,
)
from tests.conftest import settings_for

NAME = "similar-items"


def _feed(
    client: TestClient, tickets: dict[int, str], serial: list[int], *counts: tuple[int, str, int]
) -> None:
    batch = []
    for arm_id, type_, count in counts:
        serial[0] += 1
        batch.append(event(tickets[arm_id], f"ev-{serial[0]}", type_, count))
    assert post_events(client, batch)["accepted"] == len(batch)


def _export(client: TestClient, fmt: str) -> str:
    response = client.get(
        f"/v1/experiments/{NAME}/ticks/export", params={"format": fmt}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return response.text


def _evaluate(client: TestClient, body: dict[str, object]) -> dict[str, object]:
    response = client.post(f"/v1/experiments/{NAME}/evaluate", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_request_mode_records_thompson_propensities_and_estimates(client: TestClient) -> None:
    experiment = create(client, exposure_source="client")
    reference, a, b, c = (arm["id"] for arm in experiment["arms"])
    tickets, serial = tickets_by_arm(client), [0]

    # Window 1 is served from the prior: every arm with probability 1/3.
    _feed(client, tickets, serial, (reference, "exposure", 100), (reference, "contact", 10))
    _feed(
        client,
        tickets,
        serial,
        (a, "exposure", 30),
        (a, "contact", 6),
        (b, "exposure", 30),
        (b, "contact", 3),
        (c, "exposure", 40),
        (c, "contact", 2),
    )
    tick(client)
    # Window 2 is served from window 1's posteriors.
    _feed(client, tickets, serial, (reference, "exposure", 100), (reference, "contact", 10))
    _feed(
        client,
        tickets,
        serial,
        (a, "exposure", 60),
        (a, "contact", 9),
        (b, "exposure", 20),
        (c, "exposure", 20),
        (c, "contact", 1),
    )
    tick(client)

    rows = list(csv.DictReader(io.StringIO(_export(client, "csv"))))
    lines = [json.loads(line) for line in _export(client, "jsonl").splitlines()]
    assert len(rows) == len(lines) == 8  # 2 ticks x (reference + 3 arms)
    target = [row for row in lines if row["group"] == "target"]
    first = {row["arm_id"]: row for row in target if row["tick"] == 1}
    second = {row["arm_id"]: row for row in target if row["tick"] == 2}
    assert [first[i]["propensity"] for i in (a, b, c)] == pytest.approx([1 / 3] * 3, abs=1e-6)
    expected = ThompsonSampling().probabilities(
        [second[i]["alpha_before"] - 1 for i in (a, b, c)],
        [second[i]["beta_before"] - 1 for i in (a, b, c)],
    )
    assert [second[i]["propensity"] for i in (a, b, c)] == pytest.approx(expected.tolist())
    assert sum(second[i]["propensity"] for i in (a, b, c)) == pytest.approx(1.0, abs=1e-5)
    assert [row["snapshot_changed"] for row in lines if row["group"] == "reference"] == [
        None,
        False,
    ]
    assert rows[1]["propensity"] == str(
        first[rows[1]["arm_id"] and int(rows[1]["arm_id"])]["propensity"]
    )

    # Candidate "always a": IPS = sum over a's samples of w r / N, computed here.
    p2 = second[a]["propensity"]
    n = 100 + 100
    ips_a = (6 * 3 + 9 / p2) / n
    result = _evaluate(client, {"candidate": {"kind": "arm", "arm_id": a}})
    by_name = {e["estimator"]: e for e in result["estimates"]}  # type: ignore[union-attr]
    assert by_name["ips"]["value"] == pytest.approx(ips_a)
    assert by_name["snips"]["value"] == pytest.approx((6 * 3 + 9 / p2) / (30 * 3 + 60 / p2))
    assert by_name["ips"]["lift"]["value"] == pytest.approx(ips_a / 0.1 - 1)
    assert result["windows"] == 2
    assert result["reference"] == {"exposures": 200, "rate": 0.1}

    # Uniform: window 1 was uniform (weights 1), window 2 not.
    uniform = _evaluate(client, {"candidate": {"kind": "uniform"}, "level": 0.9})
    weights2 = {i: (1 / 3) / second[i]["propensity"] for i in (a, b, c)}
    value = (6 + 3 + 2 + 9 * weights2[a] + 1 * weights2[c]) / n
    assert uniform["estimates"][0]["value"] == pytest.approx(value)  # type: ignore[index]

    replay = _evaluate(
        client, {"candidate": {"kind": "policy", "policy": "egreedy", "params": {"epsilon": 0.5}}}
    )
    assert len(replay["estimates"]) == 3  # type: ignore[arg-type]


def test_window_mode_records_the_pinned_arm_and_the_draw(sqlite_client: TestClient) -> None:
    experiment = create(sqlite_client, mode="window")
    pinned = experiment["window_arm_id"]
    answers = [assign(sqlite_client, f"u{unit}") for unit in range(60)]
    post_events(
        sqlite_client, [event(answer["ticket"], f"c{i}") for i, answer in enumerate(answers)]
    )
    tick(sqlite_client)
    lines = [json.loads(line) for line in _export(sqlite_client, "jsonl").splitlines()]
    target = {row["arm_id"]: row for row in lines if row["group"] == "target"}
    assert {i: row["propensity"] for i, row in target.items()} == {
        i: (1.0 if i == pinned else 0.0) for i in target
    }
    # The first window was drawn from the prior: every arm alike.
    assert [row["draw_probability"] for row in target.values()] == pytest.approx(
        [1 / 3] * 3, abs=1e-6
    )
    fixed = _evaluate(sqlite_client, {"candidate": {"kind": "arm", "arm_id": pinned}})
    assert fixed["estimates"][0]["effective_sample_size"] == pytest.approx(  # type: ignore[index]
        sum(answer["group"] == "target" for answer in answers)
    )
    # An arm the window never served: IPS 0, SNIPS undefined (no weight anywhere), not a 500.
    other = next(i for i in target if i != pinned)
    unseen = _evaluate(sqlite_client, {"candidate": {"kind": "arm", "arm_id": other}})
    ips_, snips_, _dr = unseen["estimates"]  # type: ignore[misc]
    assert ips_["value"] == 0.0 and ips_["effective_sample_size"] == 0.0
    assert snips_["value"] is None and snips_["lift"] is None


def test_bad_candidates_name_the_field(client: TestClient) -> None:
    create(client)
    response = client.post(
        f"/v1/experiments/{NAME}/evaluate",
        json={"candidate": {"kind": "arm", "arm_id": 999}},
        headers=ADMIN,
    )
    assert response.status_code == 400, response.text
    assert_error_shape(response.json(), field="candidate.arm_id")
    # No recorded window yet: nothing to estimate, said so.
    empty = _evaluate(client, {"candidate": {"kind": "uniform"}})
    assert (empty["windows"], empty["estimates"]) == (0, [])
    response = client.post(
        f"/v1/experiments/{NAME}/evaluate",
        json={"candidate": {"kind": "policy", "policy": "egreedy", "params": {"epsilon": 2}}},
        headers=ADMIN,
    )
    assert response.status_code == 400, response.text
    assert_error_shape(response.json(), field="candidate.policy")
    response = client.post(
        f"/v1/experiments/{NAME}/evaluate", json={"candidate": {"kind": "mix"}}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert "needs `weights`" in response.text


def test_command_line_export_and_evaluate(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(settings_for(database_url))) as client:
        create(client)
        answers = [assign(client, f"u{unit}") for unit in range(60)]
        post_events(client, [event(a["ticket"], f"c{i}") for i, a in enumerate(answers)])
        tick(client)
        api_csv = _export(client, "csv")
        api_result = _evaluate(client, {"candidate": {"kind": "uniform"}})
    target = tmp_path / "ticks.csv"
    assert main(["export", NAME, "--url", database_url, "-o", str(target)]) == 0
    assert target.read_text() == api_csv
    assert main(["export", NAME, "--url", database_url, "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["evaluate", "experiment", NAME, "--url", database_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api_result
    assert main(["evaluate", "experiment", NAME, "--url", database_url, "--mix", "2=1,3=1"]) == 0
    out = capsys.readouterr().out
    assert "candidate mix over 1 windows" in out and "  ips:" in out and "lift" in out
    assert main(["evaluate", "experiment", "nope", "--url", database_url]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "experiment", NAME, "--url", database_url, "--mix", "2:1"]) == 2
    assert "--mix: expected ARM=WEIGHT" in capsys.readouterr().err
    assert main(["evaluate", "experiment", NAME, "--url", database_url, "--level", "2"]) == 2
    assert "level" in capsys.readouterr().err
