"""The ceiling of the assignment benchmark: a bare ASGI callable, no framework at all.

It answers every GET with a constant JSON body of the same shape and size class as
ranktune's assignment (and ``benchmarks/baseline_app.py``'s), without routing, parsing or
validating anything. Served by ``uvicorn.run`` with the baseline's settings (one process,
uvloop, httptools, log level warning, no access log), it measures what uvicorn and wrk
cost by themselves on this machine: ranktune / raw is the share of the ceiling the service
reaches, and raw - ranktune is what its framework and its own work cost per request.

    python benchmarks/raw_asgi_app.py --port 8102 --log-level warning
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baseline_app import CONFIGURATION  # the answer both other servers give

BODY = json.dumps(CONFIGURATION, separators=(",", ":")).encode()
HEALTH = b'{"status":"ok"}'


def _start(body: bytes) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = HEALTH if scope["path"] == "/health" else BODY
    await send(_start(body))
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # The baseline's settings exactly: uvicorn's defaults, one process, uvloop, httptools.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
