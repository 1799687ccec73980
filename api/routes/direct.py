"""A route for the hot path: FastAPI's routing, middleware, OpenAPI and error rendering,
without its per-request machinery.

:class:`DirectRoute` is an ``APIRoute``: declared on a router, matched by the router, listed
in the OpenAPI from its signature, ``response_model`` and ``responses`` as usual. Only the
handling of a matched request differs. The endpoint is called directly: its path and query
parameters are checked by their own declared fields (FastAPI's pydantic validators, so the
same limits, error locations and messages), and the ``Response`` it returns is sent as it
is. Skipped: dependency solving, the request's exit stacks, response-model validation and
serialisation, which together cost more than the assignment itself (docs/benchmarks.md).
Errors are raised, so the application's exception handlers (api/error_handlers.py) render them;
the request and its answer pass through every middleware of the application.

Only for endpoints that need nothing of what is skipped: a coroutine taking the ``Request``
and single-valued path and query parameters, each required or optional with the default
None (``str | None = None``), returning a ready ``Response``. Anything else (dependencies, a
body, headers, cookies, other defaults, lists, aliases) is refused
when the route is built, so that a later change to such an endpoint cannot be silently
ignored. Dependencies given to ``include_router`` would be ignored too: api/app.py adds the
client routes to the application's router itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from fastapi._compat import ModelField
from fastapi.exceptions import RequestValidationError
from fastapi.params import Param
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["DirectRoute", "query_values"]

_SCALARS = (str, int, float)
_OPTIONAL_SCALARS = (str | None, int | None, float | None)


class _Parameter:
    """One declared path or query parameter: where it is read and how it is checked."""

    __slots__ = ("field", "key", "loc", "missing", "required")

    def __init__(self, field: ModelField) -> None:
        assert isinstance(field.field_info, Param)
        self.field = field
        self.key = field.alias
        self.loc = (field.field_info.in_.value, field.alias)
        self.required = field.field_info.is_required()
        # FastAPI's error for an absent required parameter (fastapi.dependencies.utils).
        self.missing = {"type": "missing", "loc": self.loc, "msg": "Field required", "input": None}

    def check(self, source: Mapping[str, Any], values: dict[str, Any], errors: list[Any]) -> None:
        raw = source.get(self.key)
        if raw is None:
            if self.required:
                errors.append(self.missing)
            else:
                values[self.field.name] = None
            return
        value, found = self.field.validate(raw, values, loc=self.loc)
        if found:
            errors.extend(found)
        else:
            values[self.field.name] = value


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        declared = [*dependant.path_params, *dependant.query_params]
        unsupported = [
            what
            for what, present in (
                ("dependencies", bool(dependant.dependencies)),
                ("a body", bool(dependant.body_params)),
                ("header parameters", bool(dependant.header_params)),
                ("cookie parameters", bool(dependant.cookie_params)),
                ("a synchronous function", not inspect.iscoroutinefunction(endpoint)),
                ("no Request parameter", dependant.request_param_name is None),
                (
                    "defaults other than None, aliased or list parameters",
                    not all(map(_is_plain, declared)),
                ),
            )
            if present
        ]
        if unsupported:
            raise TypeError(f"DirectRoute {path}: unsupported endpoint ({', '.join(unsupported)})")
        self._endpoint: Callable[..., Awaitable[Response]] = endpoint
        self._request_name = str(dependant.request_param_name)
        self._path_parameters = [_Parameter(field) for field in dependant.path_params]
        self._query_parameters = [_Parameter(field) for field in dependant.query_params]
        self._methods = frozenset(self.methods or ())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self._respond

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self._methods:
            await super().handle(scope, receive, send)  # the router's 405, with Allow
            return
        response = await self._respond(Request(scope, receive, send))
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for parameter in self._path_parameters:
            parameter.check(request.path_params, values, errors)
        if self._query_parameters:
            query = query_values(request.scope["query_string"])
            for parameter in self._query_parameters:
                parameter.check(query, values, errors)
        if errors:
            raise RequestValidationError(errors)
        values[self._request_name] = request
        return await self._endpoint(**values)


def query_values(query_string: bytes) -> Mapping[str, str]:
    """A query string's parameters as Starlette reads them for any route (``parse_qsl`` with
    blank values kept; a repeated parameter has its last value).

    A query string with nothing to decode (no ``%`` escape, no ``+`` for a space), which is
    what clients send for a unit id, is split directly: the same result without Starlette's
    multi-dict and the standard library's decoding, which cost a tenth of an in-process
    assignment (docs/benchmarks.md). Anything else is left to Starlette.
    """
    if b"%" in query_string or b"+" in query_string:
        return QueryParams(query_string)
    values: dict[str, str] = {}
    for piece in query_string.decode("latin-1").split("&"):
        if piece:
            name, _, value = piece.partition("=")
            values[name] = value
    return values


def _is_plain(field: ModelField) -> bool:
    info = field.field_info
    if not isinstance(info, Param) or info.validation_alias is not None:
        return False
    required = info.is_required() and info.annotation in _SCALARS
    optional = info.default is None and info.annotation in _OPTIONAL_SCALARS
    return field.alias == field.name and (required or optional)
