"""The report's data: every credited exposure and event lands in ``metric_counts`` under the
unit's bucket, exactly once, on both stores; the scorecard adds them up per comparison.

The bucket rule is written out here independently of api.serving: byte 8 of
SHA-256(salt NUL unit) modulo 64 (the group uses bytes 0-7 of the same digest).
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
from fastapi.testclient import TestClient

from api import repositories as repo
from api.models import Experiment
from api.services.report import BANDIT, scorecard
from tests.api.helpers import assign, create, expected_group, post_events, tick

SALT = "report-counts"
BUCKETS = 64


def expected_bucket(salt: str, unit: str) -> int:
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + unit.encode("utf-8")).digest()
    return digest[8] % BUCKETS


def test_exposures_and_events_are_counted_by_bucket_exactly_once(client: TestClient) -> None:
    experiment = create(client, salt=SALT, reference_share=0.3)
    reference_id = experiment["reference_arm_id"]
    rng = np.random.default_rng(7)
    expected: Counter[tuple[int, str, str, int]] = Counter()
    events = []
    for serial in range(600):
        unit = f"u{rng.integers(0, 250)}"
        answer = assign(client, unit)
        group, bucket = answer["group"], expected_bucket(SALT, unit)
        assert group == expected_group(SALT, 0.3, unit)
        expected[(answer["arm_id"], group, "exposure", bucket)] += 1
        if rng.random() < 0.4:
            events.append({"ticket": answer["ticket"], "type": "contact", "event_id": f"e{serial}"})
            expected[(answer["arm_id"], group, "contact", bucket)] += 1
        if rng.random() < 0.2:  # not a metric of the experiment: not in the report's counts
            events.append({"ticket": answer["ticket"], "type": "share", "event_id": f"s{serial}"})
    for start in range(0, len(events), 100):
        post_events(client, events[start : start + 100])
    post_events(client, events[:50])  # retries: duplicates, counted once
    client.app.state.runtime.flush_exposures()
    tick(client)

    runtime = client.app.state.runtime
    with runtime.read_transaction() as session:
        stored = repo.metric_counts(session, experiment["id"], 1)
        model = session.get(Experiment, experiment["id"])
        assert model is not None
        card = scorecard(session, model)
    assert Counter({(a, g, t, b): c for a, g, t, b, c in stored}) == expected

    bandit = card.row("contact", BANDIT)
    assert bandit is not None
    target_exposures = sum(
        c for (a, g, t, _), c in expected.items() if g == "target" and t == "exposure"
    )
    target_contacts = sum(
        c for (a, g, t, _), c in expected.items() if g == "target" and t == "contact"
    )
    reference_exposures = sum(
        c for (a, g, t, _), c in expected.items() if g == "reference" and t == "exposure"
    )
    assert bandit.result.treatment.exposures == target_exposures
    assert bandit.result.treatment.events == target_contacts
    assert bandit.result.control.exposures == reference_exposures
    assert all(a == reference_id for (a, g, _, _) in expected if g == "reference")
    # One row per metric (only the decision metric here) and treatment: the bandit, each arm.
    arms = [arm["id"] for arm in experiment["arms"] if arm["id"] != reference_id]
    assert [row.treatment for row in card.rows] == [BANDIT, *arms]
