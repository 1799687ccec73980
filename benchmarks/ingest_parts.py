"""Where the event route's CPU goes, per event, without HTTP: the batch's parsing
(``model_validate_json``), the intake (ticket checks, payload hashes, rows:
``EventIntake.rows``, and the ticket checks alone) and the writer (``EventWriter`` committing
groups of 16 batches, as 16 waiting requests are grouped; SQLite, synchronous=FULL).

The same code as the route, in-process, on a migrated SQLite database with the example
experiment, one ticket per event as benchmarks/ingestion.py sends them, the collector tuned
as ``ranktune serve`` tunes it. CPU time (``time.process_time``), which other tenants of a
shared machine disturb less than wall time. What the service spends beyond these is HTTP,
the framework and the hand-off to the writer: the server's CPU per event measured by
benchmarks/ingestion.py minus this total. Not part of ``make bench``.

    .venv/bin/python benchmarks/ingest_parts.py --batches 320
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.db import upgrade_database
from api.ingest import _Pending
from api.runtime import Runtime
from api.server import YOUNG_GC_THRESHOLD
from api.settings import Settings
from benchmarks.common import say
from benchmarks.db_growth import setup

BATCH = 100
GROUP = 16  # batches per commit: 16 connections' requests waiting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=320, help="batches of 100 events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ranktune-parts-") as directory:
        url = f"sqlite:///{Path(directory) / 'parts.db'}"
        upgrade_database(url)
        runtime = Runtime(Settings(database_url=url, scheduler_enabled=False))
        try:
            example = setup(runtime)
            now = time.time()
            bodies = []
            for batch in range(args.batches):
                events = []
                for index in range(BATCH):
                    serial = batch * BATCH + index
                    reference = serial % 5 == 0
                    ticket = runtime.signer.issue(
                        example.id,
                        example.reference
                        if reference
                        else example.arms[serial % len(example.arms)],
                        "reference" if reference else "target",
                        now,
                        bucket=serial % 64,
                    )
                    events.append(
                        {"ticket": ticket, "type": "contact", "count": 1, "event_id": f"p{serial}"}
                    )
                bodies.append(json.dumps({"events": events}).encode())
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_GC_THRESHOLD)
            model, intake = runtime.event_batch_model, runtime.event_intake()
            spent = {"parse": 0.0, "intake": 0.0, "tickets": 0.0, "writer": 0.0}
            clock = time.process_time
            for start in range(0, len(bodies), GROUP):
                group = []
                for body in bodies[start : start + GROUP]:
                    began = clock()
                    batch_in = model.model_validate_json(body)
                    parsed = clock()
                    rows = intake.rows(batch_in.events, now=now)
                    built = clock()
                    for index, event in enumerate(batch_in.events):
                        intake._check_ticket(index, event.ticket, now)
                    spent["tickets"] += clock() - built
                    spent["parse"] += parsed - began
                    spent["intake"] += built - parsed
                    group.append(_Pending(rows))
                began = clock()
                runtime.writer._write_group(group)
                spent["writer"] += clock() - began
                for pending in group:
                    if pending.future.result().accepted != BATCH:
                        raise SystemExit("an event was not accepted")
        finally:
            gc.unfreeze()
            runtime.engine.dispose()
    events = args.batches * BATCH
    per = {name: seconds / events * 1e6 for name, seconds in spent.items()}
    say(
        f"CPU per event (us), {events} events: parse {per['parse']:.2f}, intake "
        f"{per['intake']:.2f} (of which ticket checks {per['tickets']:.2f}), writer "
        f"{per['writer']:.2f}; total {per['parse'] + per['intake'] + per['writer']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
