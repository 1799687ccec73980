"""The dashboard in a real browser (headless Chromium) against a real ``ranktune serve``:
sign in, create an experiment through the form, drive traffic with the client SDK and watch
the page follow the ticks without a reload, steer it, and check the XSS and CSRF cases.
Every page must leave the console free of errors (a Content-Security-Policy violation is
one).

The tests of a module share one server and one browser; each gets a fresh signed-in tab.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import HISTORY, Console, screenshot, sign_in
from tests.process.conftest import ServerProcess

pytestmark = pytest.mark.browser

NAME = "steered"  # made through the API by the `steered` fixture, for the steering tests
FORM_MADE = "browser-made"  # made through the form by its test
PARAMETERS = [("text_match", "float", "0", "2"), ("region", "int", "0", "3")]


@pytest.fixture(scope="module")
def steered(api: httpx.Client) -> str:
    """An experiment of two parameters for the steering tests (each test leaves it running;
    tests may run in any order, or on another worker with its own server)."""
    answer = api.post(
        "/v1/experiments",
        json={
            "name": NAME,
            "parameters": [
                {"name": name, "type": kind, "low": float(low), "high": float(high)}
                for name, kind, low, high in PARAMETERS
            ],
            "reference_config": {"text_match": 1.0, "region": 1},
            "arms": [{"text_match": 1.5, "region": 2}, {"text_match": 0.5, "region": 0}],
            "reference_share": 0.3,
            "evolution": {"enabled": False, "max_arms": 6},
        },
    )
    assert answer.status_code == 201, answer.text
    return NAME


def expect(page: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(page)


def drive(api: httpx.Client, name: str, units: range, contacts_every: int = 3) -> None:
    """Traffic as a service would send it, through the client SDK: a configuration for
    each unit of ``units`` (both groups get some) and a contact for every third one; then a
    tick through the admin API."""
    from ranktune_client import Client

    with Client(str(api.base_url)) as ranktune:
        for unit in units:
            assignment = ranktune.get_config(name, f"u{unit}")
            assert not assignment.fallback, assignment
            if unit % contacts_every == 0:
                assert ranktune.track(assignment, "contact")
        assert ranktune.flush(timeout=20.0)
    assert api.post(f"/v1/experiments/{name}/tick").status_code == 200


def test_a_wrong_token_is_refused_on_the_sign_in_form(browser: Any, server: ServerProcess) -> None:
    context = browser.new_context()
    page = context.new_page()
    console = Console()
    console.attach(page)
    console.expect_status(403)
    sign_in(page, server.base_url, "a-wrong-token-0123456789")
    expect(page.get_by_role("alert")).to_contain_text("token: wrong token")
    expect(page).to_have_url(f"{server.base_url}/login")
    assert console.errors == [], console.errors
    context.close()


def test_create_an_experiment_through_the_form(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.base_url}/experiments/new")
    page.get_by_label("Name").first.fill(FORM_MADE)
    for index, (name, kind, low, high) in enumerate(PARAMETERS):
        if index:
            page.get_by_role("button", name="Add a parameter").click()
        page.get_by_label(f"Parameter {index + 1} name").fill(name)
        page.get_by_label(f"Parameter {index + 1} type").select_option(kind)
        page.get_by_label(f"Parameter {index + 1} low").fill(low)
        page.get_by_label(f"Parameter {index + 1} high").fill(high)
    page.get_by_label("Reference, text_match").fill("1.0")
    page.get_by_label("Reference, region").fill("1")
    page.get_by_label("Arm 1, text_match").fill("1.5")
    page.get_by_label("Arm 1, region").fill("2")
    page.get_by_role("button", name="Add a founder arm").click()
    page.get_by_label("Arm 2, text_match").fill("0.5")
    page.get_by_label("Arm 2, region").fill("0")
    page.get_by_label("reference share").fill("0.3")
    # The JSON the API will receive follows the form as it is filled in.
    preview = page.locator("#json-preview")
    expect(preview).to_contain_text('"reference_share": 0.3')
    expect(preview).to_contain_text('"region": 0')
    page.get_by_role("button", name="Create experiment").click()
    expect(page).to_have_url(re.compile(f"/experiments/{FORM_MADE}\\?done=created$"))
    expect(page.get_by_role("status").first).to_contain_text("Experiment created.")
    expect(page.locator("#experiment-status")).to_have_text("running")


def test_the_page_follows_the_ticks_without_a_reload(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    page.goto(f"{server.base_url}/experiments/{NAME}")
    page.evaluate("window.__loadedOnce = true")
    ticks = int(page.locator("#tick-count").inner_text())
    for round_ in range(2):
        drive(api, NAME, range(round_ * 200, round_ * 200 + 200))
        expect(page.locator("#tick-count")).to_have_text(str(ticks + round_ + 1), timeout=15_000)
    assert page.evaluate("window.__loadedOnce") is True  # the same document: no reload
    expect(page.locator("#live-status")).to_contain_text(f"Updated after tick {ticks + 2}")
    # The charts drew the applied ticks.
    expect(page.locator("#chart-share .uplot")).to_have_count(1)
    expect(page.locator("#chart-gain .uplot")).to_have_count(1)


def test_pause_and_resume(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    page.goto(f"{server.base_url}/experiments/{NAME}")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#experiment-status")).to_have_text("paused")
    assert api.get(f"/v1/experiments/{NAME}").json()["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#experiment-status")).to_have_text("running")


def test_add_an_arm_with_the_apis_errors_then_retire_it(
    page: Any, server: ServerProcess, api: httpx.Client, console: Console, steered: str
) -> None:
    console.expect_status(422)  # the form with the invalid value comes back with it
    page.goto(f"{server.base_url}/experiments/{NAME}")
    form = page.locator("#add-arm")
    form.get_by_label("text_match").fill("7")
    form.get_by_label("region").fill("3")
    form.get_by_role("button", name="Add arm").click()
    field = page.locator("#add-arm").get_by_label("text_match")
    expect(field).to_have_attribute("aria-invalid", "true")
    expected = api.post(
        f"/v1/experiments/{NAME}/arms", json={"config": {"text_match": 7, "region": 3}}
    ).json()["detail"]
    expect(page.locator("#add-arm-text_match-error")).to_have_text(expected)
    field.fill("0.25")
    page.locator("#add-arm").get_by_role("button", name="Add arm").click()
    expect(page.get_by_role("status").first).to_contain_text("Arm added.")
    arm = api.get(f"/v1/experiments/{NAME}").json()["arms"][-1]
    assert arm["config"] == {"text_match": 0.25, "region": 3}
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Retire arm {arm['id']}").click()
    expect(page.get_by_role("status").first).to_contain_text("Arm retired.")
    expect(page.locator(f"#arm-{arm['id']}")).to_have_class(re.compile("retired"))
    assert api.get(f"/v1/experiments/{NAME}").json()["arms"][-1]["status"] == "retired"


def test_an_expert_note_with_html_is_text_and_the_step_is_previewed_first(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    hostile = '<img src=x onerror="window.__xss = 1"><b>bold?</b>'
    page.goto(f"{server.base_url}/experiments/{NAME}")
    form = page.locator("#expert-form")
    form.get_by_label("text_match").fill("1.75")
    form.get_by_label("region").fill("1")
    form.get_by_label("Note").fill(hostile)
    form.get_by_role("button", name="Queue configuration").click()
    expect(page.get_by_role("status").first).to_contain_text("queued")
    note = page.locator("#expert-list td.note").first
    expect(note).to_have_text(hostile)
    assert note.locator("img, b").count() == 0
    assert page.evaluate("window.__xss") is None
    page.get_by_role("button", name="Preview a genetic step").click()
    panel = page.locator("#evolve-preview")
    expect(panel).to_contain_text("Nothing has changed yet")
    expect(panel).to_contain_text("expert #")
    assert api.get(f"/v1/experiments/{NAME}/generations").json() == []
    panel.get_by_role("button", name="Apply this step").click()
    expect(page.get_by_role("status").first).to_contain_text("Genetic step applied.")
    expect(page.locator("#generations")).to_contain_text("Generation 1")
    generations = api.get(f"/v1/experiments/{NAME}/generations").json()
    assert [g["number"] for g in generations] == [1]


def test_a_withdrawn_expert_configuration(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    page.goto(f"{server.base_url}/experiments/{NAME}")
    form = page.locator("#expert-form")
    form.get_by_label("text_match").fill("0.05")
    form.get_by_label("region").fill("0")
    form.get_by_role("button", name="Queue configuration").click()
    expect(page.get_by_role("status").first).to_contain_text("queued")
    waiting = api.get(f"/v1/experiments/{NAME}/expert-configs?status=waiting").json()
    page.get_by_role("button", name=f"Withdraw expert configuration {waiting[0]['id']}").click()
    expect(page.get_by_role("status").first).to_contain_text("withdrawn")
    assert api.get(f"/v1/experiments/{NAME}/expert-configs?status=waiting").json() == []


def test_html_in_the_create_form_comes_back_as_text(
    page: Any, server: ServerProcess, console: Console
) -> None:
    console.expect_status(422)
    hostile = '"><img src=x onerror="window.__xss = 2">'
    page.goto(f"{server.base_url}/experiments/new")
    page.get_by_label("Name").first.fill(hostile)
    page.get_by_label("Parameter 1 name").fill(hostile)
    page.get_by_role("button", name="Create experiment").click()
    expect(page.get_by_role("alert")).to_contain_text("name: string should match pattern")
    expect(page.get_by_label("Name").first).to_have_value(hostile)
    expect(page.get_by_label("Parameter 1 name")).to_have_value(hostile)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_a_post_without_the_csrf_token_is_refused(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    page.goto(f"{server.base_url}/experiments/{NAME}")
    # The tab's own cookies go with these requests; only the token is missing or foreign.
    for form, headers in [
        ({"action": "stop"}, {}),
        ({"action": "stop", "csrf_token": "forged"}, {}),
        ({"action": "stop"}, {"Origin": "http://evil.example"}),
    ]:
        answer = page.request.post(
            f"{server.base_url}/experiments/{NAME}/status", form=form, headers=headers
        )
        assert answer.status == 403
        assert "csrf_token" in answer.text()
    assert api.get(f"/v1/experiments/{NAME}").json()["status"] == "running"


def test_every_field_has_a_label_and_the_skip_link_works(
    page: Any, server: ServerProcess, steered: str
) -> None:
    for path in ["/", f"/experiments/{NAME}", "/experiments/new", f"/experiments/{HISTORY}"]:
        page.goto(f"{server.base_url}{path}")
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                 .filter(el => el.type !== 'hidden' && el.labels.length === 0
                               && !el.getAttribute('aria-label'))
                 .map(el => el.name || el.id)"""
        )
        assert unlabeled == [], (path, unlabeled)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()


@pytest.mark.parametrize(("width", "height", "suffix"), [(1280, 900, "wide"), (390, 844, "phone")])
def test_screenshots_of_the_main_pages(
    browser: Any,
    server: ServerProcess,
    signed_in_state: dict[str, Any],
    tmp_path: Path,
    width: int,
    height: int,
    suffix: str,
) -> None:
    """A week of 20 arms (synthetic history): the README's pictures, at two widths."""
    context = browser.new_context(
        storage_state=signed_in_state, viewport={"width": width, "height": height}
    )
    page = context.new_page()
    console = Console()
    console.attach(page)
    page.goto(f"{server.base_url}/experiments/{HISTORY}")
    expect(page.locator("#chart-lift .uplot")).to_have_count(1)
    expect(page.locator("#chart-gain .uplot")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways page
    screenshot(page, f"experiment-{suffix}", tmp_path)
    page.locator("#charts").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('charts').scrollIntoView()")
    screenshot(page, f"experiment-charts-{suffix}", tmp_path)
    page.goto(f"{server.base_url}/")
    expect(page.get_by_role("link", name=HISTORY)).to_be_visible()
    screenshot(page, f"experiments-{suffix}", tmp_path)
    assert console.errors == [], console.errors
    context.close()


def test_promote_an_arm_after_a_confirmation_that_explains_the_new_phase(
    page: Any, server: ServerProcess, api: httpx.Client, steered: str
) -> None:
    experiment = api.get(f"/v1/experiments/{NAME}").json()
    arm = next(
        a for a in experiment["arms"] if a["origin"] != "reference" and a["status"] == "active"
    )
    phase = experiment["phase"]
    page.goto(f"{server.base_url}/experiments/{NAME}")
    questions: list[str] = []

    def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.get_by_role("button", name=f"Promote arm {arm['id']} to reference").click()
    expect(page.get_by_role("status").first).to_contain_text("A new phase started")
    assert f"Phase {phase} ends" in questions[0]
    assert "starts again from the prior" in questions[0]
    expect(page.locator("#phases tbody tr")).to_have_count(phase + 1)
    after = api.get(f"/v1/experiments/{NAME}").json()
    assert after["phase"] == phase + 1
    assert after["reference_config"] == arm["config"]


SEGMENTED = "by-category"
# Every how-many-th unit of a segment contacts, by the arm's text_match (1.0: the
# reference): the best arm differs between the segments.
CONTACT_EVERY = {
    "cars": {1.0: 4, 1.5: 2, 0.5: 6, 1.2: 3, 0.8: 5},
    "phones": {1.0: 4, 1.5: 6, 0.5: 2, 1.2: 5, 0.8: 3},
    "flats": {1.0: 4, 1.5: 4, 0.5: 4, 1.2: 2, 0.8: 6},
}


def drive_segments(api: httpx.Client, name: str, units: int) -> None:
    """Each segment of CONTACT_EVERY opened (its first request is served from the default
    segment; the server registers it at its next exposure flush), then ``units`` units in
    each through the client SDK, contacts at the segment's and arm's rate; one tick."""
    from ranktune_client import Client

    with Client(str(api.base_url)) as ranktune:
        for segment in CONTACT_EVERY:
            ranktune.get_config(name, "opener", segment=segment)
        deadline = time.monotonic() + 20.0
        while set(CONTACT_EVERY) - set(
            api.get(f"/v1/experiments/{name}").json()["segments"]["opened"]
        ):
            assert time.monotonic() < deadline, "the segments were not opened within 20 s"
            time.sleep(0.2)
        time.sleep(2.0)  # every replica's snapshot serves them within a second
        for segment, every in CONTACT_EVERY.items():
            for unit in range(units):
                assignment = ranktune.get_config(name, f"{segment}-{unit}", segment=segment)
                assert not assignment.fallback, assignment
                if unit % every[float(assignment.config["text_match"])] == 0:
                    assert ranktune.track(assignment, "contact")
        assert ranktune.flush(timeout=20.0)
    assert api.post(f"/v1/experiments/{name}/tick").status_code == 200


def test_a_segmented_experiments_picker_and_heat_map_screenshots(
    page: Any, server: ServerProcess, api: httpx.Client, tmp_path: Path
) -> None:
    """A segmented experiment with traffic in three segments: the heat map shows every arm
    in each segment, marks one best arm per segment and gives each cell's numbers on hover;
    picking a segment shows its statistics (those of GET .../stats?segment=)."""
    answer = api.post(
        "/v1/experiments",
        json={
            "name": SEGMENTED,
            "parameters": [
                {"name": name, "type": kind, "low": float(low), "high": float(high)}
                for name, kind, low, high in PARAMETERS
            ],
            "reference_config": {"text_match": 1.0, "region": 1},
            "arms": [{"text_match": t, "region": 1} for t in (1.5, 0.5, 1.2, 0.8)],
            "reference_share": 0.3,
            "evolution": {"enabled": False, "max_arms": 6},
            "segments": {"max_segments": 8},
        },
    )
    assert answer.status_code == 201, answer.text
    drive_segments(api, SEGMENTED, 240)
    page.goto(f"{server.base_url}/experiments/{SEGMENTED}")
    heatmap = page.locator("#heatmap")
    expect(heatmap).to_be_visible()
    headers = heatmap.locator("thead th").all_inner_texts()
    assert set(CONTACT_EVERY) <= set(headers[1:]), headers
    expect(heatmap.locator("tbody tr")).to_have_count(4)
    # One best arm per segment (column), with its numbers on hover.
    assert heatmap.locator("td.best").count() == len(headers) - 1
    title = heatmap.locator("td.best").first.get_attribute("title") or ""
    assert re.search(r"^arm \d+ in \S+: lift [+-]\d+\.\d%, [\d,]+ exposures; best", title), title
    expect(page.locator("#heatmap-legend")).to_contain_text("Lift:")
    page.locator("#segments").scroll_into_view_if_needed()
    screenshot(page, "experiment-segments-wide", tmp_path)
    # Pick a segment: the page shows that segment's statistics.
    page.get_by_label("Segment", exact=True).select_option("phones")
    expect(page).to_have_url(re.compile(f"/experiments/{SEGMENTED}\\?segment=phones"))
    expect(page.locator("#segment-explain")).to_contain_text("Segment phones")
    expect(page.get_by_label("Segment", exact=True)).to_have_value("phones")
    stats = api.get(f"/v1/experiments/{SEGMENTED}/stats", params={"segment": "phones"}).json()
    reference = next(arm for arm in stats["arms"] if arm["origin"] == "reference")
    rows = page.locator("#segment-arms tbody tr")
    expect(rows.first).to_contain_text(f"{reference['exposures']:,.0f}")
    for arm in stats["arms"]:
        if arm["origin"] != "reference":
            expect(page.locator("#segment-arms")).to_contain_text(f"{arm['lift'] * 100:+.1f}%")
    expect(page.locator("#heatmap")).to_be_visible()  # the heat map stays on every selection
    # The scorecard and the checks are the segment's report (GET .../report?segment=).
    report = api.get(f"/v1/experiments/{SEGMENTED}/report", params={"segment": "phones"}).json()
    expect(page.locator("#scorecard-segment")).to_contain_text("segment phones")
    bandit = page.locator("#scorecard table.scorecard tbody tr.headline").first
    expect(bandit).to_contain_text(f"{report['rows'][0]['treatment_exposures']:,.0f}")
    scoped = sum(check["scope"] == "segment" for check in report["health"])
    expect(page.locator("#health .check-scope", has_text="segment phones")).to_have_count(scoped)
    page.locator("#scorecard").scroll_into_view_if_needed()
    screenshot(page, "experiment-segment-report-wide", tmp_path)
    # Back to all traffic.
    page.get_by_label("Segment", exact=True).select_option("")
    expect(page.locator("#segment-explain")).to_contain_text("over all traffic")
    expect(page.locator("#scorecard-segment")).to_have_count(0)
    # At phone width the heat map scrolls inside its box; the page never sideways.
    # (reloaded: the charts are drawn at the width the page had when they were drawn)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server.base_url}/experiments/{SEGMENTED}")
    expect(page.locator("#chart-lift .uplot")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#heatmap").scroll_into_view_if_needed()
    screenshot(page, "experiment-segments-phone", tmp_path)
