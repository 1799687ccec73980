"""The dashboard's server time with a long history: 20 arms, 100,000 ticks (docs/benchmarks.md).

    python benchmarks/dashboard.py [--ticks 100000] [--arms 20] [--repeats 15] [--database PATH]

Builds (once; kept at ``--database`` for the next run) an SQLite database whose experiment
has ``--arms`` active arms and ``--ticks`` ticks of synthetic history (benchmarks/history.py:
a genetic step a day, so retired arms too), then serves the whole app in-process and times,
interleaved, ``--repeats`` times each:

- the experiment page (``GET /experiments/{name}``: everything but the charts),
- the charts' data (``GET /experiments/{name}/charts.json``: the downsampled history),
- the baseline: the admin API's statistics (``GET /v1/experiments/{name}/stats``, its
  default 20,000 draws), which the page's leaderboard reads too.

It prints medians (the app's own ``Server-Timing`` and the in-process wall time), each
against the baseline measured in the same run (so that a loaded machine shows in both),
and the first request of each (the charts' first one sums every tick once: see
``api.services.dashboard.TickBlocks``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.db import make_engine, make_session_factory, upgrade_database  # noqa: E402
from api.settings import Settings  # noqa: E402
from benchmarks.history import HistoryShape, write_history  # noqa: E402

NAME = "similar-items"
TOKEN = "bench-admin-token"


def build(path: Path, shape: HistoryShape) -> str:
    url = f"sqlite:///{path}"
    marker = path.with_suffix(f".{shape.arms}x{shape.ticks}")
    if path.exists() and marker.exists():
        upgrade_database(url)  # a database kept from an older version of the schema
        return url
    path.unlink(missing_ok=True)
    upgrade_database(url)
    engine = make_engine(url)
    started = time.perf_counter()
    write_history(make_session_factory(engine), NAME, shape)
    engine.dispose()
    marker.touch()
    print(
        f"wrote {shape.ticks:,} ticks x {shape.arms} arms in {time.perf_counter() - started:.0f} s"
    )
    return url


def sign_in(client: TestClient) -> None:
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/login", data={"csrf_token": token, "token": TOKEN}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text


def timed(client: TestClient, path: str, **headers: str) -> tuple[float, float]:
    """(server time from Server-Timing or NaN, wall time) in ms."""
    started = time.perf_counter()
    answer = client.get(path, headers=headers)
    wall = (time.perf_counter() - started) * 1e3
    assert answer.status_code == 200, answer.text[:500]
    timing = answer.headers.get("server-timing", "")
    server = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
    return server, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--arms", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--database", type=Path, default=Path("/tmp/ranktune-dashboard-bench.db"))
    args = parser.parse_args()
    shape = HistoryShape(arms=args.arms, ticks=args.ticks)
    url = build(args.database, shape)
    settings = Settings(database_url=url, admin_token=TOKEN, scheduler_enabled=False)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    paths = {
        "page": (f"/experiments/{NAME}", {}),
        "charts": (f"/experiments/{NAME}/charts.json", {"Accept-Encoding": "gzip"}),
        "stats (baseline)": (f"/v1/experiments/{NAME}/stats", admin),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    with TestClient(create_app(settings)) as client:
        sign_in(client)
        cold = {name: timed(client, path, **headers)[1] for name, (path, headers) in paths.items()}
        for _ in range(args.repeats):
            for name, (path, headers) in paths.items():
                results[name].append(timed(client, path, **headers))
    baseline = statistics.median(wall for _, wall in results["stats (baseline)"])
    print(f"{args.arms} arms, {args.ticks:,} ticks, medians of {args.repeats} (SQLite, in-process)")
    print(f"{'request':<18} {'server ms':>10} {'wall ms':>9} {'x baseline':>11} {'first ms':>9}")
    for name, samples in results.items():
        server = statistics.median(s for s, _ in samples)
        wall = statistics.median(w for _, w in samples)
        server_text = "-" if server != server else f"{server:.1f}"
        print(
            f"{name:<18} {server_text:>10} {wall:>9.1f} {wall / baseline:>11.2f} {cold[name]:>9.1f}"
        )
    both = statistics.median(
        p[1] + c[1] for p, c in zip(results["page"], results["charts"], strict=True)
    )
    print(f"{'page + charts':<18} {'':>10} {both:>9.1f} {both / baseline:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
