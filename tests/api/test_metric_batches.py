"""The report's counts appended by ticks as packed batches (``metric_count_batches``,
migration 0024) and folded into ``metric_counts`` by maintenance: the report reads the same
numbers before and after a fold, per segment and overall; a fold moves every batch exactly
once, also when two replicas fold at once; maintenance folds; a metric's declaration folds
before it copies its baseline."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api import repositories as repo
from api.db import add_counts
from api.models import MetricBaseline, MetricCount, MetricCountBatch
from api.runtime import Runtime
from tests.api.helpers import create
from tests.conftest import ADMIN

Key = tuple[int, str, str, int, int]  # arm, group, type, bucket, segment


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def random_rows(rng: np.random.Generator, arm_ids: list[int], size: int) -> Counter[Key]:
    """Counts at random keys (each key may come several times: summed)."""
    counts: Counter[Key] = Counter()
    for _ in range(size):
        arm = int(rng.choice(arm_ids))
        group = "reference" if arm == arm_ids[0] else "target"
        kind = str(rng.choice(["exposure", "contact", "share"]))
        key = (arm, group, kind, int(rng.integers(0, 64)), int(rng.integers(0, 4)))
        counts[key] += int(rng.integers(1, 50))
    return counts


def append(runtime: Runtime, experiment_id: int, counts: Counter[Key]) -> None:
    """One tick's batches (each key once, as a tick passes them)."""
    rows = [
        repo.PendingRow(arm, group, kind, "", bucket, count, segment)
        for (arm, group, kind, bucket, segment), count in counts.items()
    ]
    with runtime.transaction() as session:
        repo.add_metric_counts(session, experiment_id, 1, repo.PendingWindow.of(rows))


def expected_of(counts: Counter[Key], segment: int | None) -> list[tuple[int, str, str, int, int]]:
    totals: Counter[tuple[int, str, str, int]] = Counter()
    for (arm, group, kind, bucket, seg), count in counts.items():
        if segment is None or seg == segment:
            totals[(arm, group, kind, bucket)] += count
    return [(*key, count) for key, count in sorted(totals.items())]


def read(runtime: Runtime, experiment_id: int, segment: int | None) -> list[tuple[int, ...]]:
    with runtime.read_transaction() as session:
        return list(repo.metric_counts(session, experiment_id, 1, segment))  # type: ignore[arg-type]


def setup(client: TestClient) -> tuple[Runtime, int, list[int]]:
    experiment = create(client, segments={"max_segments": 4})
    arm_ids = [experiment["reference_arm_id"]] + [
        arm["id"] for arm in experiment["arms"] if arm["id"] != experiment["reference_arm_id"]
    ]
    return runtime_of(client), int(experiment["id"]), arm_ids


def test_the_report_reads_the_same_before_and_after_a_fold(client: TestClient) -> None:
    runtime, experiment_id, arm_ids = setup(client)
    rng = np.random.default_rng(7)
    folded_before = random_rows(rng, arm_ids, 300)
    with runtime.transaction() as session:  # counts already in metric_counts
        add_counts(
            session.connection(),
            "metric_counts",
            repo._METRIC_COUNT_KEY,
            [(experiment_id, 1, *key, count) for key, count in sorted(folded_before.items())],
        )
    batches = [random_rows(rng, arm_ids, 200) for _ in range(3)]
    for counts in batches:
        append(runtime, experiment_id, counts)
    everything = folded_before + sum(batches, Counter())
    expected = {segment: expected_of(everything, segment) for segment in (None, 0, 1, 2, 3)}
    for segment, rows in expected.items():
        assert read(runtime, experiment_id, segment) == rows
    with runtime.transaction() as session:
        assert repo.experiments_with_metric_batches(session) == [experiment_id]
        folded = repo.fold_metric_batches(session, experiment_id)
    # One batch per (group, type) of each tick.
    assert folded == sum(len({(g, t) for _, g, t, _, _ in counts}) for counts in batches)
    with runtime.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(MetricCountBatch)) == 0
        stored = session.execute(
            select(
                MetricCount.arm_id,
                MetricCount.group,
                MetricCount.type,
                MetricCount.bucket,
                MetricCount.segment,
                MetricCount.count,
            )
        ).all()
    assert {tuple(row[:5]): row[5] for row in stored} == dict(everything)
    for segment, rows in expected.items():
        assert read(runtime, experiment_id, segment) == rows


def test_two_folds_at_once_move_each_batch_once(client: TestClient) -> None:
    runtime, experiment_id, arm_ids = setup(client)
    rng = np.random.default_rng(8)
    batches = [random_rows(rng, arm_ids, 150) for _ in range(6)]
    for counts in batches:
        append(runtime, experiment_id, counts)
    barrier = threading.Barrier(2)
    folded: list[int] = []
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            barrier.wait(timeout=10)
            with runtime.transaction() as session:
                folded.append(repo.fold_metric_batches(session, experiment_id))
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=fold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with runtime.read_transaction() as session:
        batch_rows = session.scalar(select(func.count()).select_from(MetricCountBatch))
        stored = session.execute(
            select(MetricCount.segment, func.sum(MetricCount.count)).group_by(MetricCount.segment)
        ).all()
    assert batch_rows == 0
    assert sorted(folded)[0] == 0  # the second fold found every batch gone
    everything = sum(batches, Counter())
    by_segment: Counter[int] = Counter()
    for key, count in everything.items():
        by_segment[key[4]] += count
    assert {int(segment): int(total) for segment, total in stored} == dict(by_segment)
    assert read(runtime, experiment_id, None) == expected_of(everything, None)


def test_maintenance_folds_and_a_declaration_folds_before_its_baseline(
    client: TestClient,
) -> None:
    runtime, experiment_id, arm_ids = setup(client)
    rng = np.random.default_rng(9)
    first = random_rows(rng, arm_ids, 200)
    append(runtime, experiment_id, first)
    runtime.run_maintenance()
    with runtime.read_transaction() as session:
        assert repo.experiments_with_metric_batches(session) == []
    second = random_rows(rng, arm_ids, 200)
    append(runtime, experiment_id, second)
    response = client.post(
        "/v1/experiments/similar-items/metrics",
        json={"event": "share", "role": "secondary", "direction": "increase"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    with runtime.read_transaction() as session:
        assert repo.experiments_with_metric_batches(session) == []
        baseline = session.execute(
            select(func.sum(MetricBaseline.count)).where(MetricBaseline.type == "exposure")
        ).scalar_one()
    everything = first + second
    assert baseline == sum(c for (_, _, kind, _, _), c in everything.items() if kind == "exposure")
    assert read(runtime, experiment_id, None) == expected_of(everything, None)
