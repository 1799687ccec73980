"""Off-policy estimates checked against the truth, on the marketplace simulation
(docs/offpolicy.md, "A worked example").

Runs `ranktune simulate marketplace` (the platform's own service layer on a temporary SQLite
database, Thompson sampling in request mode, genetic steps on schedule) and then asks, from
the recorded windows alone, what each founder arm would have earned had it been served to
the whole target group, and what uniform allocation would have earned. The simulator knows
every arm's true contact rate, so each estimate is compared with the truth: its lift over the
reference arm (the daily cycle cancels in the ratio) and whether the interval covers it.

    .venv/bin/python examples/offpolicy_marketplace.py --hours 3 --seed 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from api.db import make_engine, make_session_factory
from api.services import offpolicy
from simulations.marketplace.model import EXPERIMENT_NAME, MarketplaceConfig
from simulations.marketplace.run import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clip", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "marketplace.db"
        result = simulate(MarketplaceConfig(hours=args.hours, seed=args.seed), database=database)
        engine = make_engine(f"sqlite:///{database}")
        name = EXPERIMENT_NAME
        reference = result.arms[result.reference_arm_id].true_contacts
        founders = [a for a in result.arms.values() if a.origin == "expert"]
        with make_session_factory(engine)() as session:
            print(f"{'candidate':<22}{'true lift':>10}  {'estimator':<6}{'lift':>8}  interval")
            for arm in sorted(founders, key=lambda a: a.arm_id):
                answer = offpolicy.evaluate(
                    session, name, offpolicy.Candidate("arm", arm_id=arm.arm_id), clip=args.clip
                )
                truth = arm.true_contacts / reference - 1
                _print(f"arm {arm.arm_id} ({arm.label})", truth, answer)
            uniform = offpolicy.evaluate(session, name, offpolicy.Candidate("uniform"))
            _print("uniform", float("nan"), uniform)
            print(f"windows used {uniform['windows']}, skipped {uniform['windows_skipped']}")
            for note in sorted({n for e in uniform["estimates"] for n in e["warnings"]}):
                print(f"warning (uniform): {note}")
        engine.dispose()


def _print(label: str, truth: float, answer: dict[str, object]) -> None:
    for estimate in answer["estimates"]:  # type: ignore[attr-defined]
        lift = estimate["lift"]
        if truth != truth:  # nan: the truth is not computed for this candidate
            covered = ""
        else:
            covered = "covers" if lift["low"] <= truth <= lift["high"] else "MISSES"
        true_lift = "" if truth != truth else format(truth, "+.1%")
        print(
            f"{label:<22}{true_lift:>10}  {estimate['estimator']:<6}{lift['value']:>+8.1%}  "
            f"[{lift['low']:+.1%}, {lift['high']:+.1%}] {covered}  "
            f"ESS {estimate['effective_sample_size']:.0f}/{estimate['samples']:.0f}"
        )
        label = ""
    gaps = [n for n in answer["estimates"][0]["warnings"] if "never" in n]  # type: ignore[index]
    for note in gaps:
        print(f"{'':<22}warning: {note}")


if __name__ == "__main__":
    main()
