"""Tokens and roles: the bootstrap admin token and the tokens stored (hashed) in the database.

A stored token is ``rt_`` and 43 base64url characters of 32 random bytes. Only its SHA-256
is kept (``api_tokens.token_hash``): a fast hash is right for a secret of 256 random bits,
which no amount of guessing finds (a slow password hash protects *weak* secrets; it would
only slow every request). A presented token is hashed and looked up by its hash in this
replica's copy of the table, so no stored secret is compared byte by byte; the one secret
that is compared, the bootstrap admin token (RANKTUNE_ADMIN_TOKEN), is compared in constant
time (``hmac.compare_digest``).

Each replica keeps the active tokens in memory (:class:`TokenTable`) and reloads them with
its snapshot refresh (``api.runtime``, every RANKTUNE_SNAPSHOT_REFRESH_S): a token revoked
on one replica stops working on every replica within that interval (at once on the replica
that revoked it), and a signed-in dashboard session of a revoked token ends with it. If the
database cannot be read, the replica keeps the table it has.

Which token acted is recorded in the audit log (``audit_log.token``) through
:data:`acting_token`, set by the authentication of each request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from api.enums import Role
from api.web_session import Principal

TOKEN_PREFIX = "rt_"
# "rt_" and 6 characters: enough to tell tokens apart in a list, far too few to guess from.
PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
BOOTSTRAP_ADMIN = "RANKTUNE_ADMIN_TOKEN"
# The subject of the bootstrap admin token (as the dashboard's sessions have always named it).
BOOTSTRAP_SUBJECT = "admin"

# The token of the request being served, as the audit log names it ("<name> (<prefix>)");
# None outside requests (the scheduler). Set by api.security and the dashboard, read by
# api.repositories.add_audit; each request (and the worker thread it runs in) has its own.
acting_token: ContextVar[str | None] = ContextVar("acting_token", default=None)


def new_token() -> str:
    """A new secret token: 32 random bytes (256 bits), base64url, after ``rt_``."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str | bytes) -> str:
    """The hex SHA-256 of a token: what is stored and looked up."""
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    """The non-secret beginning of a token, shown to recognise it."""
    return token[:PREFIX_LENGTH]


@dataclass(frozen=True)
class StoredToken:
    """An active stored token as a replica holds it (never the token itself)."""

    id: int
    name: str
    role: Role
    prefix: str

    @property
    def subject(self) -> str:
        return f"token:{self.id}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.prefix})"


class TokenTable:
    """This replica's copy of the active stored tokens, by hash; replaced whole on refresh.

    It also notes which tokens were used since the last :meth:`drain_used`, so that the
    runtime can write ``last_used_at`` now and then instead of on every request."""

    def __init__(self) -> None:
        self._by_hash: dict[str, tuple[int, Identity]] = {}
        self._by_subject: dict[str, StoredToken] = {}
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def replace(self, tokens: Iterable[tuple[str, StoredToken]]) -> None:
        """The active tokens as (hash, token) pairs, the whole table. Each token's identity
        is built here, once, not on every request (the client key's check runs on the
        assignment path)."""
        pairs = list(tokens)
        self._by_hash = {
            digest: (token.id, Identity(Principal(token.role, token.subject), token.label))
            for digest, token in pairs
        }
        self._by_subject = {token.subject: token for _, token in pairs}

    def find(self, token: str | bytes) -> Identity | None:
        """The identity of the active token a presented token is, or None."""
        found = self._by_hash.get(token_hash(token))
        if found is None:
            return None
        self._used.add(found[0])  # a set add: atomic under the GIL
        return found[1]

    def by_subject(self, subject: str) -> StoredToken | None:
        return self._by_subject.get(subject)

    def drain_used(self) -> set[int]:
        with self._lock:
            used, self._used = self._used, set()
        return used

    def __len__(self) -> int:
        return len(self._by_hash)


@dataclass(frozen=True)
class Identity:
    """Who presented a token: their principal and how the audit log names them."""

    principal: Principal
    label: str


class StoredTokenVerifier:
    """The bootstrap admin token and the stored tokens: the application's
    ``web_session.TokenVerifier``, and what the admin and client routes authenticate with."""

    def __init__(self, admin_token: str, table: TokenTable) -> None:
        self._admin_token = admin_token.encode()
        self._admin = Identity(Principal(Role.ADMIN, BOOTSTRAP_SUBJECT), BOOTSTRAP_ADMIN)
        self.table = table

    def identify(self, token: str | bytes) -> Identity | None:
        """Who a presented token is (as text, or as the header's bytes), or None for an
        unknown (or revoked) one."""
        presented = token if isinstance(token, bytes) else token.encode()
        if hmac.compare_digest(presented, self._admin_token):
            return self._admin
        return self.table.find(presented)

    def verify(self, token: str) -> Principal | None:
        identity = self.identify(token)
        return identity.principal if identity is not None else None

    def is_valid(self, principal: Principal) -> bool:
        if principal.subject == BOOTSTRAP_SUBJECT:
            return principal.role == Role.ADMIN
        stored = self.table.by_subject(principal.subject)
        return stored is not None and stored.role == principal.role

    def label(self, principal: Principal) -> str:
        """How the audit log names a (signed-in) principal."""
        if principal.subject == BOOTSTRAP_SUBJECT:
            return BOOTSTRAP_ADMIN
        stored = self.table.by_subject(principal.subject)
        return stored.label if stored is not None else principal.subject
