"""The client key's cost on the assignment path, in-process: the application called as an
ASGI callable (no sockets, no wrk), so the few microseconds of the check are not lost in a
shared machine's noise.

Three applications on one migrated SQLite database serve the example experiment: two with
RANKTUNE_CLIENT_KEY_REQUIRED off (no header sent; the second is a control, identical to the
first, that shows the noise floor of the comparison) and one with it on (``Authorization:
Bearer <client token>``). Each round times ``--calls`` assignments of each, in an order
that rotates from round to round. Reported: the median microseconds per assignment of
each, and the medians of the per-round ratios on / off and control / off.

    .venv/bin/python benchmarks/client_key.py --rounds 300 --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import upgrade_database
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, assignment_scope, median, say


async def _assign(app: FastAPI, headers: list[tuple[bytes, bytes]], unit: int) -> None:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(assignment_scope(unit, headers), receive, send)
    if status != 200:
        raise RuntimeError(f"assignment answered {status}")


async def _time(app: FastAPI, headers: list[tuple[bytes, bytes]], calls: int, start: int) -> float:
    began = time.perf_counter()
    for unit in range(start, start + calls):
        await _assign(app, headers, unit)
    return (time.perf_counter() - began) / calls * 1e6


def run(rounds: int, calls: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-client-key-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    upgrade_database(url)
    settings = {"database_url": url, "admin_token": ADMIN_TOKEN, "scheduler_enabled": False}
    off = create_app(Settings(**settings))
    control = create_app(Settings(**settings))
    on = create_app(Settings(**settings, client_key_required=True))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        TestClient(off) as off_client,
        TestClient(control) as control_client,
        TestClient(on) as on_client,
    ):
        assert off_client.post("/v1/experiments", json=SIMILAR_ITEMS, headers=admin).is_success
        token = on_client.post(
            "/v1/tokens", json={"name": "bench", "role": "client"}, headers=admin
        ).json()["token"]
        for client in (off_client, control_client, on_client):  # each loads the experiment
            client.app.state.runtime.refresh_snapshots()  # type: ignore[attr-defined]
        keyed = [(b"authorization", f"Bearer {token}".encode())]
        targets: dict[str, tuple[FastAPI, list[tuple[bytes, bytes]]]] = {
            "off": (off, []),
            "control": (control, []),
            "on": (on, keyed),
        }
        figures: dict[str, list[float]] = {name: [] for name in targets}
        names = list(targets)

        async def measure() -> None:
            for app, headers in targets.values():  # warm-up
                await _time(app, headers, calls, 0)
            for number in range(rounds):
                shift = number % len(names)
                for name in names[shift:] + names[:shift]:
                    app, headers = targets[name]
                    figures[name].append(await _time(app, headers, calls, (number + 1) * calls))

        asyncio.run(measure())

    def paired(name: str) -> float:
        return median([a / b for a, b in zip(figures[name], figures["off"], strict=True)])

    summary = {
        "off_us": median(figures["off"]),
        "control_us": median(figures["control"]),
        "on_us": median(figures["on"]),
        "on_ratio": paired("on"),
        "control_ratio": paired("control"),
    }
    say(
        f"client key, in-process assignment (medians of {rounds} rounds of {calls}): off "
        f"{summary['off_us']:.1f} us, control (off again) {summary['control_us']:.1f} us, on "
        f"{summary['on_us']:.1f} us per assignment; median of pairs on/off "
        f"{summary['on_ratio']:.3f}x, control/off {summary['control_ratio']:.3f}x (the noise)"
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    run(args.rounds, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
