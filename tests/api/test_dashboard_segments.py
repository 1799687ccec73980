"""The dashboard's segment panel (issue 12): the selected segment's statistics are the
admin API's ``?segment=`` ones, and the heat map's lifts are each (arm, segment) pooled
posterior's median, checked against the stored evidence with SciPy; the pure heat-map
builder against hand-made arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api import repositories as repo
from api.services import dashboard
from api.services import experiments as experiment_service
from tests.api.helpers import create, event, post_events, tick
from tests.api.test_dashboard import sign_in
from tests.api.test_segments import SEGMENTED, assign, open_segments, runtime_of
from tests.conftest import ADMIN
from tests.segment_state import Pair, stored_pairs

NAME = "similar-items"


def _lift_at_median(alpha: float, beta: float) -> float:
    median = float(stats.beta.ppf(0.5, alpha, beta))
    return median / (1.0 - median) - 1.0


def test_nice_steps() -> None:
    assert [
        dashboard._nice_step(x) for x in (0.0, 0.0004, 0.011, 0.02, 0.03, 0.07, 0.275, 0.3)
    ] == [pytest.approx(v) for v in (0.001, 0.001, 0.015, 0.02, 0.03, 0.08, 0.3, 0.3)]


def test_the_legend_keeps_the_reachable_levels_with_exact_labels() -> None:
    def heat(step: float) -> dashboard.SegmentHeatmap:
        return dashboard.SegmentHeatmap(["s"], [1.0], [1], [], step=step, left_out=0)

    # Lifts are >= -100%: with 30% a level, -120% (-135%..-105%) cannot be reached.
    assert heat(0.3).legend == [(level, pytest.approx(0.3 * level)) for level in range(-3, 5)]
    assert [level for level, _ in heat(0.05).legend] == list(range(-4, 5))
    assert [heat(step).digits for step in (0.3, 0.25, 0.015, 0.0015, 0.001)] == [0, 0, 1, 2, 1]


def test_heatmap_columns_by_traffic_lifts_levels_and_best() -> None:
    """Three segments, two arms: the columns follow traffic (a segment without traffic is
    left out), each cell is the posterior median's lift, the levels are lift / step
    rounded, the best arm of each column is marked."""
    alphas = np.array([[2.0, 3.0], [30.0, 10.0], [5.0, 5.0]])
    betas = np.array([[2.0, 3.0], [20.0, 12.0], [5.0, 9.0]])
    exposures = np.array([[0.0, 0.0], [50.0, 20.0], [10.0, 14.0]])
    traffic = np.array([0.0, 90.0, 30.0])
    heat = dashboard.segment_heatmap(
        ["default", "cars", "phones"], traffic, [7, 9], alphas, betas, exposures
    )
    assert heat is not None
    assert heat.segments == ["cars", "phones"]
    assert heat.traffic == [90.0, 30.0]
    assert heat.arm_ids == [7, 9]
    assert heat.left_out == 0
    lifts = [[_lift_at_median(alphas[s, k], betas[s, k]) for s in (1, 2)] for k in range(2)]
    for k in range(2):
        for c in range(2):
            assert heat.cells[k][c].lift == pytest.approx(lifts[k][c], rel=1e-12)
            assert heat.cells[k][c].exposures == exposures[(1, 2)[c], k]
    largest = max(abs(v) for row in lifts for v in row)
    assert heat.step == dashboard._nice_step(largest / dashboard.HEAT_LEVELS)
    assert heat.step >= largest / dashboard.HEAT_LEVELS
    for k in range(2):
        for c in range(2):
            assert heat.cells[k][c].level == int(np.rint(lifts[k][c] / heat.step))
    # cars: arm 7 (30/20 against 10/12); phones: equal alphas, arm 7's smaller beta wins.
    assert [[cell.best for cell in row] for row in heat.cells] == [[True, True], [False, False]]
    assert heat.legend[-1] == (dashboard.HEAT_LEVELS, dashboard.HEAT_LEVELS * heat.step)


def test_heatmap_keeps_the_segments_with_the_most_traffic() -> None:
    n = dashboard.HEATMAP_SEGMENTS + 5
    traffic = np.arange(n, dtype=np.float64)  # segment 0 has none
    ones = np.ones((n, 1))
    heat = dashboard.segment_heatmap([f"s{i}" for i in range(n)], traffic, [1], ones, ones, ones)
    assert heat is not None
    assert heat.segments == [f"s{i}" for i in range(n - 1, n - 1 - dashboard.HEATMAP_SEGMENTS, -1)]
    assert heat.left_out == n - 1 - dashboard.HEATMAP_SEGMENTS
    assert all(cell.lift == pytest.approx(0.0) and cell.level == 0 for cell in heat.cells[0])
    nothing = np.zeros(n)
    assert (
        dashboard.segment_heatmap([f"s{i}" for i in range(n)], nothing, [1], ones, ones, ones)
        is None
    )


def _traffic(client: TestClient) -> None:
    """Cars and phones opened; 300 units in cars (every 3rd contacts), 150 in phones
    (every 2nd contacts), 60 without a segment; one tick."""
    open_segments(client, "cars", "phones")
    units = [("cars", 300, 3), ("phones", 150, 2), (None, 60, 4)]
    for segment, count, every in units:
        for index in range(count):
            answer = assign(client, f"{segment}-{index}", segment)
            if index % every == 0:
                post_events(client, [event(answer["ticket"], f"{segment}-{index}")])
    runtime_of(client).flush_exposures()
    tick(client)


def test_the_segment_panel_reads_the_segments_own_statistics(client: TestClient) -> None:
    create(client, **SEGMENTED)
    _traffic(client)
    runtime = runtime_of(client)
    with runtime.read_transaction() as session:
        overall = dashboard.experiment_page(session, NAME)
        page = dashboard.experiment_page(session, NAME, "cars")
        api_stats = experiment_service.experiment_stats(
            session, NAME, seed=0, draws=dashboard._STATS_DRAWS, segment="cars"
        )
        arms = {arm.id: arm for arm in repo.arms_of(session, 1)}
        names = repo.segment_names(session, 1)
        rows = stored_pairs(session)
    assert overall.segments is not None and page.segments is not None
    assert overall.segments.selected is None
    assert overall.segments.stats == overall.stats  # all traffic: the Arms table's numbers
    assert page.segments.selected == "cars"
    assert page.segments.stats == api_stats
    assert page.segments.options == names == ["default", "cars", "phones"]
    # The heat map, independently: pooled posteriors from the stored rows and the pools.
    heat = page.segments.heatmap
    assert heat is not None
    traffic = {name: 0.0 for name in names}
    evidence: dict[tuple[int, int], Pair] = {}
    for row in rows:
        traffic[names[row.segment]] += row.exposures
        evidence[(row.arm_id, row.segment)] = row
    expected_order = sorted((n for n in names if traffic[n] > 0), key=lambda n: -traffic[n])
    assert heat.segments == expected_order
    assert heat.traffic == [traffic[n] for n in expected_order]
    active = [a for a in arms.values() if a.origin != "reference" and a.status == "active"]
    assert sorted(heat.arm_ids) == sorted(a.id for a in active)
    # Rows in the leaderboard's order (the reference, then active arms by P(best)).
    leader = [row.stats.arm_id for row in page.leaderboard if row.stats.arm_id in heat.arm_ids]
    assert heat.arm_ids == leader
    for r, arm_id in enumerate(heat.arm_ids):
        arm = arms[arm_id]
        assert arm.pool_mu is not None and arm.pool_kappa is not None
        for c, name in enumerate(heat.segments):
            row = evidence.get((arm_id, names.index(name)))
            x = row.alpha - 1.0 if row else 0.0
            m = row.beta - 1.0 if row else 0.0
            alpha = arm.pool_mu * arm.pool_kappa + x
            beta = (1.0 - arm.pool_mu) * arm.pool_kappa + m
            assert heat.cells[r][c].lift == pytest.approx(_lift_at_median(alpha, beta), rel=1e-9)
            assert heat.cells[r][c].exposures == (row.exposures if row else 0.0)
    for c in range(len(heat.segments)):
        column = [heat.cells[r][c].lift for r in range(len(heat.arm_ids))]
        best = [heat.cells[r][c].best for r in range(len(heat.arm_ids))]
        assert best.count(True) == 1
        assert column[best.index(True)] == max(v for v in column if v is not None)
    # The cars column agrees with the API's ?segment=cars lift (the same posteriors).
    cars = heat.segments.index("cars")
    by_arm = {s.arm_id: s for s in api_stats.arms}
    for r, arm_id in enumerate(heat.arm_ids):
        assert heat.cells[r][cars].lift == pytest.approx(by_arm[arm_id].lift, rel=1e-12)


def test_the_page_shows_the_panel_only_for_segmented_experiments(client: TestClient) -> None:
    create(client, **SEGMENTED)
    _traffic(client)
    create(client, name="plain")
    assert sign_in(client).status_code == 303
    segmented = client.get(f"/experiments/{NAME}", params={"segment": "phones"})
    assert segmented.status_code == 200, segmented.text
    assert 'id="heatmap"' in segmented.text
    assert '<option value="phones" selected>' in segmented.text
    assert f'data-page-url="/experiments/{NAME}?segment=phones"' in segmented.text
    plain = client.get("/experiments/plain")
    assert plain.status_code == 200
    assert 'id="segments"' not in plain.text
    # A segment the experiment has not opened, or any for an unsegmented one: the
    # statistics' 422, naming the field, on the error page.
    for path, segment in ((f"/experiments/{NAME}", "nowhere"), ("/experiments/plain", "cars")):
        refused = client.get(path, params={"segment": segment})
        assert refused.status_code == 422
        assert "segment:" in refused.text


def test_the_api_and_the_page_agree_on_a_segments_arms(client: TestClient) -> None:
    """The page's segment table shows the numbers of GET .../stats?segment=."""
    create(client, **SEGMENTED)
    _traffic(client)
    assert sign_in(client).status_code == 303
    api_stats = client.get(
        f"/v1/experiments/{NAME}/stats", params={"segment": "phones"}, headers=ADMIN
    ).json()
    html = client.get(f"/experiments/{NAME}", params={"segment": "phones"}).text
    table = html[
        html.index('id="segment-arms"') : html.index("</table>", html.index('id="segment-arms"'))
    ]
    for arm in api_stats["arms"]:
        if arm["status"] == "active" and arm["origin"] != "reference":
            assert f"{arm['lift'] * 100:+.1f}%" in table
            assert f"{arm['exposures']:,.0f}" in table


def test_a_selected_segment_shows_its_report(client: TestClient) -> None:
    """With ?segment=S the scorecard and the checks are GET .../report?segment=S's; the
    headline in the summary stays the whole experiment's."""
    create(client, **SEGMENTED)
    _traffic(client)
    runtime = runtime_of(client)
    with runtime.read_transaction() as session:
        overall = dashboard.experiment_page(session, NAME)
        page = dashboard.experiment_page(session, NAME, "phones")
    api = client.get(f"/v1/experiments/{NAME}/report", params={"segment": "phones"}, headers=ADMIN)
    report = api.json()
    assert page.report_segment == "phones" and overall.report_segment is None
    assert page.headline == overall.headline
    shown = {row["treatment"]: row for metric in page.scorecard for row in metric.rows}
    for row in report["rows"]:
        if row["treatment"] in shown:
            for field in ("effect", "treatment_exposures", "control_exposures", "verdict"):
                assert shown[row["treatment"]][field] == row[field]
    assert [(c["check"], c["scope"]) for c in page.health] == [
        (c["check"], c["scope"]) for c in report["health"]
    ]
    assert {c["scope"] for c in page.health} == {"segment", "experiment"}
    assert page.scorecard[0].rows[0] != overall.scorecard[0].rows[0]
    assert sign_in(client).status_code == 303
    html = client.get(f"/experiments/{NAME}", params={"segment": "phones"}).text
    assert 'id="scorecard-segment"' in html
    assert "segment phones, against its reference group" in html
    bandit = report["rows"][0]
    assert f"{bandit['treatment_exposures']:,.0f}" in html
    assert html.count('class="muted small check-scope">segment phones<') == sum(
        c["scope"] == "segment" for c in report["health"]
    )
    assert 'id="scorecard-segment"' not in client.get(f"/experiments/{NAME}").text


def test_heatmap_shows_a_restricted_arm_as_not_served() -> None:
    """Arm 7 is restricted to phones: its cars cell has no lift, no level, is not cars' best
    (arm 9 is, though 7's posterior there would beat it), and phones is unchanged."""
    alphas = np.array([[30.0, 10.0], [5.0, 5.0]])
    betas = np.array([[20.0, 12.0], [5.0, 9.0]])
    exposures = np.array([[0.0, 20.0], [10.0, 14.0]])
    served = np.array([[False, True], [True, True]])
    heat = dashboard.segment_heatmap(
        ["cars", "phones"], np.array([90.0, 30.0]), [7, 9], alphas, betas, exposures, served
    )
    assert heat is not None
    cars_7, phones_7 = heat.cells[0]
    assert (cars_7.served, cars_7.lift, cars_7.level, cars_7.best) == (False, None, None, False)
    assert heat.cells[1][0].best and heat.cells[1][0].served
    assert phones_7.served and phones_7.best
    assert phones_7.lift == pytest.approx(_lift_at_median(5.0, 5.0), rel=1e-12)
    assert heat.step == dashboard._nice_step(
        max(abs(_lift_at_median(a, b)) for a, b in ((10.0, 12.0), (5.0, 5.0), (5.0, 9.0)))
        / dashboard.HEAT_LEVELS
    )


def test_the_page_marks_a_restricted_arm_not_served(client: TestClient) -> None:
    create(client, **SEGMENTED)
    _traffic(client)
    config = {"text_match": 0.3, "distance": 1.7, "price_diff": 0.2, "region": 3}
    added = client.post(
        f"/v1/experiments/{NAME}/arms", json={"config": config, "segments": ["cars"]}, headers=ADMIN
    )
    assert added.status_code == 201
    assert sign_in(client).status_code == 303
    page = client.get(f"/experiments/{NAME}")
    assert page.status_code == 200
    assert f"arm {added.json()['id']} in phones: not served in this segment" in page.text
    assert f"arm {added.json()['id']} in cars: lift" in page.text


def test_the_add_arm_form_restricts_the_arm_as_the_api_would(client: TestClient) -> None:
    """A segmented experiment's form takes segment names, comma-separated: the arm is
    restricted to them; a bad list shows the API's own error next to the field and adds
    nothing; an unsegmented experiment's form has no such field."""
    from tests.api.test_dashboard import api_error, page_token

    create(client, **SEGMENTED)
    sign_in(client)
    page = client.get("/experiments/similar-items")
    assert 'id="add-arm-segments"' in page.text
    config = {"text_match": "0.3", "distance": "0.4", "price_diff": "0.5", "region": "2"}
    form = {f"config.{key}": value for key, value in config.items()}
    json_config = {"text_match": 0.3, "distance": 0.4, "price_diff": 0.5, "region": 2}
    expected = api_error(
        client,
        "/v1/experiments/similar-items/arms",
        {"config": json_config, "segments": ["cars", "cars"]},
    )
    refused = client.post(
        "/experiments/similar-items/arms",
        data={
            "csrf_token": page_token(client),
            "form": "add-arm",
            "segments": "cars, cars",
            **form,
        },
    )
    assert refused.status_code == 422
    error = re.search(
        r'<p class="field-error" id="add-arm-segments-error">([^<]*)</p>', refused.text
    )
    assert error is not None, refused.text[-3000:]
    assert error.group(1).replace("&#39;", "'") == expected["detail"]
    arms_before = len(client.get("/v1/experiments/similar-items", headers=ADMIN).json()["arms"])
    added = client.post(
        "/experiments/similar-items/arms",
        data={
            "csrf_token": page_token(client),
            "form": "add-arm",
            "segments": " cars ,phones,",
            **form,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text[-2000:]
    arms = client.get("/v1/experiments/similar-items", headers=ADMIN).json()["arms"]
    assert len(arms) == arms_before + 1
    assert arms[-1]["segments"] == ["cars", "phones"]


def test_an_unsegmented_experiments_add_arm_form_has_no_segments(client: TestClient) -> None:
    create(client)
    sign_in(client)
    assert 'id="add-arm-segments"' not in client.get("/experiments/similar-items").text
