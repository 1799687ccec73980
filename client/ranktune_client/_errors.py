"""The SDK's exceptions: only explicit refusals (bad input, wrong credentials) raise.

Transport problems, timeouts and 5xx never raise from ``get_config`` (it falls back), and
event delivery happens in the background, so these are what a caller can see:

    RanktuneError                 base
    └── RequestRefused            a 4xx from the server, or input the SDK refuses itself
        ├── InvalidInput          422, or refused before sending; ``field`` names it
        ├── Unauthorized          401
        ├── Forbidden             403
        ├── NotFound              404
        ├── Conflict              409
        ├── PayloadTooLarge       413
        └── UnsupportedMediaType  415
"""

from __future__ import annotations

import json


class RanktuneError(Exception):
    """Base of every exception the SDK raises."""


class RequestRefused(RanktuneError):
    """The server refused a request (a 4xx), or the SDK refused it before sending.

    ``status`` is the HTTP status (for input refused locally, ``local`` is true and
    ``status`` is what the server would have answered); ``error``, ``detail`` and ``field``
    are the server's error answer ``{error, detail, field}``.
    """

    status: int | None = None
    default_error = "BadRequest"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status: int | None = None,
        error: str | None = None,
        local: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if status is not None:
            self.status = status
        self.error = error or self.default_error
        self.local = local


class InvalidInput(RequestRefused):
    status, default_error = 422, "ValidationError"


class Unauthorized(RequestRefused):
    status, default_error = 401, "Unauthorized"


class Forbidden(RequestRefused):
    status, default_error = 403, "Forbidden"


class NotFound(RequestRefused):
    status, default_error = 404, "NotFound"


class Conflict(RequestRefused):
    status, default_error = 409, "Conflict"


class PayloadTooLarge(RequestRefused):
    status, default_error = 413, "PayloadTooLarge"


class UnsupportedMediaType(RequestRefused):
    status, default_error = 415, "UnsupportedMediaType"


_BY_STATUS: dict[int, type[RequestRefused]] = {
    cls.status: cls
    for cls in (
        InvalidInput,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
    )
    if cls.status is not None
}


def invalid(field: str, expected: str) -> InvalidInput:
    """Input the SDK refuses before sending, worded like the server's 422s."""
    return InvalidInput(f"{field}: {expected}", field=field, local=True)


def refusal(status: int, body: bytes) -> RequestRefused:
    """The typed exception for a 4xx answer, carrying the server's ``{error, detail, field}``
    (or the raw body, when something other than ranktune answered)."""
    error: str | None = None
    field: str | None = None
    detail = body[:500].decode("utf-8", "replace") or f"HTTP {status}"
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error") if isinstance(parsed.get("error"), str) else None
        field = parsed.get("field") if isinstance(parsed.get("field"), str) else None
        if isinstance(parsed.get("detail"), str):
            detail = parsed["detail"]
    cls = _BY_STATUS.get(status, RequestRefused)
    return cls(detail, field=field, status=status, error=error)
