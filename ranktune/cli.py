"""The ranktune command: the one composition root of the service and the simulator.

  ranktune serve        the API, the scheduler and the event writer of one replica
  ranktune db upgrade   apply the database migrations
  ranktune tokens       create, list and revoke stored tokens (admin, viewer, client)
  ranktune simulate     the simulator (ranktune simulate --help)
  ranktune evaluate     off-policy estimates of a candidate from an experiment's recorded windows,
                        or the Open Bandit Dataset check (docs/offpolicy.md)
  ranktune export       an experiment's tick records as CSV or JSON lines
  ranktune openapi      the OpenAPI document, or the API reference (docs/api.md) in Markdown

Exit codes: 0 success, 1 failure while running, 2 usage error (a bad option or setting).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.settings import Settings


class UsageError(Exception):
    """How ranktune was invoked or configured is wrong: the message says what; exit code 2."""


def load_settings() -> Settings:
    """The settings from the environment, or a :class:`UsageError` naming each bad variable."""
    from pydantic import ValidationError

    from api.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"RANKTUNE_{'_'.join(map(str, problem['loc'])).upper()}: "
            f"{problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors(include_url=False, include_input=False)
        ]
        raise UsageError("invalid settings:\n  " + "\n  ".join(problems)) from None


def _serve(args: argparse.Namespace) -> int:
    from api import server
    from api.app import create_app

    settings = load_settings()
    if args.log_format:
        settings.log_format = args.log_format
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    if settings.admin_token is None:
        settings.admin_token = SecretStr(secrets.token_urlsafe(24))
        print(
            "RANKTUNE_ADMIN_TOKEN is not set; admin token for this run: "
            f"{settings.admin_token.get_secret_value()}",
            file=sys.stderr,
        )
    _configure_logging(settings, args.log_level)
    if args.upgrade:
        from api.db import upgrade_database

        upgrade_database(settings.database_url)
        logging.getLogger("ranktune").info(
            "database at %s is at the latest revision", _safe(settings.database_url)
        )
    server.run(create_app(settings), settings, log_level=args.log_level, access_log=args.access_log)
    return 0


def _configure_logging(settings: Settings, level: str) -> None:
    """The server's logs in the configured format, with every configured secret redacted
    (api.logs), the admin token included (called once it is known, even if generated)."""
    from api.logs import configure_logging

    secrets_to_hide = [
        secret.get_secret_value()
        for secret in (settings.admin_token, settings.ticket_secret, settings.metrics_token)
        if secret is not None
    ]
    password = _password(settings.database_url)
    if password:
        secrets_to_hide.append(password)
    configure_logging(settings.log_format, level=level, secrets=secrets_to_hide)


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _db(args: argparse.Namespace) -> int:
    from api.db import upgrade_database

    url = args.url or load_settings().database_url
    if args.db_command == "upgrade":
        upgrade_database(url, args.revision)
        print(f"database at {_safe(url)} is at revision {args.revision}")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    import json

    from api.reference import current_document, render

    document = current_document()
    text = render(document) if args.format == "markdown" else json.dumps(document, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as output:
            output.write(text if text.endswith("\n") else text + "\n")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _tokens(args: argparse.Namespace) -> int:
    """Stored tokens in the database of RANKTUNE_DATABASE_URL (or --url), as the admin API's
    /v1/tokens manages them. Running servers see a change within a snapshot refresh."""
    import json

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from api import schemas
    from api.db import make_engine, make_session_factory
    from api.errors import ApiError
    from api.services import tokens as service
    from api.tokens import acting_token

    url = args.url or load_settings().database_url
    if args.tokens_command == "create":
        try:
            body = schemas.TokenCreate(name=args.name, role=args.role)
        except ValidationError as error:
            problem = error.errors(include_url=False, include_input=False)[0]
            raise UsageError(f"--{problem['loc'][0]}: {problem['msg']}") from None
    engine = make_engine(url)
    acting_token.set("ranktune tokens (command line)")
    try:
        with make_session_factory(engine)() as session, session.begin():
            if args.tokens_command == "create":
                created = service.create_token(session, body.name, body.role)
                print(created.token)
                print(
                    f"token {created.id} ({created.role}, {created.name!r}, prefix "
                    f"{created.prefix}) created; it is shown only now, store it safely",
                    file=sys.stderr,
                )
            elif args.tokens_command == "list":
                rows = [token.model_dump(mode="json") for token in service.list_tokens(session)]
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    print(
                        f"{'ID':>4}  {'ROLE':<7} {'PREFIX':<10} {'CREATED':<25} {'STATUS':<9} NAME"
                    )
                    for row in rows:
                        status = "revoked" if row["revoked_at"] else "active"
                        print(
                            f"{row['id']:>4}  {row['role']:<7} {row['prefix']:<10} "
                            f"{row['created_at']:<25} {status:<9} {row['name']}"
                        )
            else:
                revoked = service.revoke_token(session, args.id)
                print(f"token {revoked.id} ({revoked.role}, {revoked.name!r}) revoked")
    except ApiError as error:
        print(f"ranktune tokens: {error.detail}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(
            f"ranktune tokens: the database at {_safe(url)} is not ready ({type(error).__name__});"
            " run `ranktune db upgrade` first",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    return 0


def _in_database(command: str, url: str | None, work: Callable[[Session], str]) -> int:
    """Run ``work`` in one read transaction on the database of RANKTUNE_DATABASE_URL (or
    ``url``) and print what it returns; an API error or a database not ready exits 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from api.db import make_engine, make_session_factory
    from api.errors import ApiError

    url = url or load_settings().database_url
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            text = work(session)
    except ApiError as error:
        field = f" ({error.field})" if error.field else ""
        print(f"ranktune {command}: {error.detail}{field}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(
            f"ranktune {command}: the database at {_safe(url)} is not ready "
            f"({type(error).__name__}); run `ranktune db upgrade` first",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    sys.stdout.write(text)
    return 0


def _export(args: argparse.Namespace) -> int:
    from api.services import offpolicy

    if args.output:

        def work(session: Session) -> str:
            content = offpolicy.export_ticks(session, args.name, args.format)
            with open(args.output, "w", encoding="utf-8", newline="") as output:
                output.write(content)
            return ""

        return _in_database("export", args.url, work)
    return _in_database(
        "export", args.url, lambda session: offpolicy.export_ticks(session, args.name, args.format)
    )


def _candidate_of(args: argparse.Namespace) -> dict[str, object]:
    """The candidate the options name, as the API's body takes it."""
    if args.arm is not None:
        return {"kind": "arm", "arm_id": args.arm}
    if args.mix is not None:
        weights: dict[int, float] = {}
        for item in args.mix.split(","):
            arm, _, weight = item.partition("=")
            try:
                weights[int(arm)] = float(weight)
            except ValueError:
                raise UsageError(
                    f"--mix: expected ARM=WEIGHT[,ARM=WEIGHT...]; got {item!r}"
                ) from None
        return {"kind": "mix", "weights": weights}
    if args.policy is not None:
        params: dict[str, float] = {}
        for item in args.param or []:
            key, _, value = item.partition("=")
            try:
                params[key] = float(value)
            except ValueError:
                raise UsageError(f"--param: expected NAME=NUMBER; got {item!r}") from None
        return {"kind": "policy", "policy": args.policy, "params": params or None}
    return {"kind": "uniform"}


def _evaluate_experiment(args: argparse.Namespace) -> int:
    import json

    from pydantic import ValidationError

    from api import schemas
    from api.services import offpolicy

    try:
        body = schemas.OffPolicyEvaluationIn.model_validate(
            {"candidate": _candidate_of(args), "clip": args.clip, "level": args.level}
        )
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise UsageError(f"{where}: {problem['msg']}") from None

    def work(session: Session) -> str:
        result = offpolicy.evaluate(
            session,
            args.name,
            offpolicy.Candidate(**body.candidate.model_dump()),
            clip=body.clip,
            level=body.level,
        )
        if args.json:
            return json.dumps(result, indent=2) + "\n"
        return offpolicy.describe(result)

    return _in_database("evaluate", args.url, work)


def _evaluate_obd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ranktune import obd

    if not 0 < args.level < 1:
        raise UsageError(f"--level must be in (0, 1); got {args.level}")
    try:
        directory = obd.fetch(Path(args.cache_dir) if args.cache_dir else None)
    except obd.DatasetError as error:
        print(f"ranktune evaluate obd: {error}", file=sys.stderr)
        return 1
    print(obd.describe(obd.reproduce_quickstart(directory, level=args.level)))
    return 0


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ranktune",
        description="Multi-armed bandit experiments over ranker configurations.",
        epilog="Exit codes: 0 success, 1 failure while running, 2 usage error (a bad option or "
        "setting). Settings come from RANKTUNE_* environment variables (see the README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the API and run the tick scheduler")
    serve.add_argument("--host", help="bind address (default RANKTUNE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default RANKTUNE_PORT or 8000)")
    serve.add_argument(
        "--upgrade", action="store_true", help="apply database migrations before serving"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="the least severe level logged (default info)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default RANKTUNE_LOG_FORMAT or text)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (creates the database)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.add_argument("--url", help="database URL (default RANKTUNE_DATABASE_URL)")
    upgrade.set_defaults(run=_db)

    openapi = commands.add_parser(
        "openapi", help="write the OpenAPI document or the API reference (no server needed)"
    )
    openapi.add_argument(
        "--format",
        choices=("json", "markdown"),
        default="json",
        help="json: the document /openapi.json serves; markdown: the reference (docs/api.md)",
    )
    openapi.add_argument("--output", "-o", help="write to this file (default: stdout)")
    openapi.set_defaults(run=_openapi)

    tokens = commands.add_parser(
        "tokens", help="stored tokens: create, list, revoke (docs/security.md)"
    )
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    create = tokens_commands.add_parser(
        "create", help="create a token and print it (once: only its hash is stored)"
    )
    create.add_argument("--role", required=True, choices=["admin", "viewer", "client"])
    create.add_argument("--name", required=True, help="what the token is for")
    listing = tokens_commands.add_parser("list", help="every token, without secrets")
    listing.add_argument("--json", action="store_true", help="as JSON")
    revoke = tokens_commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int, help="the token's id (see `ranktune tokens list`)")
    for command in (create, listing, revoke):
        command.add_argument("--url", help="database URL (default RANKTUNE_DATABASE_URL)")
        command.set_defaults(run=_tokens)

    evaluate = commands.add_parser(
        "evaluate", help="off-policy estimates from logged data (docs/offpolicy.md)"
    )
    evaluate_commands = evaluate.add_subparsers(
        dest="evaluate_command", required=True, metavar="COMMAND"
    )
    obd_command = evaluate_commands.add_parser(
        "obd",
        help="reproduce the Open Bandit Pipeline's quickstart on the Open Bandit Dataset sample "
        "(downloads obp's source distribution from PyPI once)",
    )
    obd_command.add_argument(
        "--cache-dir",
        help="where the dataset's files are kept (default $RANKTUNE_CACHE_DIR, else "
        "$XDG_CACHE_HOME/ranktune or ~/.cache/ranktune, subdirectory obd-<obp version>)",
    )
    obd_command.add_argument(
        "--level", type=float, default=0.95, help="confidence level (default 0.95)"
    )
    obd_command.set_defaults(run=_evaluate_obd)
    experiment_command = evaluate_commands.add_parser(
        "experiment",
        help="estimate a candidate allocation from an experiment's recorded windows "
        "(IPS, self-normalised IPS, doubly robust)",
    )
    experiment_command.add_argument("name", help="the experiment")
    candidate = experiment_command.add_mutually_exclusive_group()
    candidate.add_argument("--arm", type=int, help="always this arm (its id)")
    candidate.add_argument("--mix", help="a fixed mix: ARM=WEIGHT[,ARM=WEIGHT...]")
    candidate.add_argument(
        "--uniform", action="store_true", help="every target arm alike (the default)"
    )
    candidate.add_argument(
        "--policy",
        choices=["thompson", "ucb1", "egreedy", "edecay"],
        help="this policy replayed on each window's posteriors",
    )
    experiment_command.add_argument(
        "--param", action="append", help="the replayed policy's constant: NAME=NUMBER"
    )
    experiment_command.add_argument(
        "--clip", type=float, help="cut importance weights above this (biased; warned)"
    )
    experiment_command.add_argument(
        "--level", type=float, default=0.95, help="confidence level (default 0.95)"
    )
    experiment_command.add_argument("--json", action="store_true", help="the API's answer")
    experiment_command.add_argument("--url", help="database URL (default RANKTUNE_DATABASE_URL)")
    experiment_command.set_defaults(run=_evaluate_experiment)

    export = commands.add_parser(
        "export",
        help="an experiment's tick records (counts, propensities, posteriors per tick and arm)",
    )
    export.add_argument("name", help="the experiment")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", "-o", help="write to this file (default: stdout)")
    export.add_argument("--url", help="database URL (default RANKTUNE_DATABASE_URL)")
    export.set_defaults(run=_export)

    commands.add_parser(
        "simulate", help="bandit simulations (ranktune simulate --help)", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "simulate":
        from simulations.cli import main as simulate_main

        return simulate_main(args_list[1:])
    from api.logs import configure_logging

    # Text until `serve` knows its format and secrets. APScheduler logs every run of every
    # job at INFO (several lines a second), Alembic a dozen set-up lines per migration run:
    # configure_logging keeps only their warnings; ranktune says what matters in one line.
    configure_logging("text")
    args = build_parser().parse_args(args_list)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"ranktune {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
