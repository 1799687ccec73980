"""Thompson sampling over many arms (issue 14): from ``ALLOCATION_MIN_ARMS`` policy arms on, a
request inverts the allocation computed with the snapshot instead of drawing every arm's
posterior, so that its cost does not grow with the arms. Same distribution: checked against
the exact P(argmax) computed here, and against the served choices."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from scipy import stats

from api import repositories as repo
from api.runtime import Runtime
from api.serving import ALLOCATION_MIN_ARMS, ExperimentSnapshot
from bandit.propensities import beta_rank_probabilities
from tests.api.helpers import create
from tests.api.test_segments import open_segments
from tests.conftest import SIMILAR_ITEMS
from tests.segment_state import Pair, set_pairs

ARMS = 40


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def many_arms(count: int) -> list[dict[str, Any]]:
    template = SIMILAR_ITEMS["arms"][0]
    return [{**template, "text_match": round(0.02 + 0.04 * k, 2)} for k in range(count)]


def posteriors(client: TestClient, rng: np.random.Generator, segments: int = 0) -> None:
    """Every target arm a posterior of its own (and per segment, far apart), then reload."""
    runtime = runtime_of(client)
    with runtime.transaction() as session:
        experiment = repo.get_experiment(session, 1)
        assert experiment is not None
        for arm in repo.arms_of(session, 1):
            if arm.origin == "reference":
                continue
            exposures, rate = float(rng.uniform(200, 2_000)), float(rng.uniform(0.3, 0.6))
            arm.alpha, arm.beta = 1 + exposures * rate, 1 + exposures * (1 - rate)
            arm.exposures = exposures
            arm.pool_mu, arm.pool_kappa = 0.5, 2.0
            shares = rng.uniform(0.2, 0.7, size=segments).tolist()
            set_pairs(
                session,
                [
                    Pair(arm.id, segment, 1 + 500 * share, 1 + 500 * (1 - share), 500.0, 0.0)
                    for segment, share in enumerate(shares, start=1)
                ],
            )
        repo.bump_version(experiment, experiment.updated_at)
    runtime.serving.refresh(runtime.read_session_factory)


def snapshot_of(client: TestClient) -> ExperimentSnapshot:
    snapshot = runtime_of(client).serving.get("similar-items")
    assert snapshot is not None
    return snapshot


def exact_argmax(params: tuple[tuple[float, float], ...]) -> np.ndarray:
    alphas, betas = np.array(params).T
    first: np.ndarray = beta_rank_probabilities(alphas, betas).first
    return first


def assert_choices_follow(
    client: TestClient, exact: np.ndarray, segment: int | None, draws: int = 20_000
) -> None:
    """Chi-square of ``draws`` served choices against ``exact`` (cells pooled to >= 5)."""
    runtime = runtime_of(client)
    runtime.serving.rng = np.random.default_rng(11)
    snapshot = snapshot_of(client)
    position = {arm: k for k, arm in enumerate(snapshot.policy_arms)}
    counts = np.zeros(exact.size)
    for _ in range(draws):
        counts[position[runtime.serving._choose(snapshot, segment)]] += 1
    expected = exact * draws
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum())
    keep = wanted > 0
    p_value = stats.chisquare(observed[keep], wanted[keep]).pvalue
    assert p_value > 1e-3, (p_value, counts, expected)


def test_many_arms_are_served_by_their_allocation(client: TestClient) -> None:
    create(client, arms=many_arms(ARMS), nursery_exposures=0)
    posteriors(client, np.random.default_rng(1))
    snapshot = snapshot_of(client)
    assert snapshot.thompson_params is not None
    assert len(snapshot.thompson_params) == ARMS >= ALLOCATION_MIN_ARMS
    allocation = snapshot.thompson_allocation
    assert allocation is not None
    exact = exact_argmax(snapshot.thompson_params)
    served = np.diff(np.concatenate([[0.0], allocation.cumulative]))
    np.testing.assert_allclose(served, exact, atol=1e-6, rtol=0)
    assert_choices_follow(client, exact, None)


def test_few_arms_keep_the_block_draws(client: TestClient) -> None:
    create(client)
    snapshot = snapshot_of(client)
    assert snapshot.thompson_params is not None
    assert len(snapshot.thompson_params) < ALLOCATION_MIN_ARMS
    assert snapshot.thompson_allocation is None and snapshot.segment_allocations == ()


def test_each_segment_is_served_by_its_own_allocation(sqlite_client: TestClient) -> None:
    create(sqlite_client, arms=many_arms(ARMS), nursery_exposures=0, segments={"max_segments": 3})
    open_segments(sqlite_client, "cars", "phones")
    posteriors(sqlite_client, np.random.default_rng(2), segments=2)
    snapshot = snapshot_of(sqlite_client)
    assert len(snapshot.segment_allocations) == len(snapshot.segment_params) == 3
    for segment in (1, 2):
        exact = exact_argmax(snapshot.segment_params[segment])
        cumulative = snapshot.segment_allocations[segment].cumulative
        np.testing.assert_allclose(
            np.diff(np.concatenate([[0.0], cumulative])), exact, atol=1e-6, rtol=0
        )
        assert_choices_follow(sqlite_client, exact, segment, draws=10_000)
    # A reload that moves no segment's parameters keeps every allocation object.
    runtime = runtime_of(sqlite_client)
    runtime.serving.refresh(runtime.read_session_factory, only="similar-items")
    again = snapshot_of(sqlite_client)
    assert all(
        new is old
        for new, old in zip(again.segment_allocations, snapshot.segment_allocations, strict=True)
    )
