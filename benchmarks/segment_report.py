"""What the report of a segmented experiment costs, against an unsegmented one with the same
counts (issue 12: ``metric_counts`` per segment, migration 0021).

Not part of ``make bench`` (the report is an admin read, never on the hot paths). On a fresh
SQLite file and a fresh PostgreSQL database (127.0.0.1:5432, user postgres, trust; created
and dropped here) it builds two experiments of 10 arms and the reference:

* ``plain``, unsegmented: exposures and contacts of every arm and group in each of the 64
  buckets (one ``metric_counts`` row each);
* ``segmented``, with ``--segments`` opened segments: the same counts split over the
  segments (a row per segment), the per-segment evidence (``arm_segments``) the segments
  summary reads, and the segments' rows of the recent ticks (``tick_segments``).

Both get ``RECENT_TICKS`` applied ticks for the health checks. Then, alternating,
``--repeats`` times each, in read transactions as the route uses them:

* baseline: ``report_document`` of ``plain``;
* ``segmented``'s overall report without the segments summary (the sum over segments);
* ``segmented``'s overall report with it (the best arm of the 20 biggest segments);
* one segment's report (``segment=``).

Prints the medians and each one's ratio to the baseline's median of the same run.

    .venv/bin/python benchmarks/segment_report.py [--segments 50] [--repeats 20]
        [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import repositories as repo
from api.app import create_app
from api.db import upgrade_database
from api.models import Experiment, Segment
from api.services.common import now_utc
from api.services.report import RECENT_TICKS, report_document
from api.serving import REPORT_BUCKETS
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, say
from benchmarks.report_cost import (
    HEADERS,
    arm_configs,
    postgresql_database,
    recent_ticks,
    sqlite_database,
)


def create(client: TestClient, name: str, segments: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {**SIMILAR_ITEMS, "name": name, "arms": arm_configs()}
    if segments is not None:
        body["segments"] = {"max_segments": segments + 1}
    created = client.post("/v1/experiments", json=body, headers=HEADERS)
    assert created.status_code == 201, created.text
    experiment: dict[str, Any] = created.json()
    return experiment


def populate(client: TestClient, segments: int, rng: np.random.Generator) -> tuple[int, int]:
    """The two experiments with the same counts; their ids."""
    plain = create(client, "plain", None)
    segmented = create(client, "segmented", segments)
    # Exposures per (arm, segment, bucket) with Zipf-like segment sizes; contacts at 10%.
    sizes = 1.0 / np.arange(1, segments + 1)
    runtime = client.app.state.runtime
    start = now_utc() - timedelta(hours=RECENT_TICKS)
    with runtime.transaction() as session:
        session.execute(
            insert(Segment),
            [
                {
                    "experiment_id": segmented["id"],
                    "index": index,
                    "name": f"category-{index}",
                    "created_at": start,
                }
                for index in range(1, segments)
            ],
        )
        for experiment in (plain, segmented):
            reference = experiment["reference_arm_id"]
            arms = [
                (arm["id"], "reference" if arm["id"] == reference else "target")
                for arm in experiment["arms"]
            ]
            exposures = rng.poisson(
                400 * sizes[None, :, None], (len(arms), segments, REPORT_BUCKETS)
            )
            contacts = rng.binomial(exposures, 0.1)
            rows = []
            if experiment is plain:
                for k, (arm, group) in enumerate(arms):
                    for bucket in range(REPORT_BUCKETS):
                        for kind, counts in (("exposure", exposures), ("contact", contacts)):
                            total = int(counts[k, :, bucket].sum())
                            rows.append(repo.PendingRow(arm, group, kind, "", bucket, total))
            else:
                for k, (arm, group) in enumerate(arms):
                    for s in range(segments):
                        for bucket in range(REPORT_BUCKETS):
                            for kind, counts in (("exposure", exposures), ("contact", contacts)):
                                count = int(counts[k, s, bucket])
                                rows.append(repo.PendingRow(arm, group, kind, "", bucket, count, s))
                repo.write_arm_segment_states(
                    session,
                    {
                        arm: repo.ArmSegmentArrays(
                            1.0 + contacts[k].sum(axis=1),
                            1.0 + 0.1 * exposures[k].sum(axis=1),
                            exposures[k].sum(axis=1).astype(float),
                            contacts[k].sum(axis=1).astype(float),
                            np.zeros(segments),
                            exposures[k].sum(axis=1).astype(float),
                        )
                        for k, (arm, _) in enumerate(arms)
                    },
                )
            repo.add_metric_counts(session, experiment["id"], 1, repo.PendingWindow.of(rows))
            _ticks(
                session, experiment["id"], arms, segments if experiment is segmented else 0, start
            )
    return int(plain["id"]), int(segmented["id"])


def _ticks(
    session: Any, experiment_id: int, arms: list[tuple[int, str]], segments: int, start: Any
) -> None:
    """``RECENT_TICKS`` applied ticks with every target arm's row (and every segment's)."""
    targets = [arm for arm, group in arms if group == "target"]
    for tick_id in recent_ticks(session, experiment_id, targets, start):
        if segments:
            pairs = len(arms) * segments
            repo.insert_tick_segment_records(
                session,
                tick_id,
                repo.TickSegmentRecords(
                    np.tile(np.arange(segments), len(arms)),
                    np.repeat([arm for arm, _ in arms], segments),
                    np.full(pairs, 20.0),
                    np.full(pairs, 2.0),
                    np.zeros(pairs),
                    np.zeros(pairs),
                    np.ones(pairs),
                    np.ones(pairs),
                ),
            )


def measure(url: str, segments: int, repeats: int) -> dict[str, Any]:
    upgrade_database(url)
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False)
    with TestClient(create_app(settings)) as client:
        plain_id, segmented_id = populate(client, segments, np.random.default_rng(1))
        runtime = client.app.state.runtime

        def report(experiment_id: int, **options: Any) -> Callable[[], None]:
            def run() -> None:
                with runtime.read_transaction() as session:
                    model = session.get(Experiment, experiment_id)
                    assert model is not None
                    report_document(session, model, **options)

            return run

        cases: dict[str, Callable[[], None]] = {
            "unsegmented report, same counts (baseline)": report(plain_id),
            "segmented, overall, no segments summary": report(segmented_id, with_segments=False),
            "segmented, overall, with segments summary": report(segmented_id),
            "segmented, one segment (segment=category-1)": report(
                segmented_id, segment="category-1"
            ),
        }
        for case in cases.values():  # warm-up: connections, caches, imports
            case()
        timings: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(repeats):
            for label, case in cases.items():
                began = time.perf_counter()
                case()
                timings[label].append(time.perf_counter() - began)
        with runtime.read_transaction() as session:
            rows = {
                "plain": len(repo.metric_counts(session, plain_id, 1)),
                "segmented": sum(
                    len(repo.metric_counts(session, segmented_id, 1, s)) for s in range(segments)
                ),
            }
    return {
        "medians_ms": {label: 1e3 * statistics.median(t) for label, t in timings.items()},
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    stores = {"sqlite": sqlite_database, "postgresql": postgresql_database}
    for store, database in stores.items():
        if args.only not in (None, store):
            continue
        with database() as url:
            result = measure(url, args.segments, args.repeats)
        medians = result["medians_ms"]
        base = medians["unsegmented report, same counts (baseline)"]
        say(
            f"\n{store}: 10 arms + reference, {args.segments} segments, metric_counts rows: "
            f"{result['rows']['plain']:,} unsegmented, {result['rows']['segmented']:,} "
            f"segmented; medians of {args.repeats} repeats"
        )
        for label, median in medians.items():
            say(f"  {label:<46} {median:8.1f} ms   {median / base:5.1f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
