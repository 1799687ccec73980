"""What request ids and HTTP metrics cost an assignment, in-process (not part of `make bench`).

Two apps on one migrated SQLite database with the example experiment: the real one, and one
whose ``RequestObservation`` middleware is replaced by a passthrough layer (the same number
of ASGI layers, none of the work). Rounds of assignments (a new unit each) go through each
app's whole ASGI stack, alternating A B / B A; the figure is the CPU time of the event loop's
thread per request (``time.thread_time``: less disturbed than wall time by other tenants of a
shared machine). Prints the medians and minimums of the rounds and the difference.

    .venv/bin/python benchmarks/observability_cost.py [--requests 5000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

import api.app
from api.db import upgrade_database
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, assignment_scope


class Passthrough:
    def __init__(self, app: ASGIApp, **_: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def build(settings: Settings, observed: bool) -> FastAPI:
    real = api.app.RequestObservation
    if not observed:
        api.app.RequestObservation = Passthrough  # type: ignore[assignment,misc]
    try:
        return api.app.create_app(settings)
    finally:
        api.app.RequestObservation = real  # type: ignore[misc]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_message: Any) -> None:
    return None


def scope(index: int) -> dict[str, Any]:
    return assignment_scope(index, [(b"user-agent", b"bench")])


def one_round(client: TestClient, app: FastAPI, requests: int, offset: int) -> float:
    async def run() -> float:
        started = time.thread_time()
        for index in range(offset, offset + requests):
            await app(scope(index), _receive, _send)
        return (time.thread_time() - started) / requests * 1e6

    result: float = client.portal.call(run)  # type: ignore[union-attr]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    url = f"sqlite:///{tempfile.mkdtemp(prefix='ranktune-bench-obs-')}/ranktune.db"
    upgrade_database(url)
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False)
    apps = {"observed": build(settings, True), "passthrough": build(settings, False)}
    with TestClient(apps["observed"]) as first, TestClient(apps["passthrough"]) as second:
        created = first.post(
            "/v1/experiments",
            json=SIMILAR_ITEMS,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert created.status_code == 201, created.text
        second.app.state.runtime.refresh_snapshots()  # type: ignore[attr-defined]
        clients = {"observed": first, "passthrough": second}
        rounds: dict[str, list[float]] = {"observed": [], "passthrough": []}
        order = ["observed", "passthrough"]
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else reversed(order):
                offset = number * args.requests
                rounds[name].append(one_round(clients[name], apps[name], args.requests, offset))
    for name, values in rounds.items():
        print(
            f"{name}: median {statistics.median(values):.1f} us CPU per assignment, "
            f"min {min(values):.1f} (rounds {', '.join(f'{v:.1f}' for v in values)})"
        )
    median_cost = statistics.median(rounds["observed"]) - statistics.median(rounds["passthrough"])
    min_cost = min(rounds["observed"]) - min(rounds["passthrough"])
    print(
        f"request ids + HTTP metrics: {median_cost:+.1f} us (medians), "
        f"{min_cost:+.1f} us (minimums)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
