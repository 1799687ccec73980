"""The dashboard's sign-in: who is signed in (a role), a signed session cookie, CSRF tokens.

A person signs in once with a token (the admin token today; viewer tokens when the API
grows roles) and the browser keeps a **session cookie** that never contains the token: it
holds a random session id, the role, the subject (which token it was) and its expiry,
signed with HMAC-SHA256. The signing key is derived from the admin token, so every replica
that shares the token verifies every other replica's cookies, and changing the token ends
every session at once. The cookie is HttpOnly, SameSite=Strict and Secure over HTTPS
(``api.routes.dashboard`` sets it).

Every state change made through the dashboard carries a **CSRF token** that only a page
of this server can know: an HMAC of the session id (or, on the sign-in form, of a random
nonce held in a short-lived cookie), compared in constant time.

The seam for roles: a :class:`TokenVerifier` turns a presented token into a
:class:`Principal` (role and subject) and says whether a principal is still valid (a
revoked viewer token ends its sessions). The application's is
``api.tokens.StoredTokenVerifier``: the admin token and the tokens of the database
(admin, viewer and client tokens). The pages ask
``principal.can_steer``; only admins and viewers may sign in (``can_sign_in``).

No web framework here: routes read and write the cookies, this module only signs, checks
and names things.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Protocol

from api.enums import Role

SESSION_COOKIE = "ranktune_session"
LOGIN_COOKIE = "ranktune_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# How long a sign-in lasts; the sign-in form's nonce lives much shorter.
SESSION_MAX_AGE_S = 12 * 3600
LOGIN_NONCE_MAX_AGE_S = 3600
_VERSION = "v1"


@dataclass(frozen=True)
class Principal:
    """Who is signed in: a role, and which token it came from (never the token itself)."""

    role: Role
    subject: str

    @property
    def can_steer(self) -> bool:
        """Pause, add arms, run steps...: admin actions."""
        return self.role == Role.ADMIN

    @property
    def can_sign_in(self) -> bool:
        """The dashboard is for admins and viewers; a client key does not open it."""
        return self.role in (Role.ADMIN, Role.VIEWER)


class TokenVerifier(Protocol):
    """Tokens -> principals: the one place that knows which tokens exist."""

    def verify(self, token: str) -> Principal | None:
        """The principal of a presented token, or None for a wrong one (constant time)."""

    def is_valid(self, principal: Principal) -> bool:
        """Whether a principal signed in earlier may still act (its token not revoked)."""

    def label(self, principal: Principal) -> str:
        """How the audit log names the token a principal signed in with."""


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: the cookie's contents once its signature checked."""

    session_id: str
    principal: Principal
    issued_at: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookies, sign-in nonces and CSRF tokens with one key."""

    def __init__(self, key: bytes, *, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self._key = key
        self.max_age_s = max_age_s

    @classmethod
    def for_admin_token(cls, admin_token: str, **options: int) -> SessionSigner:
        """A key derived from the admin token: shared by the replicas that share the token,
        and a new token invalidates every cookie signed with the old one."""
        key = hmac.new(admin_token.encode(), b"ranktune dashboard sessions v1", "sha256").digest()
        return cls(key, **options)

    def _mac(self, purpose: str, message: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\x00{message}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    # -- sessions ------------------------------------------------------------------------
    def issue(self, principal: Principal, now: float) -> tuple[str, WebSession]:
        """A new session for ``principal``: the cookie value and what it says."""
        session = WebSession(
            session_id=secrets.token_urlsafe(18),
            principal=principal,
            issued_at=int(now),
            expires_at=int(now) + self.max_age_s,
        )
        payload = _b64(
            json.dumps(
                {
                    "sid": session.session_id,
                    "role": principal.role.value,
                    "sub": principal.subject,
                    "iat": session.issued_at,
                    "exp": session.expires_at,
                },
                separators=(",", ":"),
            ).encode()
        )
        body = f"{_VERSION}.{payload}"
        return f"{body}.{self._mac('session', body)}", session

    def read(self, cookie: str | None, now: float) -> WebSession | None:
        """The session a cookie holds, or None: missing, altered, foreign or expired."""
        if not cookie or len(cookie) > 1024:
            return None
        body, _, mac = cookie.rpartition(".")
        version, _, payload = body.partition(".")
        if version != _VERSION or not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            values = json.loads(_unb64(payload))
            session = WebSession(
                session_id=str(values["sid"]),
                principal=Principal(Role(values["role"]), str(values["sub"])),
                issued_at=int(values["iat"]),
                expires_at=int(values["exp"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if now < session.expires_at else None

    # -- CSRF ----------------------------------------------------------------------------
    def csrf_token(self, session: WebSession) -> str:
        """The token every state-changing form of this session carries."""
        return self._mac("csrf", session.session_id)

    def csrf_ok(self, session: WebSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            str(presented).encode(), self.csrf_token(session).encode()
        )

    # -- the sign-in form ------------------------------------------------------------------
    @staticmethod
    def new_login_nonce() -> str:
        return secrets.token_urlsafe(18)

    def login_csrf_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token: tied to a nonce in a cookie of the same browser."""
        return self._mac("login", nonce)

    def login_csrf_ok(self, nonce: str | None, presented: str | None) -> bool:
        if not nonce or not presented or len(nonce) > 64:
            return False
        return hmac.compare_digest(presented.encode(), self.login_csrf_token(nonce).encode())
