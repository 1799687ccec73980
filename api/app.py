"""The FastAPI application: routes, error rendering, body limits, admin caching, the runtime."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db import migration_heads
from api.error_handlers import install_error_handlers
from api.errors import error_body
from api.observability import RequestObservation, registry_for
from api.openapi import document_errors
from api.readiness import Readiness
from api.routes import admin, client, dashboard, notifications, ops, tokens
from api.runtime import Runtime
from api.services.dashboard import TickBlocks
from api.settings import Settings
from api.telemetry import Telemetry
from api.tokens import StoredTokenVerifier, TokenTable
from api.web_session import SessionSigner

__all__ = ["create_app"]

STATIC_DIRECTORY = Path(__file__).parent / "static"
SWAGGER_UI = "/static/vendor/swagger-ui-dist-5.35.0"


class BodySizeLimit:
    """Answer 413 to any request body larger than ``max_bytes`` (or the path's own limit in
    ``path_limits``) before the app parses it."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.default_max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > max_bytes
            except ValueError:
                await _reply(send, 400, "BadRequest", "Content-Length: expected an integer")
                return
            if too_large:
                await _too_large(send, max_bytes)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await _too_large(send, max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, max_bytes: int) -> None:
    await _reply(send, 413, "PayloadTooLarge", f"body: expected at most {max_bytes} bytes")


async def _reply(send: Send, status: int, kind: str, detail: str) -> None:
    payload = json.dumps(error_body(kind, detail, "body")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def admin_paths(client_routes: Sequence[APIRoute]) -> Callable[[Scope], bool]:
    """Whether a request is for an admin path: a ``/v1`` path that no client route serves.
    Their answers, errors included, get ``Cache-Control: no-store`` (``RequestObservation``
    adds it), so that no browser or proxy keeps a copy of admin data; client answers (and
    the probes, and the docs) are left alone.

    Asked when the answer starts: a request the router routed names its route in the scope
    (one set lookup: an assignment pays nothing more); only the others (404, 405, answered
    before routing) are matched against the client routes' paths."""
    routes = frozenset(map(id, client_routes))  # routes compare by value: not hashable
    client_paths = [route.path_regex for route in client_routes]

    def is_admin(scope: Scope) -> bool:
        path: str = scope["path"]
        if not path.startswith("/v1/"):
            return False
        route = scope.get("route")
        if route is not None:
            return id(route) not in routes
        return not any(pattern.match(path) for pattern in client_paths)

    return is_admin


def opentelemetry(enabled: bool) -> TelemetryConfig:
    """FastAPI's native OpenTelemetry settings: all on (with the global providers), or all
    off (RANKTUNE_OPENTELEMETRY). FastAPI checks for configured providers on every request
    unless all three are off; the check cost the in-process assignment 11-15%
    (docs/benchmarks.md)."""
    return {"tracing": enabled, "metrics": enabled, "logs": enabled}


class RanktuneAPI(FastAPI):
    """FastAPI whose OpenAPI document lists each operation's real error codes
    (api/openapi.py)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document_errors(super().openapi())
        return self.openapi_schema


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the application. The runtime (database, writer, scheduler) starts with the app."""
    settings = settings or Settings()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    # HTTP metrics of this app; the runtime's other counters share it (api.observability).
    telemetry = runtime.telemetry if runtime is not None else Telemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime or Runtime(settings, telemetry=telemetry)
        # The verifier reads the runtime's copy of the stored tokens, which its snapshot
        # refresh keeps current.
        app.state.token_verifier.table = app.state.runtime.tokens
        app.state.runtime.start()
        app.state.readiness = Readiness(app.state.runtime, migration_heads)
        try:
            yield
        finally:
            app.state.runtime.stop()

    app = RanktuneAPI(
        title="ranktune",
        version="0.1.0",
        description="Multi-armed bandit experiments over ranker configurations.",
        lifespan=lifespan,
        # The docs are served from vendored files below (no CDN); ReDoc has none: off.
        docs_url=None,
        redoc_url=None,
        telemetry=opentelemetry(settings.opentelemetry),
    )
    app.state.admin_token = token or secrets.token_urlsafe(24)
    # /metrics (api.routes.ops): a registry of this app's own, so that apps in one process
    # share no metrics.
    app.state.metrics_registry = registry_for(
        telemetry, lambda: getattr(app.state, "runtime", None)
    )
    app.state.metrics_token = (
        settings.metrics_token.get_secret_value() if settings.metrics_token else None
    )
    # Which tokens exist (the admin token and the stored ones, api.tokens), for the API and
    # the dashboard's sign-in, and the key that signs the dashboard's session cookies.
    app.state.token_verifier = StoredTokenVerifier(app.state.admin_token, TokenTable())
    app.state.session_signer = SessionSigner.for_admin_token(app.state.admin_token)
    # The charts' sums of old history, computed once per database (api.services.dashboard).
    app.state.tick_blocks = TickBlocks()
    install_error_handlers(app)
    # The client routes join the application's own routes, first, rather than being
    # included: FastAPI matches an included router's routes twice per request, and the
    # router tries routes in order (its docs routes come first). Routing the assignment
    # took 12 us, now 3 (in-process, of about 35; docs/benchmarks.md). Each route already
    # carries its path, tags and responses (APIRouter.add_api_route applies the router's)
    # and no other path overlaps them, so the OpenAPI and every answer are unchanged; what
    # is lost is app.dependency_overrides, which no client route needs (none has one).
    app.router.routes[0:0] = client.router.routes
    app.include_router(admin.router)
    app.include_router(notifications.router)
    app.include_router(ops.router)
    app.include_router(tokens.router)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The interactive API docs, from the vendored Swagger UI (works offline)."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="ranktune API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        )

    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIRECTORY), name="static")

    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        path_limits={"/v1/events": min(settings.max_events_body_bytes, settings.max_body_bytes)},
    )
    client_routes = [route for route in client.router.routes if isinstance(route, APIRoute)]
    if settings.cors_origin_list:
        # Inside only RequestObservation, so that a preflight is answered before anything
        # else looks at it and every answer (errors included) carries the CORS headers. No
        # credentials: tokens travel in the Authorization header, and the dashboard's
        # cookie stays same-site.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )
    # Outermost: request ids and HTTP metrics see every answer, the middlewares' own too.
    # It also marks the admin paths' answers no-store (one layer for both: docs/benchmarks.md).
    app.add_middleware(
        RequestObservation,
        telemetry=telemetry,
        routes=lambda: app.routes,
        no_store=admin_paths(client_routes),
    )
    return app
