"""``simulations.movielens.model`` on the generated fixture, against independent counts,
and the environment built from the real data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulations.movielens import data
from simulations.movielens.model import (
    POP_SCALE,
    REFERENCE_CONFIG,
    UTC_OFFSET_HOURS,
    YEAR_SCALE,
    MovieLensMarket,
    MovieLensModel,
    hourly_profile,
    search_best,
    weights_of,
)
from tests.simulations.movielens.fixture import generate, write_atomic
from tests.simulations.movielens.test_data import real_movielens


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> data.MovieLens:
    return data.load_local(write_atomic(tmp_path_factory.mktemp("ml"), generate()))


@pytest.fixture(scope="module")
def market(fixture_data: data.MovieLens) -> MovieLensMarket:
    return MovieLensMarket(fixture_data, MovieLensModel())


def _future_likers(ml: data.MovieLens, split: float = 0.5) -> dict[int, set[int]]:
    cut = np.quantile(ml.timestamps, split)
    likers: dict[int, set[int]] = {}
    for u, f, r, t in zip(ml.users, ml.films, ml.ratings, ml.timestamps, strict=True):
        if t > cut and r >= 4:
            likers.setdefault(int(f), set()).add(int(u))
    return likers


def test_co_likes_are_the_share_of_the_sources_likers_who_liked_the_candidate(
    fixture_data: data.MovieLens, market: MovieLensMarket
) -> None:
    likers = _future_likers(fixture_data)
    expected_sources = sorted(f for f, who in likers.items() if len(who) >= 20)
    assert market.sources.tolist() == expected_sources
    for i, s in enumerate(market.sources):
        for j, c in enumerate(market.candidates):
            share = len(likers[int(s)] & likers.get(int(c), set())) / len(likers[int(s)])
            assert market.co_like[i, j] == pytest.approx(share, abs=1e-12)
    weights = np.array([len(likers[int(s)]) for s in market.sources], dtype=float)
    np.testing.assert_allclose(market.source_weights, weights / weights.sum())


def _score(ml: data.MovieLens, market: MovieLensMarket, w: np.ndarray, s: int, c: int) -> float:
    a, b = set(np.flatnonzero(ml.genres[s])), set(np.flatnonzero(ml.genres[c]))
    overlap = len(a & b) / len(a | b) if a | b else 0.0
    gap = abs(ml.years[s] - ml.years[c])
    year = 0.0 if np.isnan(gap) else YEAR_SCALE / (gap + YEAR_SCALE)
    pop = market.popularity
    popularity = POP_SCALE / (abs(pop[s] - pop[c]) + POP_SCALE)
    same = float(min(a) == min(b)) if a and b else 0.0
    return float(w @ np.array([overlap, year, popularity, same]))


@pytest.mark.parametrize(
    "weights", [[1.0, 0.0, 0.0, 0.0], [0.6, 0.3, 0.2, 0.4], [0.0, 0.2, 1.0, 0.5]]
)
def test_blocks_and_their_expectation_match_a_brute_force_ranking(
    fixture_data: data.MovieLens, market: MovieLensMarket, weights: list[float]
) -> None:
    w = np.array(weights)
    blocks = market.blocks(w)
    total = 0.0
    factors = 0.15 * 0.8 ** np.arange(5)
    for i, s in enumerate(market.sources):
        others = [j for j, c in enumerate(market.candidates) if c != s]
        # Higher score first; ties to the lower film id (the candidates are in id order).
        ranked = sorted(
            others,
            key=lambda j: (-_score(fixture_data, market, w, int(s), int(market.candidates[j])), j),
        )[:5]
        assert blocks.items[i].tolist() == ranked
        total += market.source_weights[i] * float(factors @ market.co_like[i, ranked])
    assert blocks.expected_contacts == pytest.approx(total, rel=1e-12)


def test_likers_are_drawn_uniformly_among_the_sources_real_likers(
    fixture_data: data.MovieLens, market: MovieLensMarket
) -> None:
    likers = _future_likers(fixture_data)
    rng = np.random.default_rng(1)
    sources = np.zeros(40_000, dtype=np.int64)  # all views of the first source
    drawn = market.draw_likers(sources, rng)
    who = likers[int(market.sources[0])]
    assert set(drawn.tolist()) == who
    counts = np.array([np.sum(drawn == u) for u in sorted(who)])
    # Uniform: a chi-square statistic far below its 0.999 quantile for len(who) - 1 dof.
    expected = len(drawn) / len(who)
    assert float(((counts - expected) ** 2 / expected).sum()) < len(who) + 5 * np.sqrt(2 * len(who))


def test_simulated_contacts_match_the_exact_expectation(market: MovieLensMarket) -> None:
    """The run's sampling (a real liker, examined positions, their likes) against the
    exact expectation, over 200,000 simulated page views."""
    rng = np.random.default_rng(5)
    blocks = market.blocks(weights_of(REFERENCE_CONFIG))
    n = 200_000
    sources = rng.choice(market.n_sources, n, p=market.source_weights)
    likers = market.draw_likers(sources, rng)
    films = market.candidates[blocks.items[sources]]
    examined = rng.random((n, 5)) < market.position_factors
    contacts = (examined & market.liked[likers[:, None], films]).sum(axis=1)
    sd = contacts.std() / np.sqrt(n)
    assert abs(contacts.mean() - blocks.expected_contacts) < 4 * sd


def test_hourly_profile_counts_ratings_by_eastern_hour() -> None:
    hours = np.array([0, 0, 5, 23], dtype=np.int64)  # UTC hours -> 19, 19, 0, 18 in UTC-5
    timestamps = hours * 3600 + 86_400 * 1000
    profile = hourly_profile(timestamps)
    assert UTC_OFFSET_HOURS == -5
    expected = np.zeros(24)
    expected[[19, 0, 18]] = [2, 1, 1]
    np.testing.assert_allclose(profile, expected / expected.mean())


def test_search_best_is_the_maximum_over_the_simplex_grid(market: MovieLensMarket) -> None:
    search = search_best(market, grid_steps=4)
    points = [np.array(p) / 4 for p in itertools.product(range(5), repeat=4) if sum(p) == 4]
    values = [market.expected_contacts(p) for p in points]
    assert len(search.grid) == len(points) == 35
    assert search.contacts == pytest.approx(max(values), rel=1e-12)
    assert search.weights.max() == 1.0
    assert market.expected_contacts(search.weights) == pytest.approx(max(values), rel=1e-12)


def test_the_model_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError, match="split"):
        MovieLensModel(split=1.0)
    with pytest.raises(ValueError, match="attention"):
        MovieLensModel(attention=0.0)


def test_the_real_environment() -> None:
    ml = real_movielens()
    market = MovieLensMarket(ml, MovieLensModel())
    assert market.n_sources > 300 and len(market.candidates) > 1000
    # The "about 13x over the day": the busiest hour against the quietest.
    counts = np.bincount(((ml.timestamps - 5 * 3600) // 3600) % 24, minlength=24)
    assert market.hourly.max() / market.hourly.min() == pytest.approx(counts.max() / counts.min())
    assert 12 < counts.max() / counts.min() < 14
    reference = market.expected_contacts(weights_of(REFERENCE_CONFIG))
    best = search_best(market, grid_steps=5)
    assert best.contacts > reference  # the experts leave lift on the table
