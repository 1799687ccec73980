"""Decisions that act (api.services.decisions, docs/decisions.md), on SQLite and PostgreSQL.

The experiments are created and ticked through the HTTP API; the evidence is written
directly: declared metrics as ``experiment_metrics`` rows and the report's per-bucket
counts as ``metric_counts`` rows (what applied ticks would have added), so that each test
knows its data exactly and stays fast. The rules are checked against the report rows they
act on (the statistics themselves are tested in tests/bandit/test_report.py), and every
decision against its records: the arm or experiment, the audit log, the generations, the
report snapshot and the notification.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import api.services.decisions as decisions_service
from api import repositories as repo
from api.enums import Direction, MetricRole, NotificationKind
from api.models import Arm, Experiment, ExperimentMetric, Notification, ReportSnapshot
from api.runtime import Runtime
from api.services.common import now_utc
from api.services.decisions import breaker_scorecard, evaluate_decisions
from api.services.report import BANDIT, scorecard
from api.serving import REPORT_BUCKETS
from bandit.report import RelativeEffect, ratio_estimate, relative_effect
from tests.api.helpers import assert_error_shape, assign, create, inspect, tick
from tests.conftest import ADMIN, similar_items

NAME = "similar-items"
URL = f"/v1/experiments/{NAME}"
# The reference's share of the experiments whose counts the tests write: 1,000 exposures
# per bucket for the reference and for each of three arms (no sample ratio mismatch).
SHARE = 0.25


# -- helpers -------------------------------------------------------------------------------
def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def ids(experiment: dict[str, Any]) -> tuple[int, list[int]]:
    """(reference arm id, target arm ids in creation order)."""
    reference = experiment["reference_arm_id"]
    return reference, [arm["id"] for arm in experiment["arms"] if arm["id"] != reference]


def declare(
    client: TestClient,
    experiment_id: int,
    event: str,
    *,
    role: MetricRole = MetricRole.GUARDRAIL,
    direction: Direction = Direction.INCREASE,
    max_loss: float | None = 0.05,
) -> None:
    with runtime_of(client).transaction() as session:
        session.add(
            ExperimentMetric(
                experiment_id=experiment_id,
                event=event,
                role=role,
                direction=direction,
                max_loss=max_loss,
                added_at=now_utc(),
            )
        )


def add_counts(
    client: TestClient,
    experiment_id: int,
    arm_id: int,
    group: str,
    rates: dict[str, float],
    *,
    seed: int,
    per_bucket: int = 1000,
) -> list[repo.PendingRow]:
    """Per-bucket exposures (``per_bucket`` +- 10%) of one arm and group, and binomial
    events of each type at its rate, added to the report's counts of phase 1; the rows."""
    rng = np.random.default_rng(seed)
    exposures = rng.integers(int(per_bucket * 0.9), int(per_bucket * 1.1) + 1, REPORT_BUCKETS)
    rows = [
        repo.PendingRow(arm_id, group, "exposure", "", bucket, int(count))
        for bucket, count in enumerate(exposures)
    ]
    for kind, rate in rates.items():
        events = rng.binomial(exposures, rate)
        rows += [
            repo.PendingRow(arm_id, group, kind, "", bucket, int(count))
            for bucket, count in enumerate(events)
        ]
    with runtime_of(client).transaction() as session:
        repo.add_metric_counts(session, experiment_id, 1, repo.PendingWindow.of(rows))
    return rows


def set_posterior(client: TestClient, arm_id: int, alpha: float, beta: float) -> None:
    with runtime_of(client).transaction() as session:
        arm = session.get(Arm, arm_id)
        assert arm is not None
        arm.alpha, arm.beta = alpha, beta


def serve_both_groups(client: TestClient, prefix: str, name: str = NAME) -> None:
    """Assignments until both groups have an exposure: the next tick applies."""
    seen: set[str] = set()
    for index in range(200):
        seen.add(assign(client, f"{prefix}-{index}", name)["group"])
        if seen == {"target", "reference"}:
            return
    raise AssertionError("no unit fell in both groups")


def applied_tick(client: TestClient, prefix: str, name: str = NAME) -> dict[str, Any]:
    serve_both_groups(client, prefix, name)
    result = tick(client, name)
    assert result["applied"], result
    return result


def row_of(client: TestClient, experiment_id: int, metric: str, treatment: str | int) -> Any:
    """The scorecard row as the decisions see it (phase 1)."""
    with runtime_of(client).read_transaction() as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        row = scorecard(session, experiment, phase=1).row(metric, treatment)
    assert row is not None
    return row.result


def notifications(client: TestClient, experiment_id: int) -> list[Notification]:
    with runtime_of(client).read_transaction() as session:
        return list(
            session.scalars(
                select(Notification)
                .where(Notification.experiment_id == experiment_id)
                .order_by(Notification.id)
            )
        )


def snapshots(client: TestClient, experiment_id: int) -> list[ReportSnapshot]:
    with runtime_of(client).read_transaction() as session:
        return list(
            session.scalars(
                select(ReportSnapshot)
                .where(ReportSnapshot.experiment_id == experiment_id)
                .order_by(ReportSnapshot.id)
            )
        )


def audit(client: TestClient, action: str) -> list[dict[str, Any]]:
    entries = client.get("/v1/audit", params={"experiment": NAME}, headers=ADMIN).json()
    return [entry for entry in entries if entry["action"] == action]


def arm_of(experiment: dict[str, Any], arm_id: int) -> dict[str, Any]:
    (arm,) = [arm for arm in experiment["arms"] if arm["id"] == arm_id]
    return arm


# -- settings ------------------------------------------------------------------------------
DEFAULTS = {
    "guardrail_min_exposures": 1000.0,
    "circuit_breaker": True,
    "decision_max_loss": 0.05,
    "winner_p_best": 0.95,
    "winner_min_lift": 0.0,
    "winner_sustain_s": 3600.0,
}


def test_decision_settings_default_and_are_shown(client: TestClient) -> None:
    created = create(client)
    assert created["decisions"] == DEFAULTS
    assert created["paused_reason"] is None
    assert created["winner"] is None and created["winner_candidate"] is None
    other = create(
        client, name="other", decisions={"winner_p_best": 0.99, "circuit_breaker": False}
    )
    assert other["decisions"] == {**DEFAULTS, "winner_p_best": 0.99, "circuit_breaker": False}
    assert inspect(client, "other")["decisions"] == other["decisions"]


@pytest.mark.parametrize(
    ("decisions", "field"),
    [
        ({"winner_p_best": 0.5}, "decisions.winner_p_best"),  # two arms could both pass
        ({"winner_p_best": 1.01}, "decisions.winner_p_best"),
        ({"decision_max_loss": -0.01}, "decisions.decision_max_loss"),
        ({"guardrail_min_exposures": -1}, "decisions.guardrail_min_exposures"),
        ({"winner_min_lift": -1.5}, "decisions.winner_min_lift"),
        ({"winner_sustain_s": 31 * 86_400}, "decisions.winner_sustain_s"),
        ({"circuit_breaker": "yes"}, "decisions.circuit_breaker"),
        ({"winner_sustain": 60}, "decisions.winner_sustain"),
    ],
)
def test_invalid_decision_settings_are_refused_naming_the_field(
    sqlite_client: TestClient, decisions: dict[str, Any], field: str
) -> None:
    """(Request validation: one store is enough.)"""
    response = sqlite_client.post(
        "/v1/experiments", json=similar_items(decisions=decisions), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)
    assert sqlite_client.get(URL, headers=ADMIN).status_code == 404


def patch(client: TestClient, body: dict[str, Any]) -> Any:
    return client.patch(URL, json=body, headers=ADMIN)


def test_patch_edits_the_decision_settings_at_once(client: TestClient) -> None:
    """Partial: merged over the settings in force; audited with before and after; no new
    phase; the next evaluation uses them (the breaker, off, does not pause a harmful
    group; on again, it does)."""
    created = create(client, reference_share=SHARE, decisions={"winner_p_best": 0.99})
    answer = patch(client, {"decisions": {"circuit_breaker": False}, "reason": "investigating"})
    assert answer.status_code == 200, answer.text
    edited = answer.json()
    assert edited["decisions"] == {**DEFAULTS, "winner_p_best": 0.99, "circuit_breaker": False}
    assert edited["phase"] == 1
    assert inspect(client)["decisions"] == edited["decisions"]
    (entry,) = audit(client, "experiment.update")
    assert entry["details"] == {
        "changes": {"decisions.circuit_breaker": {"before": True, "after": False}},
        "reason": "investigating",
    }
    # The same values again change and record nothing.
    assert patch(client, {"decisions": {"circuit_breaker": False}}).json() == edited
    assert len(audit(client, "experiment.update")) == 1

    harmful_group(client, created["id"], seed=20)
    applied_tick(client, "e")
    assert inspect(client)["status"] == "running"
    again = patch(client, {"decisions": {"circuit_breaker": True, "winner_p_best": 0.97}})
    assert again.json()["decisions"] == {**DEFAULTS, "winner_p_best": 0.97}
    assert audit(client, "experiment.update")[0]["details"]["changes"] == {
        "decisions.circuit_breaker": {"before": False, "after": True},
        "decisions.winner_p_best": {"before": 0.99, "after": 0.97},
    }
    applied_tick(client, "e2")
    assert inspect(client)["paused_reason"]["rule"] == "decision_metric"


@pytest.mark.parametrize(
    ("decisions", "field"),
    [
        ({"winner_p_best": 0.5}, "decisions.winner_p_best"),
        ({"decision_max_loss": 2}, "decisions.decision_max_loss"),
        ({"circuit_breaker": "no"}, "decisions.circuit_breaker"),
        ({"winner_sustain": 60}, "decisions.winner_sustain"),
        (None, "decisions"),
        ([], "decisions"),
    ],
)
def test_patched_decision_settings_are_validated_as_on_create(
    sqlite_client: TestClient, decisions: Any, field: str
) -> None:
    """(Request validation: one store is enough.) Nothing changes."""
    create(sqlite_client)
    before = inspect(sqlite_client)
    response = patch(sqlite_client, {"decisions": decisions})
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "ValidationError", field)
    assert inspect(sqlite_client) == before


# -- guardrails ----------------------------------------------------------------------------
def guardrail_experiment(
    client: TestClient, *, contacts: bool = False, **decisions: Any
) -> tuple[int, int, list[int]]:
    """Three arms and a guardrail on views (increase, max_loss 5%): arm 1 loses 40% of the
    views, arm 2 about 3% (within the tolerance), arm 3 none. The circuit breaker is off
    (the bandit group as a whole loses about 14%), so only the guardrails act. With
    ``contacts``, arm 3 also earns 50% more contacts than the reference (0.15 vs 0.10)."""
    created = create(
        client, reference_share=SHARE, decisions={"circuit_breaker": False, **decisions}
    )
    reference, (harmful, mild, neutral) = ids(created)
    declare(client, created["id"], "view", max_loss=0.05)
    more = {"contact": 0.10} if contacts else {}
    best = {"contact": 0.15} if contacts else {}
    add_counts(client, created["id"], reference, "reference", {"view": 0.30, **more}, seed=1)
    add_counts(client, created["id"], harmful, "target", {"view": 0.18}, seed=2)
    add_counts(client, created["id"], mild, "target", {"view": 0.29}, seed=3)
    add_counts(client, created["id"], neutral, "target", {"view": 0.30, **best}, seed=4)
    return created["id"], reference, [harmful, mild, neutral]


def test_an_arm_harming_a_guardrail_is_retired_with_the_reason(client: TestClient) -> None:
    experiment_id, _, (harmful, mild, neutral) = guardrail_experiment(client)
    applied_tick(client, "g")

    # The rule, on the rows it acted on: the harmful arm's always-valid interval lies
    # entirely below -5%; the mild arm's does not (it may be below 0, not below -5%).
    worse, within = (
        row_of(client, experiment_id, "view", harmful),
        row_of(client, experiment_id, "view", mild),
    )
    assert worse.upper_anytime < -0.05 and worse.treatment.exposures >= 1000
    assert within.upper_anytime > -0.05

    experiment = inspect(client)
    assert experiment["status"] == "running"
    retired = arm_of(experiment, harmful)
    assert retired["status"] == "retired"
    reason = retired["retired_reason"]
    assert reason.startswith("guardrail (generation 1): guardrail metric 'view'")
    assert f"{worse.effect:+.2%}" in reason and f"{worse.upper_anytime:+.2%}" in reason
    assert f"{worse.treatment.exposures:g} exposures" in reason
    assert "tolerated loss of 5.00%" in reason
    assert arm_of(experiment, mild)["status"] == "active"
    assert arm_of(experiment, neutral)["status"] == "active"

    # Audit: the retirement by "decisions", with the evidence.
    (entry,) = audit(client, "arm.retire")
    assert entry["actor"] == "decisions"
    assert entry["details"]["arm_id"] == harmful and entry["details"]["reason"] == reason
    evidence = entry["details"]["evidence"]
    assert evidence["metric"] == "view" and evidence["treatment"] == harmful
    assert evidence["upper_anytime"] == pytest.approx(worse.upper_anytime)
    assert evidence["max_loss"] == 0.05

    # Generations history: one generation with trigger "guardrail".
    (generation,) = client.get(f"{URL}/generations", headers=ADMIN).json()
    assert generation["number"] == 1 and generation["trigger"] == "guardrail"
    assert generation["added"] == []
    (gone,) = generation["retired"]
    assert gone["arm_id"] == harmful and gone["reason"] == "guardrail"
    assert gone["score"] is None and gone["guardrail"] == evidence
    assert generation["details"]["n_active_before"] == 4
    assert generation["details"]["n_active_after"] == 3
    assert experiment["generation"] == 1

    # A snapshot of the report it acted on, and a notification.
    (snapshot,) = snapshots(client, experiment_id)
    assert snapshot.trigger == "guardrail" and snapshot.phase == 1
    assert snapshot.detail["arm_id"] == harmful
    shown = [
        row
        for row in snapshot.report["rows"]
        if row["metric"] == "view" and row["treatment"] == harmful
    ]
    assert shown == [{key: evidence[key] for key in shown[0]}]
    (notification,) = notifications(client, experiment_id)
    assert notification.kind == NotificationKind.GUARDRAIL_TRIPPED
    assert notification.payload["experiment"] == NAME
    assert notification.payload["arm_id"] == harmful
    assert notification.payload["snapshot_id"] == snapshot.id
    assert notification.payload["evidence"] == evidence

    # The next evaluation finds nothing new to do.
    applied_tick(client, "g2")
    assert len(notifications(client, experiment_id)) == 1
    assert len(client.get(f"{URL}/generations", headers=ADMIN).json()) == 1


def test_no_arm_is_judged_before_the_minimum_exposures(client: TestClient) -> None:
    experiment_id, _, (harmful, *_) = guardrail_experiment(client, guardrail_min_exposures=100_000)
    applied_tick(client, "m")
    worse = row_of(client, experiment_id, "view", harmful)
    assert worse.upper_anytime < -0.05  # would trip...
    assert worse.treatment.exposures < 100_000  # ...but has too few exposures
    assert arm_of(inspect(client), harmful)["status"] == "active"
    assert notifications(client, experiment_id) == []
    assert snapshots(client, experiment_id) == []


def test_a_guardrail_where_lower_is_better(client: TestClient) -> None:
    """direction "decrease": an arm confidently raising complaints by more than max_loss."""
    created = create(client, reference_share=1 / 3, decisions={"circuit_breaker": False})
    reference, (loud, quiet, _) = ids(created)
    declare(client, created["id"], "complaint", direction=Direction.DECREASE, max_loss=0.10)
    add_counts(client, created["id"], reference, "reference", {"complaint": 0.05}, seed=5)
    add_counts(client, created["id"], loud, "target", {"complaint": 0.08}, seed=6)
    add_counts(client, created["id"], quiet, "target", {"complaint": 0.04}, seed=7)
    applied_tick(client, "d")
    assert row_of(client, created["id"], "complaint", loud).lower_anytime > 0.10
    experiment = inspect(client)
    assert arm_of(experiment, loud)["status"] == "retired"
    assert "(lower is better)" in arm_of(experiment, loud)["retired_reason"]
    assert arm_of(experiment, quiet)["status"] == "active"


def test_the_last_active_arm_is_not_retired_the_experiment_pauses(client: TestClient) -> None:
    """Every arm harms the guardrail: all but one are retired, and the last one (which
    the platform cannot stop serving otherwise) pauses the experiment."""
    created = create(client, reference_share=SHARE, decisions={"circuit_breaker": False})
    reference, targets = ids(created)
    declare(client, created["id"], "view", max_loss=0.05)
    add_counts(client, created["id"], reference, "reference", {"view": 0.30}, seed=8)
    for seed, arm_id in enumerate(targets, start=9):
        add_counts(client, created["id"], arm_id, "target", {"view": 0.15}, seed=seed)
    applied_tick(client, "l")

    experiment = inspect(client)
    assert experiment["status"] == "paused"
    statuses = [arm_of(experiment, arm_id)["status"] for arm_id in targets]
    assert statuses == ["retired", "retired", "active"]
    reason = experiment["paused_reason"]
    assert reason["by"] == "circuit_breaker" and reason["rule"] == "guardrail_last_arm"
    assert reason["arm_id"] == targets[2]
    assert reason["evidence"]["metric"] == "view"
    kinds = [n.kind for n in notifications(client, created["id"])]
    assert kinds == [
        NotificationKind.GUARDRAIL_TRIPPED,
        NotificationKind.GUARDRAIL_TRIPPED,
        NotificationKind.CIRCUIT_BREAKER,
    ]
    assert [s.trigger for s in snapshots(client, created["id"])] == [
        "guardrail",
        "guardrail",
        "circuit_breaker",
    ]

    # An admin who resumes overrules that verdict on that arm for the phase.
    assert client.post(f"{URL}/resume", headers=ADMIN).status_code == 200
    applied_tick(client, "l2")
    assert inspect(client)["status"] == "running"


# -- the circuit breaker -------------------------------------------------------------------
def harmful_group(client: TestClient, experiment_id: int, seed: int) -> None:
    """Every arm earns half the reference's contacts."""
    reference, targets = ids(inspect(client))
    add_counts(client, experiment_id, reference, "reference", {"contact": 0.10}, seed=seed)
    for offset, arm_id in enumerate(targets, start=1):
        add_counts(client, experiment_id, arm_id, "target", {"contact": 0.05}, seed=seed + offset)


def test_the_circuit_breaker_pauses_and_explains(client: TestClient) -> None:
    created = create(client, reference_share=SHARE)
    harmful_group(client, created["id"], seed=20)
    applied_tick(client, "c")

    group = row_of(client, created["id"], "contact", "bandit")
    assert group.upper_anytime < -0.05
    experiment = inspect(client)
    assert experiment["status"] == "paused"
    reason = experiment["paused_reason"]
    assert reason["by"] == "circuit_breaker" and reason["rule"] == "decision_metric"
    assert reason["message"].startswith("decision metric 'contact' (higher is better): the ")
    assert f"{group.effect:+.2%}" in reason["message"]
    assert reason["evidence"]["treatment"] == "bandit"
    assert reason["evidence"]["upper_anytime"] == pytest.approx(group.upper_anytime)
    assert reason["evidence"]["max_loss"] == 0.05
    # Everyone gets the reference configuration.
    answer = assign(client, "someone")
    assert answer["active"] is False and answer["arm_id"] == created["reference_arm_id"]

    (entry,) = audit(client, "experiment.pause")
    assert entry["actor"] == "decisions" and entry["details"]["reason"] == reason
    (snapshot,) = snapshots(client, created["id"])
    assert snapshot.trigger == "circuit_breaker" and snapshot.detail == reason
    (notification,) = notifications(client, created["id"])
    assert notification.kind == NotificationKind.CIRCUIT_BREAKER
    assert notification.payload["rule"] == "decision_metric"
    assert notification.payload["snapshot_id"] == snapshot.id

    # Resumed: judged on the counts since the pause only, so the same evidence does not
    # pause it again...
    resumed = client.post(f"{URL}/resume", headers=ADMIN).json()
    assert resumed["status"] == "running" and resumed["paused_reason"] is None
    assert audit(client, "experiment.resume")[0]["details"]["paused_reason"] == reason
    applied_tick(client, "c2")
    assert inspect(client)["status"] == "running"
    assert len(notifications(client, created["id"])) == 1
    # ...but new evidence of harm does.
    harmful_group(client, created["id"], seed=30)
    applied_tick(client, "c3")
    again = inspect(client)
    assert again["status"] == "paused"
    assert again["paused_reason"]["evidence"]["counted_since"] == reason["at"]
    assert len(notifications(client, created["id"])) == 2


def test_the_circuit_breaker_on_a_guardrail_and_when_off(client: TestClient) -> None:
    """Every arm loses 20% of the views, each on too few exposures to be judged alone
    (12,800 of the 30,000 needed), the bandit group on enough (38,400; the reference as
    much as one arm): the breaker pauses on the guardrail; with the breaker off, nothing
    acts."""
    decisions = {"guardrail_min_exposures": 30_000}
    on = create(client, reference_share=SHARE, decisions=decisions)
    off = create(
        client,
        name="other",
        reference_share=SHARE,
        decisions={**decisions, "circuit_breaker": False},
    )
    for experiment in (on, off):
        reference, targets = ids(experiment)
        declare(client, experiment["id"], "view", max_loss=0.05)
        add_counts(
            client, experiment["id"], reference, "reference", {"view": 0.3}, seed=40, per_bucket=200
        )
        for seed, arm_id in enumerate(targets, start=41):
            add_counts(
                client,
                experiment["id"],
                arm_id,
                "target",
                {"view": 0.24},
                seed=seed,
                per_bucket=200,
            )
        applied_tick(client, "b", experiment["name"])

    group = row_of(client, on["id"], "view", "bandit")
    assert group.upper_anytime < -0.05 and group.treatment.exposures >= 30_000
    assert row_of(client, on["id"], "view", ids(on)[1][0]).treatment.exposures < 30_000
    paused = inspect(client)
    assert paused["status"] == "paused"
    assert paused["paused_reason"]["rule"] == "guardrail"
    assert paused["paused_reason"]["evidence"]["metric"] == "view"
    assert all(arm["status"] == "active" for arm in paused["arms"])

    untouched = inspect(client, "other")
    assert untouched["status"] == "running" and untouched["paused_reason"] is None
    assert notifications(client, off["id"]) == []


def per_bucket(rows: list[repo.PendingRow], kind: str) -> np.ndarray:
    """The rows' counts of one type, summed per bucket (written out, not the report's)."""
    total = np.zeros(REPORT_BUCKETS)
    for row in rows:
        if row.type == kind:
            total[row.bucket] += row.count
    return total


def expected_effect(
    target: list[repo.PendingRow], reference: list[repo.PendingRow], kind: str
) -> RelativeEffect:
    """The bandit group's row on exactly these counts."""
    return relative_effect(
        ratio_estimate(per_bucket(target, kind), per_bucket(target, "exposure")),
        ratio_estimate(per_bucket(reference, kind), per_bucket(reference, "exposure")),
    )


def breaker_row(client: TestClient, experiment_id: int, metric: str) -> RelativeEffect:
    """The bandit group's row as the circuit breaker judges it now."""
    with runtime_of(client).read_transaction() as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        card = breaker_scorecard(session, experiment, scorecard(session, experiment))
        row = card.row(metric, BANDIT)
    assert row is not None
    return row.result


def test_after_a_resume_a_metric_declared_since_counts_from_its_declaration(
    client: TestClient,
) -> None:
    """After a breaker pause and a resume, the breaker judges what the report would show
    for "since the resume": each metric from the later of the pause and its declaration.
    A guardrail declared after the resume compares its events with the exposures since its
    declaration; divided by the exposures since the pause, the target group (which had
    most of the exposures in between) would look 60% worse and pause the experiment."""
    created = create(client, reference_share=SHARE)
    experiment_id = created["id"]
    reference, targets = ids(created)
    harmful_group(client, experiment_id, seed=20)
    applied_tick(client, "p")
    assert inspect(client)["paused_reason"]["rule"] == "decision_metric"
    assert client.post(f"{URL}/resume", headers=ADMIN).status_code == 200

    # Between the resume and the declaration: contacts at the reference's rate, most of
    # the exposures in the target group.
    between_reference = add_counts(
        client, experiment_id, reference, "reference", {"contact": 0.1}, seed=70, per_bucket=100
    )
    between_target: list[repo.PendingRow] = []
    for seed, arm_id in enumerate(targets, start=71):
        between_target += add_counts(
            client, experiment_id, arm_id, "target", {"contact": 0.1}, seed=seed, per_bucket=2000
        )
    declared = client.post(
        f"{URL}/metrics",
        json={"event": "view", "role": "guardrail", "direction": "increase", "max_loss": 0.05},
        headers=ADMIN,
    )
    assert declared.status_code == 201, declared.text
    # Since the declaration: the same rates of views and contacts in both groups, and
    # enough reference exposures to keep the experiment's share (no sample ratio mismatch).
    since_reference = add_counts(
        client,
        experiment_id,
        reference,
        "reference",
        {"contact": 0.1, "view": 0.3},
        seed=80,
        per_bucket=2900,
    )
    since_target: list[repo.PendingRow] = []
    for seed, arm_id in enumerate(targets, start=81):
        since_target += add_counts(
            client, experiment_id, arm_id, "target", {"contact": 0.1, "view": 0.3}, seed=seed
        )

    # Views: since the declaration; contacts: since the pause.
    views = breaker_row(client, experiment_id, "view")
    assert views == expected_effect(since_target, since_reference, "view")
    contacts = breaker_row(client, experiment_id, "contact")
    assert contacts == expected_effect(
        between_target + since_target, between_reference + since_reference, "contact"
    )
    # What the fix avoids: views over the exposures since the pause.
    diluted = relative_effect(
        ratio_estimate(
            per_bucket(since_target, "view"),
            per_bucket(between_target + since_target, "exposure"),
        ),
        ratio_estimate(
            per_bucket(since_reference, "view"),
            per_bucket(between_reference + since_reference, "exposure"),
        ),
    )
    assert diluted.upper_anytime is not None and diluted.upper_anytime < -0.5

    runtime_of(client).evaluate_decisions(experiment_id)
    experiment = inspect(client)
    assert experiment["status"] == "running", experiment["paused_reason"]
    assert [n.kind for n in notifications(client, experiment_id)] == [
        NotificationKind.CIRCUIT_BREAKER
    ]


def test_a_breaker_baseline_of_group_totals_is_still_read(client: TestClient) -> None:
    """Baselines stored before migration 0013 hold per-group totals, not per-arm counts:
    the breaker reads the bandit group's rows from them exactly as from per-arm counts."""
    created = create(client, reference_share=SHARE)
    experiment_id = created["id"]
    harmful_group(client, experiment_id, seed=20)
    applied_tick(client, "p")
    assert client.post(f"{URL}/resume", headers=ADMIN).status_code == 200
    harmful_group(client, experiment_id, seed=30)
    per_arm = breaker_row(client, experiment_id, "contact")
    with runtime_of(client).transaction() as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        baseline = dict(experiment.breaker_baseline or {})
        counts = baseline.pop("counts")
        for group in ("target", "reference"):
            baseline[group] = {
                kind: np.sum(list(by_arm.values()), axis=0).astype(int).tolist()
                for kind, by_arm in counts[group].items()
            }
        experiment.breaker_baseline = baseline
    totals = breaker_row(client, experiment_id, "contact")
    assert totals == per_arm
    assert totals.upper_anytime is not None and totals.upper_anytime < -0.05


# -- the winner ----------------------------------------------------------------------------
def winner_experiment(client: TestClient) -> tuple[int, list[int]]:
    """Arm 1 earns 30% more contacts than the reference and its posterior is far ahead."""
    created = create(client, reference_share=SHARE, decisions={"winner_sustain_s": 3600})
    reference, targets = ids(created)
    add_counts(client, created["id"], reference, "reference", {"contact": 0.10}, seed=50)
    for seed, (arm_id, rate) in enumerate(zip(targets, (0.13, 0.10, 0.10), strict=True), 51):
        add_counts(client, created["id"], arm_id, "target", {"contact": rate}, seed=seed)
    set_posterior(client, targets[0], 900.0, 600.0)
    for arm_id in targets[1:]:
        set_posterior(client, arm_id, 600.0, 600.0)
    return created["id"], targets


def test_a_winner_is_declared_only_after_the_sustained_period(client: TestClient) -> None:
    experiment_id, (best, second, _) = winner_experiment(client)
    runtime = runtime_of(client)
    applied_tick(client, "w")
    assert row_of(client, experiment_id, "contact", best).lower_anytime > 0.0
    experiment = inspect(client)
    assert experiment["winner"] is None
    candidate = experiment["winner_candidate"]
    assert candidate["arm_id"] == best and candidate["phase"] == 1
    since = datetime.fromisoformat(candidate["since"])

    def at(seconds: float) -> None:
        runtime.evaluate_decisions(experiment_id, now=since + timedelta(seconds=seconds))

    at(1800)
    assert inspect(client)["winner"] is None
    # The thresholds stop holding at one evaluation: the clock starts again.
    set_posterior(client, best, 600.0, 600.0)
    at(2400)
    assert inspect(client)["winner_candidate"] is None
    set_posterior(client, best, 900.0, 600.0)
    at(3000)
    assert (
        inspect(client)["winner_candidate"]["since"]
        == (since + timedelta(seconds=3000)).isoformat()
    )
    at(3000 + 3599)
    assert inspect(client)["winner"] is None
    at(3000 + 3600)
    winner = inspect(client)["winner"]
    assert winner["arm_id"] == best and winner["phase"] == 1
    assert winner["since"] == (since + timedelta(seconds=3000)).isoformat()
    assert winner["p_best"] >= 0.95 and winner["replaces_arm_id"] is None
    lift = row_of(client, experiment_id, "contact", best)
    assert winner["lift"]["lower_anytime"] == pytest.approx(lift.lower_anytime)
    assert winner["lift"]["effect"] == pytest.approx(lift.effect)

    (entry,) = audit(client, "experiment.winner")
    assert entry["actor"] == "decisions" and entry["details"] == winner
    (snapshot,) = snapshots(client, experiment_id)
    assert snapshot.trigger == "winner" and snapshot.detail == winner
    (notification,) = notifications(client, experiment_id)
    assert notification.kind == NotificationKind.WINNER
    assert notification.payload["arm_id"] == best
    assert notification.payload["snapshot_id"] == snapshot.id

    # Once per phase: passing again declares nothing new.
    at(20_000)
    assert len(notifications(client, experiment_id)) == 1
    # Another arm takes over: after its own sustained period it replaces the winner.
    add_counts(client, experiment_id, second, "target", {"contact": 0.20}, seed=60)
    set_posterior(client, second, 2000.0, 600.0)
    at(30_000)
    at(30_000 + 3600)
    replaced = inspect(client)["winner"]
    assert replaced["arm_id"] == second and replaced["replaces_arm_id"] == best
    # (Counts of one arm alone: the reference's share falls to a fifth, a quarter expected.)
    kinds = [n.kind for n in notifications(client, experiment_id)]
    assert kinds == [NotificationKind.WINNER, NotificationKind.SRM, NotificationKind.WINNER]
    # Nothing else changed by itself.
    final = inspect(client)
    assert final["status"] == "running"
    assert all(arm["status"] == "active" for arm in final["arms"])


# -- sample ratio mismatch -----------------------------------------------------------------
def srm_of_report(client: TestClient) -> dict[str, Any]:
    """The report's sample ratio check, as GET .../report shows it."""
    report = client.get(f"{URL}/report", headers=ADMIN).json()
    (check,) = [c for c in report["health"] if c["check"] == "sample_ratio_mismatch"]
    return check


def test_a_sample_ratio_mismatch_is_notified_once_each_time_it_fails(client: TestClient) -> None:
    """Exposures only (no decision acts): the reference group gets a quarter of them while
    its share is a fifth, then a fifth (ok), then a third (failed again)."""
    created = create(client)
    experiment_id = created["id"]
    reference, targets = ids(created)
    add_counts(client, experiment_id, reference, "reference", {}, seed=90)
    for seed, arm_id in enumerate(targets, start=91):
        add_counts(client, experiment_id, arm_id, "target", {}, seed=seed)
    applied_tick(client, "s")

    check = srm_of_report(client)
    assert check["status"] == "failed"
    assert check["evidence"]["observed_share"] == pytest.approx(0.25, abs=0.01)
    (notification,) = notifications(client, experiment_id)
    assert notification.kind == NotificationKind.SRM
    (snapshot,) = snapshots(client, experiment_id)
    assert snapshot.trigger == "srm" and snapshot.phase == 1
    assert snapshot.detail == check  # the report's own check, with its evidence
    assert notification.payload == {
        "experiment": NAME,
        "phase": 1,
        "snapshot_id": snapshot.id,
        **check,
    }
    (entry,) = audit(client, "experiment.srm")
    assert entry["actor"] == "decisions" and entry["details"] == notification.payload

    # Still failed: not notified again.
    applied_tick(client, "s2")
    assert srm_of_report(client)["status"] == "failed"
    assert len(notifications(client, experiment_id)) == 1

    # Back to the expected fifth: ok, recorded, not notified.
    add_counts(client, experiment_id, targets[0], "target", {}, seed=95)
    applied_tick(client, "s3")
    assert srm_of_report(client)["status"] == "ok"
    assert len(notifications(client, experiment_id)) == 1
    (resolved,) = audit(client, "experiment.srm_resolved")
    assert resolved["actor"] == "decisions"
    assert resolved["details"]["snapshot_id"] == snapshot.id  # the failure it ends
    assert resolved["details"]["status"] == "ok"

    # Failed again: notified again.
    add_counts(client, experiment_id, reference, "reference", {}, seed=96)
    applied_tick(client, "s4")
    again = srm_of_report(client)
    assert again["status"] == "failed"
    kinds = [n.kind for n in notifications(client, experiment_id)]
    assert kinds == [NotificationKind.SRM, NotificationKind.SRM]
    assert notifications(client, experiment_id)[1].payload["evidence"] == again["evidence"]
    assert [s.trigger for s in snapshots(client, experiment_id)] == ["srm", "srm"]
    assert len(audit(client, "experiment.srm")) == 2


# -- failures and races --------------------------------------------------------------------
def test_a_failing_evaluation_leaves_the_tick_applied(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    experiment_id, _, (harmful, *_) = guardrail_experiment(client)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the report is broken")

    monkeypatch.setattr(decisions_service, "scorecard", broken)
    with caplog.at_level(logging.ERROR, logger="ranktune.runtime"):
        first = applied_tick(client, "f")  # the admin tick: 200, applied
    assert "decisions of experiment" in caplog.text
    assert "the report is broken" in caplog.text

    # The scheduler's tick too.
    with runtime_of(client).transaction() as session:
        model = session.get(Experiment, experiment_id)
        assert model is not None
        model.last_tick_at = now_utc() - timedelta(hours=1)
    serve_both_groups(client, "f2")
    runtime_of(client).flush_exposures()
    runtime_of(client).run_due_ticks()
    ticks = client.get(f"{URL}/ticks", headers=ADMIN).json()
    assert [(t["number"], t["applied"]) for t in ticks] == [(first["number"], True), (2, True)]
    assert arm_of(inspect(client), harmful)["status"] == "active"
    assert notifications(client, experiment_id) == []

    monkeypatch.undo()  # repaired: the next applied tick acts
    applied_tick(client, "f3")
    assert arm_of(inspect(client), harmful)["status"] == "retired"


def test_concurrent_evaluations_act_once(client: TestClient) -> None:
    """Two evaluators (two replicas' transactions) at the same moment: each decision is
    taken once. On PostgreSQL the row lock orders them; on SQLite BEGIN IMMEDIATE does."""
    experiment_id, _, (harmful, mild, best) = guardrail_experiment(
        client, contacts=True, winner_sustain_s=0
    )
    set_posterior(client, mild, 600.0, 600.0)
    set_posterior(client, best, 900.0, 600.0)
    runtime = runtime_of(client)
    now = now_utc()
    barrier = threading.Barrier(2, timeout=60)
    outcomes: list[Any] = []
    errors: list[BaseException] = []

    def evaluator(seed: int) -> None:
        try:
            barrier.wait()
            with runtime.transaction() as session:
                outcomes.append(
                    evaluate_decisions(
                        session, experiment_id, now=now, rng=np.random.default_rng(seed)
                    )
                )
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=evaluator, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    retired = sorted(o.retired_arm_ids for o in outcomes)
    assert retired == [(), (harmful,)]
    winners = sorted((o.declared_winner_arm_id or 0) for o in outcomes)
    assert winners == [0, best]
    kinds = sorted(n.kind for n in notifications(client, experiment_id))
    assert kinds == [NotificationKind.GUARDRAIL_TRIPPED, NotificationKind.WINNER]
    assert sorted(s.trigger for s in snapshots(client, experiment_id)) == ["guardrail", "winner"]
    assert len(client.get(f"{URL}/generations", headers=ADMIN).json()) == 1
    assert len(audit(client, "arm.retire")) == 1
    assert len(audit(client, "experiment.winner")) == 1
