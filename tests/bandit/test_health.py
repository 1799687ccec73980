"""The report's health checks and the clustered sample-ratio test: exact values computed
independently here, every check's ok and failing states, and a simulation of the SRM
tests' false-alarm rates on exposures clustered by unit (quoted in docs/statistics.md)::

    .venv/bin/python -m pytest -s tests/bandit/test_health.py -k simulation
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandit.errors import InvalidParameterError
from bandit.health import (
    CARRIED_FAILED,
    COLLAPSE_MIN_EXPOSURES,
    SRM_MIN_EXPECTED_EXPOSURES,
    Check,
    Status,
    decision_time_check,
    exploration_check,
    reference_traffic_check,
    sample_ratio_check,
    scheduler_check,
)
from bandit.report import (
    Reason,
    RelativeEffect,
    clustered_share_test,
    ratio_estimate,
    ratio_moments,
    relative_effect,
)

BUCKETS = 64


def _clustered_written_out(a: list[float], n: list[float], share: float) -> tuple[float, ...]:
    """share = sum(a) / sum(n); Var = (s_a^2 - 2 P s_an + P^2 s_n^2) / (B nbar^2) with sample
    (co)variances by hand; t = (P - share) / sqrt(Var); p = 2 P(T_{B-1} > |t|)."""
    b = len(a)
    p = sum(a) / sum(n)
    a_bar, n_bar = sum(a) / b, sum(n) / b
    s_aa = sum((x - a_bar) ** 2 for x in a) / (b - 1)
    s_nn = sum((x - n_bar) ** 2 for x in n) / (b - 1)
    s_an = sum((x - a_bar) * (y - n_bar) for x, y in zip(a, n, strict=True)) / (b - 1)
    variance = (s_aa - 2 * p * s_an + p**2 * s_nn) / (b * n_bar**2)
    t = (p - share) / math.sqrt(variance)
    return p, variance, t, 2 * stats.t.sf(abs(t), b - 1)


def test_clustered_share_test_exact_values() -> None:
    reference = [12.0, 30.0, 8.0, 21.0, 15.0]
    total = [50.0, 110.0, 45.0, 90.0, 70.0]
    share, variance, t, p = _clustered_written_out(reference, total, 0.2)
    result = clustered_share_test(reference, total, 0.2)
    assert result.share == pytest.approx(share, rel=1e-12)
    assert result.variance == pytest.approx(variance, rel=1e-12)
    assert result.statistic == pytest.approx(t, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert result.degrees_of_freedom == 4
    assert (result.group_exposures, result.exposures) == (86.0, 365.0)
    assert result.flagged == (p < 0.001)
    assert result.reason is None


def test_clustered_share_test_flags_a_clear_mismatch() -> None:
    rng = np.random.default_rng(3)
    total = rng.integers(900, 1100, BUCKETS).astype(float)
    reference = np.round(total * rng.normal(0.3, 0.01, BUCKETS))
    result = clustered_share_test(reference, total, 0.2)
    assert result.flagged and result.p_value < 1e-10


def test_clustered_share_test_degenerate_data() -> None:
    empty = clustered_share_test(np.zeros(BUCKETS), np.zeros(BUCKETS), 0.2)
    assert (empty.p_value, empty.flagged, empty.reason) == (1.0, False, Reason.NO_OBSERVATIONS)
    one = clustered_share_test([2.0], [10.0], 0.2)
    assert (one.share, one.p_value, one.reason) == (0.2, 1.0, Reason.TOO_FEW_BUCKETS)
    # Every bucket at exactly the expected share: no evidence of anything.
    exact = clustered_share_test([2.0, 4.0], [10.0, 20.0], 0.2)
    assert (exact.p_value, exact.flagged, exact.reason) == (1.0, False, Reason.ZERO_VARIANCE)
    # No reference exposure at all: zero spread, a certain mismatch.
    none = clustered_share_test(np.zeros(BUCKETS), np.full(BUCKETS, 100.0), 0.2)
    assert (none.p_value, none.flagged, none.statistic) == (0.0, True, -math.inf)


@pytest.mark.parametrize(
    ("group", "total", "share"),
    [
        ([1.0, 2.0], [1.0], 0.2),  # shapes differ
        ([3.0, 1.0], [2.0, 5.0], 0.2),  # a group above its bucket's total
        ([-1.0, 1.0], [2.0, 5.0], 0.2),
        ([1.0, 1.0], [2.0, math.inf], 0.2),
        ([1.0, 1.0], [2.0, 5.0], 0.0),
        ([1.0, 1.0], [2.0, 5.0], 1.0),
    ],
)
def test_clustered_share_test_rejects_malformed_arguments(
    group: list[float], total: list[float], share: float
) -> None:
    with pytest.raises(InvalidParameterError):
        clustered_share_test(group, total, share)


# --- sample ratio check -------------------------------------------------------------------


def _split(rng: np.random.Generator, share: float, exposures: int) -> tuple[np.ndarray, ...]:
    total = rng.multinomial(exposures, np.full(BUCKETS, 1 / BUCKETS)).astype(float)
    reference = rng.binomial(total.astype(np.int64), share).astype(float)
    return reference, total - reference


def test_sample_ratio_check_ok_on_the_configured_split() -> None:
    reference, target = _split(np.random.default_rng(5), 0.2, 20_000)
    check = sample_ratio_check(reference, target, 0.2)
    assert (check.check, check.status) == (Check.SAMPLE_RATIO_MISMATCH, Status.OK)
    assert check.detail.startswith("on exposures; units are not kept")
    expected = clustered_share_test(reference, reference + target, 0.2)
    assert check.evidence["p_value"] == expected.p_value
    assert check.evidence["basis"] == "exposures"
    chi = stats.chisquare([reference.sum(), target.sum()], [4000.0, 16000.0])
    assert check.evidence["chi_square_p_value"] == pytest.approx(chi.pvalue, rel=1e-9)


def test_sample_ratio_check_fails_on_a_mismatch() -> None:
    reference, target = _split(np.random.default_rng(6), 0.25, 20_000)
    check = sample_ratio_check(reference, target, 0.2)
    assert check.status == Status.FAILED
    assert "Do not trust the effects" in check.action
    assert float(check.evidence["p_value"] or 1.0) < 0.001


def test_sample_ratio_check_waits_for_enough_exposures() -> None:
    exposures = int(SRM_MIN_EXPECTED_EXPOSURES / 0.2) - 5
    reference, target = np.zeros(BUCKETS), np.zeros(BUCKETS)
    target[0] = exposures  # no reference exposure at all, but too few to say
    check = sample_ratio_check(reference, target, 0.2)
    assert check.status == Status.OK and check.detail.startswith("not tested yet")
    target[0] = exposures + 10
    assert sample_ratio_check(reference, target, 0.2).status == Status.FAILED


# --- reference traffic, scheduler ---------------------------------------------------------


def test_reference_traffic_check() -> None:
    assert reference_traffic_check([], None).status == Status.OK
    ok = reference_traffic_check([True, False, True], 12.0)
    assert ok.status == Status.OK and ok.evidence["carried_recent"] == 1
    warning = reference_traffic_check([True, False], 30.0)
    assert warning.status == Status.WARNING and warning.evidence["carried_in_a_row"] == 1
    failed = reference_traffic_check([True] + [False] * CARRIED_FAILED, 90.0)
    assert failed.status == Status.FAILED
    assert failed.evidence["carried_in_a_row"] == CARRIED_FAILED
    assert "reference" in failed.action
    never = reference_traffic_check([False] * CARRIED_FAILED, None)
    assert never.status == Status.FAILED and "no tick has been applied yet" in never.detail


def test_scheduler_check() -> None:
    assert scheduler_check(True, 15.0, 10.0).status == Status.OK
    assert scheduler_check(True, 30.0, 10.0).status == Status.WARNING
    failed = scheduler_check(True, 3600.0, 10.0)
    assert failed.status == Status.FAILED and "RANKTUNE_SCHEDULER_ENABLED" in failed.action
    assert failed.evidence["intervals"] == 360.0
    assert scheduler_check(False, 3600.0, 10.0).status == Status.OK


# --- exploration, time to decision ----------------------------------------------------------


def _effect(treatment_rate: float, exposures: float = 20_000.0, seed: int = 0) -> RelativeEffect:
    """A result from bucket data with the given treatment rate against a rate of 0.1."""
    rng = np.random.default_rng(seed)
    n = rng.multinomial(int(exposures), np.full(BUCKETS, 1 / BUCKETS)).astype(float)
    return relative_effect(
        ratio_estimate(rng.binomial(n.astype(np.int64), treatment_rate), n),
        ratio_estimate(rng.binomial(n.astype(np.int64), 0.1), n),
    )


def test_exploration_check() -> None:
    undecided = {1: _effect(0.1), 2: _effect(0.1, seed=1)}
    collapsed = exploration_check({1: 990.0, 2: 10.0}, 2, undecided)
    assert collapsed.status == Status.WARNING
    assert collapsed.evidence["top_arm_id"] == 1 and collapsed.evidence["top_share"] == 0.99
    assert "nursery" in collapsed.action
    # The bandit is allowed to settle on an arm shown to beat the reference.
    better = {1: _effect(0.2), 2: _effect(0.1, seed=1)}
    assert better[1].lower_anytime is not None and better[1].lower_anytime > 0
    assert exploration_check({1: 990.0, 2: 10.0}, 2, better).status == Status.OK
    assert exploration_check({1: 600.0, 2: 400.0}, 2, undecided).status == Status.OK
    little = COLLAPSE_MIN_EXPOSURES - 1
    assert exploration_check({1: little}, 2, undecided).status == Status.OK
    assert exploration_check({1: 5000.0}, 1, undecided).status == Status.OK
    # An arm without any estimate yet, all the traffic: a warning too.
    assert exploration_check({3: 5000.0}, 2, undecided).status == Status.WARNING


def test_decision_time_check() -> None:
    from bandit.report import time_to_decision

    results = {1: _effect(0.105), 2: _effect(0.1, seed=1)}
    best = 1 if (results[1].effect or 0) > (results[2].effect or 0) else 2
    projected = decision_time_check(results, {1: 5.0, 2: 5.0}, 2.0)
    expected = time_to_decision(results[best], 5.0, 2.0)
    assert projected.evidence["best_arm_id"] == best
    assert projected.evidence["seconds"] == expected.seconds
    assert projected.status == Status.OK and expected.seconds is not None
    slow = decision_time_check(results, {1: 1e-4, 2: 1e-4}, 1e-4)
    assert slow.status == Status.WARNING and "underpowered" in slow.detail
    decided = decision_time_check({1: _effect(0.2)}, {1: 1.0}, 1.0)
    assert decided.status == Status.OK and decided.evidence["seconds"] == 0.0
    assert decision_time_check(results, {}, None).status == Status.OK
    assert decision_time_check({}, {}, None).status == Status.OK
    no_control = relative_effect(ratio_estimate([5, 5], [50, 50]), ratio_estimate([0, 0], [9, 9]))
    assert decision_time_check({1: no_control}, {1: 1.0}, 1.0).detail.startswith("no arm")


# --- simulation: SRM on exposures clustered by unit ---------------------------------------


@pytest.mark.slow
def test_simulation_srm_on_clustered_exposures() -> None:
    """A/A runs with a correct split of units (share 0.2), each unit making 1 + Poisson(4)
    exposures, units hashed uniformly to 64 buckets. A calibrated test flags a share
    ``alpha`` of them; the plain chi-square on exposures flags far more, because it treats
    the exposures of one unit as assigned independently (variance too small by about
    E[n^2] / E[n] = 5.8 here)."""
    runs, chunk, units, share = 20_000, 2000, 1000, 0.2
    rng = np.random.default_rng(20240613)
    levels = (0.001, 0.01, 0.05)
    clustered = dict.fromkeys(levels, 0)
    normal = dict.fromkeys(levels, 0)
    plain = dict.fromkeys(levels, 0)
    for start in range(0, runs, chunk):
        exposures = 1 + rng.poisson(4, size=(chunk, units))
        in_reference = rng.random((chunk, units)) < share
        cells = np.arange(chunk)[:, np.newaxis] * BUCKETS + rng.integers(0, BUCKETS, (chunk, units))
        size = chunk * BUCKETS
        a = np.bincount(cells.ravel(), (exposures * in_reference).ravel(), size)
        n = np.bincount(cells.ravel(), exposures.ravel(), size)
        a, n = a.reshape(chunk, BUCKETS), n.reshape(chunk, BUCKETS)
        observed, variance = ratio_moments(a, n)
        t = (observed - share) / np.sqrt(variance)
        p_clustered = 2 * stats.t.sf(np.abs(t), BUCKETS - 1)
        p_normal = 2 * stats.norm.sf(np.abs(t))
        total, reference = n.sum(axis=1), a.sum(axis=1)
        chi = (reference - share * total) ** 2 / (share * total) + (
            (total - reference) - (1 - share) * total
        ) ** 2 / ((1 - share) * total)
        p_plain = stats.chi2.sf(chi, 1)
        for level in levels:
            clustered[level] += int((p_clustered < level).sum())
            normal[level] += int((p_normal < level).sum())
            plain[level] += int((p_plain < level).sum())
        if start == 0:
            # The scalar function is the vectorised formula.
            one = clustered_share_test(a[0], n[0], share)
            assert one.p_value == pytest.approx(float(p_clustered[0]), rel=1e-10)
    rate = {level: clustered[level] / runs for level in levels}
    rate_normal = {level: normal[level] / runs for level in levels}
    rate_plain = {level: plain[level] / runs for level in levels}
    print(
        f"\n[SRM on clustered exposures] {runs} A/A runs x {units} units. Share of runs "
        "flagged at p < 0.001 / 0.01 / 0.05: clustered t-test "
        + " / ".join(f"{rate[v]:.4f}" for v in levels)
        + "; the same with a normal quantile "
        + " / ".join(f"{rate_normal[v]:.4f}" for v in levels)
        + "; plain chi-square on exposures "
        + " / ".join(f"{rate_plain[v]:.4f}" for v in levels)
    )
    for level in levels:
        se = math.sqrt(level * (1 - level) / runs)
        # Calibrated within a small excess (the delta method's second-order error with ~15
        # units per bucket and group), and never near the plain chi-square.
        assert rate[level] < level + 4 * se + 0.1 * level
        assert rate[level] > level - 4 * se
        assert rate_plain[level] > 5 * level
    # At the report's threshold the t quantile matters: the normal one flags more.
    assert rate_normal[0.001] > rate[0.001]
