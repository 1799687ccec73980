"""The service's exceptions, and how a validation failure reads (no web framework here:
services raise these; ``api.error_handlers`` renders them as HTTP answers).

    ApiError                       base; rendered as {"error": kind, "detail": ..., "field": ...}
    ├── BadRequest          400
    ├── Unauthorized        401    no or malformed bearer token
    ├── Forbidden           403    wrong token
    ├── NotFound            404
    ├── Conflict            409    state does not allow it (duplicate arm, retired reference...)
    │                              or a concurrent request won a race (a database IntegrityError)
    ├── PayloadTooLarge     413
    ├── UnsupportedMediaType 415   a body that is not declared as JSON
    ├── InvalidInput        422    a field is invalid; ``field`` names it
    └── ServiceUnavailable  503    busy with heavy reads already; ``Retry-After`` says when

Every 4xx names the field (when there is one) and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    status_code = 400
    kind = "BadRequest"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status_code, kind = 401, "Unauthorized"


class Forbidden(ApiError):
    status_code, kind = 403, "Forbidden"


class NotFound(ApiError):
    status_code, kind = 404, "NotFound"


class Conflict(ApiError):
    status_code, kind = 409, "Conflict"


class PayloadTooLarge(ApiError):
    status_code, kind = 413, "PayloadTooLarge"


class UnsupportedMediaType(ApiError):
    status_code, kind = 415, "UnsupportedMediaType"


class InvalidInput(ApiError):
    status_code, kind = 422, "ValidationError"


class ServiceUnavailable(ApiError):
    status_code, kind = 503, "ServiceUnavailable"

    def __init__(self, detail: str, field: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(detail, field)
        self.retry_after_s = retry_after_s


def validation_failure(error: ValidationError, prefix: tuple[str, ...] = ()) -> ApiError:
    """A pydantic ValidationError as the one 4xx it means: 413 for a list over its
    ``max_length`` (a batch limit), else 422 naming the first invalid field."""
    errors = error.errors(include_url=False, include_input=False, include_context=True)
    first = errors[0]
    if first.get("type") == "too_long":
        field = location(first["loc"])
        limit = (first.get("ctx") or {}).get("max_length")
        return PayloadTooLarge(f"{field}: at most {limit} items per request", field=field)
    detail, field = describe_errors(errors, prefix)
    return InvalidInput(detail, field=field)


def describe_errors(
    errors: Sequence[Mapping[str, Any]], prefix: tuple[str, ...] = ()
) -> tuple[str, str]:
    """(detail, field) of a list of pydantic errors: the first one, and how many more."""
    first: Mapping[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    # A JSON syntax error's location is a character offset, not a field: it is the body.
    invalid_json = first.get("type") == "json_invalid"
    field = "body" if invalid_json else location((*prefix, *first.get("loc", ())))
    detail = f"{field}: {_validation_message(first)}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail, field


def error_body(kind: str, detail: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": kind, "detail": detail}
    if field is not None:
        body["field"] = field
    return body


def location(loc: tuple[Any, ...] | list[Any]) -> str:
    """Render a pydantic error location as ``events[3].count`` (without body/query prefix)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part and part[0] in "[(":
            continue  # pydantic's union-branch labels such as "function-after[...]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _validation_message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "missing":
        return "required field is missing"
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error")
        return "expected a JSON document" + (f" ({reason})" if reason else "")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message if message[:2].isupper() else message[:1].lower() + message[1:]
