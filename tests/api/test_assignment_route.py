"""The assignment endpoint has one implementation, a FastAPI route (a DirectRoute): every
middleware sees it, the application's error handlers render its errors, and it answers
exactly as a plain FastAPI route with the same declared parameters would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import pytest
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import create_app
from api.error_handlers import install_error_handlers
from api.routes.direct import DirectRoute, query_values
from tests.api.helpers import create, expected_group
from tests.conftest import settings_for

PATH = "/v1/experiments/similar-items/assignment"


class Recorder:
    """A pure ASGI middleware that notes every request it sees and the status answered."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


@pytest.mark.parametrize("position", ["outermost", "innermost"])
def test_every_middleware_sees_the_assignment_and_its_errors(
    sqlite_url: str, position: str
) -> None:
    # The former fast path answered well-formed requests in front of every middleware the
    # app declares, so an inner middleware (metrics, CORS, limits) never saw them.
    seen: list[tuple[str, int]] = []
    app = create_app(settings_for(sqlite_url))
    recorder = Middleware(Recorder, seen=seen)  # type: ignore[arg-type]
    if position == "outermost":
        app.user_middleware.insert(0, recorder)
    else:
        app.user_middleware.append(recorder)
    with TestClient(app) as client:
        create(client)
        seen.clear()
        answers = [
            client.get(PATH, params={"unit": "u-1"}),
            client.get(PATH),
            client.get("/v1/experiments/nope/assignment", params={"unit": "u-1"}),
        ]
    assert [answer.status_code for answer in answers] == [200, 422, 404]
    assert seen == [
        (PATH, 200),
        (PATH, 422),
        ("/v1/experiments/nope/assignment", 404),
    ]


def test_its_errors_are_rendered_by_the_application_handlers(sqlite_url: str) -> None:
    app = create_app(settings_for(sqlite_url))
    rendered: list[str] = []

    async def custom(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        rendered.append(request.url.path)
        return JSONResponse({"custom": True}, status_code=422)

    app.add_exception_handler(RequestValidationError, custom)
    with TestClient(app) as client:
        create(client)
        answer = client.get(PATH, params={"unit": ""})
    assert answer.json() == {"custom": True}
    assert rendered == [PATH]


def test_the_unit_is_hashed_as_decoded(sqlite_client: TestClient) -> None:
    experiment = create(sqlite_client)
    salt = sqlite_client.app.state.runtime.serving.get("similar-items").salt  # type: ignore[attr-defined]
    for unit in ["a", "ünït", "x y", "100%", "+plus+", "a&b=c", "é" * 256]:
        answer = sqlite_client.get(f"{PATH}?unit={quote(unit, safe='')}").json()
        assert answer["group"] == expected_group(salt, experiment["reference_share"], unit), unit
        # A repeated parameter counts with its last value, as on any FastAPI route.
        again = sqlite_client.get(f"{PATH}?unit=ignored&unit={quote(unit, safe='')}").json()
        assert again["group"] == answer["group"], unit


# -- DirectRoute against a plain FastAPI route -----------------------------------------------
async def _answer(
    request: Request,
    name: Annotated[str, Path(max_length=8)],
    unit: Annotated[str, Query(min_length=1, max_length=4, description="the unit")],
) -> Response:
    return Response(f"{name}/{unit}", media_type="text/plain")


@pytest.fixture(scope="module")
def pair() -> Iterator[TestClient]:
    """The same endpoint twice, as a plain APIRoute and as a DirectRoute, with the
    service's error handlers."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_api_route("/plain/{name}", _answer, methods=["GET"])
    app.router.add_api_route(
        "/direct/{name}", _answer, methods=["GET"], route_class_override=DirectRoute
    )
    with TestClient(app) as client:
        yield client


QUERIES = [
    "/n?unit=u",
    "/n",
    "/n?unit=",
    "/n?unit",
    "/n?unit=12345",
    "/n?unit=%C3%A9%C3%A9%C3%A9%C3%A9",
    "/n?unit=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9",
    "/n?unit=a&unit=",
    "/n?unit=&unit=a",
    "/n?Unit=a",
    "/n?unit=a+b",
    "/n?unit=%FF",
    "/toolongname?unit=u",
    "/toolongname",
    "/n%2Fm?unit=u",
    "/n?&unit=ab&&",
    "/n?unit=a=b",
    "/n?=x&unit=b",
    "/n?unit=a;unit=b",
    "/n?other=1&unit=ok",
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_a_direct_route_answers_as_the_plain_route(
    pair: TestClient, query: str, method: str
) -> None:
    plain = pair.request(method, "/plain" + query)
    direct = pair.request(method, "/direct" + query)
    assert (direct.status_code, direct.content) == (plain.status_code, plain.content)
    assert direct.headers == plain.headers


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab=&%+;2Fé ", max_size=24))
def test_query_values_read_a_query_string_as_starlette_does(query: str) -> None:
    raw = query.encode("utf-8")
    assert dict(query_values(raw)) == dict(QueryParams(raw))


def test_a_direct_route_is_described_as_the_plain_route(pair: TestClient) -> None:
    paths = pair.get("/openapi.json").json()["paths"]
    plain, direct = paths["/plain/{name}"]["get"], paths["/direct/{name}"]["get"]
    for operation in (plain, direct):
        del operation["operationId"]
    assert direct == plain
    assert [parameter["name"] for parameter in direct["parameters"]] == ["name", "unit"]


def _dependency() -> int:
    return 1


async def _with_dependency(request: Request, x: Annotated[int, Depends(_dependency)]) -> Response:
    return Response()


async def _with_body(request: Request, x: Annotated[dict[str, Any], Body()]) -> Response:
    return Response()


async def _with_header(request: Request, x: Annotated[str, Header()]) -> Response:
    return Response()


async def _with_default(request: Request, x: Annotated[str, Query()] = "a") -> Response:
    return Response()


async def _with_list(request: Request, x: Annotated[list[str], Query()]) -> Response:
    return Response()


async def _with_alias(request: Request, x: Annotated[str, Query(alias="y")]) -> Response:
    return Response()


async def _without_request(x: Annotated[str, Query()]) -> Response:
    return Response()


def _synchronous(request: Request, x: Annotated[str, Query()]) -> Response:
    return Response()


@pytest.mark.parametrize(
    "endpoint",
    [
        _with_dependency,
        _with_body,
        _with_header,
        _with_default,
        _with_list,
        _with_alias,
        _without_request,
        _synchronous,
    ],
)
def test_a_direct_route_refuses_an_endpoint_that_needs_what_it_skips(endpoint: Any) -> None:
    app = FastAPI()
    with pytest.raises(TypeError, match="DirectRoute /x: unsupported endpoint"):
        app.router.add_api_route("/x", endpoint, methods=["GET"], route_class_override=DirectRoute)
