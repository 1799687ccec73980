"""The reference-ratio update against hand-computed posteriors, and its invariants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.errors import InvalidParameterError
from bandit.update import (
    PosteriorUpdate,
    Prior,
    WindowCounts,
    reference_ratio_update,
)

EXACT = {"rel": 1e-12, "abs": 0.0}


def _tick(
    alphas: np.ndarray,
    betas: np.ndarray,
    c_r: float,
    n_r: float,
    c_k: list[float],
    n_k: list[float],
    **kwargs: Any,
) -> PosteriorUpdate:
    counts = WindowCounts.of(c_r, n_r, c_k, n_k)
    return reference_ratio_update(alphas, betas, counts, **kwargs)


# --- golden values ------------------------------------------------------------------------------


def test_request_mode_golden_sequence_with_carried_window() -> None:
    alphas, betas = np.ones(3), np.ones(3)

    # tick 1: c_r = 7, n_r = 40, so c_r / n_r = 0.175
    #   alpha += c_k         = (3, 5, 0)
    #   beta  += 0.175 * n_k = 0.175 * (30, 20, 10) = (5.25, 3.5, 1.75)
    update = _tick(alphas, betas, 7, 40, [3, 5, 0], [30, 20, 10])
    assert update.applied
    assert update.alpha_increments == pytest.approx([3.0, 5.0, 0.0], **EXACT)
    assert update.beta_increments == pytest.approx([5.25, 3.5, 1.75], **EXACT)
    assert update.alphas_after == pytest.approx([4.0, 6.0, 1.0], **EXACT)
    assert update.betas_after == pytest.approx([6.25, 4.5, 2.75], **EXACT)
    alphas, betas = update.alphas_after, update.betas_after

    # tick 2: c_r / n_r = 3 / 60 = 0.05; beta += 0.05 * (15, 45, 30) = (0.75, 2.25, 1.5)
    update = _tick(alphas, betas, 3, 60, [2, 0, 4], [15, 45, 30])
    assert update.alphas_before == pytest.approx([4.0, 6.0, 1.0], **EXACT)
    assert update.betas_before == pytest.approx([6.25, 4.5, 2.75], **EXACT)
    assert update.alphas_after == pytest.approx([6.0, 6.0, 5.0], **EXACT)
    assert update.betas_after == pytest.approx([7.0, 6.75, 4.25], **EXACT)
    alphas, betas = update.alphas_after, update.betas_after

    # tick 3: no reference exposure (two reference events arrived, but n_r = 0): nothing applied
    update = _tick(alphas, betas, 2, 0, [1, 1, 1], [5, 5, 5])
    assert not update.applied
    assert list(update.alpha_increments) == [0.0, 0.0, 0.0]
    assert list(update.beta_increments) == [0.0, 0.0, 0.0]
    assert list(update.alphas_after) == [6.0, 6.0, 5.0]
    assert list(update.betas_after) == [7.0, 6.75, 4.25]

    # tick 4: the caller carried tick 3's window forward and adds this window to it:
    #   c_r = 2 + 4 = 6, n_r = 0 + 50 = 50 -> ratio 0.12
    #   c_k = (1+0, 1+2, 1+1) = (1, 3, 2), n_k = (5+20, 5+10, 5+20) = (25, 15, 25)
    #   beta += 0.12 * (25, 15, 25) = (3.0, 1.8, 3.0)
    update = _tick(alphas, betas, 6, 50, [1, 3, 2], [25, 15, 25])
    assert update.applied
    assert update.alphas_after == pytest.approx([7.0, 9.0, 7.0], **EXACT)
    assert update.betas_after == pytest.approx([10.0, 8.55, 7.25], **EXACT)


def test_window_mode_golden_sequence_credits_only_the_chosen_arm() -> None:
    alphas, betas = np.ones(3), np.ones(3)

    # tick 1, arm 1 served the window: c_t = 9, n_t = 75, c_r = 4, n_r = 25
    #   alpha_1 += 9, beta_1 += 4 * 75 / 25 = 12
    update = _tick(alphas, betas, 4, 25, [0, 9, 0], [0, 75, 0], chosen_arm=1)
    assert update.applied
    assert list(update.alpha_increments) == [0.0, 9.0, 0.0]
    assert list(update.beta_increments) == [0.0, 12.0, 0.0]
    assert list(update.alphas_after) == [1.0, 10.0, 1.0]
    assert list(update.betas_after) == [1.0, 13.0, 1.0]

    # tick 2, arm 0: c_t = 5, n_t = 50, c_r = 6, n_r = 20 -> beta_0 += 6 * 50 / 20 = 15
    update = _tick(
        update.alphas_after, update.betas_after, 6, 20, [5, 0, 0], [50, 0, 0], chosen_arm=0
    )
    assert list(update.alphas_after) == [6.0, 10.0, 1.0]
    assert list(update.betas_after) == [16.0, 13.0, 1.0]

    # tick 3, arm 2: c_t = 3, n_t = 12, c_r = 2, n_r = 16 -> beta_2 += 2 * 12 / 16 = 1.5
    update = _tick(
        update.alphas_after, update.betas_after, 2, 16, [0, 0, 3], [0, 0, 12], chosen_arm=2
    )
    assert list(update.alphas_after) == [6.0, 10.0, 4.0]
    assert list(update.betas_after) == [16.0, 13.0, 2.5]


def test_window_mode_uses_the_whole_target_group() -> None:
    # c_t and n_t are the target group's totals: late events recorded against another arm
    # still belong to the window's arm.  c_t = 2 + 1 = 3, n_t = 10 + 6 = 16, beta += 3 * 16 / 8
    update = _tick(np.ones(2), np.ones(2), 3, 8, [2, 1], [10, 6], chosen_arm=1)
    assert list(update.alpha_increments) == [0.0, 3.0]
    assert list(update.beta_increments) == [0.0, 6.0]


def test_window_with_no_reference_exposure_carries_forward_in_window_mode() -> None:
    update = _tick(np.array([2.0, 3.0]), np.array([4.0, 5.0]), 1, 0, [3, 0], [9, 0], chosen_arm=0)
    assert not update.applied
    assert list(update.alphas_after) == [2.0, 3.0]
    assert list(update.betas_after) == [4.0, 5.0]


@given(
    c_t=st.integers(0, 10**6),
    c_r=st.integers(0, 10**6),
    n=st.integers(1, 10**6),
    chosen=st.integers(0, 2),
)
def test_window_mode_with_equal_groups_is_the_original_rule(
    c_t: int, c_r: int, n: int, chosen: int
) -> None:
    # The contract: with n_t == n_r, window mode is exactly alpha += c_t, beta += c_r
    arm_events, arm_exposures = np.zeros(3), np.zeros(3)
    arm_events[chosen], arm_exposures[chosen] = c_t, n
    update = _tick(
        np.ones(3), np.ones(3), c_r, n, list(arm_events), list(arm_exposures), chosen_arm=chosen
    )
    assert update.alpha_increments[chosen] == c_t
    assert update.beta_increments[chosen] == c_r
    assert update.alphas_after[chosen] == 1 + c_t
    assert update.betas_after[chosen] == 1 + c_r


def test_decay_golden_sequence() -> None:
    gamma = 0.5
    alphas, betas = np.ones(2), np.ones(2)

    # tick 1: at the prior, decay changes nothing; ratio 4/10 = 0.4, beta += 0.4 * (10, 20)
    update = _tick(alphas, betas, 4, 10, [2, 6], [10, 20], decay=gamma)
    assert update.alphas_after == pytest.approx([3.0, 7.0], **EXACT)
    assert update.betas_after == pytest.approx([5.0, 9.0], **EXACT)

    # tick 2: decayed alpha = 1 + 0.5 * ((3, 7) - 1) = (2, 4),
    #   decayed beta = 1 + 0.5 * ((5, 9) - 1) = (3, 5)
    #   ratio 1/4 = 0.25: alpha += (3, 0) -> (5, 4), beta += 0.25 * (8, 2) = (2, 0.5) -> (5, 5.5)
    update = _tick(update.alphas_after, update.betas_after, 1, 4, [3, 0], [8, 2], decay=gamma)
    assert update.alpha_increments == pytest.approx([3.0, 0.0], **EXACT)
    assert update.beta_increments == pytest.approx([2.0, 0.5], **EXACT)
    assert update.alphas_after == pytest.approx([5.0, 4.0], **EXACT)
    assert update.betas_after == pytest.approx([5.0, 5.5], **EXACT)

    # tick 3: decayed alpha = 1 + 0.5 * (4, 3) = (3, 2.5), beta = 1 + 0.5 * (4, 4.5) = (3, 3.25)
    #   ratio 2/8 = 0.25: alpha += (1, 1) -> (4, 3.5), beta += (1, 1) -> (4, 4.25)
    update = _tick(update.alphas_after, update.betas_after, 2, 8, [1, 1], [4, 4], decay=gamma)
    assert update.alphas_after == pytest.approx([4.0, 3.5], **EXACT)
    assert update.betas_after == pytest.approx([4.0, 4.25], **EXACT)

    # a window without reference exposure is not an update: no decay either
    update = _tick(update.alphas_after, update.betas_after, 0, 0, [0, 0], [0, 0], decay=gamma)
    assert not update.applied
    assert update.alphas_after == pytest.approx([4.0, 3.5], **EXACT)
    assert update.betas_after == pytest.approx([4.0, 4.25], **EXACT)


def test_decay_shrinks_towards_the_prior_not_towards_zero() -> None:
    # prior Beta(2, 3), gamma 0.25: alpha = 2 + 0.25 * (6 - 2) = 3, beta = 3 + 0.25 * (11 - 3) = 5;
    # then ratio 1/2: alpha += 1 -> 4, beta += 0.5 * 2 = 1 -> 6
    update = _tick(
        np.array([6.0]), np.array([11.0]), 1, 2, [1], [2], prior=Prior(2.0, 3.0), decay=0.25
    )
    assert list(update.alphas_after) == [4.0]
    assert list(update.betas_after) == [6.0]


def test_decay_in_window_mode_decays_every_arm() -> None:
    # gamma 0.5: every arm's evidence halves; only arm 0 gets the window (c_t 2, beta 1 * 4 / 4)
    update = _tick(
        np.array([5.0, 9.0]), np.array([3.0, 7.0]), 1, 4, [2, 0], [4, 0], decay=0.5, chosen_arm=0
    )
    assert list(update.alphas_after) == [5.0, 5.0]
    assert list(update.betas_after) == [3.0, 4.0]


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5, float("nan")])
def test_decay_outside_its_range_is_rejected(decay: float) -> None:
    with pytest.raises(InvalidParameterError, match=r"decay must be in \(0, 1\]"):
        _tick(np.ones(1), np.ones(1), 1, 1, [1], [1], decay=decay)


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 1.0), (1.0, -1.0), (float("inf"), 1.0)])
def test_prior_must_be_positive_and_finite(alpha: float, beta: float) -> None:
    with pytest.raises(
        InvalidParameterError, match=r"prior (alpha|beta) must be a finite number > 0"
    ):
        Prior(alpha, beta)


def test_chosen_arm_out_of_range_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match=r"chosen_arm must be in \[0, 2\), got 2"):
        _tick(np.ones(2), np.ones(2), 1, 1, [1, 1], [1, 1], chosen_arm=2)


@pytest.mark.parametrize(
    ("c_r", "n_r", "c_k", "n_k"),
    [
        (-1, 1, [1], [1]),
        (1, float("nan"), [1], [1]),
        (1, 1, [-1], [1]),
        (1, 1, [1], [float("inf")]),
    ],
)
def test_negative_or_non_finite_counts_are_rejected(
    c_r: float, n_r: float, c_k: list[float], n_k: list[float]
) -> None:
    with pytest.raises(InvalidParameterError, match="finite and >= 0"):
        WindowCounts.of(c_r, n_r, c_k, n_k)


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="same length"):
        WindowCounts.of(1, 1, [1, 2], [1])
    with pytest.raises(InvalidParameterError, match="one entry per arm"):
        _tick(np.ones(3), np.ones(3), 1, 1, [1, 2], [1, 1])


def test_inputs_are_not_mutated() -> None:
    alphas, betas = np.array([2.0, 3.0]), np.array([4.0, 5.0])
    _tick(alphas, betas, 1, 2, [1, 1], [2, 2], decay=0.5)
    assert list(alphas) == [2.0, 3.0]
    assert list(betas) == [4.0, 5.0]


# --- properties ---------------------------------------------------------------------------------

# Counts are event and exposure tallies: whole numbers, or sums of fractional pseudo-counts no
# smaller than a thousandth.  (A sub-normal n_r would overflow c_r / n_r; no real window has one.)
_count = st.one_of(st.integers(0, 10**6).map(float), st.floats(1e-3, 1e6))
_prior_value = st.floats(0.01, 100.0)


@st.composite
def _ticks(draw: st.DrawFn) -> tuple[Prior, np.ndarray, np.ndarray, WindowCounts, int | None]:
    k = draw(st.integers(1, 5))
    prior = Prior(draw(_prior_value), draw(_prior_value))
    alphas = prior.alpha + np.array(draw(st.lists(_count, min_size=k, max_size=k)))
    betas = prior.beta + np.array(draw(st.lists(_count, min_size=k, max_size=k)))
    counts = WindowCounts.of(
        draw(_count),
        draw(st.one_of(st.just(0.0), _count)),
        draw(st.lists(_count, min_size=k, max_size=k)),
        draw(st.lists(_count, min_size=k, max_size=k)),
    )
    chosen = draw(st.one_of(st.none(), st.integers(0, k - 1)))
    return prior, alphas, betas, counts, chosen


@given(_ticks())
def test_without_decay_posteriors_never_decrease(
    tick: tuple[Prior, np.ndarray, np.ndarray, WindowCounts, int | None],
) -> None:
    prior, alphas, betas, counts, chosen = tick
    update = reference_ratio_update(alphas, betas, counts, prior=prior, chosen_arm=chosen)
    assert update.applied == (counts.reference_exposures > 0)
    assert np.all(update.alpha_increments >= 0)
    assert np.all(update.beta_increments >= 0)
    assert np.all(update.alphas_after >= update.alphas_before)
    assert np.all(update.betas_after >= update.betas_before)
    # no decay means the old evidence is kept exactly, not approximately
    np.testing.assert_array_equal(update.alphas_after, alphas + update.alpha_increments)
    np.testing.assert_array_equal(update.betas_after, betas + update.beta_increments)


@given(_ticks(), st.floats(1e-6, 1.0, exclude_min=False))
def test_with_decay_posteriors_stay_proper_and_above_the_prior(
    tick: tuple[Prior, np.ndarray, np.ndarray, WindowCounts, int | None], decay: float
) -> None:
    prior, alphas, betas, counts, chosen = tick
    update = reference_ratio_update(
        alphas, betas, counts, prior=prior, decay=decay, chosen_arm=chosen
    )
    assert update.applied == (counts.reference_exposures > 0)
    assert np.all(update.alpha_increments >= 0)
    assert np.all(update.beta_increments >= 0)
    assert np.all(update.alphas_after >= prior.alpha)
    assert np.all(update.betas_after >= prior.beta)
    means = update.alphas_after / (update.alphas_after + update.betas_after)
    assert np.all((means > 0) & (means < 1))


def test_counts_built_without_of_are_still_validated() -> None:
    # found by this suite: WindowCounts(...) bypasses .of(), and the update trusted it
    counts = WindowCounts(-3.0, 10.0, np.array([1.0]), np.array([5.0]))
    with pytest.raises(InvalidParameterError, match="finite and >= 0"):
        reference_ratio_update(np.ones(1), np.ones(1), counts)


def test_skipped_window_returns_independent_arrays() -> None:
    # found by this suite: with n_r = 0 the "after" arrays were the "before" arrays, so a caller
    # writing into one silently rewrote the audit record of the other
    update = _tick(np.array([2.0]), np.array([3.0]), 0, 0, [1], [1])
    assert not np.shares_memory(update.alphas_after, update.alphas_before)
    assert not np.shares_memory(update.betas_after, update.betas_before)
    assert not np.shares_memory(update.alpha_increments, update.beta_increments)


def test_ratio_increments_are_vectorised_over_runs() -> None:
    from bandit.update import ratio_increments

    # Two runs of two arms: run 0 has c_r/n_r = 7/40, run 1 has 3/10.
    alpha_increments, beta_increments = ratio_increments(
        [[2.0, 5.0], [1.0, 0.0]], [[30.0, 20.0], [10.0, 4.0]], [7.0, 3.0], [40.0, 10.0]
    )
    assert alpha_increments.tolist() == [[2.0, 5.0], [1.0, 0.0]]
    # 7*30/40 = 5.25, 7*20/40 = 3.5; 3*10/10 = 3.0, 3*4/10 = 1.2
    assert beta_increments.ravel().tolist() == pytest.approx([5.25, 3.5, 3.0, 1.2], rel=1e-15)


def test_ratio_increments_refuse_a_window_without_reference_exposure() -> None:
    from bandit.update import ratio_increments

    with pytest.raises(InvalidParameterError, match="reference_exposures"):
        ratio_increments([[1.0]], [[1.0]], [1.0], [0.0])
