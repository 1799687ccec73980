"""Simulated clients for the README quickstart: standard library only.

Asks the running server for a configuration for N units and reports a contact for some of
them, with a contact probability that depends on the configuration served, so the
posteriors move after the next tick. Safe to run again and again: every run reports its
events under event ids of its own, in batches within the server's limit. Usage:

    python3 examples/quickstart_traffic.py --units 500 [--url http://127.0.0.1:8000]

Exit codes: 0 done, 1 the server refused a request (its error answer is printed).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import urllib.error
import urllib.request
from typing import Any

BATCH = 500  # events per POST /v1/events; the server takes up to 1,000


class ServerRefused(Exception):
    """The server answered with an error; the message is its answer."""


def contact_probability(config: dict[str, float]) -> float:
    # A made-up user model: buyers like region matches and near prices.
    return min(0.9, 0.05 + 0.04 * config["region"] + 0.03 * config["price_diff"])


def call(request: urllib.request.Request | str) -> Any:
    """The JSON answer, or ServerRefused with the server's error body."""
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        url = request if isinstance(request, str) else request.full_url
        body = error.read().decode("utf-8", "replace")
        raise ServerRefused(f"{error.code} from {url}: {body}") from None


def post_events(url: str, events: list[dict[str, Any]]) -> dict[str, int]:
    request = urllib.request.Request(
        f"{url}/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    answer: dict[str, int] = call(request)
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--experiment", default="similar-items")
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None, help="of the simulated users")
    parser.add_argument("--batch", type=int, default=BATCH, help="events per request")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    run = secrets.token_hex(4)  # event ids of this run: a second run is new traffic
    served = contacts = duplicates = 0
    events: list[dict[str, Any]] = []
    try:
        for unit in range(args.units):
            answer = call(
                f"{args.url}/v1/experiments/{args.experiment}/assignment?unit=user-{unit}"
            )
            served += 1
            if rng.random() < contact_probability(answer["config"]):
                events.append(
                    {
                        "ticket": answer["ticket"],
                        "type": "contact",
                        "count": 1,
                        "event_id": f"run-{run}-user-{unit}-contact",
                    }
                )
            # Report as we go, so a failure later leaves served and reported in step.
            if len(events) >= args.batch or unit == args.units - 1:
                stored = post_events(args.url, events) if events else {}
                contacts += stored.get("accepted", 0)
                duplicates += stored.get("duplicates", 0)
                events = []
    except ServerRefused as refused:
        print(f"the server refused a request: {refused}", file=sys.stderr)
        print(f"{served} configurations served, {contacts} contacts stored", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"cannot reach {args.url}: {error.reason}", file=sys.stderr)
        return 1
    print(
        f"{served} configurations served; {contacts} contacts reported"
        + (f" ({duplicates} already stored)" if duplicates else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
