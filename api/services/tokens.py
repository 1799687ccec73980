"""Stored tokens: create (the secret is returned once), list (never the secret), revoke; the
active ones as each replica's :class:`api.tokens.TokenTable` holds them. Used by the admin
API (``/v1/tokens``) and the command line (``ranktune tokens``). Every change is audited."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from api import repositories as repo
from api import schemas
from api.enums import Role
from api.errors import NotFound
from api.models import ApiToken
from api.services.common import now_utc
from api.tokens import StoredToken, new_token, token_hash, token_prefix


def create_token(session: Session, name: str, role: Role) -> schemas.TokenCreated:
    """A new token of ``role``; the answer is the only place its secret appears."""
    secret = new_token()
    now = now_utc()
    token = repo.add_api_token(
        session,
        ApiToken(
            name=name,
            role=role,
            token_hash=token_hash(secret),
            prefix=token_prefix(secret),
            created_at=now,
            revoked_at=None,
            last_used_at=None,
        ),
    )
    repo.add_audit(
        session,
        at=now,
        action="token.create",
        experiment_id=None,
        details={"id": token.id, "name": name, "role": role.value, "prefix": token.prefix},
    )
    return schemas.TokenCreated(**token_out(token).model_dump(), token=secret)


def list_tokens(session: Session) -> list[schemas.TokenOut]:
    return [token_out(token) for token in repo.api_tokens(session)]


def revoke_token(session: Session, token_id: int) -> schemas.TokenOut:
    """Revoke a token (idempotent: revoking a revoked token changes nothing)."""
    token = repo.get_api_token(session, token_id)
    if token is None:
        raise NotFound(f"token {token_id} does not exist; expected the id of a token", "id")
    if token.revoked_at is None:
        token.revoked_at = now_utc()
        repo.add_audit(
            session,
            at=token.revoked_at,
            action="token.revoke",
            experiment_id=None,
            details={"id": token.id, "name": token.name, "role": token.role.value},
        )
    return token_out(token)


def token_out(token: ApiToken) -> schemas.TokenOut:
    return schemas.TokenOut.model_validate(token, from_attributes=True)


def active_tokens(session: Session) -> list[tuple[str, StoredToken]]:
    """The active tokens, as (hash, token) pairs for a replica's table."""
    return [
        (token.token_hash, StoredToken(token.id, token.name, token.role, token.prefix))
        for token in repo.active_api_tokens(session)
    ]


def note_use(session: Session, token_ids: Iterable[int], at: datetime | None = None) -> None:
    repo.touch_api_tokens(session, token_ids, at or now_utc())
