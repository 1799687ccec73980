"""The experiment report through the admin API, on both stores: every row's numbers against
the formulas written out here with NumPy/SciPy, on counts inserted through the repository
(so the data are known exactly) and on counts made by real HTTP traffic; the degenerate
rows; CSV against JSON; phases, alpha; metrics counted from their declaration; the health
checks wired to real ticks; snapshots.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api import repositories as repo
from api.models import Experiment, Tick, TickArm
from api.services.common import now_utc
from api.services.report import save_snapshot
from tests.api.helpers import ADMIN, assign, create, expected_group, post_events, tick
from tests.conftest import ClientFactory

BUCKETS = 64
NAME = "similar-items"
REPORT = f"/v1/experiments/{NAME}/report"
Key = tuple[int, str, str]  # arm id, group, event type
Counts = dict[Key, np.ndarray]


# --- the formulas, written out --------------------------------------------------------------


def delta_ratio(events: np.ndarray, exposures: np.ndarray) -> tuple[float, float]:
    """R = sum(y) / sum(n); Var(R) = (s_y^2 - 2 R s_yn + R^2 s_n^2) / (B nbar^2)."""
    ratio = events.sum() / exposures.sum()
    (s_yy, s_yn), (_, s_nn) = np.cov(events, exposures, ddof=1)
    variance = (s_yy - 2 * ratio * s_yn + ratio**2 * s_nn) / (BUCKETS * exposures.mean() ** 2)
    return float(ratio), float(variance)


def expected_row(
    treatment: tuple[np.ndarray, np.ndarray],
    control: tuple[np.ndarray, np.ndarray],
    alpha: float = 0.05,
    planned: float = 100_000.0,
) -> dict[str, float | None]:
    """effect = R_t / R_c - 1, V = Var_t / R_c^2 + R_t^2 Var_c / R_c^4, the Wald interval and
    p-value, and the mixture confidence sequence with rho^2 tuned to ``planned``; no
    interval nor p-value while a group has fewer than 50 events (the report's rule)."""
    r_t, v_t = delta_ratio(*treatment)
    r_c, v_c = delta_ratio(*control)
    effect = r_t / r_c - 1
    variance = v_t / r_c**2 + r_t**2 * v_c / r_c**4
    z = stats.norm.ppf(1 - alpha / 2)
    half = z * math.sqrt(variance)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned
    u = min(treatment[1].sum(), control[1].sum()) * rho2
    anytime = math.sqrt(variance * 2 * (u + 1) / u * math.log(math.sqrt(u + 1) / alpha))
    shown = min(treatment[0].sum(), control[0].sum()) >= 50
    return {
        "control_mean": r_c,
        "treatment_mean": r_t,
        "effect": effect,
        "lower": effect - half if shown else None,
        "upper": effect + half if shown else None,
        "p_value": 2 * stats.norm.sf(abs(effect) / math.sqrt(variance)) if shown else None,
        "lower_anytime": effect - anytime if shown else None,
        "upper_anytime": effect + anytime if shown else None,
        "control_events": float(control[0].sum()),
        "control_exposures": float(control[1].sum()),
        "treatment_events": float(treatment[0].sum()),
        "treatment_exposures": float(treatment[1].sum()),
    }


def assert_row(
    row: dict[str, Any], expected: dict[str, float | None], alpha: float = 0.05, rel: float = 1e-9
) -> None:
    for key, value in expected.items():
        if value is None:
            assert row[key] is None, (key, row)
        else:
            assert row[key] == pytest.approx(value, rel=rel), (key, row)
    p_value, lower, upper = (
        expected["p_value"],
        expected["lower_anytime"],
        expected["upper_anytime"],
    )
    assert row["significant"] == (p_value is not None and p_value < alpha)
    anytime = lower is not None and upper is not None and (lower > 0 or upper < 0)
    assert row["significant_anytime"] == anytime


# --- helpers ------------------------------------------------------------------------------


def insert_counts(client: TestClient, experiment_id: int, counts: Counts, phase: int = 1) -> None:
    """Add per-bucket counts to ``metric_counts`` through the repository, as a tick would."""
    rows = [
        repo.PendingRow(arm, group, kind, "", bucket, int(array[bucket]))
        for (arm, group, kind), array in counts.items()
        for bucket in range(BUCKETS)
        if array[bucket] > 0
    ]
    with client.app.state.runtime.transaction() as session:
        repo.add_metric_counts(session, experiment_id, phase, repo.PendingWindow.of(rows))


def get_report(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(REPORT, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def rows_by(report: dict[str, Any]) -> dict[tuple[str, str | int], dict[str, Any]]:
    return {(row["metric"], row["treatment"]): row for row in report["rows"]}


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["health"] if c["check"] == name]
    return found


def target_arms(experiment: dict[str, Any]) -> list[int]:
    return [a["id"] for a in experiment["arms"] if a["id"] != experiment["reference_arm_id"]]


def known_counts(rng: np.random.Generator, arms: list[int], reference: int) -> Counts:
    """Exposures and events for the reference group and two of the arms (the third arm is
    never served): contacts, views, and no 'bounce' at all in the reference group."""
    counts: Counts = {}
    served = {reference: ("reference", 0.10, 0.30), arms[0]: ("target", 0.12, 0.28)}
    served[arms[1]] = ("target", 0.10, 0.36)
    for arm, (group, contact_rate, view_rate) in served.items():
        exposures = rng.integers(20, 200, BUCKETS)
        counts[arm, group, "exposure"] = exposures
        counts[arm, group, "contact"] = rng.binomial(exposures, contact_rate)
        counts[arm, group, "view"] = rng.binomial(exposures, view_rate)
        if group == "target":
            counts[arm, group, "bounce"] = rng.binomial(exposures, 0.05)
    return counts


METRICS = [
    {"event": "view", "role": "secondary", "direction": "increase"},
    {"event": "bounce", "role": "guardrail", "direction": "decrease", "max_loss": 0.05},
]


def pair(counts: Counts, arms: list[int], group: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    zero = np.zeros(BUCKETS)
    events = sum((counts.get((a, group, kind), zero) for a in arms), zero)
    exposures = sum((counts.get((a, group, "exposure"), zero) for a in arms), zero)
    return np.asarray(events, dtype=float), np.asarray(exposures, dtype=float)


# --- rows: exact values -------------------------------------------------------------------


def test_rows_are_the_delta_method_over_the_stored_buckets(client: TestClient) -> None:
    experiment = create(client, metrics=METRICS)
    reference, arms = experiment["reference_arm_id"], target_arms(experiment)
    counts = known_counts(np.random.default_rng(11), arms, reference)
    insert_counts(client, experiment["id"], counts)
    report = get_report(client)
    rows = rows_by(report)
    assert [m["event"] for m in report["metrics"]] == ["contact", "view", "bounce"]
    assert [m["role"] for m in report["metrics"]] == ["decision", "secondary", "guardrail"]
    assert all(m["since"] is not None for m in report["metrics"])
    # One row per metric and treatment: the bandit group, then every active or served arm.
    assert [row["treatment"] for row in report["rows"][:4]] == ["bandit", *arms]
    assert len(report["rows"]) == 3 * 4
    served = arms[:2]
    for metric in ("contact", "view"):
        control = pair(counts, [reference], "reference", metric)
        assert_row(
            rows[metric, "bandit"], expected_row(pair(counts, served, "target", metric), control)
        )
        for arm in served:
            assert_row(
                rows[metric, arm], expected_row(pair(counts, [arm], "target", metric), control)
            )
        assert rows[metric, "bandit"]["reason"] is None
    # An active arm that was never served: its counts are zero, its numbers undefined.
    never = rows["contact", arms[2]]
    assert never["treatment_exposures"] == 0 and never["effect"] is None
    assert never["reason"] == "no exposures in the treatment group"
    # A metric with no control events: the means, no relative effect.
    bounce = rows["bounce", arms[0]]
    assert bounce["control_mean"] == 0.0 and bounce["effect"] is None
    assert bounce["treatment_mean"] == pytest.approx(
        counts[arms[0], "target", "bounce"].sum() / counts[arms[0], "target", "exposure"].sum()
    )
    assert (
        bounce["reason"]
        == "no control events: a relative effect over a control mean of 0 is undefined"
    )
    # The arms the report describes: the reference first, then those with rows.
    assert [a["id"] for a in report["arms"]] == [reference, *arms]
    assert report["arms"][0]["reference"] and report["arms"][0]["origin"] == "reference"
    assert report["arms"][1]["config"] == experiment["arms"][1]["config"]


def test_zero_events_in_a_group_and_huge_counts(client: TestClient) -> None:
    experiment = create(client)
    reference, arms = experiment["reference_arm_id"], target_arms(experiment)
    rng = np.random.default_rng(12)
    huge = rng.integers(10**12, 2 * 10**12, BUCKETS)
    counts: Counts = {
        (reference, "reference", "exposure"): huge,
        (reference, "reference", "contact"): huge // 10 + rng.integers(0, 10**9, BUCKETS),
        (arms[0], "target", "exposure"): huge + rng.integers(0, 10**11, BUCKETS),
        (arms[1], "target", "exposure"): rng.integers(100, 200, BUCKETS),  # no contact at all
    }
    counts[arms[0], "target", "contact"] = counts[arms[0], "target", "exposure"] // 9
    insert_counts(client, experiment["id"], counts)
    rows = rows_by(get_report(client))
    control = pair(counts, [reference], "reference", "contact")
    big = rows["contact", arms[0]]
    expected = expected_row(pair(counts, [arms[0]], "target", "contact"), control)
    # Means and effect exactly; the variance of counts this large loses digits in the
    # expanded formula written out here (bandit's residual form keeps them: tests/bandit).
    for key in (
        "control_mean",
        "treatment_mean",
        "effect",
        "control_events",
        "treatment_exposures",
    ):
        assert big[key] == pytest.approx(expected[key], rel=1e-12)
    for key in ("lower", "upper", "lower_anytime", "upper_anytime"):
        assert big[key] == pytest.approx(expected[key], rel=1e-4)
    assert big["significant"] and big["verdict"] == "better"
    # Zero events in the treatment group: an effect of -100%, too few events for intervals.
    none = rows["contact", arms[1]]
    assert none["treatment_mean"] == 0.0 and none["effect"] == -1.0
    assert none["treatment_exposures"] == counts[arms[1], "target", "exposure"].sum()
    assert (none["lower"], none["p_value"], none["lower_anytime"]) == (None, None, None)
    assert (
        none["reason"] == "too few events in a group for the normal approximation: no interval yet"
    )
    assert none["verdict"] == "unclear" and none["significant"] is False


def test_alpha_and_phase(client: TestClient) -> None:
    experiment = create(client)
    reference, arms = experiment["reference_arm_id"], target_arms(experiment)
    rng = np.random.default_rng(13)
    first, second = known_counts(rng, arms, reference), known_counts(rng, arms, reference)
    insert_counts(client, experiment["id"], first, phase=1)
    insert_counts(client, experiment["id"], second, phase=2)
    with client.app.state.runtime.transaction() as session:
        model = session.get(Experiment, experiment["id"])
        assert model is not None
        model.phase = 2
    control = pair(second, [reference], "reference", "contact")
    treatment = pair(second, [arms[0]], "target", "contact")
    current = get_report(client, alpha=0.1)
    assert (current["phase"], current["current_phase"], current["alpha"]) == (2, 2, 0.1)
    expected = expected_row(treatment, control, alpha=0.1)
    assert_row(rows_by(current)["contact", arms[0]], expected, alpha=0.1)
    earlier = get_report(client, phase=1)
    assert earlier["phase"] == 1
    control = pair(first, [reference], "reference", "contact")
    treatment = pair(first, [arms[0]], "target", "contact")
    assert_row(rows_by(earlier)["contact", arms[0]], expected_row(treatment, control))
    # An earlier phase gets the checks its counts allow, not the live ones.
    assert [c["check"] for c in earlier["health"]] == ["sample_ratio_mismatch"]
    assert len(current["health"]) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1}, "alpha"),
        ({"alpha": "nan"}, "alpha"),
        ({"phase": 0}, "phase"),
        ({"phase": 2}, "phase"),
        ({"format": "xml"}, "format"),
        ({"min_detectable_effect": 0}, "min_detectable_effect"),
    ],
)
def test_report_parameters_are_validated(
    sqlite_client: TestClient, params: dict[str, Any], field: str
) -> None:
    create(sqlite_client)
    response = sqlite_client.get(REPORT, params=params, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert field in response.json()["detail"]


def test_report_of_a_missing_experiment_and_without_token(sqlite_client: TestClient) -> None:
    response = sqlite_client.get("/v1/experiments/nope/report", headers=ADMIN)
    assert response.status_code == 404 and response.json()["field"] == "name"
    assert sqlite_client.get(REPORT).status_code == 401


def test_csv_matches_json(client: TestClient) -> None:
    experiment = create(client, metrics=METRICS)
    counts = known_counts(
        np.random.default_rng(14), target_arms(experiment), experiment["reference_arm_id"]
    )
    insert_counts(client, experiment["id"], counts)
    document = get_report(client)
    response = client.get(REPORT, params={"format": "csv"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert len(lines) == 1 + len(document["rows"])
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert list(parsed[0]) == list(document["rows"][0])
    for line, row in zip(parsed, document["rows"], strict=True):
        for key, value in row.items():
            assert line[key] == _as_csv(value), (key, line[key], value)
            if isinstance(value, float):
                assert float(line[key]) == value  # every digit


def _as_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


# --- a run through real HTTP traffic ------------------------------------------------------


def _bucket(salt: str, unit: str) -> int:
    """Byte 8 of SHA-256(salt NUL unit) modulo 64, written out (the group uses bytes 0-7)."""
    return hashlib.sha256(salt.encode() + b"\x00" + unit.encode()).digest()[8] % BUCKETS


def _traffic(
    client: TestClient, rng: np.random.Generator, salt: str, serials: range, expected: Counter[Any]
) -> None:
    """Assignments of 300 units, contacts and views on some of them; what should be counted
    is added to ``expected`` as (arm, group, type, bucket)."""
    events = []
    for serial in serials:
        unit = f"u{rng.integers(0, 300)}"
        answer = assign(client, unit)
        group, bucket = answer["group"], _bucket(salt, unit)
        assert group == expected_group(salt, 0.2, unit)
        expected[answer["arm_id"], group, "exposure", bucket] += 1
        for kind, p in (("contact", 0.3), ("view", 0.6)):
            if rng.random() < p:
                events.append(
                    {"ticket": answer["ticket"], "type": kind, "event_id": f"{kind}{serial}"}
                )
                expected[answer["arm_id"], group, kind, bucket] += 1
    for start in range(0, len(events), 500):
        post_events(client, events[start : start + 500])
    client.app.state.runtime.flush_exposures()
    tick(client)


def _arrays(expected: Counter[Any]) -> Counts:
    counts: Counts = {}
    for (arm, group, kind, bucket), count in expected.items():
        counts.setdefault((arm, group, kind), np.zeros(BUCKETS))[bucket] += count
    return counts


def test_a_run_through_http_and_a_metric_counted_from_its_declaration(
    make_client: ClientFactory,
) -> None:
    # Exposures are written only by the explicit flushes here: a background flush racing
    # a tick would move some of them to the next window (correctly, but not where the
    # expected counts below put them).
    with make_client(exposure_flush_s=3600.0) as client:
        _run_through_http(client)


def _run_through_http(client: TestClient) -> None:
    salt = "report-http"
    experiment = create(client, salt=salt)
    reference, arms = experiment["reference_arm_id"], target_arms(experiment)
    rng = np.random.default_rng(15)
    before: Counter[Any] = Counter()
    _traffic(client, rng, salt, range(0, 1500), before)
    added = client.post(
        f"/v1/experiments/{NAME}/metrics",
        json={"event": "view", "role": "secondary", "direction": "increase"},
        headers=ADMIN,
    )
    assert added.status_code == 201, added.text
    after: Counter[Any] = Counter()
    _traffic(client, rng, salt, range(1500, 3000), after)

    report = get_report(client)
    rows = rows_by(report)
    whole = _arrays(before + after)
    since = _arrays(Counter({k: c for k, c in after.items()}))
    served = [arm for arm in arms if (arm, "target", "exposure") in whole]
    # The decision metric counts the whole phase.
    control = pair(whole, [reference], "reference", "contact")
    assert_row(
        rows["contact", "bandit"], expected_row(pair(whole, served, "target", "contact"), control)
    )
    for arm in served:
        assert_row(
            rows["contact", arm], expected_row(pair(whole, [arm], "target", "contact"), control)
        )
    # The view metric compares views with the exposures since its declaration only.
    control = pair(since, [reference], "reference", "view")
    assert_row(rows["view", "bandit"], expected_row(pair(since, served, "target", "view"), control))
    for arm in served:
        assert_row(rows["view", arm], expected_row(pair(since, [arm], "target", "view"), control))
    (view,) = [m for m in report["metrics"] if m["event"] == "view"]
    assert view["since"] == added.json()["added_at"]
    # Health on real ticks: two applied ticks, no carried window, traffic spread.
    assert check(report, "reference_traffic")["status"] == "ok"
    assert check(report, "scheduler")["status"] == "ok"
    assert check(report, "exploration")["status"] == "ok"
    decision = check(report, "time_to_decision")
    assert decision["evidence"]["reference_exposures_per_s"] > 0

    # Removed and declared again: counted afresh from the new declaration.
    assert client.delete(f"/v1/experiments/{NAME}/metrics/view", headers=ADMIN).status_code == 200
    assert all(row["metric"] != "view" for row in get_report(client)["rows"])
    again = client.post(
        f"/v1/experiments/{NAME}/metrics",
        json={"event": "view", "role": "guardrail", "direction": "increase", "max_loss": 0.1},
        headers=ADMIN,
    )
    assert again.status_code == 201
    latest: Counter[Any] = Counter()
    _traffic(client, rng, salt, range(3000, 4000), latest)
    rows = rows_by(get_report(client))
    fresh = _arrays(latest)
    control = pair(fresh, [reference], "reference", "view")
    assert_row(rows["view", "bandit"], expected_row(pair(fresh, served, "target", "view"), control))
    assert rows["view", "bandit"]["role"] == "guardrail"


# --- the metric API -----------------------------------------------------------------------


def test_metrics_declared_added_removed_and_audited(client: TestClient) -> None:
    experiment = create(client, metrics=METRICS)
    assert [(m["event"], m["role"], m["max_loss"]) for m in experiment["metrics"]] == [
        ("view", "secondary", None),
        ("bounce", "guardrail", 0.05),
    ]
    path = f"/v1/experiments/{NAME}/metrics"
    body = {"event": "share", "role": "secondary", "direction": "increase"}
    added = client.post(path, json=body, headers=ADMIN)
    assert added.status_code == 201 and added.json()["removed"] is False
    again = client.post(path, json=body, headers=ADMIN)
    assert again.status_code == 409 and again.json()["field"] == "event"
    removed = client.delete(f"{path}/view", headers=ADMIN)
    assert removed.status_code == 200 and removed.json()["removed"] is True
    assert client.delete(f"{path}/view", headers=ADMIN).json() == removed.json()  # idempotent
    missing = client.delete(f"{path}/never", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["field"] == "event"
    listed = client.get(path, headers=ADMIN).json()
    assert [(m["event"], m["removed"]) for m in listed] == [
        ("view", True),
        ("bounce", False),
        ("share", False),
    ]
    shown = client.get(f"/v1/experiments/{NAME}", headers=ADMIN).json()["metrics"]
    assert [m["event"] for m in shown] == ["bounce", "share"]
    redeclared = client.post(
        path, json={"event": "view", "role": "secondary", "direction": "decrease"}, headers=ADMIN
    )
    assert redeclared.status_code == 201 and redeclared.json()["id"] != removed.json()["id"]
    audit = client.get("/v1/audit", params={"experiment": NAME}, headers=ADMIN).json()
    actions = [entry["action"] for entry in audit][::-1]
    assert actions == ["experiment.create", "metric.add", "metric.remove", "metric.add"]
    assert audit[0]["details"]["event"] == "view"
    assert audit[-1]["details"]["metrics"][1]["max_loss"] == 0.05
    # The removal kept the report as it stood.
    snapshots = client.get(f"{REPORT}/snapshots", headers=ADMIN).json()
    assert [(s["trigger"], s["detail"]["event"]) for s in snapshots] == [("metric_removed", "view")]
    stored = client.get(f"{REPORT}/snapshots/{snapshots[0]['id']}", headers=ADMIN).json()
    assert "view" in [m["event"] for m in stored["report"]["metrics"]]
    assert stored["report"]["health"][0]["check"] == "sample_ratio_mismatch"


def test_a_stopped_experiment_takes_no_new_metric(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    assert sqlite_client.post(f"/v1/experiments/{NAME}/stop", headers=ADMIN).status_code == 200
    response = sqlite_client.post(
        f"/v1/experiments/{NAME}/metrics",
        json={"event": "view", "role": "secondary", "direction": "increase"},
        headers=ADMIN,
    )
    assert response.status_code == 409 and response.json()["field"] == "status"


GUARDRAIL = {"event": "bounce", "role": "guardrail", "direction": "decrease", "max_loss": 0.05}
SECONDARY = {"event": "view", "role": "secondary", "direction": "increase"}


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ([SECONDARY, {**GUARDRAIL, "max_loss": None}], "metrics[1].max_loss"),
        (
            [SECONDARY, {k: v for k, v in GUARDRAIL.items() if k != "max_loss"}],
            "metrics[1].max_loss",
        ),
        ([{**SECONDARY, "max_loss": 0.1}], "metrics[0].max_loss"),
        ([{**GUARDRAIL, "max_loss": 0}], "metrics[0].max_loss"),
        ([{**GUARDRAIL, "max_loss": 1}], "metrics[0].max_loss"),
        ([{**GUARDRAIL, "max_loss": 1.5}], "metrics[0].max_loss"),
        ([{**SECONDARY, "event": "exposure"}], "metrics[0].event"),
        ([{**SECONDARY, "event": "View!"}], "metrics[0].event"),
        ([SECONDARY, {**SECONDARY, "event": "contact"}], "metrics[1].event"),
        ([SECONDARY, GUARDRAIL, {**SECONDARY, "direction": "decrease"}], "metrics[2].event"),
        ([{**SECONDARY, "role": "decision"}], "metrics[0].role"),
        ([{**SECONDARY, "direction": "up"}], "metrics[0].direction"),
        ([{k: v for k, v in SECONDARY.items() if k != "direction"}], "metrics[0].direction"),
        ([{**SECONDARY, "weight": 2}], "metrics[0].weight"),
    ],
)
def test_metric_declarations_are_validated(
    sqlite_client: TestClient, metrics: list[dict[str, Any]], field: str
) -> None:
    from tests.conftest import similar_items

    response = sqlite_client.post(
        "/v1/experiments", json=similar_items(metrics=metrics), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and field in body["detail"], body
    # Nothing was created.
    assert sqlite_client.get(f"/v1/experiments/{NAME}", headers=ADMIN).status_code == 404
    # The same checks on POST .../metrics, where the fields are the body's own.
    create(sqlite_client)
    index, _, own_field = field.removeprefix("metrics[").partition("].")
    one = metrics[int(index)]
    added = sqlite_client.post(f"/v1/experiments/{NAME}/metrics", json=one, headers=ADMIN)
    if field.endswith(".event") and one["event"] == SECONDARY["event"]:
        return  # a duplicate within one request; alone it is a valid declaration
    assert added.status_code == 422, added.text
    assert added.json()["field"] == own_field


def test_existing_experiments_without_metrics_keep_working(client: TestClient) -> None:
    experiment = create(client)
    assert experiment["metrics"] == []
    report = get_report(client)
    assert [m["event"] for m in report["metrics"]] == ["contact"]
    assert [row["treatment"] for row in report["rows"]] == ["bandit", *target_arms(experiment)]
    assert all(row["reason"] == "no exposures in the treatment group" for row in report["rows"])
    assert {c["status"] for c in report["health"]} == {"ok"}


# --- health checks through the API --------------------------------------------------------


def _srm_counts(reference: int, arm: int, share: float, seed: int) -> Counts:
    rng = np.random.default_rng(seed)
    total = rng.integers(400, 600, BUCKETS)
    in_reference = rng.binomial(total, share)
    return {
        (reference, "reference", "exposure"): in_reference,
        (arm, "target", "exposure"): total - in_reference,
    }


@pytest.mark.parametrize(("share", "status"), [(0.2, "ok"), (0.23, "failed")])
def test_sample_ratio_mismatch_check(client: TestClient, share: float, status: str) -> None:
    experiment = create(client)
    counts = _srm_counts(experiment["reference_arm_id"], target_arms(experiment)[0], share, 16)
    insert_counts(client, experiment["id"], counts)
    srm = check(get_report(client), "sample_ratio_mismatch")
    assert srm["status"] == status
    assert "on exposures; units are not kept" in srm["detail"]
    reference = counts[experiment["reference_arm_id"], "reference", "exposure"].astype(float)
    total = reference + counts[target_arms(experiment)[0], "target", "exposure"]
    share_hat, variance = delta_ratio(reference, total)
    t = (share_hat - 0.2) / math.sqrt(variance)
    assert srm["evidence"]["p_value"] == pytest.approx(
        2 * stats.t.sf(abs(t), BUCKETS - 1), rel=1e-9
    )


def _target_units(salt: str, count: int) -> list[str]:
    units = (f"t{i}" for i in range(10_000))
    return [u for u in units if expected_group(salt, 0.2, u) == "target"][:count]


def test_reference_traffic_check_counts_carried_windows(client: TestClient) -> None:
    salt = "carried"
    create(client, salt=salt)
    units = _target_units(salt, 40)
    states = []
    for round_ in range(3):
        for unit in units[round_ * 10 : round_ * 10 + 10]:
            assign(client, unit)
        client.app.state.runtime.flush_exposures()
        assert tick(client)["applied"] is False  # no reference exposure: carried
        states.append(check(get_report(client), "reference_traffic")["status"])
    assert states == ["warning", "warning", "failed"]
    detail = check(get_report(client), "reference_traffic")["detail"]
    assert "no tick has been applied yet" in detail


def test_scheduler_check_sees_a_stale_last_tick(client: TestClient) -> None:
    experiment = create(client)
    assert check(get_report(client), "scheduler")["status"] == "ok"
    with client.app.state.runtime.transaction() as session:
        model = session.get(Experiment, experiment["id"])
        assert model is not None
        model.last_tick_at = now_utc() - timedelta(hours=1)
    stuck = check(get_report(client), "scheduler")
    assert stuck["status"] == "failed" and stuck["evidence"]["intervals"] > 300
    assert client.post(f"/v1/experiments/{NAME}/pause", headers=ADMIN).status_code == 200
    assert check(get_report(client), "scheduler")["status"] == "ok"


def test_exploration_check_sees_all_traffic_on_one_arm(client: TestClient) -> None:
    salt = "collapse"
    experiment = create(client, salt=salt, exposure_source="client")
    arm = target_arms(experiment)[0]
    events = []
    for i in range(4000):
        answer = assign(client, f"c{i}")
        # Clients report exposures only for the reference and one arm: the others served none.
        if answer["arm_id"] in (arm, experiment["reference_arm_id"]):
            events.append({"ticket": answer["ticket"], "type": "exposure", "event_id": f"x{i}"})
        if len(events) >= 900:
            break
    post_events(client, events)
    assert tick(client)["applied"] is True
    exploration = check(get_report(client), "exploration")
    assert exploration["status"] == "warning", exploration
    assert exploration["evidence"]["top_arm_id"] == arm
    assert exploration["evidence"]["top_share"] == 1.0


def test_time_to_decision_from_the_recent_ticks(client: TestClient) -> None:
    experiment = create(client)
    reference, arms = experiment["reference_arm_id"], target_arms(experiment)
    rng = np.random.default_rng(17)
    counts: Counts = {}
    for arm, group in ((reference, "reference"), (arms[0], "target"), (arms[1], "target")):
        exposures = rng.integers(20, 200, BUCKETS)
        counts[arm, group, "exposure"] = exposures
        counts[arm, group, "contact"] = rng.binomial(exposures, 0.1)  # no real effect
    insert_counts(client, experiment["id"], counts)
    # Two applied ticks an hour apart: the rates are the second tick's exposures per second.
    start = now_utc() - timedelta(hours=2)
    with client.app.state.runtime.transaction() as session:
        for number, (at, exposures) in enumerate(
            [(start, 50.0), (start + timedelta(hours=1), 36.0)]
        ):
            record = Tick(
                experiment_id=experiment["id"],
                number=number + 1,
                created_at=at,
                applied=True,
                mode="request",
                decay=1.0,
                reference_exposures=exposures / 4,
                reference_events=0.0,
                target_exposures=exposures,
                target_events=0.0,
                window_arm_id=None,
                next_window_arm_id=None,
            )
            session.add(record)
            session.flush()
            for arm in arms:
                session.add(
                    TickArm(
                        tick_id=record.id,
                        arm_id=arm,
                        exposures=exposures / 3,
                        target_events=0.0,
                        alpha_increment=0.0,
                        beta_increment=0.0,
                        alpha_before=1.0,
                        beta_before=1.0,
                        alpha_after=1.0,
                        beta_after=1.0,
                    )
                )
    report = get_report(client)
    decision = check(report, "time_to_decision")
    rows = rows_by(report)
    effects = {
        arm: rows["contact", arm]["effect"]
        for arm in arms
        if rows["contact", arm]["effect"] is not None
    }
    assert decision["evidence"]["best_arm_id"] == max(effects, key=effects.__getitem__)
    assert decision["evidence"]["arm_exposures_per_s"] == pytest.approx(12.0 / 3600)
    assert decision["evidence"]["reference_exposures_per_s"] == pytest.approx(9.0 / 3600)
    # 12 exposures an hour cannot resolve a few percent within four weeks.
    assert decision["status"] == "warning" and "underpowered" in decision["detail"]


# --- snapshots ----------------------------------------------------------------------------


def test_snapshots_are_listed_and_read(client: TestClient) -> None:
    experiment = create(client)
    with client.app.state.runtime.transaction() as session:
        model = session.get(Experiment, experiment["id"])
        assert model is not None
        ids = [
            save_snapshot(session, model, trigger=trigger, detail={"n": n}, report={"rows": [n]}).id
            for n, trigger in enumerate(["guardrail", "winner", "promote"])
        ]
    listed = client.get(f"{REPORT}/snapshots", headers=ADMIN).json()
    assert [s["id"] for s in listed] == ids
    assert [s["trigger"] for s in listed] == ["guardrail", "winner", "promote"]
    assert "report" not in listed[0]
    page = client.get(f"{REPORT}/snapshots", params={"after": ids[0], "limit": 1}, headers=ADMIN)
    assert [s["id"] for s in page.json()] == [ids[1]]
    one = client.get(f"{REPORT}/snapshots/{ids[2]}", headers=ADMIN).json()
    assert one["report"] == {"rows": [2]} and one["detail"] == {"n": 2} and one["phase"] == 1
    missing = client.get(f"{REPORT}/snapshots/{ids[2] + 100}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["field"] == "snapshot_id"
