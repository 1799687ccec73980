"""The README's quickstart, as the README runs it, against a real ``ranktune serve``.

The experiment is the JSON of the README's ``curl`` (read from the README itself, so the
two cannot drift apart); then ``examples/quickstart_traffic.py`` (through the client SDK)
runs as documented, twice (it must be rerunnable: its second run is new traffic, not a
409), with more units than one batch holds, and against a missing experiment (the reason
is printed, exit 1).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN
from tests.process.conftest import ServerFactory

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "quickstart_traffic.py"


def readme_experiment() -> dict[str, object]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"localhost:8000/v1/experiments \\\n.*?-d '(\{.*?\})'\n", readme, re.S)
    assert match, "the README's experiment curl was not found"
    body: dict[str, object] = json.loads(match.group(1))
    return body


def traffic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_quickstart_runs_as_the_readme_says(
    sqlite_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(sqlite_url)
    with server.client() as client:
        created = client.post("/v1/experiments", json=readme_experiment(), headers=ADMIN)
        assert created.status_code == 201, created.text

    first = traffic(server.base_url, "--units", "500")
    assert first.returncode == 0, first.stderr
    assert re.match(r"500 configurations served; \d+ contacts reported\n", first.stdout)
    again = traffic(server.base_url, "--units", "500")
    assert again.returncode == 0, again.stderr  # a second run is new traffic, not a 409
    assert "already stored" not in again.stdout
    many = traffic(server.base_url, "--units", "1500", "--batch", "100")
    assert many.returncode == 0, many.stderr

    with server.client() as client:
        tick = client.post("/v1/experiments/similar-items/tick", headers=ADMIN)
        assert tick.status_code == 200 and tick.json()["applied"] is True
        stats = client.get("/v1/experiments/similar-items/stats", headers=ADMIN).json()
        newest = client.get(
            "/v1/experiments/similar-items/ticks?order=newest&limit=5", headers=ADMIN
        ).json()
    contacts = sum(arm["target_events"] for arm in stats["arms"])
    reported = sum(
        int(re.search(r"(\d+) contacts", run.stdout).group(1))  # type: ignore[union-attr]
        for run in (first, again, many)
    )
    assert contacts == reported > 0
    assert [row["number"] for row in newest] == [1]

    missing = traffic(server.base_url, "--experiment", "no-such-experiment", "--units", "5")
    assert missing.returncode == 1
    assert "'no-such-experiment': unknown_experiment" in missing.stderr
