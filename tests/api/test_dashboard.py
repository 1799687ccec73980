"""The dashboard through HTTP (the whole app in-process): signing in, sessions and CSRF,
escaping, forms that get the API's errors, what the pages and the charts' data say.

The browser tests (tests/browser) drive the same pages in Chromium against a real server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api.app import create_app
from api.web_session import (
    SESSION_COOKIE,
    Principal,
    Role,
    SessionSigner,
)
from tests.api.helpers import create, event, inspect, post_events, tick, tickets_by_arm
from tests.conftest import ADMIN, ADMIN_TOKEN, settings_for

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match is not None, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, token: str = ADMIN_TOKEN) -> Any:
    form = client.get("/login")
    assert form.status_code == 200
    return client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "token": token, "next": "/"},
        follow_redirects=False,
    )


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    answer = sign_in(client)
    assert answer.status_code == 303, answer.text
    return client


def page_token(client: TestClient, path: str = "/experiments/similar-items") -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return csrf_of(answer.text)


# -- signing in ------------------------------------------------------------------------------
def test_pages_ask_for_a_sign_in_and_keep_where_you_were_going(sqlite_client: TestClient) -> None:
    answer = sqlite_client.get("/experiments/x?done=pause", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/experiments/x%3Fdone%3Dpause"
    assert sqlite_client.get("/experiments/x/charts.json").status_code == 401
    assert sqlite_client.get("/live.json").json()["field"] == "session"


def test_signing_in_sets_a_strict_http_only_cookie_without_the_token(
    sqlite_client: TestClient,
) -> None:
    answer = sign_in(sqlite_client)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS below
    assert ADMIN_TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert ADMIN_TOKEN not in value
    session = SessionSigner.for_admin_token(ADMIN_TOKEN).read(value, time.time())
    assert session is not None
    assert session.principal == Principal(Role.ADMIN, "admin")
    assert sqlite_client.get("/").status_code == 200


def test_the_cookie_is_secure_over_https(sqlite_url: str) -> None:
    with TestClient(create_app(settings_for(sqlite_url)), base_url="https://testserver") as client:
        assert "Secure" in sign_in(client).headers["set-cookie"]


def test_a_wrong_token_is_refused_and_never_echoed(sqlite_client: TestClient) -> None:
    wrong = "not-the-admin-token-<b>"
    answer = sign_in(sqlite_client, wrong)
    assert answer.status_code == 403
    assert "token: wrong token" in answer.text
    assert wrong not in answer.text and "not-the-admin-token" not in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert sqlite_client.get("/", follow_redirects=False).status_code == 303


def test_the_sign_in_form_is_protected_against_csrf(sqlite_client: TestClient) -> None:
    form = sqlite_client.get("/login")
    token = csrf_of(form.text)
    sqlite_client.cookies.clear()  # a forged form from elsewhere has no nonce cookie
    answer = sqlite_client.post("/login", data={"csrf_token": token, "token": ADMIN_TOKEN})
    assert answer.status_code == 403
    assert "csrf_token" in answer.text
    foreign = sqlite_client.get("/login")
    answer = sqlite_client.post(
        "/login",
        data={"csrf_token": csrf_of(foreign.text), "token": ADMIN_TOKEN},
        headers={"Origin": "http://evil.example"},
    )
    assert answer.status_code == 403


def test_sign_in_goes_back_only_to_a_page_of_this_server(sqlite_client: TestClient) -> None:
    for target, expected in [
        ("/experiments/x", "/experiments/x"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
    ]:
        sqlite_client.cookies.clear()
        form = sqlite_client.get("/login")
        answer = sqlite_client.post(
            "/login",
            data={"csrf_token": csrf_of(form.text), "token": ADMIN_TOKEN, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == expected, target


def test_a_tampered_expired_or_foreign_cookie_is_no_session(sqlite_client: TestClient) -> None:
    signer = SessionSigner.for_admin_token(ADMIN_TOKEN)
    admin = Principal(Role.ADMIN, "admin")
    good, _ = signer.issue(admin, time.time())
    body, _, mac = good.rpartition(".")
    viewer_payload = body.replace(body.split(".")[1], body.split(".")[1][::-1])
    expired, _ = SessionSigner.for_admin_token(ADMIN_TOKEN, max_age_s=1).issue(admin, 0)
    other, _ = SessionSigner.for_admin_token("another-admin-token").issue(admin, time.time())
    for cookie in [f"{viewer_payload}.{mac}", expired, other, "v1.e30.AAAA", "garbage"]:
        sqlite_client.cookies.set(SESSION_COOKIE, cookie)
        assert sqlite_client.get("/", follow_redirects=False).status_code == 303, cookie
    sqlite_client.cookies.set(SESSION_COOKIE, good)
    assert sqlite_client.get("/", follow_redirects=False).status_code == 200


def test_signing_out_ends_the_session_in_this_browser(signed_in: TestClient) -> None:
    token = page_token(signed_in, "/")
    answer = signed_in.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert f'{SESSION_COOKIE}=""' in answer.headers["set-cookie"]
    assert signed_in.get("/", follow_redirects=False).status_code == 303


def test_the_admin_token_never_appears_in_a_page(signed_in: TestClient) -> None:
    create(signed_in)
    for path in ["/", "/experiments/similar-items", "/experiments/new", "/login", "/docs"]:
        answer = signed_in.get(path)
        assert answer.status_code == 200, path
        assert ADMIN_TOKEN not in answer.text, path


# -- CSRF and roles on every change ---------------------------------------------------------
def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(
    signed_in: TestClient,
) -> None:
    create(signed_in)
    path = "/experiments/similar-items/status"
    for data, headers in [
        ({"action": "pause"}, {}),
        ({"action": "pause", "csrf_token": "forged"}, {}),
        (
            {"action": "pause", "csrf_token": page_token(signed_in)},
            {"Origin": "http://evil.example"},
        ),
    ]:
        answer = signed_in.post(path, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, data
        assert "csrf_token" in answer.text
    assert inspect(signed_in)["status"] == "running"
    answer = signed_in.post(
        path,
        data={"action": "pause", "csrf_token": page_token(signed_in)},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/experiments/similar-items?done=pause"
    assert inspect(signed_in)["status"] == "paused"


def test_the_csrf_token_is_the_sessions_own(client: TestClient) -> None:
    create(client)
    sign_in(client)
    first = page_token(client)
    client.cookies.clear()
    sign_in(client)
    answer = client.post(
        "/experiments/similar-items/status", data={"action": "pause", "csrf_token": first}
    )
    assert answer.status_code == 403
    assert inspect(client)["status"] == "running"


@pytest.fixture
def viewer(sqlite_url: str) -> Iterator[TestClient]:
    """Signed in with a stored viewer token (POST /v1/tokens)."""
    with TestClient(create_app(settings_for(sqlite_url))) as client:
        create(client)
        token = client.post("/v1/tokens", json={"name": "viewer", "role": "viewer"}, headers=ADMIN)
        assert token.status_code == 201, token.text
        assert sign_in(client, token.json()["token"]).status_code == 303
        yield client


def test_revoking_a_viewer_token_ends_its_sessions(viewer: TestClient) -> None:
    assert viewer.get("/experiments/similar-items").status_code == 200
    (token,) = viewer.get("/v1/tokens", headers=ADMIN).json()
    assert viewer.delete(f"/v1/tokens/{token['id']}", headers=ADMIN).status_code == 200
    answer = viewer.get("/experiments/similar-items", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_a_client_token_does_not_sign_in(client: TestClient) -> None:
    created = client.post("/v1/tokens", json={"name": "web", "role": "client"}, headers=ADMIN)
    answer = sign_in(client, created.json()["token"])
    assert answer.status_code == 403
    assert "token: a client token cannot sign in" in answer.text
    assert SESSION_COOKIE not in answer.cookies


def test_steering_through_the_dashboard_is_audited_with_the_token(
    signed_in: TestClient,
) -> None:
    create(signed_in)
    answer = signed_in.post(
        "/experiments/similar-items/status",
        data={"action": "pause", "csrf_token": page_token(signed_in)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    entries = signed_in.get("/v1/audit", params={"experiment": "similar-items"}, headers=ADMIN)
    pause = next(entry for entry in entries.json() if entry["action"] == "experiment.pause")
    assert pause["token"] == "RANKTUNE_ADMIN_TOKEN"


def test_a_viewer_reads_every_page_but_steers_nothing(viewer: TestClient) -> None:
    page = viewer.get("/experiments/similar-items")
    assert page.status_code == 200
    assert "Signed in as viewer" in page.text
    for absent in (
        "Pause",
        "Add arm",
        "Retire",
        "Preview a genetic step",
        "New experiment",
        "Save settings",
        "/remove",
    ):
        assert absent not in page.text, absent
    token = csrf_of(page.text)
    answer = viewer.post(
        "/experiments/similar-items/status", data={"action": "pause", "csrf_token": token}
    )
    assert answer.status_code == 403
    assert "viewers can look, not steer" in answer.text
    assert inspect(viewer)["status"] == "running"
    settings = viewer.post(
        "/experiments/similar-items/settings", data={"update_interval_s": "5", "csrf_token": token}
    )
    assert settings.status_code == 403
    assert inspect(viewer)["update_interval_s"] != 5
    assert viewer.get("/experiments/new").status_code == 403


# -- escaping -------------------------------------------------------------------------------
def test_an_expert_note_with_html_shows_as_text(signed_in: TestClient) -> None:
    create(signed_in)
    note = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    answer = signed_in.post(
        "/experiments/similar-items/experts",
        data={
            "csrf_token": page_token(signed_in),
            "config.text_match": "0.3",
            "config.distance": "0.4",
            "config.price_diff": "0.5",
            "config.region": "2",
            "note": note,
        },
    )
    assert answer.status_code == 200
    assert "<script>alert" not in answer.text and "<img src=x" not in answer.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in (
        answer.text
    )


def test_html_typed_into_the_create_form_comes_back_as_text(signed_in: TestClient) -> None:
    hostile = '"><script>alert(1)</script>'
    answer = signed_in.post(
        "/experiments/new",
        data={
            "csrf_token": page_token(signed_in, "/experiments/new"),
            "intent": "create",
            "name": hostile,
            "parameters[0].name": hostile,
            "parameters[0].low": "0",
            "parameters[0].high": "1",
        },
    )
    assert answer.status_code == 422
    assert "<script>alert(1)</script>" not in answer.text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text


def test_pages_forbid_inline_script_framing_and_caching(signed_in: TestClient) -> None:
    answer = signed_in.get("/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<script>" not in answer.text  # only <script src=...>


# -- forms get the API's own errors ---------------------------------------------------------
def as_json(text: str) -> Any:
    """What a person typing ``text`` means in a JSON body."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    return text


def api_error(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(path, json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    error: dict[str, Any] = answer.json()
    return error


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"text_match": "5"}, "config.text_match"),
        ({"region": "1.5"}, "config.region"),
        ({"distance": "abc"}, "config.distance"),
        ({"price_diff": ""}, "config.price_diff"),
    ],
)
def test_an_invalid_arm_shows_the_apis_error_next_to_its_field(
    client: TestClient, values: dict[str, str], field: str
) -> None:
    create(client)
    sign_in(client)
    config = {"text_match": "0.3", "distance": "0.4", "price_diff": "0.5", "region": "2"}
    config.update(values)
    json_config = {key: as_json(value) for key, value in config.items() if value != ""}
    expected = api_error(client, "/v1/experiments/similar-items/arms", {"config": json_config})
    assert expected["field"] == field
    form = {f"config.{key}": value for key, value in config.items()}
    answer = client.post(
        "/experiments/similar-items/arms",
        data={"csrf_token": page_token(client), "form": "add-arm", **form},
    )
    assert answer.status_code == 422
    parameter = field.split(".")[1]
    error = re.search(
        rf'<p class="field-error" id="add-arm-{parameter}-error">([^<]*)</p>', answer.text
    )
    assert error is not None, answer.text[-3000:]
    assert error.group(1).replace("&#39;", "'") == expected["detail"]
    assert f'aria-describedby="add-arm-{parameter}-error"' in answer.text
    assert len(inspect(client)["arms"]) == 4  # nothing added


def test_the_create_form_creates_what_the_api_would(client: TestClient) -> None:
    sign_in(client)
    data = {
        "csrf_token": page_token(client, "/experiments/new"),
        "intent": "create",
        "name": "from-the-form",
        "target_event": "contact",
        "parameters[0].name": "text_match",
        "parameters[0].type": "float",
        "parameters[0].low": "0",
        "parameters[0].high": "2",
        "parameters[0].distribution": "uniform",
        "parameters[0].step": "",
        "parameters[1].name": "region",
        "parameters[1].type": "int",
        "parameters[1].low": "0",
        "parameters[1].high": "3",
        "parameters[1].distribution": "uniform",
        "parameters[1].step": "",
        "parameters[2].name": "",  # the spare row
        "parameters[2].type": "float",
        "parameters[2].low": "",
        "parameters[2].high": "",
        "parameters[2].distribution": "uniform",
        "parameters[2].step": "",
        "configs[0][0]": "1.0",
        "configs[0][1]": "1",
        "configs[1][0]": "1.5",
        "configs[1][1]": "2",
        "configs[2][0]": "",
        "configs[2][1]": "",
        "reference_share": "0.25",
        "mode": "",
        "evolution.enabled": "true",
        "evolution.drop_count": "2",
    }
    preview = client.post(
        "/experiments/new/preview", data=data, headers={"X-CSRF-Token": data["csrf_token"]}
    )
    assert preview.status_code == 200
    body = preview.json()
    assert body == {
        "name": "from-the-form",
        "parameters": [
            {"name": "text_match", "type": "float", "low": 0, "high": 2, "distribution": "uniform"},
            {"name": "region", "type": "int", "low": 0, "high": 3, "distribution": "uniform"},
        ],
        "reference_config": {"text_match": 1.0, "region": 1},
        "arms": [{"text_match": 1.5, "region": 2}],
        "reference_share": 0.25,
        "target_event": "contact",
        "evolution": {"enabled": True, "drop_count": 2},
    }
    answer = client.post("/experiments/new", data=data, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/experiments/from-the-form?done=created"
    created = inspect(client, "from-the-form")
    assert created["reference_config"] == {"text_match": 1.0, "region": 1}
    assert [arm["config"] for arm in created["arms"][1:]] == [{"text_match": 1.5, "region": 2}]
    assert created["reference_share"] == 0.25
    assert created["evolution"]["enabled"] is True
    assert created["evolution"]["drop_count"] == 2
    page = client.get(answer.headers["location"])
    assert "Experiment created." in page.text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"parameters[0].high": "-1"}, "parameters[0].low"),
        ({"configs[1][1]": "9"}, "arms[0].region"),
        ({"configs[0][0]": ""}, "reference_config.text_match"),
        ({"reference_share": "2"}, "reference_share"),
        ({"name": "Bad Name"}, "name"),
        ({"evolution.enabled": "true", "evolution.max_arms": "1"}, "evolution.max_arms"),
    ],
)
def test_the_create_form_shows_the_apis_error_next_to_the_field(
    sqlite_client: TestClient, changes: dict[str, str], field: str
) -> None:
    sign_in(sqlite_client)
    data = {
        "csrf_token": page_token(sqlite_client, "/experiments/new"),
        "intent": "create",
        "name": "bad",
        "parameters[0].name": "text_match",
        "parameters[0].low": "0",
        "parameters[0].high": "2",
        "parameters[1].name": "region",
        "parameters[1].type": "int",
        "parameters[1].low": "0",
        "parameters[1].high": "3",
        "configs[0][0]": "1.0",
        "configs[0][1]": "1",
        "configs[1][0]": "1.5",
        "configs[1][1]": "2",
        **changes,
    }
    body = sqlite_client.post(
        "/experiments/new/preview", data=data, headers={"X-CSRF-Token": data["csrf_token"]}
    ).json()
    answer = sqlite_client.post("/v1/experiments", json=body, headers=ADMIN)
    assert answer.status_code == 422
    expected = answer.json()
    assert expected["field"] == field
    page = sqlite_client.post("/experiments/new", data=data)
    assert page.status_code == 422
    element = field.replace("[", "-").replace("]", "-").replace(".", "-")
    match = re.search(
        rf'<p class="field-error" id="f-{re.escape(element)}-error">([^<]*)</p>', page.text
    )
    assert match is not None, page.text[-2000:]
    assert (
        match.group(1).replace("&#39;", "'").replace("&gt;", ">").replace("&lt;", "<")
        == (expected["detail"])
    )
    assert sqlite_client.get("/v1/experiments", headers=ADMIN).json() == []


# -- steering through the pages -------------------------------------------------------------
def test_steering_from_the_page_does_what_the_api_does(client: TestClient) -> None:
    create(client, evolution={"enabled": False, "max_arms": 8})
    sign_in(client)
    name = "/experiments/similar-items"

    def post(path: str, **data: str) -> Any:
        answer = client.post(
            f"{name}{path}", data={"csrf_token": page_token(client), **data}, follow_redirects=False
        )
        assert answer.status_code in (200, 303), answer.text[-2000:]
        return answer

    assert post("/status", action="pause").headers["location"].endswith("done=pause")
    assert inspect(client)["status"] == "paused"
    post("/status", action="resume")
    assert inspect(client)["status"] == "running"
    post(
        "/arms",
        **{"config.text_match": "0.1", "config.distance": "0.2", "config.price_diff": "0.3"},
        **{"config.region": "3"},
    )
    arms = inspect(client)["arms"]
    added = arms[-1]
    assert added["config"] == {"text_match": 0.1, "distance": 0.2, "price_diff": 0.3, "region": 3}
    assert added["origin"] == "manual"
    post(f"/arms/{added['id']}/retire")
    assert inspect(client)["arms"][-1]["status"] == "retired"
    post(
        "/experts",
        **{"config.text_match": "1.9", "config.distance": "0.2", "config.price_diff": "0.3"},
        **{"config.region": "0", "note": "from the page"},
    )
    queue = client.get("/v1/experiments/similar-items/expert-configs", headers=ADMIN).json()
    assert [(entry["note"], entry["status"]) for entry in queue] == [("from the page", "waiting")]
    preview = post("/evolve/preview")
    assert "Genetic step preview" in preview.text
    seed = re.search(r'name="seed" value="(\d+)"', preview.text)
    assert seed is not None
    assert "Would add" in preview.text and "expert #1" in preview.text
    assert post("/evolve", seed=seed.group(1)).headers["location"].endswith("done=evolved")
    generations = client.get("/v1/experiments/similar-items/generations", headers=ADMIN).json()
    assert len(generations) == 1
    assert generations[0]["details"]["seed"] == int(seed.group(1))
    assert generations[0]["added"][0]["origin"] == "expert"  # then random ones up to max_arms
    post("/status", action="stop")
    assert inspect(client)["status"] == "stopped"
    conflict = client.post(
        f"{name}/status", data={"csrf_token": page_token(client), "action": "pause"}
    )
    assert conflict.status_code == 409
    assert "cannot pause an experiment that is stopped" in conflict.text
    audit = [entry["action"] for entry in client.get("/v1/audit", headers=ADMIN).json()]
    for action in ("experiment.pause", "arm.add", "arm.retire", "expert_config.submit"):
        assert action in audit


def test_an_unknown_experiment_is_a_404_page(signed_in: TestClient) -> None:
    answer = signed_in.get("/experiments/nothing-here")
    assert answer.status_code == 404
    assert "experiment &#39;nothing-here&#39; does not exist" in answer.text


# -- what the pages show --------------------------------------------------------------------
def drive(client: TestClient, contacts: dict[int, int]) -> None:
    """One window: an assignment (an exposure) per arm and ``contacts[arm]`` contacts."""
    tickets = tickets_by_arm(client)
    events = []
    for arm_id, ticket in tickets.items():
        for index in range(contacts.get(arm_id, 0)):
            events.append(event(ticket, f"{arm_id}-{time.monotonic_ns()}-{index}"))
    if events:
        post_events(client, events)


def test_the_charts_data_are_the_ticks_own_numbers(client: TestClient) -> None:
    created = create(client, max_events_per_exposure={"*": 1000, "exposure": 1000})
    sign_in(client)
    reference = created["reference_arm_id"]
    arm_ids = [arm["id"] for arm in created["arms"] if arm["id"] != reference]
    # Seeded draws, and a contact for every arm: an arm without any is drawn so rarely that
    # drive() could miss its ticket in 2,000 assignments (seen once under load).
    client.app.state.runtime.serving.rng = np.random.default_rng(5)
    for window in range(3):
        drive(client, {reference: 2, arm_ids[0]: 3 + window, arm_ids[1]: 1, arm_ids[2]: 1})
        tick(client)
    answer = client.get("/experiments/similar-items/charts.json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON: a browser's JSON.parse refuses it")

    history = json.loads(answer.text, parse_constant=refuse)
    ticks = client.get("/v1/experiments/similar-items/ticks", headers=ADMIN).json()
    applied = [t for t in ticks if t["applied"]]
    assert len(history["t"]) == len(applied) == 3
    assert history["gain"]["actual"] == pytest.approx(
        np.cumsum([t["target_events"] for t in applied]).tolist()
    )
    expected = [
        t["target_exposures"] * t["reference_events"] / t["reference_exposures"] for t in applied
    ]
    assert history["gain"]["expected"] == pytest.approx(np.cumsum(expected).tolist(), abs=1e-3)
    by_arm = {series["id"]: series for series in history["arms"]}
    assert set(by_arm) == set(arm_ids)
    for position, record in enumerate(applied):
        total = sum(arm["exposures"] for arm in record["arms"])
        for arm in record["arms"]:
            series = by_arm[arm["arm_id"]]
            assert series["share"][position] == pytest.approx(arm["exposures"] / total, abs=1e-4)
            # Small posteriors: exact Beta quantiles (bandit.summaries.lift_bands).
            median = stats.beta.ppf(0.5, arm["alpha_after"], arm["beta_after"])
            assert series["lift"][position] == pytest.approx(median / (1 - median) - 1, abs=1e-4)
    assert history["t"] == pytest.approx(
        [
            np.datetime64(t["created_at"].replace("Z", "")).astype("datetime64[us]").astype(float)
            / 1e6
            for t in applied
        ]
    )
    kinds = [marker["kind"] for marker in history["markers"]]
    assert kinds == ["created"]


def test_the_page_shows_the_leaderboard_and_the_scorecard(signed_in: TestClient) -> None:
    created = create(signed_in, max_events_per_exposure={"*": 1000, "exposure": 1000})
    reference = created["reference_arm_id"]
    for _ in range(2):
        drive(signed_in, {reference: 2, reference + 1: 4})
        tick(signed_in)
    page = signed_in.get("/experiments/similar-items")
    assert page.status_code == 200
    assert page.headers["server-timing"].startswith("app;dur=")
    stats = signed_in.get(
        "/v1/experiments/similar-items/stats", params={"draws": 5000}, headers=ADMIN
    ).json()
    for arm in stats["arms"]:
        row = re.search(rf'<tr class="[^"]*" id="arm-{arm["arm_id"]}">(.*?)</tr>', page.text, re.S)
        assert row is not None
        cells = row.group(1)
        assert f"{arm['exposures']:,.0f}" in cells
        if arm["prob_best"] is not None:
            assert f"{arm['prob_best']:.2f}" in cells
        if arm["origin"] != "reference":
            assert f"{arm['lift'] * 100:+.1f}%" in cells
    assert "Bandit group" in page.text  # the scorecard's headline row
    assert "Scorecard" in page.text


def test_the_live_version_moves_with_every_tick(signed_in: TestClient) -> None:
    create(signed_in)
    before = signed_in.get("/experiments/similar-items/live.json").json()["version"]
    listed = signed_in.get("/live.json").json()["version"]
    tick(signed_in)
    after = signed_in.get("/experiments/similar-items/live.json").json()["version"]
    assert after == before + 1
    assert signed_in.get("/live.json").json()["version"] != listed
    assert signed_in.get("/experiments/none/live.json").status_code == 404


def test_the_api_docs_and_the_pages_load_nothing_from_another_host(
    signed_in: TestClient,
) -> None:
    create(signed_in)
    for path in ["/docs", "/", "/experiments/similar-items", "/experiments/new", "/login"]:
        html = signed_in.get(path).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, path
        for asset in assets:
            assert not re.match(r"(https?:)?//", asset), (path, asset)
            if asset.startswith("/static/"):
                assert signed_in.get(asset.split("?")[0]).status_code == 200, asset
    assert signed_in.get("/redoc").status_code == 404


# -- a long history, downsampled --------------------------------------------------------------
def test_a_long_history_is_downsampled_by_age_and_the_gain_stays_exact(sqlite_url: str) -> None:
    """Two days of 60 s ticks: the last hour tick by tick, older history in blocks; the
    cumulative gain at every point equals the sums over every tick up to it, also after
    more ticks arrive (the blocks computed earlier are reused, not recomputed)."""
    from sqlalchemy import select

    from api.db import make_engine, make_session_factory
    from api.models import Tick
    from api.services import dashboard
    from benchmarks.history import HistoryShape, write_history

    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    write_history(
        factory,
        "long",
        HistoryShape(arms=6, ticks=2_880, interval_s=60.0, evolve_every=1_000, seed=3),
    )
    blocks = dashboard.TickBlocks()

    def history() -> dict[str, Any]:
        with factory() as session, session.begin():
            return dashboard.chart_history(session, "long", blocks=blocks)

    def every_tick() -> list[Any]:
        with factory() as session, session.begin():
            return list(session.execute(select(Tick).order_by(Tick.number)).scalars())

    first = history()
    ticks = every_tick()
    latest = ticks[-1].created_at.timestamp()
    recent = [t for t in first["gain"]["t"] if t > latest - 3600]
    assert 60 <= len(recent) <= 61 + dashboard.BLOCK  # every tick of the last hour
    assert len(first["gain"]["t"]) < 60 + dashboard.BLOCK + 240 + 168 + 100
    applied = [t for t in ticks if t.applied]
    ends = {t.created_at.timestamp(): t.number for t in ticks}
    actual = np.cumsum([t.target_events if t.applied else 0.0 for t in ticks])
    expected = np.cumsum(
        [
            t.target_exposures * t.reference_events / t.reference_exposures if t.applied else 0.0
            for t in ticks
        ]
    )
    for at, got_actual, got_expected in zip(
        first["gain"]["t"], first["gain"]["actual"], first["gain"]["expected"], strict=True
    ):
        number = ends[at]
        assert got_actual == pytest.approx(actual[number - 1], abs=1e-3)
        assert got_expected == pytest.approx(expected[number - 1], rel=1e-9, abs=1e-3)
    assert len(applied) == len(ticks)
    # More ticks arrive: the same blocks, extended; the answer equals a fresh computation.
    with factory() as session, session.begin():
        last = ticks[-1]
        for offset in range(1, 41):
            session.add(
                Tick(
                    experiment_id=last.experiment_id,
                    number=last.number + offset,
                    created_at=last.created_at + (last.created_at - ticks[-2].created_at) * offset,
                    applied=True,
                    mode="request",
                    decay=1.0,
                    reference_exposures=10.0,
                    reference_events=1.0,
                    target_exposures=40.0,
                    target_events=3.0,
                    window_arm_id=None,
                    next_window_arm_id=None,
                )
            )
    again = history()
    fresh_blocks = dashboard.TickBlocks()
    with factory() as session, session.begin():
        fresh = dashboard.chart_history(session, "long", blocks=fresh_blocks)
    assert again["gain"] == fresh["gain"]
    assert again["gain"]["actual"][-1] == pytest.approx(actual[-1] + 40 * 3.0)
    engine.dispose()


# -- what the decisions and the webhooks left -------------------------------------------------
def test_decisions_and_webhook_deliveries_show_on_the_page(client: TestClient) -> None:
    """A guardrail trip (a generation with trigger guardrail), a circuit-breaker pause and a
    winner, as the decisions record them, become markers and banners; the experiment's
    webhook deliveries are listed for admins."""
    from datetime import UTC, datetime

    from api.enums import NotificationKind
    from api.models import Generation
    from api.repositories import add_audit, get_experiment_by_name
    from api.services.notifications import notify

    created = create(client)
    webhook = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "experiment": "similar-items"},
        headers=ADMIN,
    )
    assert webhook.status_code == 201, webhook.text
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    arm = created["arms"][1]["id"]
    now = datetime.now(UTC)
    with runtime.transaction() as session:
        experiment = get_experiment_by_name(session, "similar-items")
        assert experiment is not None
        session.add(
            Generation(
                experiment_id=experiment.id,
                number=1,
                created_at=now,
                trigger="guardrail",
                replica=None,
                retired=[],
                added=[],
                details={
                    "score": None,
                    "best_arm_id": None,
                    "ranking": [],
                    "skipped": [],
                    "expert_outcomes": [],
                    "n_active_before": 4,
                    "n_active_after": 3,
                    "notes": [f"guardrail (generation 1): arm {arm} hurts views"],
                    "seed": None,
                    "settings": None,
                },
            )
        )
        add_audit(
            session,
            at=now,
            action="experiment.pause",
            experiment_id=experiment.id,
            actor="decisions",
            details={"reason": {"by": "circuit_breaker", "message": "the bandit group loses"}},
        )
        add_audit(
            session,
            at=now,
            action="experiment.winner",
            experiment_id=experiment.id,
            actor="decisions",
            details={"arm_id": arm},
        )
        notify(session, experiment.id, NotificationKind.WINNER, {"arm_id": arm})
    sign_in(client)
    markers = client.get("/experiments/similar-items/charts.json").json()["markers"]
    assert [(m["kind"], m["label"]) for m in markers] == [
        ("created", "created"),
        ("guardrail", f"guardrail (generation 1): arm {arm} hurts views"),
        ("breaker", "circuit breaker: the bandit group loses"),
        ("winner", f"winner declared: arm {arm}"),
    ]
    page = client.get("/experiments/similar-items")
    deliveries = re.search(r'<section id="deliveries".*?</section>', page.text, re.S)
    assert deliveries is not None
    assert ">winner<" in deliveries.group(0)
    assert f"#{webhook.json()['id']}" in deliveries.group(0)


def test_the_circuit_breakers_pause_and_a_winner_are_explained(client: TestClient) -> None:
    from api.repositories import get_experiment_by_name

    created = create(client)
    arm = created["arms"][1]["id"]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.transaction() as session:
        experiment = get_experiment_by_name(session, "similar-items")
        assert experiment is not None
        experiment.status = "paused"  # type: ignore[assignment]
        experiment.paused_reason = {"by": "circuit_breaker", "message": "views fell by 9%"}
        experiment.winner = {
            "arm_id": arm,
            "phase": 1,
            "p_best": 0.97,
            "since": "2026-01-02T03:04:05+00:00",
            "lift": {"effect": 0.081, "lower_anytime": 0.02, "upper_anytime": 0.14},
        }
    sign_in(client)
    page = client.get("/experiments/similar-items").text
    assert "Paused by the circuit breaker:</strong> views fell by 9%" in page
    assert f"Winner: arm {arm}</strong>" in page
    assert "+8.1%" in page and "2026-01-02 03:04:05 UTC" in page


def test_the_example_form_creates_the_readmes_example(signed_in: TestClient) -> None:
    page = signed_in.get("/experiments/new?example=true")
    assert page.status_code == 200
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    selected = re.findall(
        r'name="(parameters\[\d\]\.type)"[^>]*>.*?<option selected>(\w+)<', page.text
    )
    assert [kind for _, kind in selected] == ["float", "float", "float", "int"]
    fields.update(selected)
    fields["intent"] = "create"
    answer = signed_in.post("/experiments/new", data=fields, follow_redirects=False)
    assert answer.status_code == 303, answer.text[-2000:]
    created = inspect(signed_in)
    assert [p["name"] for p in created["parameters"]] == [
        "text_match",
        "distance",
        "price_diff",
        "region",
    ]
    assert created["reference_config"] == {
        "text_match": 1.0,
        "distance": 1.0,
        "price_diff": 1.0,
        "region": 1,
    }
    assert len(created["arms"]) == 4
    assert created["parameters"][3]["type"] == "int"


def test_the_reports_health_checks_show_on_both_pages(signed_in: TestClient) -> None:
    create(signed_in)
    tick(signed_in)  # a tick without reference traffic: the reference-traffic check warns
    report = signed_in.get("/v1/experiments/similar-items/report", headers=ADMIN).json()
    page = signed_in.get("/experiments/similar-items").text
    cards = re.findall(r'<li class="health-card health-card-(\w+)">\s*<h3>([^<]+)<', page)
    assert [status for status, _ in cards] == [check["status"] for check in report["health"]]
    assert [name.strip() for _, name in cards] == [
        "Sample ratio",
        "Reference traffic",
        "Ticks",
        "Exploration",
        "Time to decision",
    ]

    # The page is rendered a moment after the report: numbers that move with the clock
    # ("the last tick was 0 s ago") may differ by then, the words may not.
    def words(text: str) -> str:
        return re.sub(r"\d+(\.\d+)?", "N", text.replace("'", "&#39;"))

    for check in report["health"]:
        assert words(check["detail"]) in words(page)
        if check["status"] != "ok":
            assert words(check["action"]) in words(page)
    worst = {c["status"] for c in report["health"]}
    expected = "failed" if "failed" in worst else "warning" if "warning" in worst else "ok"
    listing = signed_in.get("/").text
    assert f'<span class="health {expected}">' in listing


def test_promote_add_a_metric_and_archive_from_the_page(client: TestClient) -> None:
    created = create(client)
    sign_in(client)
    name = "/experiments/similar-items"
    arm = created["arms"][2]["id"]

    def post(path: str, **data: str) -> Any:
        return client.post(
            f"{name}{path}", data={"csrf_token": page_token(client), **data}, follow_redirects=False
        )

    expected = client.post(
        "/v1/experiments/similar-items/metrics",
        json={"event": "view", "role": "guardrail", "direction": "increase"},
        headers=ADMIN,
    ).json()
    refused = post(
        "/metrics", form="add-metric", event="view", role="guardrail", direction="increase"
    )
    assert refused.status_code == expected_status(expected)
    assert expected["field"] == "max_loss"
    error = re.search(r'id="metric-max-loss-error">([^<]*)<', refused.text)
    assert error is not None and error.group(1).replace("&#39;", "'") == expected["detail"]
    added = post(
        "/metrics",
        form="add-metric",
        event="view",
        role="guardrail",
        direction="increase",
        max_loss="0.05",
    )
    assert added.headers["location"].endswith("done=metric-added")
    metrics = client.get("/v1/experiments/similar-items/metrics", headers=ADMIN).json()
    assert [(m["event"], m["role"], m["max_loss"]) for m in metrics] == [
        ("view", "guardrail", 0.05)
    ]
    promoted = post(f"/arms/{arm}/promote")
    assert promoted.headers["location"].endswith("done=promoted")
    experiment = inspect(client)
    assert experiment["phase"] == 2
    assert experiment["reference_config"] == created["arms"][2]["config"]
    page = client.get(name).text
    phases = re.search(r'<section id="phases".*?</section>', page, re.S)
    assert phases is not None and phases.group(0).count('<th scope="row">') == 2
    markers = client.get(f"{name}/charts.json").json()["markers"]
    assert ("phase", f"phase 2: arm {arm} promoted to reference") in [
        (m["kind"], m["label"]) for m in markers
    ]
    post("/status", action="stop")
    assert post("/status", action="archive").headers["location"].endswith("done=archive")
    assert inspect(client)["status"] == "archived"
    page = client.get(name).text
    assert "Add arm" not in page and "Promote" not in page  # nothing to steer any more


def expected_status(error: dict[str, Any]) -> int:
    return 422 if error["error"] == "ValidationError" else 409


# -- withheld intervals, the settings form, removing a metric -------------------------------------
def test_a_withheld_interval_says_why(client: TestClient) -> None:
    created = create(client, max_events_per_exposure={"*": 1000, "exposure": 1000})
    sign_in(client)
    drive(client, {created["reference_arm_id"]: 2, created["reference_arm_id"] + 1: 3})
    tick(client)
    report = client.get("/v1/experiments/similar-items/report", headers=ADMIN).json()
    withheld = [row for row in report["rows"] if row["lower"] is None and row["reason"]]
    assert withheld, report["rows"]  # two exposures: too few for the normal approximation
    page = client.get("/experiments/similar-items").text
    note = re.search(
        r'<div class="reasons muted small" id="f-reasons-contact">(.*?)</div>', page, re.S
    )
    assert note is not None, page
    for row in withheld:
        if row["metric"] == "contact":
            assert row["reason"] in note.group(1)
    expected_title = withheld[0]["reason"]
    assert (
        f'<span class="no-interval" title="{expected_title}" aria-describedby="f-reasons-contact">'
        in page
    )
    bandit = next(r for r in withheld if r["treatment"] == "bandit" and r["metric"] == "contact")
    assert f'id="headline-reason">No interval: {bandit["reason"]}.' in page
    listing = client.get("/").text
    assert f'title="{bandit["reason"]}" aria-describedby="reason-1"' in listing
    assert f'id="reason-1">No interval: {bandit["reason"]}.' in listing


def test_the_settings_form_patches_what_the_api_would(client: TestClient) -> None:
    create(client)
    sign_in(client)
    name = "/experiments/similar-items"
    page = client.get(name).text
    assert 'name="update_interval_s"' in page and 'name="decisions.winner_p_best"' in page
    before = inspect(client)
    fields = {
        "update_interval_s": "20",
        "attribution_window_s": str(before["attribution_window_s"]),  # unchanged: no change
        "nursery_exposures": "50",
        "nursery_share": "0.05",
        "decisions.guardrail_min_exposures": "300",
        "decisions.decision_max_loss": str(before["decisions"]["decision_max_loss"]),
        "decisions.winner_p_best": "0.9",
        "decisions.winner_min_lift": "0.01",
        "decisions.winner_sustain_s": "600",
        "reason": "tuned <b>from</b> the page",
    }
    answer = client.post(
        f"{name}/settings",
        data={"csrf_token": page_token(client), "form": "settings", **fields},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[-2000:]
    assert answer.headers["location"].endswith("done=settings")
    after = inspect(client)
    assert after["update_interval_s"] == 20
    assert after["nursery_exposures"] == 50 and after["nursery_share"] == 0.05
    assert after["attribution_window_s"] == before["attribution_window_s"]
    assert after["decisions"] == {
        **before["decisions"],
        "guardrail_min_exposures": 300,
        "circuit_breaker": False,  # the checkbox was not ticked
        "winner_p_best": 0.9,
        "winner_min_lift": 0.01,
        "winner_sustain_s": 600,
    }
    audit = client.get("/v1/audit", headers=ADMIN).json()
    update = next(entry for entry in audit if entry["action"] == "experiment.update")
    assert update["details"]["reason"] == "tuned <b>from</b> the page"
    changed = {f"decisions.{key}" for key, value in after["decisions"].items()}
    changed -= {
        f"decisions.{key}"
        for key, value in before["decisions"].items()
        if after["decisions"][key] == value
    }
    # what differs, and only that: the unchanged values sent are no change
    assert set(update["details"]["changes"]) == {
        "update_interval_s",
        "nursery_exposures",
        "nursery_share",
        *changed,
    }
    assert "decisions.decision_max_loss" not in changed
    shown = client.get(name).text
    assert (
        'id="f-update_interval_s" name="update_interval_s" inputmode="decimal" value="20"' in shown
    )
    assert "tuned &lt;b&gt;from&lt;/b&gt; the page" in shown  # in the audit log, escaped


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("update_interval_s", "0"),
        ("nursery_share", "abc"),
        ("decisions.winner_p_best", "2"),
    ],
)
def test_an_invalid_setting_shows_the_apis_error_next_to_its_field(
    client: TestClient, field: str, text: str
) -> None:
    create(client)
    sign_in(client)
    before = inspect(client)
    if field.startswith("decisions."):
        body: dict[str, Any] = {"decisions": {field.split(".")[1]: as_json(text)}}
    else:
        body = {field: as_json(text)}
    expected = client.patch("/v1/experiments/similar-items", json=body, headers=ADMIN).json()
    assert expected["field"] == field, expected
    answer = client.post(
        "/experiments/similar-items/settings",
        data={"csrf_token": page_token(client), "form": "settings", field: text},
    )
    assert answer.status_code == expected_status(expected)
    error_id = "f-" + field.replace(".", "-")
    error = re.search(rf'<p class="field-error" id="{error_id}-error">([^<]*)</p>', answer.text)
    assert error is not None, answer.text[-3000:]
    assert error.group(1).replace("&#39;", "'") == expected["detail"]
    assert f'aria-describedby="{error_id}-error"' in answer.text
    assert f'value="{text}"' in answer.text  # what was typed is shown again
    assert inspect(client) == before


def test_a_metric_is_removed_from_the_page(client: TestClient) -> None:
    create(client)
    name = "/experiments/similar-items"
    client.post(
        f"/v1{name}/metrics",
        json={"event": "view", "role": "secondary", "direction": "increase"},
        headers=ADMIN,
    )
    sign_in(client)
    page = client.get(name).text
    assert f'action="{name}/metrics/view/remove"' in page
    without_token = client.post(f"{name}/metrics/view/remove", data={"form": "remove-metric"})
    assert without_token.status_code == 403
    removed = client.post(
        f"{name}/metrics/view/remove",
        data={"csrf_token": page_token(client), "form": "remove-metric"},
        follow_redirects=False,
    )
    assert removed.headers["location"].endswith("done=metric-removed")
    metrics = client.get(f"/v1{name}/metrics", headers=ADMIN).json()
    assert [(m["event"], m["removed"]) for m in metrics] == [("view", True)]
    assert f'action="{name}/metrics/view/remove"' not in client.get(name).text
    audit = [entry["action"] for entry in client.get("/v1/audit", headers=ADMIN).json()]
    assert "metric.remove" in audit
    unknown = client.post(
        f"{name}/metrics/never_declared/remove",
        data={"csrf_token": page_token(client), "form": "remove-metric"},
    )
    expected = client.delete(f"/v1{name}/metrics/never_declared", headers=ADMIN)
    assert unknown.status_code == expected.status_code == 404
    assert expected.json()["detail"] in unknown.text.replace("&#39;", "'")
    odd = client.post(
        f"{name}/metrics/NOT-AN-EVENT/remove",
        data={"csrf_token": page_token(client), "form": "remove-metric"},
    )
    assert odd.status_code == 422 and "event: expected" in odd.text
