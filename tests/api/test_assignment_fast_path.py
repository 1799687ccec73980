"""The assignment fast path answers exactly as the route would, and leaves the rest to it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.app import AssignmentFastPath
from tests.api.helpers import create

PATH = "/v1/experiments/similar-items/assignment"


def _fast_path(client: TestClient) -> AssignmentFastPath:
    layer = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, AssignmentFastPath):
        layer = layer.app
    return layer


def _scope(path: str, query: bytes, method: str = "GET") -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "query_string": query}


def test_the_fast_path_answers_well_formed_requests_and_declines_the_rest(
    sqlite_client: TestClient,
) -> None:
    experiment = create(sqlite_client)
    fast = _fast_path(sqlite_client)
    body = fast._answer(_scope(PATH, b"unit=%C3%BCn%C3%AFt+42%2F%3F%26%3D"))
    assert body is not None
    answer = json.loads(body)
    assert set(answer) == {"experiment", "group", "arm_id", "config", "ticket", "active"}
    assert answer["arm_id"] in {arm["id"] for arm in experiment["arms"]}
    for declined in [
        _scope(PATH, b""),
        _scope(PATH, b"unit="),
        _scope(PATH, b"unit=" + b"u" * 257),
        _scope(PATH, b"unit=a&unit=b"),
        _scope(PATH, b"unit=a", method="POST"),
        _scope("/v1/experiments/nope/assignment", b"unit=a"),
        _scope("/v1/experiments/similar-items/snapshot", b"unit=a"),
    ]:
        assert fast._answer(declined) is None, declined


def test_group_is_the_same_on_the_fast_path_and_the_route(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    for unit in ["a", "ünït", "x y", "100%", "+plus+", "é" * 256]:
        fast = sqlite_client.get(PATH, params={"unit": unit}).json()
        # A second, irrelevant parameter is fine for both; a repeated unit goes to the route.
        routed = sqlite_client.get(f"{PATH}?unit=ignored&unit={_quote(unit)}").json()
        assert fast["group"] == routed["group"], unit


def test_everything_else_goes_to_the_route(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    missing = sqlite_client.get(PATH)
    assert missing.status_code == 422 and missing.json()["field"] == "unit"
    too_long = sqlite_client.get(PATH, params={"unit": "u" * 257})
    assert too_long.status_code == 422 and too_long.json()["field"] == "unit"
    empty = sqlite_client.get(PATH, params={"unit": ""})
    assert empty.status_code == 422
    unknown = sqlite_client.get("/v1/experiments/nope/assignment", params={"unit": "u"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "NotFound"
    post = sqlite_client.post(PATH, params={"unit": "u"})
    assert post.status_code == 405


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
