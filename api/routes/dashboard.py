"""The dashboard: server-rendered pages to watch and steer experiments (docs/dashboard.md).

Pages read through ``api.services.dashboard`` (the admin API's own use cases side by
side) and steer through the admin API's route functions (``api.routes.admin``), so a
form does exactly what the matching API call does, with the same errors, which the page
shows next to the field that ``field`` names.

Security (docs/dashboard.md): a person signs in with a token through a form; the browser
then holds a signed session cookie (``api.web_session``), never the token. Every POST
checks the session, the role (steering needs an admin) and a CSRF token, and refuses a
foreign ``Origin``. Templates escape every value (Jinja2 autoescape); pages carry a
Content-Security-Policy without inline script or style, are never cached, and cannot be
framed.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import ValidationError
from pydantic_core import to_json

from api import forms, schemas
from api.errors import ApiError, Forbidden, InvalidInput, NotFound, validation_failure
from api.routes import admin
from api.runtime import Runtime
from api.services import dashboard
from api.tokens import acting_token
from api.web_session import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    LOGIN_NONCE_MAX_AGE_S,
    SESSION_COOKIE,
    SessionSigner,
    TokenVerifier,
    WebSession,
)

router = APIRouter(include_in_schema=False)

# Every page: no inline script or style, nothing from another host, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# How often a page asks whether its experiment changed (the answer is one small row).
POLL_INTERVAL_MS = 2500
# "done" codes of a redirect after a change: the message the page shows.
NOTICES = {
    "created": "Experiment created.",
    "pause": "Paused: everyone gets the reference configuration until you resume.",
    "resume": "Resumed.",
    "stop": "Stopped. A final tick counted what had arrived.",
    "arm-added": "Arm added.",
    "arm-retired": "Arm retired.",
    "expert-queued": "Expert configuration queued for the next genetic step.",
    "expert-withdrawn": "Expert configuration withdrawn.",
    "evolved": "Genetic step applied.",
    "evolve-noop": "The genetic step changed nothing (see its notes in the preview).",
    "promoted": "A new phase started: the promoted configuration is the reference, and every "
    "posterior starts again from the prior against it. The previous phase's report is kept.",
    "metric-added": "Metric added: its counts start now.",
    "metric-removed": "Metric removed: no longer reported; its counts and the report as it "
    "stood are kept, and it can be declared again (counted from then).",
    "settings": "Settings saved (changes are in the audit log).",
    "archive": "Archived: kept and readable, no longer served or ticked.",
}
STATUS_ACTIONS = ("pause", "resume", "stop", "archive")
# A metric's event name, as the admin API's path checks it (``api.routes.admin.EventName``).
EVENT_NAME = re.compile(schemas.EVENT_NAME_PATTERN)


# -- rendering ------------------------------------------------------------------------------
def _percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}%"


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _probability(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _value(value: Any) -> str:
    """A configuration value as people read it: integers bare, floats to 4 significant
    digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json(value: Any) -> str:
    """A value as JSON text (the template escapes it like any other text)."""
    return json.dumps(value, ensure_ascii=False)


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("api", "templates"),
        autoescape=True,  # every {{ value }} is escaped, whatever the file's name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=_percent,
        number=_number,
        rate=_rate,
        probability=_probability,
        value=_value,
        field_id=forms.field_id,
        json=_json,
    )
    environment.globals.update(
        poll_interval_ms=POLL_INTERVAL_MS,
        select_settings=forms.SELECT_SETTINGS,
        number_settings=forms.NUMBER_SETTINGS,
        policy_settings=forms.POLICY_SETTINGS,
        evolution_settings=forms.EVOLUTION_SETTINGS,
        patch_settings=forms.PATCH_SETTINGS,
        decision_numbers=forms.DECISION_NUMBERS,
        settings_fields=forms.SETTINGS_FIELDS,
        setting_default=forms.setting_default,
        csrf_field=CSRF_FIELD,
    )
    return environment


TEMPLATES = _environment()


def _html(
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    started: float | None = None,
) -> HTMLResponse:
    content = TEMPLATES.get_template(template).render(**context)
    response = HTMLResponse(content, status_code=status_code, headers=PAGE_HEADERS)
    if started is not None:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.1f}"
    return response


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.session_signer
    return signer


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def current_session(request: Request) -> WebSession | None:
    """The signed-in session of this request, if its cookie is genuine, unexpired and its
    principal still valid."""
    session = _signer(request).read(request.cookies.get(SESSION_COOKIE), time.time())
    if session is None or not _verifier(request).is_valid(session.principal):
        return None
    return session


def _context(request: Request, session: WebSession | None, **values: Any) -> dict[str, Any]:
    return {
        "principal": session.principal if session else None,
        "csrf_token": _signer(request).csrf_token(session) if session else "",
        "path": request.url.path,
        **values,
    }


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _local(target: str) -> str:
    """``target`` if it is a path on this server, else ``/`` (no open redirect)."""
    parts = urlsplit(target)
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or parts.scheme
        or parts.netloc
    ):
        return "/"
    return target


def _error_page(request: Request, session: WebSession | None, error: ApiError) -> HTMLResponse:
    response = _html(
        "error.html",
        _context(request, session, error=error, title=f"{error.status_code} {error.kind}"),
        status_code=error.status_code,
    )
    retry = getattr(error, "retry_after_s", None)
    if retry is not None:
        response.headers["Retry-After"] = str(retry)
    return response


def _json_unauthorized() -> JSONResponse:
    return JSONResponse(
        {
            "error": "Unauthorized",
            "detail": "session: expected a signed-in session",
            "field": "session",
        },
        status_code=401,
        headers={"Cache-Control": "no-store"},
    )


# -- signing in --------------------------------------------------------------------------------
def _login_page(
    request: Request, *, next_path: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    signer = _signer(request)
    nonce = signer.new_login_nonce()
    response = _html(
        "login.html",
        _context(
            request,
            None,
            title="Sign in",
            next_path=next_path,
            login_csrf=signer.login_csrf_token(nonce),
            error=error,
        ),
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_NONCE_MAX_AGE_S,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if current_session(request) is not None:
        return RedirectResponse(_local(next), status_code=303)
    return _login_page(request, next_path=_local(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Sign in with a token. The token is read from the form body only, compared in
    constant time, never logged, never echoed, and never put in the cookie."""
    form = forms.parse_form(await request.body())
    next_path = _local(forms.first(form, "next", "/"))
    signer = _signer(request)
    if not _same_origin(request) or not signer.login_csrf_ok(
        request.cookies.get(LOGIN_COOKIE), forms.first(form, CSRF_FIELD)
    ):
        return _login_page(
            request,
            next_path=next_path,
            error="csrf_token: the sign-in form expired or came from another site; "
            "expected the form of this page (try again)",
            status_code=403,
        )
    principal = _verifier(request).verify(forms.first(form, "token"))
    if principal is None or not principal.can_sign_in:
        wrong = "wrong token (or revoked)" if principal is None else "a client token cannot sign in"
        return _login_page(
            request,
            next_path=next_path,
            error=f"token: {wrong}; expected an admin token (RANKTUNE_ADMIN_TOKEN or a "
            "stored admin token) or a viewer token",
            status_code=403,
        )
    cookie, _ = signer.issue(principal, time.time())
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=signer.max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    checked = await _checked_post(request, steer=False)
    if isinstance(checked, Response):
        return checked
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from (``Origin``); it must be this server.
    Requests without the header (not from a browser) rely on the CSRF token alone."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def _checked_post(
    request: Request, *, steer: bool = True
) -> tuple[WebSession, dict[str, list[str]]] | Response:
    """The session and form of a state-changing request, or the answer refusing it: no
    session (sign in), a foreign origin or a wrong CSRF token (403), a viewer steering
    (403)."""
    session = current_session(request)
    if session is None:
        return _to_login(request)
    form = forms.parse_form(await request.body())
    presented = request.headers.get(CSRF_HEADER) or forms.first(form, CSRF_FIELD)
    if not _same_origin(request) or not _signer(request).csrf_ok(session, presented):
        return _error_page(
            request,
            session,
            Forbidden(
                "csrf_token: missing or wrong; expected the token of a page of this server "
                "(reload the page and try again)",
                field=CSRF_FIELD,
            ),
        )
    if steer and not session.principal.can_steer:
        return _error_page(
            request,
            session,
            Forbidden("role: viewers can look, not steer; expected an admin", field="role"),
        )
    # The audit log names the token this session signed in with (api.tokens).
    acting_token.set(_verifier(request).label(session.principal))
    return session, form


# -- the experiments list --------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def experiments_list(request: Request) -> Response:
    started = time.perf_counter()
    session = current_session(request)
    if session is None:
        return _to_login(request)
    with _runtime(request).read_transaction() as db:
        rows = dashboard.experiment_rows(db)
        versions = dashboard.versions(db)
    return _html(
        "experiments.html",
        _context(
            request,
            session,
            title="Experiments",
            rows=rows,
            version_key=_version_key(versions),
            notice=None,
        ),
        started=started,
    )


def _version_key(versions: dict[str, int]) -> str:
    return ",".join(f"{name}:{version}" for name, version in sorted(versions.items()))


@router.get("/live.json")
def experiments_live(request: Request) -> Response:
    """What the list page polls: one key that changes when any experiment changes."""
    if current_session(request) is None:
        return _json_unauthorized()
    with _runtime(request).read_transaction() as db:
        versions = dashboard.versions(db)
    return JSONResponse({"version": _version_key(versions)}, headers={"Cache-Control": "no-store"})


# -- creating an experiment --------------------------------------------------------------------
def _blank_create_form() -> forms.CreateForm:
    return forms.CreateForm(
        parameters=[],
        configs=[],
        body={},
        values={"evolution.enabled": ""},
    )


def _create_page(
    request: Request,
    session: WebSession,
    form: forms.CreateForm,
    *,
    errors: dict[str, str] | None = None,
    preview: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    parameters = list(form.parameters)
    parameters += [{name: "" for name in forms.PARAMETER_FIELDS}] * forms.SPARE_PARAMETER_ROWS
    configs = [list(row) + [""] * (len(parameters) - len(row)) for row in form.configs]
    while len(configs) < 1:
        configs.append([""] * len(parameters))
    configs += [[""] * len(parameters) for _ in range(forms.SPARE_ARM_ROWS)]
    return _html(
        "new.html",
        _context(
            request,
            session,
            title="New experiment",
            form=form,
            parameters=parameters,
            configs=configs,
            errors=errors or {},
            preview=preview if preview is not None else _preview(form),
        ),
        status_code=status_code,
    )


def _preview(form: forms.CreateForm) -> str:
    return json.dumps(form.body, indent=2) if form.body else ""


@router.get("/experiments/new", response_class=HTMLResponse)
def new_experiment_form(request: Request, example: bool = False) -> Response:
    """The create form: empty, or (``?example=true``) filled in with the README's example."""
    session = current_session(request)
    if session is None:
        return _to_login(request)
    if not session.principal.can_steer:
        return _error_page(
            request, session, Forbidden("role: viewers cannot create experiments", field="role")
        )
    return _create_page(request, session, forms.example_form() if example else _blank_create_form())


@router.post("/experiments/new/preview")
async def new_experiment_preview(request: Request) -> Response:
    """The JSON body the form spells (the page shows it as the person types)."""
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    _, form = checked
    return JSONResponse(forms.create_form(form).body, headers={"Cache-Control": "no-store"})


@router.post("/experiments/new", response_class=HTMLResponse)
async def create_experiment(request: Request) -> Response:
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    create = forms.create_form(form)
    if forms.first(form, "intent") != "create":
        return _create_page(request, session, create)  # "preview" or "more rows"
    try:
        body = schemas.ExperimentCreate.model_validate(create.body)
        created = await run_in_threadpool(admin.create_experiment, request, body)
    except ValidationError as error:
        failure = validation_failure(error)
        return _create_page(
            request,
            session,
            create,
            errors={failure.field or "body": failure.detail},
            status_code=failure.status_code,
        )
    except ApiError as error:
        return _create_page(
            request,
            session,
            create,
            errors={error.field or "body": error.detail},
            status_code=error.status_code,
        )
    return RedirectResponse(f"/experiments/{created.name}?done=created", status_code=303)


# -- one experiment ----------------------------------------------------------------------------
def _experiment_page(
    request: Request,
    session: WebSession,
    name: str,
    *,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    failed: str | None = None,
    status_code: int = 200,
    preview: schemas.EvolutionStepOut | None = None,
    segment: str | None = None,
) -> HTMLResponse:
    started = time.perf_counter()
    runtime = _runtime(request)
    try:
        with runtime.heavy_reads.slot(), runtime.read_transaction() as db:
            page = dashboard.experiment_page(db, name, segment)
            # The delivery log is for admins (as GET /v1/webhooks/deliveries is).
            deliveries = dashboard.deliveries(db, name) if session.principal.can_steer else None
    except ApiError as error:
        return _error_page(request, session, error)
    return _html(
        "experiment.html",
        _context(
            request,
            session,
            title=page.experiment.name,
            page=page,
            deliveries=deliveries,
            notice=notice,
            errors=errors or {},
            values=values or {},
            failed=failed,
            preview=preview,
        ),
        status_code=status_code,
        started=started,
    )


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment(
    request: Request, name: str, done: str | None = None, segment: str | None = None
) -> Response:
    """One experiment; ``?segment=S`` shows a segmented experiment's segment S in its
    segment panel (empty: all traffic)."""
    session = current_session(request)
    if session is None:
        return _to_login(request)
    return _experiment_page(
        request, session, name, notice=NOTICES.get(done or ""), segment=segment or None
    )


@router.get("/experiments/{name}/live.json")
def experiment_live(request: Request, name: str) -> Response:
    """What the experiment page polls: its version, which every tick and change moves."""
    if current_session(request) is None:
        return _json_unauthorized()
    with _runtime(request).read_transaction() as db:
        versions = dashboard.versions(db, name)
    if name not in versions:
        return JSONResponse(
            {"error": "NotFound", "detail": f"experiment {name!r} does not exist", "field": "name"},
            status_code=404,
        )
    return JSONResponse({"version": versions[name]}, headers={"Cache-Control": "no-store"})


@router.get("/experiments/{name}/charts.json")
def experiment_charts(request: Request, name: str) -> Response:
    """The charts' downsampled history (gzip when the browser takes it: a week of 20 arms
    is a few hundred kB of numbers)."""
    if current_session(request) is None:
        return _json_unauthorized()
    runtime = _runtime(request)
    started = time.perf_counter()
    try:
        with runtime.heavy_reads.slot(), runtime.read_transaction() as db:
            history = dashboard.chart_history(db, name, blocks=request.app.state.tick_blocks)
    except ApiError as error:
        return JSONResponse(
            {"error": error.kind, "detail": error.detail, "field": error.field},
            status_code=error.status_code,
        )
    content = to_json(history, inf_nan_mode="null")  # NaN (no point) becomes null
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        content = gzip.compress(content, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.1f}"
    return Response(content, media_type="application/json", headers=headers)


# -- steering ------------------------------------------------------------------------------------
async def _steer(
    request: Request,
    name: str,
    change: Callable[[dict[str, list[str]]], str],
) -> Response:
    """Check the POST, make the change in a worker thread, then show the page again: a
    redirect with a notice on success (so a reload does not repeat it), or the page with
    the API's error next to the field it names."""
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    try:
        done = await run_in_threadpool(change, form)
    except ValidationError as error:
        failure = validation_failure(error)
        return _failed(request, session, name, form, failure)
    except ApiError as error:
        return _failed(request, session, name, form, error)
    return RedirectResponse(f"/experiments/{name}?done={done}", status_code=303)


def _failed(
    request: Request, session: WebSession, name: str, form: dict[str, list[str]], error: ApiError
) -> Response:
    if isinstance(error, NotFound) and error.field == "name":
        return _error_page(request, session, error)
    values = {key: values[0] for key, values in form.items() if key != CSRF_FIELD and values}
    return _experiment_page(
        request,
        session,
        name,
        errors={error.field or "body": error.detail},
        values=values,
        failed=forms.first(form, "form"),
        status_code=error.status_code,
    )


def _parameter_names(request: Request, name: str) -> list[str]:
    with _runtime(request).read_transaction() as db:
        return [parameter["name"] for parameter in dashboard.parameters_of(db, name)]


@router.post("/experiments/{name}/status")
async def change_status(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        action = forms.first(form, "action")
        if action not in STATUS_ACTIONS:
            raise InvalidInput(
                f"action: expected one of {', '.join(STATUS_ACTIONS)}", field="action"
            )
        admin.change_status(request, name, action)
        return action

    return await _steer(request, name, change)


@router.post("/experiments/{name}/arms")
async def add_arm(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        config = forms.config_from_form(form, _parameter_names(request, name), "config.")
        # A segmented experiment's form may restrict the arm: names, comma-separated.
        names = [part.strip() for part in forms.first(form, "segments").split(",")]
        segments = [part for part in names if part] or None
        admin.add_arm(request, name, schemas.ArmCreate(config=config, segments=segments))
        return "arm-added"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/arms/{arm_id}/retire")
async def retire_arm(request: Request, name: str, arm_id: int) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        admin.retire_arm(request, name, arm_id)
        return "arm-retired"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/arms/{arm_id}/promote")
async def promote(request: Request, name: str, arm_id: int) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        reason = forms.first(form, "reason").strip() or None
        admin.promote(request, name, schemas.PromoteIn(arm_id=arm_id, reason=reason))
        return "promoted"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/metrics")
async def add_metric(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        body = {
            key: forms.json_value(forms.first(form, key))
            for key in ("event", "role", "direction", "max_loss")
            if forms.first(form, key).strip()
        }
        admin.add_metric(request, name, schemas.MetricIn.model_validate(body))
        return "metric-added"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/metrics/{event}/remove")
async def remove_metric(request: Request, name: str, event: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        if not EVENT_NAME.fullmatch(event):
            raise InvalidInput(
                "event: expected a declared metric's event name (lower-case letters, digits, _)",
                field="event",
            )
        admin.remove_metric(request, name, event)
        return "metric-removed"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/settings")
async def update_settings(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        body = schemas.ExperimentPatch.model_validate(forms.settings_patch(form))
        admin.update_experiment(request, name, body)
        return "settings"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/experts")
async def queue_expert(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        config = forms.config_from_form(form, _parameter_names(request, name), "config.")
        note = forms.first(form, "note").strip() or None
        admin.submit_expert_config(
            request, name, schemas.ExpertConfigCreate(config=config, note=note)
        )
        return "expert-queued"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/experts/{expert_id}/withdraw")
async def withdraw_expert(request: Request, name: str, expert_id: int) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        admin.withdraw_expert_config(request, name, expert_id)
        return "expert-withdrawn"

    return await _steer(request, name, change)


@router.post("/experiments/{name}/evolve/preview", response_class=HTMLResponse)
async def evolve_preview(request: Request, name: str) -> Response:
    """A dry run of the genetic step: the page shows what it would retire and add, and a
    button that applies exactly that step (its seed)."""
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    try:
        preview = await run_in_threadpool(admin.evolve, request, name, True, None)
    except ApiError as error:
        return _failed(request, session, name, form, error)
    return _experiment_page(request, session, name, preview=preview)


@router.post("/experiments/{name}/evolve")
async def evolve(request: Request, name: str) -> Response:
    def change(form: dict[str, list[str]]) -> str:
        text = forms.first(form, "seed")
        seed = forms.json_value(text) if text else None
        if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= 2**63 - 2):
            raise InvalidInput("seed: expected the integer of a preview", field="seed")
        result = admin.evolve(request, name, False, seed)
        return "evolved" if result.applied else "evolve-noop"

    return await _steer(request, name, change)
