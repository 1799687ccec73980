"""The baseline of the assignment benchmark: a plain FastAPI endpoint, nothing of ranktune.

Same path and query parameters as ``GET /v1/experiments/{name}/assignment`` (with the same
declared constraints), and it returns a constant configuration of the same shape as
ranktune's answer, the plain FastAPI way (a dict, serialised by FastAPI). It is served by
``uvicorn.run`` with uvicorn's defaults (one process, uvloop, httptools), which ``ranktune
serve`` starts from; serve adds request deadlines, a connection limit and a response header
(api/server.py), which can only cost ranktune, so the comparison does not flatter it.

    python benchmarks/baseline_app.py --port 8101 --log-level warning
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query

app = FastAPI(title="baseline")

CONFIGURATION: dict[str, Any] = {
    "experiment": "similar-items",
    "group": "target",
    "arm_id": 2,
    "config": {"text_match": 1.2, "distance": 0.8, "price_diff": 1.0, "region": 1},
    "ticket": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYn",  # 52 characters, as a ticket
    "active": True,
}


@app.get("/v1/experiments/{name}/assignment")
async def assignment(
    name: Annotated[str, Path(max_length=64)],
    unit: Annotated[str, Query(min_length=1, max_length=256)],
) -> dict[str, Any]:
    return CONFIGURATION


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # uvicorn's defaults: one process, default loop/http (uvloop, httptools).
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
