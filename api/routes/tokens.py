"""Admin API (admin tokens only): stored tokens, created, listed and revoked (docs/security.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api import schemas
from api.routes.admin import runtime_of
from api.security import AdminOnly, AdminOnlyRoute
from api.services import tokens as service

router = APIRouter(
    prefix="/v1",
    dependencies=[AdminOnly],
    tags=["tokens"],
    route_class=AdminOnlyRoute,
)
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the token's id")]


@router.post("/tokens", status_code=201, response_model=schemas.TokenCreated)
def create_token(request: Request, body: schemas.TokenCreate) -> schemas.TokenCreated:
    """Create a token: admin, viewer or client. The answer is the only one that shows the
    token; only its SHA-256 is stored. Audited."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        created = service.create_token(session, body.name, body.role)
    runtime.refresh_tokens()  # usable on this replica at once, on the others within a refresh
    return created


@router.get("/tokens", response_model=list[schemas.TokenOut])
def list_tokens(request: Request) -> list[schemas.TokenOut]:
    """Every stored token, revoked ones too, without secrets (the prefix recognises one)."""
    with runtime_of(request).read_transaction() as session:
        return service.list_tokens(session)


@router.delete("/tokens/{token_id}", response_model=schemas.TokenOut)
def revoke_token(request: Request, token_id: TokenId) -> schemas.TokenOut:
    """Revoke a token (idempotent). It stops working on this replica at once and on every
    other within RANKTUNE_SNAPSHOT_REFRESH_S; dashboard sessions signed in with it end.
    Audited."""
    runtime = runtime_of(request)
    with runtime.transaction() as session:
        revoked = service.revoke_token(session, token_id)
    runtime.refresh_tokens()
    return revoked
