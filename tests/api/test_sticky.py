"""Sticky assignment (issue 12): the option's contract, a target unit keeping its arm until
the version moves (its arm recomputed here from the documented hash), and the arms' shares
of many units matching per-request Thompson sampling within sampling error (chi-square),
nursery and segments included (per segment, also against exact shares integrated here by
SciPy's quadrature).

The traffic tests run on SQLite only: what they check happens in memory (the replica's
snapshot); the option's storage is checked on both stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import select, update

from api.app import create_app
from api.models import Arm, Experiment
from api.runtime import Runtime
from api.serving import ExperimentSnapshot
from arms.origins import Origin
from tests.api.helpers import ADMIN, assert_error_shape, create, inspect, tick
from tests.bandit.test_propensities import argmax_by_quadrature
from tests.conftest import settings_for, similar_items
from tests.segment_state import Pair, set_pairs

NAME = "sticky"
URL = f"/v1/experiments/{NAME}"
SALT = "sticky-test"
STICKY = {"sticky": True}
# A goodness-of-fit test at this level fails a correct server with this probability; the
# salts and seeds are fixed, so the counts (and the p-values) are the same at every run.
LEVEL = 1e-3


def test_the_option_is_stored_and_shown(client: TestClient) -> None:
    created = create(client, name=NAME, assignment=STICKY)
    assert created["assignment"] == {"sticky": True}
    assert inspect(client, NAME)["assignment"] == {"sticky": True}
    assert create(client, name="drawn")["assignment"] == {"sticky": False}
    assert create(client, name="explicit", assignment={})["assignment"] == {"sticky": False}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mode": "window", "assignment": STICKY}, "assignment.sticky"),
        ({"assignment": {"sticky": "often"}}, "assignment.sticky"),
        ({"assignment": {"sticky": True, "period_s": 60}}, "assignment.period_s"),
        ({"assignment": True}, "assignment"),
    ],
)
def test_invalid_options_are_422_naming_the_field(
    sqlite_client: TestClient, overrides: dict[str, Any], field: str
) -> None:
    answer = sqlite_client.post(
        "/v1/experiments", json=similar_items(name=NAME, **overrides), headers=ADMIN
    )
    assert answer.status_code == 422, answer.text
    assert_error_shape(answer.json(), None, field)


# -- traffic ---------------------------------------------------------------------------------
@pytest.fixture
def fast_client(sqlite_url: str) -> Iterator[TestClient]:
    # Durability is not under test; without fsync a tick costs a few ms instead of ~30.
    with TestClient(create_app(settings_for(sqlite_url, sqlite_synchronous="OFF"))) as client:
        yield client


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def snapshot_of(client: TestClient) -> ExperimentSnapshot:
    snapshot = runtime_of(client).serving.get(NAME)
    assert snapshot is not None
    return snapshot


def expected_point(version: int, unit: str) -> float:
    """The documented arm point, written independently of api.serving: the first 8 bytes
    of SHA-256(salt NUL 'sticky' NUL version NUL unit) as a fraction of 2**64."""
    data = f"{SALT}\x00sticky\x00{version}\x00{unit}".encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") / 2.0**64


def target_arms(client: TestClient, units: list[str], segment: str | None = None) -> list[int]:
    """The arm served to each target unit among ``units`` (reference units left out)."""
    served = []
    for unit in units:
        params = {"unit": unit} if segment is None else {"unit": unit, "segment": segment}
        answer = client.get(f"{URL}/assignment", params=params).json()
        if answer["group"] == "target":
            served.append(answer["arm_id"])
    return served


def target_arms_in_process(client: TestClient, units: list[str]) -> list[int]:
    """As :func:`target_arms`, calling the assignment route's own ``serving.assign`` in
    the test's process: thousands of units in milliseconds instead of seconds of HTTP
    (the route itself is exercised by the tests above and below)."""
    serving, snapshot = runtime_of(client).serving, snapshot_of(client)
    served = (serving.assign(snapshot, unit) for unit in units)
    return [answer.arm_id for answer in served if answer.group == "target"]


def test_a_unit_keeps_its_arm_until_the_version_moves(fast_client: TestClient) -> None:
    client = fast_client
    created = create(client, name=NAME, salt=SALT, assignment=STICKY)
    arm_ids = [arm["id"] for arm in created["arms"] if arm["origin"] != Origin.REFERENCE]
    units = [f"u{i}" for i in range(300)]
    before = snapshot_of(client).version
    first = {unit: target_arms(client, [unit] * 5) for unit in units}
    targets = [unit for unit in units if first[unit]]
    assert len(targets) > 200
    # Three arms at the prior: each has a third of [0, 1), in arm order.
    for unit in targets:
        assert first[unit] == [arm_ids[int(expected_point(before, unit) * 3)]] * 5, unit

    tick(client, NAME)
    after = snapshot_of(client).version
    assert after > before
    moved = 0
    for unit in targets:
        again = target_arms(client, [unit] * 3)
        assert again == [arm_ids[int(expected_point(after, unit) * 3)]] * 3, unit
        moved += again[0] != first[unit][0]
    # A new point per version: about 2/3 of the units change arm (binomial, 5 sd).
    n = len(targets)
    assert abs(moved - 2 * n / 3) < 5 * np.sqrt(n * 2 / 9), (moved, n)


def thompson_shares(
    alphas: np.ndarray, betas: np.ndarray, n: int, nursery: tuple[list[int], float] | None = None
) -> np.ndarray:
    """Per arm, how many of ``n`` per-request Thompson draws serve it (numpy's Beta draws,
    independent of the server's code): with ``nursery`` (arms, share), a nursery arm with
    probability ``share``, uniformly, else the argmax of the grown arms' draws."""
    rng = np.random.default_rng(20261130)
    k = alphas.size
    grown = [i for i in range(k) if nursery is None or i not in nursery[0]]
    draws = rng.beta(alphas[grown], betas[grown], size=(n, len(grown)))
    chosen = np.asarray(grown)[draws.argmax(axis=1)]
    if nursery is not None:
        arms, share = nursery
        young = rng.random(n) < share
        chosen[young] = rng.choice(arms, size=int(young.sum()))
    return np.bincount(chosen, minlength=k)


def assert_same_allocation(served: np.ndarray, drawn: np.ndarray) -> None:
    """Sticky units' counts per arm against per-request Thompson draws' counts: a
    chi-square test of homogeneity at LEVEL (arms neither served nor drawn left out)."""
    table = np.vstack([served, drawn])
    table = table[:, table.sum(axis=0) > 0]
    p = stats.chi2_contingency(table).pvalue
    assert p > LEVEL, (served.tolist(), drawn.tolist(), p)


def set_arms(client: TestClient, posteriors: list[tuple[float, float, float]]) -> None:
    """Give the target arms (alpha, beta, exposures) and reload the snapshot."""
    runtime = runtime_of(client)
    with runtime.session_factory() as session, session.begin():
        experiment = session.scalars(select(Experiment).where(Experiment.name == NAME)).one()
        arms = session.scalars(
            select(Arm)
            .where(Arm.experiment_id == experiment.id, Arm.origin != Origin.REFERENCE)
            .order_by(Arm.id)
        ).all()
        for arm, (alpha, beta, exposures) in zip(arms, posteriors, strict=True):
            arm.alpha, arm.beta, arm.exposures = alpha, beta, exposures
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment.id)
            .values(version=Experiment.version + 1)
        )
    runtime.serving.refresh(runtime.read_session_factory, only=NAME)


@pytest.mark.parametrize("nursery", [False, True])
def test_the_shares_of_units_follow_thompson_sampling(
    fast_client: TestClient, nursery: bool
) -> None:
    client = fast_client
    create(
        client,
        name=NAME,
        salt=SALT,
        assignment=STICKY,
        nursery_exposures=100 if nursery else 0,
        nursery_share=0.3,
    )
    # Overlapping posteriors (every arm has a sizeable share); arm 1 young when nursery.
    set_arms(client, [(31.0, 71.0, 500.0), (26.0, 76.0, 10.0), (36.0, 66.0, 300.0)])
    snapshot = snapshot_of(client)
    served = np.zeros(3, dtype=int)
    ids = list(snapshot.arm_ids)
    for arm_id in target_arms_in_process(client, [f"unit-{i}" for i in range(6000)]):
        served[ids.index(arm_id)] += 1
    drawn = thompson_shares(
        np.array([31.0, 26.0, 36.0]),
        np.array([71.0, 76.0, 66.0]),
        int(served.sum()),
        ([1], 0.3) if nursery else None,
    )
    assert_same_allocation(served, drawn)
    # And against the snapshot's integrated probabilities (a goodness-of-fit test).
    cumulative = np.array(snapshot.allocation.cumulative)
    probabilities = np.diff(np.concatenate([[0.0], cumulative]))
    assert min(probabilities) > 0.03
    if nursery:
        assert probabilities[1] == pytest.approx(0.3)
    p = stats.chisquare(served, served.sum() * probabilities).pvalue
    assert p > LEVEL, (served.tolist(), probabilities.tolist(), p)


def set_segments(
    client: TestClient,
    pools: list[tuple[float, float]],
    evidence: dict[int, list[tuple[float, float]]],
) -> None:
    """Give the target arms their pools (mu, kappa) and, per segment index, their evidence
    (successes, failures) there; move the version and reload the snapshot."""
    runtime = runtime_of(client)
    with runtime.session_factory() as session, session.begin():
        experiment = session.scalars(select(Experiment).where(Experiment.name == NAME)).one()
        arms = session.scalars(
            select(Arm)
            .where(Arm.experiment_id == experiment.id, Arm.origin != Origin.REFERENCE)
            .order_by(Arm.id)
        ).all()
        for arm, (mu, kappa) in zip(arms, pools, strict=True):
            arm.pool_mu, arm.pool_kappa = mu, kappa
        prior_alpha, prior_beta = experiment.prior_alpha, experiment.prior_beta
        set_pairs(
            session,
            [
                Pair(arm.id, segment, prior_alpha + x, prior_beta + m, x + m, x)
                for segment, rows in evidence.items()
                for arm, (x, m) in zip(arms, rows, strict=True)
            ],
            prior=(prior_alpha, prior_beta),
        )
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment.id)
            .values(version=Experiment.version + 1)
        )
    runtime.serving.refresh(runtime.read_session_factory)


def open_segment(client: TestClient, name: str) -> None:
    """First sight of a segment, then the exposure flush registers it (the version moves)."""
    target_arms(client, ["opener"], segment=name)
    runtime = runtime_of(client)
    runtime.flush_exposures(timeout_s=10)
    runtime.serving.refresh(runtime.read_session_factory)
    assert name in (snapshot_of(client).segments or {})


def units_by_arm(client: TestClient, units: list[str], segment: str) -> dict[str, int]:
    """Each target unit's arm (index among the target arms) in ``segment``, served in
    process by the replica (the HTTP path is checked on a few units)."""
    serving = runtime_of(client).serving
    snapshot = snapshot_of(client)
    served = {}
    for unit in units:
        answer = serving.assign(snapshot, unit, segment)
        if answer.group == "target":
            served[unit] = snapshot.arm_ids.index(answer.arm_id)
    return served


# Per segment, evidence (successes, failures) per target arm on pools (mu, kappa): the
# default segment favours arm 0, cars arm 2; every arm keeps a sizeable share.
POOLS = [(0.3, 40.0), (0.28, 60.0), (0.3, 20.0)]
EVIDENCE = {
    0: [(31.0, 69.0), (27.0, 73.0), (26.0, 74.0)],
    1: [(20.0, 80.0), (22.0, 78.0), (28.0, 72.0)],
}


def pooled_params(segment: int) -> tuple[np.ndarray, np.ndarray]:
    """What Thompson sampling draws from in the segment, from the documented formula
    Beta(mu kappa + x, (1 - mu) kappa + m) (docs/segments.md)."""
    mu, kappa = np.array(POOLS).T
    x, m = np.array(EVIDENCE[segment]).T
    return mu * kappa + x, (1 - mu) * kappa + m


def test_a_segmented_experiment_places_units_by_each_segments_allocation(
    fast_client: TestClient,
) -> None:
    client = fast_client
    create(client, name=NAME, salt=SALT, assignment=STICKY, segments={"max_segments": 4})
    open_segment(client, "cars")
    set_segments(client, POOLS, EVIDENCE)
    snapshot = snapshot_of(client)
    assert snapshot.segments == {"default": 0, "cars": 1}
    units = [f"unit-{i}" for i in range(6000)]
    for index, segment in ((0, "default"), (1, "cars")):
        alphas, betas = pooled_params(index)
        exact = argmax_by_quadrature(alphas.tolist(), betas.tolist())
        assert min(exact) > 0.1
        placement = snapshot.segment_placements[index]
        assert placement.version == snapshot.version
        allocated = np.diff(np.concatenate([[0.0], placement.allocation.cumulative]))
        np.testing.assert_allclose(allocated, exact, atol=1e-6, rtol=0)
        # The units' arms: a goodness-of-fit test against the exact shares, and a test of
        # homogeneity against per-request Thompson draws.
        arms = units_by_arm(client, units, segment)
        served = np.bincount(list(arms.values()), minlength=3)
        p = stats.chisquare(served, served.sum() * exact).pvalue
        assert p > LEVEL, (segment, served.tolist(), exact.tolist(), p)
        assert_same_allocation(served, thompson_shares(alphas, betas, int(served.sum())))
        assert served.argmax() == (0 if index == 0 else 2), served.tolist()
        # Over HTTP, a unit's arm is the exact allocation's inverse at its documented point,
        # on every request.
        bounds = np.cumsum(exact)
        for unit in list(arms)[:20]:
            expected = min(
                int(np.searchsorted(bounds, expected_point(snapshot.version, unit), "right")), 2
            )
            assert (
                target_arms(client, [unit] * 3, segment=segment) == [snapshot.arm_ids[expected]] * 3
            )


def test_a_segments_units_keep_their_arms_until_its_allocation_moves(
    fast_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fast_client
    create(client, name=NAME, salt=SALT, assignment=STICKY, segments={"max_segments": 4})
    open_segment(client, "cars")
    set_segments(client, POOLS, EVIDENCE)
    placed_at = snapshot_of(client).version
    units = [f"unit-{i}" for i in range(400)]
    with monkeypatch.context() as patched:
        # Requests integrate nothing: the allocations were computed when the snapshot loaded.
        def no_integration(*args: Any) -> None:
            raise AssertionError("an allocation integrated on the request path")

        patched.setattr("api.serving.thompson_allocations", no_integration)
        before = {segment: units_by_arm(client, units, segment) for segment in ("default", "cars")}
        assert target_arms(client, units[:5], segment="cars")
    # A new segment moves the version; the others' allocations, and so their units' arms, stay.
    open_segment(client, "flats")
    snapshot = snapshot_of(client)
    assert snapshot.version > placed_at
    assert [p.version for p in snapshot.segment_placements] == [
        placed_at,
        placed_at,
        snapshot.version,
    ]
    for segment in ("default", "cars"):
        assert units_by_arm(client, units, segment) == before[segment]
    # New evidence in cars moves cars' allocation: its units are placed afresh (about three
    # quarters of them change arm with these shares), the default segment's stay.
    set_segments(client, POOLS, {1: [(20.0, 80.0), (28.0, 72.0), (22.0, 78.0)]})
    snapshot = snapshot_of(client)
    assert snapshot.segment_placements[0].version == placed_at
    assert snapshot.segment_placements[1].version == snapshot.version > placed_at
    assert units_by_arm(client, units, "default") == before["default"]
    cars = units_by_arm(client, units, "cars")
    moved = sum(cars[unit] != arm for unit, arm in before["cars"].items())
    assert moved > len(cars) / 3, (moved, len(cars))
