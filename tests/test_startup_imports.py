"""Start-up: what serving and the simulator import (an import check, not a timing).

scipy.stats (about 1.2 s), matplotlib (about 1.7 s) and the rest of scipy are imported by
the code that needs them (reports, plots, hierarchical fits), not by ``ranktune serve`` on
its way to ``/health`` nor by the first assignments. The time it saves is measured by
benchmarks/startup.py; this test keeps a module-level import from bringing them back.
Each check runs in a fresh interpreter: the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY_FOR_SERVING = ("scipy.stats", "scipy.optimize", "scipy.special", "matplotlib")
# The regret simulator plots with matplotlib, but needs none of the service or scipy.stats.
HEAVY_FOR_REGRET = ("scipy.stats", "scipy.optimize", "sqlalchemy", "fastapi", "api")

SERVING = """
import copy, json, sys
import ranktune.cli  # the command's own imports, as `ranktune serve` runs them
from fastapi.testclient import TestClient
from api import schemas, server
from api.app import create_app
from api.db import upgrade_database
from api.settings import Settings

url = sys.argv[1]
upgrade_database(url)
token = "startup-test-admin-token"
seen = {}
with TestClient(create_app(Settings(database_url=url, admin_token=token))) as client:
    assert client.get("/health").status_code == 200
    seen["health"] = sorted(name for name in HEAVY if name in sys.modules)
    created = client.post(
        "/v1/experiments",
        json=copy.deepcopy(schemas.SIMILAR_ITEMS),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    path = "/v1/experiments/similar-items/assignment"
    for unit in range(20):
        assert client.get(path, params={"unit": f"u{unit}"}).status_code == 200
    seen["assignment"] = sorted(name for name in HEAVY if name in sys.modules)
print(json.dumps(seen))
"""

REGRET = """
import json, sys
from simulations.cli import build_parser

build_parser(only="regret").parse_args(["regret", "--runs", "2"])
print(json.dumps(sorted(name for name in HEAVY if name in sys.modules)))
"""


def _run(script: str, heavy: tuple[str, ...], *args: str) -> object:
    code = f"HEAVY = {heavy!r}\n" + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serving_imports_no_scipy_nor_matplotlib(tmp_path: Path) -> None:
    seen = _run(SERVING, HEAVY_FOR_SERVING, f"sqlite:///{tmp_path / 'serve.db'}")
    assert seen == {"health": [], "assignment": []}


def test_the_regret_command_imports_neither_the_service_nor_scipy_stats() -> None:
    assert _run(REGRET, HEAVY_FOR_REGRET) == []


@pytest.mark.parametrize("module", ["api.plots", "bandit", "bandit.report", "bandit.summaries"])
def test_modules_that_use_them_import_them_lazily(module: str) -> None:
    """Importing these costs nothing heavy; calling their functions imports what they use."""
    script = f"import {module}\nimport json, sys\n" + (
        "print(json.dumps(sorted(name for name in HEAVY if name in sys.modules)))"
    )
    assert _run(script, HEAVY_FOR_SERVING) == []
