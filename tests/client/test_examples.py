"""examples/similar_items_service.py: its score is docs/spec.md's, and it serves blocks and
reports contacts through the SDK against a live server (over its HTTP API, and --demo)."""

from __future__ import annotations

import importlib.util
import random
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import httpx

from ranktune_client import Client
from tests.client.conftest import Stored, stored_events
from tests.conftest import SIMILAR_ITEMS
from tests.process.conftest import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "similar_items_service.py"
CONFIGS = [SIMILAR_ITEMS["reference_config"], *SIMILAR_ITEMS["arms"]]


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("similar_items_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_score_is_the_formula_of_the_spec() -> None:
    m = example()
    source = m.Listing(1, 0, frozenset({"oak", "table", "lamp"}), metro=3, region=3, price=1e5)
    # Titles share 2 of 5 words, other metro, same region, prices 110,000 apart.
    near = m.Listing(2, 0, frozenset({"oak", "table", "sofa", "rug"}), 7, 3, 210_000.0)
    # Titles share nothing, same metro and region, same price.
    local = m.Listing(3, 0, frozenset({"bed", "desk", "rug"}), 3, 3, 1e5)
    weights = {"text_match": 1.5, "distance": 0.5, "price_diff": 2.0, "region": 1}
    assert m.score(weights, source, near) == 1.5 * 2 / 5 + 0 + 1 + 2.0 * 0.5
    assert m.score(weights, source, local) == 0 + 0.5 + 1 + 2.0
    assert [c.id for c in m.similar([source, near, local], source, weights, 5)] == [3, 2]
    text_only = {"text_match": 1.0, "distance": 0.0, "price_diff": 0.0, "region": 0}
    assert [c.id for c in m.similar([source, near, local], source, text_only, 1)] == [2]


def test_the_service_ranks_with_served_weights_and_reports_a_contact_once(
    live: ServerProcess, sqlite_url: str
) -> None:
    m = example()
    catalogue = m.make_catalogue(50, random.Random(1))
    source = catalogue[7]
    rankings = [[c.id for c in m.similar(catalogue, source, config, 5)] for config in CONFIGS]
    with Client(live.base_url, timeout=5.0) as ranktune:
        service = m.SimilarItems(ranktune, catalogue)
        server = m.make_server(service, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}") as http:
                answer = http.get("/similar", params={"listing": 7, "user": "user-42"}).json()
                contact = {"block": answer["block"], "listing": answer["items"][0]}
                first = http.post("/contact", json=contact)
                again = http.post("/contact", json=contact)  # the page retried
                elsewhere = next(i for i in range(50) if i not in answer["items"])
                stranger = http.post("/contact", json={**contact, "listing": elsewhere})
                unknown = http.post("/contact", json={"block": "nope", "listing": 1})
                missing = http.get("/similar", params={"listing": 999, "user": "u"})
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        assert ranktune.flush(timeout=10)
        stats = ranktune.stats()

    assert answer["fallback"] is False and answer["items"] in rankings
    assert (first.status_code, again.status_code) == (204, 204)
    assert (stranger.status_code, unknown.status_code, missing.status_code) == (404, 404, 404)
    assert (stats.events_accepted, stats.events_duplicate) == (1, 1)
    assert stored_events(sqlite_url, "contact") == Stored(1, 1, 1)


def test_the_demo_runs_against_ranktune(live: ServerProcess, sqlite_url: str) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--ranktune", live.base_url, "--demo", "300", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    match = re.match(
        r"300 blocks, (\d+) ranked with served weights \((\d+) fallbacks\); (\d+) contacts "
        r"tracked; (\d+) events stored\n",
        run.stdout,
    )
    assert match, run.stdout
    served, fallbacks, tracked, stored = map(int, match.groups())
    assert served + fallbacks == 300 and tracked == stored > 0
    assert stored_events(sqlite_url, "contact") == Stored(tracked, tracked, tracked)
