"""The one HTTP rendering of every failure: ``api.errors`` exceptions, the framework's
validation and routing errors, database races and anything unexpected, all as
``{"error": kind, "detail": ..., "field": ...}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.errors import ApiError, Conflict, ServiceUnavailable, describe_errors, error_body
from arms import ConfigurationError

logger = logging.getLogger("ranktune.api")


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
