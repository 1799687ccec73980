"""The whole tick of benchmarks/ticks.py's experiment (500 arms, 2,004 pending counts) for
the code tree given, so that a tree from before a change (``git archive main | tar -x -C
DIR``) and this one can be run one after the other on the same machine: ``apply_tick`` in
its transaction with the window's propensities inside (as the admin route runs it, and as
every tick ran before they moved before the lock), medians of ``TICKS`` after the first.
Prints wall and CPU milliseconds (CPU of this process: SQLite's work included,
PostgreSQL's not) on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/ticks_before_after.py ROOT [TICKS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(sys.argv[1]).resolve()) if len(sys.argv) > 1 else ""
if not ROOT:
    raise SystemExit(__doc__)
sys.path.insert(0, ROOT)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this tree's benchmarks

import numpy as np  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import api  # noqa: E402
from api import repositories as repo  # noqa: E402
from api.app import create_app  # noqa: E402
from api.db import upgrade_database  # noqa: E402
from api.services.common import now_utc  # noqa: E402
from api.services.experiments import add_arm  # noqa: E402
from api.services.ticks import apply_tick  # noqa: E402
from api.settings import Settings  # noqa: E402

assert api.__file__ and api.__file__.startswith(ROOT), api.__file__
from benchmarks.common import ADMIN_TOKEN, SIMILAR_ITEMS  # noqa: E402
from benchmarks.segments import POSTGRES_SERVER, _arms, _postgres_database  # noqa: E402

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EVENTS = ("exposure", "contact", "add_to_cart", "message")


def bench(url: str, ticks: int) -> None:
    settings = Settings(
        database_url=url, admin_token=ADMIN_TOKEN, scheduler_enabled=False, snapshot_refresh_s=3600
    )
    app = create_app(settings)
    with TestClient(app) as client:
        runtime: Any = app.state.runtime
        configs = _arms(550, 11)
        body = {
            **SIMILAR_ITEMS,
            "name": "ticks",
            "arms": configs[:256],
            "max_events_per_exposure": {"*": 1_000_000, "exposure": 1_000_000},
            "metrics": [
                {"event": event, "role": "secondary", "direction": "increase"}
                for event in EVENTS[2:]
            ],
        }
        created = client.post("/v1/experiments", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        with runtime.transaction() as session:
            for config in configs[256:]:
                if len(repo.arms_of(session, experiment_id)) > 500:
                    break
                add_arm(session, "ticks", config)
        rng = np.random.default_rng(3)

        def window() -> None:
            with runtime.read_transaction() as session:
                arms = list(repo.arms_of(session, experiment_id))
            rows = []
            for arm in arms:
                group = "reference" if arm.origin == "reference" else "target"
                n = int(rng.integers(50, 500))
                for event in EVENTS:
                    count = n if event == "exposure" else int(rng.binomial(n, 0.1))
                    rows.append((experiment_id, arm.id, group, event, "", 0, 0, max(count, 1)))
            with runtime.transaction() as session:
                add_pending(session, rows)

        walls, cpus = [], []
        for number in range(ticks + 1):
            window()
            began, cpu = time.perf_counter(), time.process_time()
            with runtime.transaction() as session:
                tick = apply_tick(session, experiment_id, now=now_utc(), rng=rng, only_if_due=False)
                assert tick is not None and tick.applied
            if number:  # the first inserts every metric_counts key
                walls.append((time.perf_counter() - began) * 1e3)
                cpus.append((time.process_time() - cpu) * 1e3)
    print(
        f"{ROOT} [{url.split(':')[0]}]: whole tick {statistics.median(walls):.1f} ms, "
        f"CPU {statistics.median(cpus):.1f} ms (medians of {ticks})",
        flush=True,
    )


def add_pending(session: Any, rows: list[tuple[Any, ...]]) -> None:
    """Pending counts as the tree under test stores them: one packed batch (since
    migration 0025, ``api.pending``) or a row per key (``pending_counts`` before)."""
    if hasattr(repo, "insert_pending_batches"):
        from api.pending import PendingRow, pack_batch

        batch = pack_batch([PendingRow(*row[1:5], row[5], row[7], row[6]) for row in rows])
        repo.insert_pending_batches(session.connection(), [(rows[0][0], batch)])
    else:
        from api.db import add_counts
        from api.ingest import PENDING_KEY  # type: ignore[attr-defined]

        add_counts(session.connection(), "pending_counts", PENDING_KEY, sorted(rows))


def main() -> None:
    ticks = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    directory = Path(tempfile.mkdtemp(prefix="ranktune-bench-ticks-"))
    url = f"sqlite:///{directory / 'ranktune.db'}"
    upgrade_database(url)
    bench(url, ticks)
    pg_url, drop = _postgres_database(POSTGRES_SERVER)
    try:
        bench(pg_url, ticks)
    finally:
        drop()


if __name__ == "__main__":
    main()
