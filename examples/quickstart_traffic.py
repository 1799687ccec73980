"""Simulated clients for the README quickstart: standard library only.

Asks the running server for a configuration for N units and reports a contact for some of
them, with a contact probability that depends on the configuration served, so the
posteriors move after the next tick. Usage:

    python3 examples/quickstart_traffic.py --units 500 [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import json
import random
import urllib.request


def contact_probability(config: dict[str, float]) -> float:
    # A made-up user model: buyers like region matches and near prices.
    return min(0.9, 0.05 + 0.04 * config["region"] + 0.03 * config["price_diff"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--experiment", default="similar-items")
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    events = []
    for unit in range(args.units):
        url = f"{args.url}/v1/experiments/{args.experiment}/assignment?unit=user-{unit}"
        with urllib.request.urlopen(url) as response:
            answer = json.load(response)
        if rng.random() < contact_probability(answer["config"]):
            events.append(
                {
                    "ticket": answer["ticket"],
                    "type": "contact",
                    "count": 1,
                    "event_id": f"user-{unit}-contact-{args.seed}",
                }
            )
    request = urllib.request.Request(
        f"{args.url}/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        print(f"{args.units} configurations served; contacts reported: {json.load(response)}")


if __name__ == "__main__":
    main()
