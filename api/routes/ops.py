"""Operations: liveness (``/health``), readiness (``/ready``) and metrics (``/metrics``).

None of them needs the admin token: load balancers and orchestrators probe ``/health`` and
``/ready``, Prometheus scrapes ``/metrics`` (protected by ``RANKTUNE_METRICS_TOKEN`` when it
is set). docs/operations.md says how to use them.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from api import schemas
from api.errors import Forbidden, Unauthorized
from api.readiness import Readiness

router = APIRouter(tags=["ops"])


@router.get("/health", summary="Liveness")
def health() -> dict[str, Any]:
    """The process is alive and answers (no dependency is checked: see ``/ready``)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness",
    response_model=schemas.ReadinessOut,
    responses={503: {"model": schemas.ReadinessOut, "description": "a check failed"}},
)
def ready(request: Request) -> JSONResponse:
    """Whether this replica can serve: database reachable, migrations at head, snapshots
    fresh, event writer and scheduler running. 503 names each failing check's reason."""
    readiness: Readiness = request.app.state.readiness
    checks = readiness.checks()
    ok = all(check.ok for check in checks)
    body = schemas.ReadinessOut(
        status="ready" if ok else "not_ready",
        checks=[
            schemas.ReadinessCheckOut(name=check.name, ok=check.ok, detail=check.detail)
            for check in checks
        ],
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=200 if ok else 503,
        headers={"Cache-Control": "no-store"},
    )


# Prometheus text format, not JSON: left out of the OpenAPI (README and docs/operations.md
# describe it), so that the schema's operations all answer JSON.
@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """This replica's metrics in the Prometheus text format."""
    token = request.app.state.metrics_token
    if token is not None:
        scheme, given = get_authorization_scheme_param(request.headers.get("Authorization"))
        if not given or scheme.lower() != "bearer":
            raise Unauthorized(
                "Authorization: expected the header 'Bearer <metrics token>' "
                "(RANKTUNE_METRICS_TOKEN is set)",
                field="Authorization",
            )
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("Authorization: the metrics token is wrong", field="Authorization")
    return Response(
        generate_latest(request.app.state.metrics_registry),
        media_type=CONTENT_TYPE_PLAIN_0_0_4,  # what generate_latest writes
        headers={"Cache-Control": "no-store"},
    )
