"""docs/prometheus/alerts.yml: valid YAML in Prometheus' rule-file shape, and every ranktune
metric an expression uses exists in a real /metrics scrape (so a renamed metric cannot leave
an alert that silently never fires)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.api.helpers import assign, create, tick

ALERTS = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    (group,) = document["groups"]
    assert group["name"] == "ranktune"
    found: list[dict[str, Any]] = group["rules"]
    return found


def exposed_names(text: str) -> set[str]:
    """Every sample name the scrape declares (from its TYPE lines), samples or not yet."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def test_every_rule_is_complete() -> None:
    seen = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"].startswith("Ranktune") and rule["alert"] not in seen
        seen.add(rule["alert"])
        assert rule["labels"]["severity"] in {"page", "warn", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    assert len(seen) >= 10


def test_every_metric_in_the_rules_is_exposed(client: TestClient) -> None:
    create(client)
    assign(client, "someone")
    tick(client)
    scrape = client.get("/metrics").text
    exposed = exposed_names(scrape)
    used = {name for rule in rules() for name in re.findall(r"\branktune_[a-z0-9_]+", rule["expr"])}
    assert used, "no ranktune metric in the rules"
    assert used <= exposed, f"not exposed: {sorted(used - exposed)}"
