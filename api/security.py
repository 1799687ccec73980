"""Admin authentication: a bearer token compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="the admin token (RANKTUNE_ADMIN_TOKEN)")


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "Authorization: expected the header 'Bearer <admin token>'", field="Authorization"
        )
    expected: str = request.app.state.admin_token
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Forbidden("Authorization: the admin token is wrong", field="Authorization")


AdminOnly = Depends(require_admin)
