"""What the experiment report costs: 10 arms x 5 declared metrics, counts in every bucket.

Not part of ``make bench`` (no HTTP load: the report is an admin read, never on the hot
paths). On a fresh SQLite file and on a fresh PostgreSQL database (127.0.0.1:5432, user
postgres, trust; created and dropped here), it builds an experiment with 10 arms and the
reference, ticks, and 5 secondary and guardrail metrics declared after the counts began
(so every metric has a baseline to subtract: the worst case), and fills ``metric_counts``
for every arm, group, event type (exposures, the decision metric, then the 5 metrics) and
each of the 64 buckets, and records ``RECENT_TICKS`` applied ticks for the health checks. Then,
alternating, ``--repeats`` times each, in read transactions as the route uses them:

* baseline: a bare read of the same ``metric_counts`` rows (``repo.metric_counts``);
* scorecard: the rows' statistics (``api.services.report.scorecard``);
* report: the whole document, health checks included (``report_document``);
* HTTP: ``GET /v1/experiments/{name}/report`` and ``?format=csv`` through the app
  in-process (Starlette's TestClient: routing, authentication, validation, rendering).

Prints the medians and each one's ratio to the baseline's median of the same run.

    .venv/bin/python benchmarks/report_cost.py [--repeats 30] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import repositories as repo
from api.app import create_app
from api.db import upgrade_database
from api.models import Experiment, Tick, TickArm
from api.services.common import now_utc
from api.services.report import RECENT_TICKS, report_document, scorecard
from api.serving import REPORT_BUCKETS
from api.settings import Settings
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS, say

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DATABASE = "ranktune_bench_report"
ARMS = 10
METRICS = [
    {"event": "view", "role": "secondary", "direction": "increase"},
    {"event": "share", "role": "secondary", "direction": "increase"},
    {"event": "favourite", "role": "secondary", "direction": "increase"},
    {"event": "bounce", "role": "guardrail", "direction": "decrease", "max_loss": 0.05},
    {"event": "complaint", "role": "guardrail", "direction": "decrease", "max_loss": 0.02},
]
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{directory}/report.db"


@contextmanager
def postgresql_database() -> Iterator[str]:
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    try:
        yield make_url(POSTGRES_SERVER).set(database=DATABASE).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        admin.dispose()


def arm_configs() -> list[dict[str, float]]:
    return [
        {"text_match": 0.1 + 0.15 * k, "distance": 0.5, "price_diff": 1.0, "region": k % 4}
        for k in range(ARMS)
    ]


def recent_ticks(session: Any, experiment_id: int, arms: list[int], start: Any) -> list[int]:
    """``RECENT_TICKS`` applied ticks, an hour apart from ``start``, each with a row per target
    arm in ``arms`` (what the report's health checks read); their ids."""
    ids = []
    for number in range(RECENT_TICKS):
        tick = Tick(
            experiment_id=experiment_id,
            number=number + 1,
            created_at=start + timedelta(hours=number),
            applied=True,
            mode="request",
            decay=1.0,
            reference_exposures=500.0,
            reference_events=50.0,
            target_exposures=2000.0,
            target_events=200.0,
            window_arm_id=None,
            next_window_arm_id=None,
        )
        session.add(tick)
        session.flush()
        ids.append(tick.id)
        for arm in arms:
            session.add(
                TickArm(
                    tick_id=tick.id,
                    arm_id=arm,
                    exposures=200.0,
                    target_events=20.0,
                    alpha_increment=0.0,
                    beta_increment=0.0,
                    alpha_before=1.0,
                    beta_before=1.0,
                    alpha_after=1.0,
                    beta_after=1.0,
                )
            )
    return ids


def populate(client: TestClient, rng: np.random.Generator) -> int:
    """The experiment, its counts in every bucket, the recent ticks, then the metrics."""
    body = {**SIMILAR_ITEMS, "arms": arm_configs()}
    created = client.post("/v1/experiments", json=body, headers=HEADERS)
    assert created.status_code == 201, created.text
    experiment = created.json()
    reference = experiment["reference_arm_id"]
    arms = [arm["id"] for arm in experiment["arms"] if arm["id"] != reference]
    kinds = ["contact", *(metric["event"] for metric in METRICS)]
    runtime = client.app.state.runtime

    def counts(declared: int) -> list[repo.PendingRow]:
        """Counts as ticks add them: exposures and the first ``declared`` event types (a
        tick adds only the metrics declared when it runs)."""
        rates = (0.1, 0.5, 0.05, 0.02, 0.1, 0.01)[:declared]
        rows = []
        for arm, group in [(reference, "reference"), *((a, "target") for a in arms)]:
            exposures = rng.integers(200, 400, REPORT_BUCKETS)
            for bucket in range(REPORT_BUCKETS):
                rows.append(
                    repo.PendingRow(arm, group, "exposure", "", bucket, int(exposures[bucket]))
                )
                for rate, kind in zip(rates, kinds, strict=False):
                    events = int(rng.binomial(exposures[bucket], rate))
                    rows.append(repo.PendingRow(arm, group, kind, "", bucket, events))
        return rows

    start = now_utc() - timedelta(hours=RECENT_TICKS)
    with runtime.transaction() as session:
        repo.add_metric_counts(session, experiment["id"], 1, repo.PendingWindow.of(counts(1)))
        recent_ticks(session, experiment["id"], arms, start)
    for metric in METRICS:  # declared after the counts began: each has a baseline
        added = client.post(f"/v1/experiments/{body['name']}/metrics", json=metric, headers=HEADERS)
        assert added.status_code == 201, added.text
    with runtime.transaction() as session:  # and counts since the declarations
        repo.add_metric_counts(
            session, experiment["id"], 1, repo.PendingWindow.of(counts(len(kinds)))
        )
    return int(experiment["id"])


def measure(url: str, repeats: int) -> dict[str, Any]:
    upgrade_database(url)
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False)
    with TestClient(create_app(settings)) as client:
        experiment_id = populate(client, np.random.default_rng(1))
        runtime = client.app.state.runtime
        name = SIMILAR_ITEMS["name"]
        rows = 0

        def bare() -> None:
            nonlocal rows
            with runtime.read_transaction() as session:
                rows = len(repo.metric_counts(session, experiment_id, 1))

        def card() -> None:
            with runtime.read_transaction() as session:
                model = session.get(Experiment, experiment_id)
                assert model is not None
                scorecard(session, model)

        def document() -> None:
            with runtime.read_transaction() as session:
                model = session.get(Experiment, experiment_id)
                assert model is not None
                report_document(session, model)

        def http(fmt: str) -> Callable[[], None]:
            def get() -> None:
                answer = client.get(
                    f"/v1/experiments/{name}/report", params={"format": fmt}, headers=HEADERS
                )
                assert answer.status_code == 200, answer.text

            return get

        cases: dict[str, Callable[[], None]] = {
            "bare read of metric_counts (baseline)": bare,
            "scorecard": card,
            "report document (scorecard + health)": document,
            "GET .../report (JSON)": http("json"),
            "GET .../report?format=csv": http("csv"),
        }
        for case in cases.values():  # warm-up: connections, caches, imports
            case()
        timings: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(repeats):
            for label, case in cases.items():
                began = time.perf_counter()
                case()
                timings[label].append(time.perf_counter() - began)
        report = client.get(f"/v1/experiments/{name}/report", headers=HEADERS).json()
        with runtime.read_transaction() as session:
            baselines = len(repo.metric_baselines(session, list(range(1, 100)), 1))
    return {
        "medians_ms": {label: 1e3 * statistics.median(t) for label, t in timings.items()},
        "metric_counts_rows": rows,
        "baseline_rows": baselines,
        "report_rows": len(report["rows"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    # The app's snapshot refresher complains when a loaded machine delays it; not our subject.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    stores = {"sqlite": sqlite_database, "postgresql": postgresql_database}
    for store, database in stores.items():
        if args.only not in (None, store):
            continue
        with database() as url:
            result = measure(url, args.repeats)
        medians = result["medians_ms"]
        base = medians["bare read of metric_counts (baseline)"]
        say(
            f"\n{store}: {ARMS} arms + reference, {len(METRICS)} declared metrics + the decision "
            f"metric, {result['metric_counts_rows']:,} metric_counts rows, "
            f"{result['baseline_rows']:,} baseline rows, {result['report_rows']} report rows; "
            f"medians of {args.repeats} repeats"
        )
        for label, median in medians.items():
            say(f"  {label:<40} {median:8.1f} ms   {median / base:5.1f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
