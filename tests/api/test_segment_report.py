"""The report per segment (issue 12): the ticks keep the report's counts per segment, a
segment's report compares each arm with that segment's reference group, the overall
report is the sum over segments, and it names each big segment's best arm.

Expected numbers are built here from what the test served: the unit's bucket by the rule
written out in tests/api/test_report_counts.py (byte 8 of SHA-256(salt NUL unit) mod 64)
and the segment from the ticket; the effects by hand, the intervals by bandit.report on
those independently built per-bucket arrays.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats as scipy_stats

from api import repositories as repo
from api.services import report as report_service
from bandit.report import ratio_estimate, relative_effect
from tests.api.helpers import create, event, post_events, tick
from tests.api.test_report_counts import expected_bucket
from tests.api.test_segments import assign, open_segments, runtime_of, segment_of
from tests.conftest import ADMIN
from tests.pending import clear_pending
from tests.segment_state import recorded_pairs, stored_pairs

SALT = "segment-report"
SEGMENTED = {"segments": {"max_segments": 4}, "salt": SALT, "reference_share": 0.3}
BUCKETS = 64
# Count key: (segment index, arm id, group, type, bucket).
Key = tuple[int, int, str, str, int]


def report(client: TestClient, **params: Any) -> Any:
    response = client.get("/v1/experiments/similar-items/report", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def serve(
    client: TestClient, units: int, segments: tuple[str, ...], expected: Counter[Key], tag: str
) -> list[dict[str, Any]]:
    """Assign ``units`` units round robin over ``segments`` and post contacts (and shares)
    on a pattern of their own; what the report should count lands in ``expected``."""
    events = []
    for index in range(units):
        unit = f"{tag}-{index}"
        answer = assign(client, unit, segments[index % len(segments)])
        segment = segment_of(client, answer["ticket"])
        key = (segment, answer["arm_id"], answer["group"])
        bucket = expected_bucket(SALT, unit)
        expected[(*key, "exposure", bucket)] += 1
        # Cars converts at 1/2 in both groups; phones at 1/3 in the target group only.
        if (segment == 1 and index % 4 < 2) or (
            segment == 2 and answer["group"] == "target" and index % 3 == 0
        ):
            events.append(event(answer["ticket"], f"{tag}-c{index}"))
            expected[(*key, "contact", bucket)] += 1
        if index % 5 == 0:
            events.append(event(answer["ticket"], f"{tag}-s{index}", "share"))
            expected[(*key, "share", bucket)] += 1
    for start in range(0, len(events), 200):
        post_events(client, events[start : start + 200])
    runtime_of(client).flush_exposures()
    return events


def started(client: TestClient, *segments: str) -> None:
    create(client, **SEGMENTED)
    open_segments(client, *segments)
    with runtime_of(client).transaction() as session:  # the opener's exposures
        clear_pending(session.connection())


def arrays(
    counts: Counter[Key], segment: int | None, arm_ids: list[int], group: str, kind: str
) -> np.ndarray:
    """Per bucket, the expected counts of these arms in the group (one segment, or all)."""
    values = np.zeros(BUCKETS)
    for (s, arm, g, t, bucket), count in counts.items():
        if (segment is None or s == segment) and arm in arm_ids and g == group and t == kind:
            values[bucket] += count
    return values


def assert_row(
    row: dict[str, Any], counts: Counter[Key], segment: int | None, arms: list[int], ref: int
) -> None:
    """A report row against the counts: totals exactly, effect by hand, the rest as
    bandit.report gives it on the per-bucket arrays built here."""
    metric = row["metric"]
    t_events = arrays(counts, segment, arms, "target", metric)
    t_exposures = arrays(counts, segment, arms, "target", "exposure")
    c_events = arrays(counts, segment, [ref], "reference", metric)
    c_exposures = arrays(counts, segment, [ref], "reference", "exposure")
    assert row["treatment_events"] == t_events.sum()
    assert row["treatment_exposures"] == t_exposures.sum()
    assert row["control_events"] == c_events.sum()
    assert row["control_exposures"] == c_exposures.sum()
    if row["effect"] is not None:
        by_hand = (t_events.sum() / t_exposures.sum()) / (c_events.sum() / c_exposures.sum()) - 1
        assert row["effect"] == pytest.approx(by_hand, rel=1e-12)
    expected = relative_effect(
        ratio_estimate(t_events, t_exposures), ratio_estimate(c_events, c_exposures)
    )
    for field in ("lower", "upper", "p_value", "lower_anytime", "upper_anytime"):
        value = getattr(expected, field)
        if value is None or not np.isfinite(value):
            assert row[field] is None
        else:
            assert row[field] == pytest.approx(value, rel=1e-9, abs=1e-15)


def test_each_segment_has_its_report_and_the_overall_one_is_their_sum(
    client: TestClient,
) -> None:
    started(client, "cars", "phones")
    expected: Counter[Key] = Counter()
    serve(client, 900, ("cars", "phones", "default"), expected, "a")
    assert tick(client)["applied"] is True
    runtime = runtime_of(client)
    with runtime.read_transaction() as session:
        for segment in (0, 1, 2):
            stored = Counter(
                {
                    (segment, a, g, t, b): c
                    for a, g, t, b, c in repo.metric_counts(session, 1, 1, segment)
                }
            )
            mine = Counter(
                {k: c for k, c in expected.items() if k[0] == segment and k[3] != "share"}
            )
            assert stored == mine
    first = report(client)
    reference = first["reference_arm_id"]
    targets = [arm["id"] for arm in first["arms"] if not arm["reference"]]
    for name, segment in (("cars", 1), ("phones", 2), ("default", 0), (None, None)):
        document = report(client, segment=name) if name else first
        assert document["segment"] == name
        assert [row["treatment"] for row in document["rows"]] == ["bandit", *targets]
        for row in document["rows"]:
            arms = targets if row["treatment"] == "bandit" else [row["treatment"]]
            assert_row(row, expected, segment, arms, reference)
    # Cars converts alike in both groups, phones' reference never does: the segments' own
    # comparisons, not the mixture's.
    cars = report(client, segment="cars")["rows"][0]
    phones = report(client, segment="phones")["rows"][0]
    assert cars["control_events"] > 0 and phones["control_events"] == 0
    assert phones["effect"] is None and phones["reason"] is not None


def test_a_metric_declared_mid_phase_counts_from_its_declaration_in_each_segment(
    client: TestClient,
) -> None:
    started(client, "cars", "phones")
    before: Counter[Key] = Counter()
    serve(client, 400, ("cars", "phones"), before, "a")
    assert tick(client)["applied"] is True
    response = client.post(
        "/v1/experiments/similar-items/metrics",
        json={"event": "share", "role": "secondary", "direction": "increase"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    after: Counter[Key] = Counter()
    serve(client, 400, ("cars", "phones"), after, "b")
    assert tick(client)["applied"] is True
    reference = report(client)["reference_arm_id"]
    for name, segment in (("cars", 1), ("phones", 2), (None, None)):
        document = report(client, segment=name) if name else report(client)
        targets = [arm["id"] for arm in document["arms"] if not arm["reference"]]
        shares = [row for row in document["rows"] if row["metric"] == "share"]
        assert shares, "the declared metric is reported"
        for row in shares:
            arms = targets if row["treatment"] == "bandit" else [row["treatment"]]
            # Shares before the declaration were never counted; its exposures are those since.
            assert_row(row, after, segment, arms, reference)
        contacts = [row for row in document["rows"] if row["metric"] == "contact"]
        for row in contacts:
            arms = targets if row["treatment"] == "bandit" else [row["treatment"]]
            assert_row(row, before + after, segment, arms, reference)


def test_segment_health_checks_read_the_segments_counts_and_ticks(client: TestClient) -> None:
    started(client, "cars", "phones")
    expected: Counter[Key] = Counter()
    serve(client, 600, ("cars", "phones"), expected, "a")
    assert tick(client)["applied"] is True
    document = report(client, segment="cars")
    checks = {check["check"]: check for check in document["health"]}
    assert {name: check["scope"] for name, check in checks.items()} == {
        "sample_ratio_mismatch": "segment",
        "reference_traffic": "experiment",
        "scheduler": "experiment",
        "exploration": "segment",
        "time_to_decision": "segment",
    }
    ratio = checks["sample_ratio_mismatch"]["evidence"]
    assert ratio["reference_exposures"] == sum(
        c
        for (s, _, g, t, _), c in expected.items()
        if s == 1 and g == "reference" and t == "exposure"
    )
    assert ratio["target_exposures"] == sum(
        c for (s, _, g, t, _), c in expected.items() if s == 1 and g == "target" and t == "exposure"
    )
    with runtime_of(client).read_transaction() as session:
        recorded = [pair for pair in recorded_pairs(session) if pair.segment == 1]
    exploration = checks["exploration"]["evidence"]
    assert exploration["recent_target_exposures"] == sum(
        row.exposures for row in recorded if row.arm_id != document["reference_arm_id"]
    )
    overall = report(client)
    assert {check["scope"] for check in overall["health"]} == {"experiment"}


def test_the_overall_report_names_each_segments_best_arm(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(client, "cars", "phones", "flats")
    expected: Counter[Key] = Counter()
    # Traffic: cars 3 parts, phones 2, flats 1 (units round robin over this tuple).
    serve(client, 900, ("cars", "cars", "cars", "phones", "phones", "flats"), expected, "a")
    assert tick(client)["applied"] is True
    summary = report(client)["segments"]
    with runtime_of(client).read_transaction() as session:
        rows = stored_pairs(session)
    traffic = Counter[int]()
    for row in rows:
        traffic[row.segment] += row.exposures
    assert traffic[1] == sum(
        c for (s, _, _, t, _), c in expected.items() if s == 1 and t == "exposure"
    )
    total = sum(traffic.values())
    assert summary["opened"] == 4
    assert [entry["segment"] for entry in summary["shown"]] == ["cars", "phones", "flats"]
    assert summary["left_out"] == 0
    assert (summary["seed"], summary["draws"]) == (0, report_service.SEGMENT_DRAWS)
    for entry, index in zip(summary["shown"], (1, 2, 3), strict=True):
        assert entry["exposures"] == traffic[index]
        assert entry["share"] == pytest.approx(traffic[index] / total, rel=1e-12)
        stats = client.get(
            "/v1/experiments/similar-items/stats",
            params={"segment": entry["segment"], "seed": 0, "draws": summary["draws"]},
            headers=ADMIN,
        ).json()
        contenders = [a for a in stats["arms"] if a["prob_best"] is not None]
        best = max(contenders, key=lambda a: (a["prob_best"], -a["arm_id"]))
        assert entry["best_arm_id"] == best["arm_id"]
        assert entry["prob_best"] == best["prob_best"]
        # The lift at the posterior median, from SciPy on the segment's pooled posterior.
        theta = scipy_stats.beta.ppf(0.5, best["alpha"], best["beta"])
        assert entry["lift"] == pytest.approx(theta / (1 - theta) - 1, rel=1e-9)
        assert entry["prob_beat_reference"] == pytest.approx(
            scipy_stats.beta.sf(0.5, best["alpha"], best["beta"]), rel=1e-9
        )
    # Bounded: the top segments by traffic only; a segment's report shows its own.
    monkeypatch.setattr(report_service, "REPORT_SEGMENTS", 2)
    bounded = report(client)["segments"]
    assert [entry["segment"] for entry in bounded["shown"]] == ["cars", "phones"]
    assert bounded["left_out"] == 1
    flats = report(client, segment="flats")["segments"]
    assert [entry["segment"] for entry in flats["shown"]] == ["flats"]
    assert flats["left_out"] == 2
    assert flats["shown"][0] == summary["shown"][2]


def test_unsegmented_reports_have_no_segments(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    document = report(sqlite_client)
    assert document["segment"] is None and document["segments"] is None


@pytest.mark.parametrize("segmented", [False, True])
def test_a_segment_not_opened_is_refused_naming_segment(
    sqlite_client: TestClient, segmented: bool
) -> None:
    create(sqlite_client, **(SEGMENTED if segmented else {}))
    for fmt in ("json", "csv"):
        answer = sqlite_client.get(
            "/v1/experiments/similar-items/report",
            params={"segment": "cars", "format": fmt},
            headers=ADMIN,
        )
        stats = sqlite_client.get(
            "/v1/experiments/similar-items/stats", params={"segment": "cars"}, headers=ADMIN
        )
        assert answer.status_code == stats.status_code == 422
        assert answer.json()["field"] == "segment"
        assert answer.json()["detail"] == stats.json()["detail"]
        expected = "one of them ('default' included)" if segmented else "expected no segment"
        assert expected in answer.json()["detail"]


def test_the_csv_of_a_segments_report(sqlite_client: TestClient) -> None:
    started(sqlite_client, "cars/used")
    serve(sqlite_client, 200, ("cars/used",), Counter(), "a")
    tick(sqlite_client)
    response = sqlite_client.get(
        "/v1/experiments/similar-items/report",
        params={"segment": "cars/used", "format": "csv"},
        headers=ADMIN,
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        'attachment; filename="similar-items-report-phase-1-segment-cars_used.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    document = report(sqlite_client, segment="cars/used")
    assert [float(row["treatment_exposures"]) for row in rows] == [
        row["treatment_exposures"] for row in document["rows"]
    ]
