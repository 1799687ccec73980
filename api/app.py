"""The FastAPI application: routes, error rendering, body limits, admin caching, the runtime."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_handlers import install_error_handlers
from api.errors import error_body
from api.routes import admin, client
from api.routes.client import assignment_json
from api.runtime import Runtime
from api.settings import Settings

__all__ = ["create_app"]


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


class AdminNoStore:
    """``Cache-Control: no-store`` on every answer to an admin path, errors included, so that
    no browser or proxy keeps a copy of admin data. Admin paths are the ``/v1`` paths that
    no client route serves; client answers (and the probe, and the docs) are left alone."""

    _header = (b"cache-control", b"no-store")

    def __init__(self, app: ASGIApp, client_routes: Sequence[APIRoute]) -> None:
        self.app = app
        self.client_paths = [route.path_regex for route in client_routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self._header]}
            await send(message)

        await self.app(scope, receive, send_no_store)

    def _is_admin(self, path: str) -> bool:
        return path.startswith("/v1/") and not any(
            pattern.match(path) for pattern in self.client_paths
        )


class AssignmentFastPath:
    """Answer well-formed assignment requests before the framework's routing.

    ``GET /v1/experiments/{name}/assignment?unit=U`` is the request every page view makes.
    When the experiment is in this replica's snapshots and the query holds exactly one
    ``unit`` of 1 to 256 characters, the answer is written here, the same bytes as the
    route's (``api.routes.client.assignment_json``); anything else — unknown experiment,
    missing or invalid ``unit``, other methods — goes on to the route, which answers it and
    its errors exactly as before. Starlette's own query parsing is mirrored (latin-1, then
    percent-decoding as UTF-8) so a unit hashes to the same group on both paths.
    """

    _prefix = "/v1/experiments/"
    _suffix = "/assignment"

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if (
            scope["method"] != "GET"
            or not path.startswith(self._prefix)
            or not path.endswith(self._suffix)
        ):
            return None
        name = path[len(self._prefix) : -len(self._suffix)]
        runtime: Runtime | None = getattr(self.fastapi_app.state, "runtime", None)
        snapshot = runtime.serving.get(name) if runtime is not None else None
        if runtime is None or snapshot is None:
            return None
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        units = [value for key, value in pairs if key == "unit"]
        if len(units) != 1 or not 1 <= len(units[0]) <= 256:
            return None
        return assignment_json(runtime, snapshot, units[0])


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the application. The runtime (database, writer, scheduler) starts with the app."""
    settings = settings or Settings()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime or Runtime(settings)
        app.state.runtime.start()
        try:
            yield
        finally:
            app.state.runtime.stop()

    app = FastAPI(
        title="ranktune",
        version="0.1.0",
        description="Multi-armed bandit experiments over ranker configurations.",
        lifespan=lifespan,
    )
    app.state.admin_token = token or secrets.token_urlsafe(24)
    install_error_handlers(app)
    app.include_router(client.router)
    app.include_router(admin.router)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        path_limits={"/v1/events": min(settings.max_events_body_bytes, settings.max_body_bytes)},
    )
    client_routes = [route for route in client.router.routes if isinstance(route, APIRoute)]
    app.add_middleware(AdminNoStore, client_routes=client_routes)
    app.add_middleware(AssignmentFastPath, fastapi_app=app)
    return app
