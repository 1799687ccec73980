"""The service's exceptions and their one HTTP rendering.

    ApiError                       base; rendered as {"error": kind, "detail": ..., "field": ...}
    ├── BadRequest          400
    ├── Unauthorized        401    no or malformed bearer token
    ├── Forbidden           403    wrong token
    ├── NotFound            404
    ├── Conflict            409    state does not allow it (duplicate arm, retired reference...)
    │                              or a concurrent request won a race (a database IntegrityError)
    ├── PayloadTooLarge     413
    ├── UnsupportedMediaType 415   a body that is not declared as JSON
    ├── InvalidInput        422    a field is invalid; ``field`` names it
    └── ServiceUnavailable  503    busy with heavy reads already; ``Retry-After`` says when

Every 4xx names the field (when there is one) and what was expected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from arms import ConfigurationError

logger = logging.getLogger("ranktune.api")


class ApiError(Exception):
    status_code = 400
    kind = "BadRequest"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status_code, kind = 401, "Unauthorized"


class Forbidden(ApiError):
    status_code, kind = 403, "Forbidden"


class NotFound(ApiError):
    status_code, kind = 404, "NotFound"


class Conflict(ApiError):
    status_code, kind = 409, "Conflict"


class PayloadTooLarge(ApiError):
    status_code, kind = 413, "PayloadTooLarge"


class UnsupportedMediaType(ApiError):
    status_code, kind = 415, "UnsupportedMediaType"


class InvalidInput(ApiError):
    status_code, kind = 422, "ValidationError"


class ServiceUnavailable(ApiError):
    status_code, kind = 503, "ServiceUnavailable"

    def __init__(self, detail: str, field: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(detail, field)
        self.retry_after_s = retry_after_s


def validation_failure(error: ValidationError, prefix: tuple[str, ...] = ()) -> ApiError:
    """A pydantic ValidationError as the one 4xx it means: 413 for a list over its
    ``max_length`` (a batch limit), else 422 naming the first invalid field."""
    errors = error.errors(include_url=False, include_input=False, include_context=True)
    first = errors[0]
    if first.get("type") == "too_long":
        field = location(first["loc"])
        limit = (first.get("ctx") or {}).get("max_length")
        return PayloadTooLarge(f"{field}: at most {limit} items per request", field=field)
    detail, field = describe_errors(errors, prefix)
    return InvalidInput(detail, field=field)


def describe_errors(
    errors: Sequence[Mapping[str, Any]], prefix: tuple[str, ...] = ()
) -> tuple[str, str]:
    """(detail, field) of a list of pydantic errors: the first one, and how many more."""
    first: Mapping[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    # A JSON syntax error's location is a character offset, not a field: it is the body.
    invalid_json = first.get("type") == "json_invalid"
    field = "body" if invalid_json else location((*prefix, *first.get("loc", ())))
    detail = f"{field}: {_validation_message(first)}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail, field


def error_body(kind: str, detail: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": kind, "detail": detail}
    if field is not None:
        body["field"] = field
    return body


def error_response(
    status_code: int,
    kind: str,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error shape; ``headers`` are the ones the answer must carry (``Allow`` of a 405)."""
    extra = dict(headers or {})
    if status_code == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_body(kind, detail, field), status_code=status_code, headers=extra or None
    )


def location(loc: tuple[Any, ...] | list[Any]) -> str:
    """Render a pydantic error location as ``events[3].count`` (without body/query prefix)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part and part[0] in "[(":
            continue  # pydantic's union-branch labels such as "function-after[...]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _validation_message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "missing":
        return "required field is missing"
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error")
        return "expected a JSON document" + (f" ({reason})" if reason else "")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message if message[:2].isupper() else message[:1].lower() + message[1:]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. The router's own 405 names only the
    first route that matched the path (``/v1/experiments`` has a GET and a POST route)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        response = error_response(error.status_code, error.kind, error.detail, error.field)
        if isinstance(error, ServiceUnavailable):
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response

    @app.exception_handler(ConfigurationError)
    async def _configuration_error(_request: Request, error: ConfigurationError) -> JSONResponse:
        return error_response(422, "ValidationError", str(error), error.field)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        detail, field = describe_errors(list(error.errors()))
        return error_response(422, "ValidationError", detail, field)

    @app.exception_handler(IntegrityError)
    async def _concurrent_change(request: Request, error: IntegrityError) -> JSONResponse:
        # Every check a use case makes runs under the experiment's lock, so a constraint the
        # database still refuses means another transaction committed the same key first:
        # the request lost a race and may be retried, which is a conflict, not a crash.
        logger.warning("concurrent change refused by the database: %s", error.orig)
        name = request.path_params.get("name")
        field = "name" if name is not None else "request"
        subject = f"experiment {name!r}" if name is not None else "the same data"
        return error_response(
            409,
            Conflict.kind,
            f"{field}: a concurrent request changed {subject} first; expected a retry",
            field,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        kind = kinds.get(error.status_code, "HTTPError")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return error_response(error.status_code, kind, str(error.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error", exc_info=error)
        # Rendered outside the app's middleware, so whatever the path, never cached.
        return error_response(
            500,
            "InternalError",
            "unexpected server error; it was logged",
            headers={"Cache-Control": "no-store"},
        )
