"""Admin authentication: a bearer token compared in constant time, checked before the body.

:class:`AdminRoute` checks the token before the framework reads or parses the request body,
so a caller without the token gets 401/403 whatever it sent, never a 422 that describes the
body the call expects. ``require_admin`` stays the routes' dependency: it is what documents
the bearer scheme in OpenAPI (and it checks again, should a route ever lack the route class).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from api.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="the admin token (RANKTUNE_ADMIN_TOKEN)")


def authenticate(request: Request) -> None:
    """Raise 401 without a bearer token, 403 with a wrong one."""
    # Parsed as HTTPBearer parses it: the scheme, one space, the token.
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not token or scheme.lower() != "bearer":
        raise Unauthorized(
            "Authorization: expected the header 'Bearer <admin token>'", field="Authorization"
        )
    expected: str = request.app.state.admin_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("Authorization: the admin token is wrong", field="Authorization")


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    authenticate(request)


AdminOnly = Depends(require_admin)


class AdminRoute(APIRoute):
    """A route that authenticates the request before its body is read or parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            authenticate(request)
            return await handler(request)

        return authenticated
