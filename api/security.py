"""Authentication and roles: bearer tokens checked before the body, in constant time.

The admin API takes the bootstrap admin token (RANKTUNE_ADMIN_TOKEN) or a stored token
(``api.tokens``) in ``Authorization: Bearer <token>``. :class:`AdminRoute` lets viewers
call its GET routes and admins everything; :class:`AdminOnlyRoute` (webhooks, tokens) is
for admins only. Either checks the token before the framework reads or parses the request
body, so a caller without a valid token gets 401/403 whatever it sent, never a 422 that
describes the body the call expects. ``require_admin`` / ``require_admin_only`` stay the
routes' dependencies: they document the bearer scheme in OpenAPI (and check again, should a
route ever lack the route class).

The client routes take a client (or admin) token the same way when
RANKTUNE_CLIENT_KEY_REQUIRED is on (:func:`check_client_key`).

Authenticating a request also sets :data:`api.tokens.acting_token`, which the audit log
records.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from api.enums import Role
from api.errors import Forbidden, Unauthorized
from api.tokens import Identity, StoredTokenVerifier, acting_token

bearer = HTTPBearer(
    auto_error=False,
    description="the admin token (RANKTUNE_ADMIN_TOKEN) or a stored admin token; a viewer "
    "token for GET routes",
)
READ_METHODS = frozenset(("GET", "HEAD"))


def verifier_of(request: Request) -> StoredTokenVerifier:
    verifier: StoredTokenVerifier = request.app.state.token_verifier
    return verifier


def _identify(request: Request, expected: str) -> Identity:
    """The identity of the request's bearer token: 401 without one, 403 for an unknown
    (or revoked) one."""
    # Parsed as HTTPBearer parses it: the scheme, one space, the token.
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not token or scheme.lower() != "bearer":
        raise Unauthorized(
            f"Authorization: expected the header 'Bearer <{expected}>'", field="Authorization"
        )
    identity = verifier_of(request).identify(token)
    if identity is None:
        raise Forbidden(
            f"Authorization: the token is wrong or revoked; expected {expected}",
            field="Authorization",
        )
    return identity


def authenticate(request: Request, *, viewers_read: bool = True) -> Identity:
    """The identity of an admin API request, or 401/403: viewers may read (GET) where
    ``viewers_read``; everything else needs an admin token."""
    identity = _identify(request, "admin token")
    role = identity.principal.role
    if role != Role.ADMIN:
        reading = viewers_read and request.method in READ_METHODS
        if not (role == Role.VIEWER and reading):
            raise Forbidden(_refusal(role, viewers_read), field="Authorization")
    acting_token.set(identity.label)
    return identity


def _refusal(role: Role, viewers_read: bool) -> str:
    if role == Role.CLIENT:
        return "Authorization: a client token only calls the client routes; expected an admin token"
    if viewers_read:
        return "Authorization: a viewer token only reads (GET); expected an admin token"
    return "Authorization: this route is for admins only; expected an admin token"


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    authenticate(request)


def require_admin_only(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    authenticate(request, viewers_read=False)


AdminOrViewerReads = Depends(require_admin)
AdminOnly = Depends(require_admin_only)


class AdminRoute(APIRoute):
    """A route that authenticates the request before its body is read or parsed: admins
    always, viewers for GET."""

    viewers_read = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        viewers_read = self.viewers_read

        async def authenticated(request: Request) -> Response:
            authenticate(request, viewers_read=viewers_read)
            return await handler(request)

        return authenticated


class AdminOnlyRoute(AdminRoute):
    """A route for admins only, GET included (webhooks hold secrets and URLs; tokens)."""

    viewers_read = False


def check_client_key(request: Request) -> None:
    """With RANKTUNE_CLIENT_KEY_REQUIRED: 401 without ``Authorization: Bearer <client
    key>``, 403 for a wrong, revoked or viewer token. A client or admin token passes.

    On the assignment path, so it reads the raw header (ASGI names are lower-case bytes)
    instead of building the request's header map, and hashes the bytes as they came: a
    header scan, a SHA-256 and a dict lookup (docs/benchmarks.md has its cost)."""
    raw = None
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            raw = value
            break
    scheme, _, token = (raw or b"").partition(b" ")
    if not token or scheme.lower() != b"bearer":
        raise Unauthorized(
            "Authorization: this server requires a client key; expected the header "
            "'Bearer <client token>'",
            field="Authorization",
        )
    identity = verifier_of(request).identify(token.strip())
    if identity is None:
        raise Forbidden(
            "Authorization: the client key is wrong or revoked; expected a client token",
            field="Authorization",
        )
    if identity.principal.role not in _CLIENT_ROLES:
        raise Forbidden(
            "Authorization: a viewer token cannot call the client routes; expected a client token",
            field="Authorization",
        )


_CLIENT_ROLES = frozenset((Role.CLIENT, Role.ADMIN))
