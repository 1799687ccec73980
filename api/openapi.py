"""The one place where the OpenAPI document's error responses are decided.

FastAPI documents what a route declares; it cannot know which errors the middleware, the
admin check and the parameter validation add. :func:`document_errors` walks the generated
document once and gives every operation exactly the error codes it can return, each with
the ``ErrorOut`` body and a sentence saying when:

====  =====================================================================================
code  documented on
====  =====================================================================================
400   POST, PUT, PATCH: ``api.app.BodySizeLimit`` refuses a Content-Length that is no integer
401   operations with the bearer scheme (admin): no token; client routes (``CLIENT_KEY``)
      when the server requires a client key
403   operations with the bearer scheme (admin): a wrong or revoked token, or a viewer's
      token on a write; client routes (``CLIENT_KEY``) likewise
404   operations with path parameters: one of them names nothing that exists
409   only where the route declares it (``conflict(...)``), saying which conflict
413   POST, PUT, PATCH: ``api.app.BodySizeLimit`` refuses a body over its limit (any body,
      even where the operation expects none)
415   only where the route declares it (``POST /v1/events`` checks its Content-Type itself)
422   operations with parameters or a request body: the field is invalid
503   only where the route declares it (``HEAVY_READ``: a heavy admin read waited too long)
====  =====================================================================================

A route adds what only it knows with ``responses=``: ``conflict("...")``, ``HEAVY_READ``,
or any ``{status: {"description": ...}}``, e.g. a 404 for a query filter naming an unknown
experiment; its description wins over the derived one. What no single operation can answer
— 404 for an unknown path, 405 for a method the path does not serve (with ``Allow``), the
server's own 408, 431 and 503 — is described once in the document's ``info.description``.
"""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorOut

__all__ = ["CLIENT_KEY", "HEAVY_READ", "conflict", "document_errors", "not_found"]

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
BODY_METHODS = ("post", "put", "patch")
HEAVY_READ: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "the replica is already serving RANKTUNE_HEAVY_READS heavy admin reads "
        "(plots, stats, tick histories, reports) and none finished within "
        "RANKTUNE_HEAVY_READ_WAIT_S; retry after the `Retry-After` header's seconds"
    }
}

# What a path parameter names, for the derived 404 ("no experiment named `name`"); None
# for a parameter that names no stored object (an invalid one is a 422).
_MISSING: dict[str, str | None] = {
    "fmt": None,
    "name": "no experiment is named `name`",
    "arm_id": "the experiment has no arm `arm_id`",
    "event": "`event` is not a metric the experiment declared",
    "snapshot_id": "the experiment has no report snapshot `snapshot_id`",
    "expert_config_id": "the experiment has no expert configuration `expert_config_id`",
    "webhook_id": "no webhook has the id `webhook_id`",
}

SERVER_ERRORS = """

Errors: every 4xx (and 5xx) answer is an `ErrorOut`, `{"error": kind, "detail": "<field>: \
<what was expected>", "field": "<field>"}`; each operation lists the codes it can return. \
Besides those, any path answers 404 `NotFound` when no route serves it and 405 \
`MethodNotAllowed` (with `Allow`) for a method it does not serve; the server itself answers \
408 `RequestTimeout` (headers or body too slow), 431 `HeadersTooLarge` and 503 (too many \
connections), and closes the connection."""


# The client routes' 401 and 403: only on a server that requires a client key.
CLIENT_KEY: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "only with RANKTUNE_CLIENT_KEY_REQUIRED: no bearer token (expected "
        "`Authorization: Bearer <client token>`)"
    },
    403: {
        "description": "only with RANKTUNE_CLIENT_KEY_REQUIRED: the client key is wrong or "
        "revoked, or a viewer token"
    },
}


def conflict(when: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry of a route that can answer 409: ``when`` says in which state."""
    return {409: {"description": when}}


def not_found(when: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry of a 404 that no path parameter explains (a query filter)."""
    return {404: {"description": when}}


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Give every operation of ``document`` the error codes it can return (table above).

    Changes ``document`` in place and returns it; idempotent."""
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete", "head", "options"):
                _document_operation(method, operation)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorOut"] = ErrorOut.model_json_schema()
    # FastAPI's own 422 body, replaced above by ErrorOut everywhere.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    info = document.setdefault("info", {})
    if SERVER_ERRORS not in info.get("description", ""):
        info["description"] = info.get("description", "") + SERVER_ERRORS
    return document


def derived_errors(method: str, operation: dict[str, Any]) -> dict[int, str]:
    """The error codes an operation can return by its shape alone, with their meaning."""
    parameters = operation.get("parameters", [])
    missing = [
        _MISSING.get(p["name"], f"`{p['name']}` names nothing that exists")
        for p in parameters
        if p.get("in") == "path"
    ]
    checked = [f"`{p['name']}`" for p in parameters if p.get("in") in ("path", "query")]
    errors: dict[int, str] = {}
    if method in BODY_METHODS:
        errors[400] = "the Content-Length header is not an integer"
    if operation.get("security"):
        errors[401] = "no bearer token: expected `Authorization: Bearer <token>`"
        errors[403] = (
            "the bearer token is wrong or revoked, or its role may not do this (a viewer "
            "token on anything but the admin API's reads)"
        )
    if any(missing):
        errors[404] = ", or ".join(text for text in missing if text)
    if method in BODY_METHODS:
        errors[413] = "the body is larger than RANKTUNE_MAX_BODY_BYTES (checked for any body)"
    if "requestBody" in operation:
        checked.append("a field of the body")
    if checked:
        fields = ", ".join(checked[:-1]) + (" or " if len(checked) > 1 else "") + checked[-1]
        errors[422] = f"{fields} is invalid; `field` names it and `detail` says what was expected"
    return errors


def _document_operation(method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for code, meaning in derived_errors(method, operation).items():
        declared = responses.get(str(code), {})
        # FastAPI's default 422 ("Validation Error") is not a description of this route.
        if not declared.get("description") or declared["description"] == "Validation Error":
            responses[str(code)] = {**declared, "description": meaning}
    for status, response in responses.items():
        if status[0] in "45":
            response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
    operation["responses"] = dict(sorted(responses.items()))
