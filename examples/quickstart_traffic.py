"""Simulated users for the README quickstart, through the client SDK (``ranktune_client``).

Asks the running server for a configuration for N units and reports a contact for some of
them, with a contact probability that depends on the configuration served, so the
posteriors move after the next tick. Safe to run again and again: the SDK gives every event
an id of its own, so a second run is new traffic, and sends them in batches within the
server's limit. Usage (``make run`` installs the SDK into .venv):

    .venv/bin/python examples/quickstart_traffic.py --units 500 [--url http://127.0.0.1:8000]

Exit codes: 0 done; 1 ranktune did not serve a configuration (unreachable, or no such
experiment) or did not store every contact (the reason is printed).
"""

from __future__ import annotations

import argparse
import random
import sys

from ranktune_client import Client, Config, Stats


def contact_probability(config: Config) -> float:
    # A made-up user model: buyers like region matches and near prices.
    return min(0.9, 0.05 + 0.04 * config["region"] + 0.03 * config["price_diff"])


def simulate(ranktune: Client, experiment: str, units: int, rng: random.Random) -> int:
    """Serve ``units`` users and track their contacts; the number served. Stops at the
    first configuration ranktune did not serve (a fallback), printing why."""
    for unit in range(units):
        assignment = ranktune.get_config(experiment, f"user-{unit}")
        if assignment.fallback:
            print(
                f"ranktune did not serve user-{unit} a configuration of experiment "
                f"{experiment!r}: {assignment.fallback_reason}",
                file=sys.stderr,
            )
            return unit
        if rng.random() < contact_probability(assignment.config):
            ranktune.track(assignment, "contact")
    return units


def undelivered(stats: Stats) -> str | None:
    """Why some contacts were not stored, if some were not."""
    lost = {
        "refused by the server": stats.events_rejected + stats.events_conflicted,
        "dropped (queue full)": stats.events_dropped,
        "not delivered in time": stats.events_abandoned,
    }
    reasons = [f"{count} {why}" for why, count in lost.items() if count]
    return ", ".join(reasons) or None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--experiment", default="similar-items")
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None, help="of the simulated users")
    parser.add_argument("--batch", type=int, default=500, help="most events per request")
    args = parser.parse_args()
    # A simulator can wait for its answers; a web page would keep the default 0.5 s.
    with Client(args.url, timeout=5.0, max_batch=args.batch) as ranktune:
        served = simulate(ranktune, args.experiment, args.units, random.Random(args.seed))
        delivered = ranktune.close(timeout=60)
    stats = ranktune.stats()
    problem = undelivered(stats) or (None if delivered else "not all delivered in time")
    if served < args.units or problem:
        if problem:
            print(f"contacts not stored: {problem}", file=sys.stderr)
        print(
            f"{served} configurations served, {stats.events_accepted} contacts stored",
            file=sys.stderr,
        )
        return 1
    print(
        f"{served} configurations served; {stats.events_accepted} contacts reported"
        + (f" ({stats.events_duplicate} already stored)" if stats.events_duplicate else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
