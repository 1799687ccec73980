"""The MovieLens marketplace behind ``ranktune simulate movielens``: pure NumPy, no storage.

A "similar films" block for a source film, ranked by the score of docs/spec.md with
features derived from the data, and users whose behaviour is the data's own.

Time split
    The ratings are split at the ``split`` quantile of their timestamps. The *past* (before
    the cut) is what the ranker knows: a film's popularity is its number of ratings then,
    and only films with at least ``min_ratings`` of them can be recommended. The *future*
    (after the cut) is the truth the platform has to discover.

The block (the score of docs/spec.md, one feature per experiment parameter) ::

    score = text_match * genre_overlap + distance * YEAR_SCALE / (|year - source_year| + YEAR_SCALE)
          + price_diff * POP_SCALE / (|popularity - source_popularity| + POP_SCALE)
          + region * [same primary genre]

    ``genre_overlap`` is the Jaccard similarity of the two films' genre sets (the text
    match), the year term plays the distance, the popularity term the price difference (the
    same shape as the spec's price term) and the first-listed genre the region. The top
    ``block_size`` candidates form the block; ties go to the lower film id.

The users (what the platform does not see)
    A page view of source film ``s`` is made by a user who, in the future part of the data,
    liked ``s`` (rated it 4 or 5): a real user, drawn uniformly among the film's likers, and
    films are viewed in proportion to their number of likers. The user examines block
    position ``p`` with probability ``attention * position_decay**p`` (the one assumption
    not taken from the data: position bias) and contacts an examined film exactly when that
    real user also liked it in the future part. So the chance that a block item is
    contacted is ``attention * position_decay**p * P(liked c | liked s)``, the share of the
    source's likers who liked the candidate too: the real co-ratings, not a formula.

Traffic follows the ratings' own hour-of-day profile (timestamps read in US Eastern
Standard Time, UTC-5; the busiest hour has about 13 times the ratings of the quietest).

Every expectation here is exact (a weighted average over all source films); only the live
simulation samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulations.marketplace.model import simplex_grid
from simulations.movielens.data import GENRES, BoolArray, FloatArray, IntArray, MovieLens
from simulations.options import (
    SWITCH,
    choice,
    fresh_seed,
    integer,
    number,
    option,
    option_factory,
)
from simulations.platform import GenerationLog, ScenarioClock, WindowLog, require

# Experiment parameter -> the feature it weighs, in the order of FEATURES.
PARAMETER_NAMES = ("text_match", "distance", "price_diff", "region")
FEATURES = ("genre_overlap", "year_closeness", "popularity_closeness", "same_primary_genre")
YEAR_SCALE = 10.0  # years: the year term halves at 10 years apart
POP_SCALE = 50.0  # past ratings: the popularity term halves at 50 ratings apart
LIKED = 4  # a rating of 4 or 5 is a like
UTC_OFFSET_HOURS = -5  # the ratings' hours read in US Eastern Standard Time


@dataclass(frozen=True)
class MovieLensModel:
    """What defines the environment besides the data."""

    split: float = 0.5
    min_ratings: int = 5
    min_likers: int = 20
    block_size: int = 5
    attention: float = 0.15
    position_decay: float = 0.8

    def __post_init__(self) -> None:
        checks = [
            (0 < self.split < 1, "split must be in (0, 1)"),
            (self.min_ratings >= 1, "min_ratings must be >= 1"),
            (self.min_likers >= 1, "min_likers must be >= 1"),
            (self.block_size >= 1, "block_size must be >= 1"),
            (0 < self.attention <= 1, "attention must be in (0, 1]"),
            (0 < self.position_decay <= 1, "position_decay must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def primary_genres(genres: BoolArray) -> IntArray:
    """The first-listed genre of every film (``-1`` for a film without any)."""
    first = np.argmax(genres, axis=1).astype(np.int64)
    return np.where(genres.any(axis=1), first, -1)


def genre_jaccard(genres: BoolArray, sources: IntArray, candidates: IntArray) -> FloatArray:
    """``|G_s & G_c| / |G_s | G_c|`` for every (source, candidate) pair (0 when both empty)."""
    g = genres.astype(np.float64)
    shared = g[sources] @ g[candidates].T
    sizes = g.sum(axis=1)
    union = sizes[sources][:, None] + sizes[candidates][None, :] - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, shared / union, 0.0)


def hourly_profile(timestamps: IntArray) -> FloatArray:
    """Ratings per clock hour (0..23, UTC-5), scaled to a mean of 1."""
    hours = ((timestamps + UTC_OFFSET_HOURS * 3600) // 3600) % 24
    counts = np.bincount(hours, minlength=24).astype(np.float64)
    profile: FloatArray = counts / counts.mean()
    return profile


@dataclass(frozen=True)
class Blocks:
    """The block of every source film under one configuration, and its probabilities.

    ``items[s, p]`` is the film at position ``p`` for source ``s`` (a column of the
    candidate list); ``contact_probs[s, p]`` the chance that it is contacted.
    """

    items: IntArray
    contact_probs: FloatArray
    source_weights: FloatArray

    @property
    def expected_contacts(self) -> float:
        """Expected contacts per page view (the target event rate)."""
        return float(self.source_weights @ self.contact_probs.sum(axis=1))


class MovieLensMarket:
    """Sources, candidates, their features and the real co-like probabilities."""

    def __init__(self, data: MovieLens, model: MovieLensModel) -> None:
        self.model = model
        cut = np.quantile(data.timestamps, model.split)
        past = data.timestamps <= cut
        future_likes = (data.timestamps > cut) & (data.ratings >= LIKED)
        n = data.n_films + 1
        self.popularity = np.bincount(data.films[past], minlength=n).astype(np.float64)
        self.candidates = np.flatnonzero(self.popularity >= model.min_ratings).astype(np.int64)
        # Who liked what in the future: a dense users x films matrix (943 x 1683 here).
        likers = np.zeros((data.n_users + 1, n), dtype=bool)
        likers[data.users[future_likes], data.films[future_likes]] = True
        like_counts = likers.sum(axis=0)
        self.sources = np.flatnonzero(like_counts >= model.min_likers).astype(np.int64)
        if len(self.sources) == 0 or len(self.candidates) <= model.block_size:
            raise ValueError(
                "too few films: no source with min_likers future likers, or no more "
                "candidates than a block holds"
            )
        self.liked = likers
        counts = like_counts[self.sources].astype(np.float64)
        self.source_weights = counts / counts.sum()
        # The likers of each source, flattened: likers of source i are
        # liker_ids[liker_offsets[i]:liker_offsets[i + 1]].
        per_source = [np.flatnonzero(likers[:, s]) for s in self.sources]
        self.liker_ids = np.concatenate(per_source).astype(np.int64)
        self.liker_offsets = np.concatenate([[0], np.cumsum([len(p) for p in per_source])])
        # P(liked c | liked s): the real co-likes over the source's likers.
        co = likers[:, self.sources].T.astype(np.float64) @ likers[:, self.candidates]
        self.co_like = co / counts[:, None]
        self.features = self._features(data)
        self.valid = self.candidates[None, :] != self.sources[:, None]
        width = len(self.candidates)
        self._tie_break = np.where(self.valid, -1e-9 * np.arange(width, dtype=np.float64), -np.inf)
        self.position_factors = model.attention * model.position_decay ** np.arange(
            model.block_size, dtype=np.float64
        )
        self.hourly = hourly_profile(data.timestamps)
        self.n_future_users = int(likers.any(axis=1).sum())

    def _features(self, data: MovieLens) -> FloatArray:
        s, c = self.sources, self.candidates
        overlap = genre_jaccard(data.genres, s, c)
        years = data.years
        gap = np.abs(years[c][None, :] - years[s][:, None])
        year = np.where(np.isnan(gap), 0.0, YEAR_SCALE / (np.nan_to_num(gap) + YEAR_SCALE))
        pop = self.popularity
        popularity = POP_SCALE / (np.abs(pop[c][None, :] - pop[s][:, None]) + POP_SCALE)
        primary = primary_genres(data.genres)
        same = ((primary[c][None, :] == primary[s][:, None]) & (primary[s][:, None] >= 0)).astype(
            np.float64
        )
        return np.stack([overlap, year, popularity, same])

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    def blocks(self, weights: npt.ArrayLike) -> Blocks:
        """Rank every source's candidates by the score and keep the top ``block_size``."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(FEATURES),) or not np.all(np.isfinite(w)):
            raise ValueError(f"weights must be {len(FEATURES)} finite numbers, got {w!r}")
        scores = self._tie_break.copy()
        for f in range(len(FEATURES)):
            if w[f] != 0.0:
                scores += w[f] * self.features[f]
        rows = np.arange(scores.shape[0])
        k = self.model.block_size
        top = np.empty((scores.shape[0], k), dtype=np.int64)
        for p in range(k):  # k rounds of argmax: faster than argpartition for a small k
            best = np.argmax(scores, axis=1)
            top[:, p] = best
            scores[rows, best] = -np.inf
        probs = self.co_like[rows[:, None], top] * self.position_factors
        return Blocks(top, probs, self.source_weights)

    def expected_contacts(self, weights: npt.ArrayLike) -> float:
        return self.blocks(weights).expected_contacts

    def draw_likers(self, sources: IntArray, rng: np.random.Generator) -> IntArray:
        """A real future liker of each source (row of :attr:`sources`), uniformly."""
        starts = self.liker_offsets[sources]
        sizes = self.liker_offsets[sources + 1] - starts
        picks = starts + (rng.random(len(sources)) * sizes).astype(np.int64)
        chosen: IntArray = self.liker_ids[picks]
        return chosen

    def traffic_factor(self, hours: npt.ArrayLike) -> FloatArray:
        """The hour-of-day traffic multiplier (mean 1 over a day) at clock ``hours``."""
        h = np.floor(np.asarray(hours, dtype=np.float64)).astype(np.int64) % 24
        result: FloatArray = self.hourly[h]
        return result


def weights_of(config: dict[str, float]) -> FloatArray:
    """The ranking weights (in :data:`FEATURES` order) of an experiment configuration."""
    return np.array([float(config[name]) for name in PARAMETER_NAMES], dtype=np.float64)


def config_of(weights: npt.ArrayLike) -> dict[str, float]:
    values = np.asarray(weights, dtype=np.float64)
    return {name: float(v) for name, v in zip(PARAMETER_NAMES, values, strict=True)}


@dataclass(frozen=True)
class GridSearch:
    """The best configuration by exhaustive evaluation of the simplex grid."""

    weights: FloatArray  # normalised to max(weights) = 1 (the space is [0, 1]^4)
    contacts: float
    grid: FloatArray  # every point evaluated
    values: FloatArray  # its expected contacts per page view


def search_best(market: MovieLensMarket, grid_steps: int = 10) -> GridSearch:
    """Every ranking direction on a ``1/grid_steps`` simplex grid (only the weights' ratios
    matter), each evaluated exactly; the best one, scaled to ``max = 1``."""
    grid = simplex_grid(grid_steps)
    values = np.array([market.expected_contacts(w) for w in grid])
    best = grid[int(np.argmax(values))]
    return GridSearch(best / best.max(), float(values.max()), grid, values)


def describe(market: MovieLensMarket) -> dict[str, float]:
    """Sizes of the environment, for the report."""
    hourly = market.hourly
    return {
        "sources": float(market.n_sources),
        "candidates": float(len(market.candidates)),
        "future_users": float(market.n_future_users),
        "busiest_over_quietest_hour": float(hourly.max() / hourly.min()),
        "genres": float(len(GENRES)),
        "mean_co_like": float(np.mean(market.co_like[market.valid])),
        "max_source_likers": float(np.diff(market.liker_offsets).max()),
        "min_source_likers": float(np.diff(market.liker_offsets).min()),
    }


# --- the scenario -------------------------------------------------------------------------

COMMAND = "movielens"
EXPERIMENT_NAME = "similar-films"
# The experts' weights: genres first, then the primary genre, year, and a little popularity.
REFERENCE_CONFIG = {"text_match": 0.6, "distance": 0.3, "price_diff": 0.2, "region": 0.4}
# Expert alternatives that start as arms next to the random ones.
EXPERT_CONFIGS = (
    {"text_match": 0.8, "distance": 0.2, "price_diff": 0.2, "region": 0.6},
    {"text_match": 0.6, "distance": 0.5, "price_diff": 0.3, "region": 0.2},
    {"text_match": 0.4, "distance": 0.4, "price_diff": 0.4, "region": 0.2},
)
# The hours after which the share of the available lift captured is reported.
CHECKPOINT_HOURS = (1.0, 3.0, 6.0)
POSITIVE = number(0.0, open_low=True)


@dataclass(frozen=True)
class MovieLensConfig(ScenarioClock):
    """Everything that determines a run; saved with the results so it can be repeated.

    Each field but ``model`` is also the command's option of that name (see
    :mod:`simulations.options`); the environment's constants keep their defaults.
    """

    hours: float = option(6.0, POSITIVE, "simulated hours of traffic")
    views_per_minute: float = option(
        600.0, POSITIVE, "page views per simulated minute, on average over the day"
    )
    seed: int = option_factory(
        fresh_seed,
        integer(minimum=0),
        "seed of all random draws (run i uses seed + i); a fresh one is drawn and saved if omitted",
    )
    runs: int = option(1, integer(minimum=1), "seeded runs on identical settings")
    random_arms: int = option(
        3, integer(minimum=0), "random founder arms (besides the 3 expert arms)", flag="--arms"
    )
    evolve: bool = option(True, SWITCH, "run the genetic step on schedule")
    model_proposals: bool = option(
        False,
        SWITCH,
        "add model-guided proposals to the genetic step's mix (evolution mix 'model')",
        flag="--model",
    )
    model_weight: float = option(
        3.0,
        POSITIVE,
        "with --model: weight of the model's proposals beside random, mutation and crossover "
        "at 1 each",
    )
    evolve_minutes: float = option(60.0, POSITIVE, "simulated minutes between genetic steps")
    drop_count: int = option(1, integer(minimum=1), "arms each genetic step retires")
    tick_seconds: float = option(
        30.0, number(1.0), "simulated seconds between ticks (the experiment's update_interval_s)"
    )
    reference_share: float = option(0.2, POSITIVE, "share of users in the reference group")
    mode: str = option(
        "request",
        choice("request", "window"),
        "Thompson draw per request, or one arm per tick window",
    )
    users: int = option(20_000, integer(minimum=1), "distinct visitors (the randomised unit)")
    start_hour: float = option(
        8.0, number(0.0), "clock hour (UTC-5) at which the simulation starts"
    )
    bin_minutes: float = option(30.0, POSITIVE, "rows of the lift table")
    grid_steps: int = option(
        10, integer(minimum=2), "simplex grid 1/N of the exhaustive search for the best possible"
    )
    model: MovieLensModel = field(default_factory=MovieLensModel)

    def __post_init__(self) -> None:
        require(
            [
                *self.scenario_checks(),
                (self.runs >= 1, "runs must be >= 1"),
                (self.model_weight > 0, "model_weight must be > 0"),
                (self.drop_count >= 1, "drop_count must be >= 1"),
                (not self.model_proposals or self.evolve, "--model needs --evolve"),
            ]
        )

    @property
    def checkpoints(self) -> tuple[float, ...]:
        """The reporting hours within the run, and its end."""
        inside = tuple(h for h in CHECKPOINT_HOURS if h < self.hours - 1e-9)
        return (*inside, self.hours)


# --- what a run records -------------------------------------------------------------------


@dataclass
class ArmTruth:
    """What the simulator knows about an arm, including what the platform cannot see."""

    arm_id: int
    label: str
    origin: str
    config: dict[str, float]
    blocks: Blocks
    true_contacts: float


@dataclass
class RunRecord:
    """One seeded run through the platform."""

    seed: int
    reference_arm_id: int
    arms: dict[int, ArmTruth]
    log: WindowLog
    final_arms: list[dict[str, Any]]
    generations: list[GenerationLog]
    ticks_applied: int
    wall_time_s: float


@dataclass
class MovieLensResult:
    config: MovieLensConfig
    search: GridSearch
    reference_rate: float
    environment: dict[str, float]
    data_source: str
    runs: list[RunRecord]
    evolution_available: bool
    search_time_s: float
    wall_time_s: float
