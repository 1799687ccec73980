"""The synthetic marketplace behind ``ranktune simulate marketplace``: pure NumPy, no storage.

Catalogue
    ``n_listings`` listings, each in one of ``n_categories`` categories, with a title (a set
    of words: a few from its category's vocabulary, popular words more often, and one word
    shared by all categories), a metro (big metros hold more listings), the region of that
    metro, and a price (a category price level times a log-normal spread).

The "similar items" block (the score of docs/spec.md)
    A page view shows a *source* listing; its candidates are the other listings of the same
    category, ranked by ::

        score = w_text * text_match + w_metro * [same metro] + w_region * [same region]
              + w_price * 110000 / (|price - source_price| + 110000)

    with ``text_match`` the Jaccard similarity of the title word sets, and the top
    ``block_size`` form the block. The experiment's parameters map onto the weights:
    ``text_match -> w_text``, ``distance -> w_metro``, ``region -> w_region``,
    ``price_diff -> w_price``. Only the ratios of the weights matter, so every non-zero
    configuration ranks like one point of the simplex ``sum(w) = 1``.

Hidden user model (what the platform does not see)
    A user looks at block position ``p`` and clicks (a *view* of that listing) with
    probability ``click_base * position_decay**p * (click_floor + (1 - click_floor) * text)
    * price_appeal``; ``price_appeal = exp(-|log(price / source_price)| / click_price_scale)``
    with a bonus for cheaper items. Clicks ignore geography: people browse the whole
    country. After a click the user contacts the seller with probability
    ``contact_base * (1 if same region else other_region_factor) * (same_metro_bonus if same
    metro) * exp(-|log(price / source_price)| / contact_price_scale)``, times the daily
    cycle: buyers contact sellers they can reach, at prices near what they came for.

    So a configuration without region weight fills the block with the most clickable items
    from anywhere and maximises views, while contacts need same-region items: the views trap
    of docs/spec.md ("Terms": the views trap).

Every expectation here is exact (an average over all source listings, uniformly drawn);
only the live simulation samples.

The scenario (``MarketplaceConfig``: traffic, ticks, evolution; each field also the
command's option of that name) and what a run records (``MarketplaceResult``) are here too,
so that the run and the report share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Experiment parameter -> the factor of the score it weighs, in the order of FEATURES.
PARAMETER_NAMES = ("text_match", "distance", "region", "price_diff")
FEATURES = ("text_match", "same_metro", "same_region", "price_closeness")
PRICE_SCALE = 110_000.0  # the constant of the score's price term


@dataclass(frozen=True)
class MarketModel:
    """Everything that defines the catalogue and the hidden users; seeded, so repeatable."""

    n_listings: int = 2000
    n_categories: int = 20
    words_per_category: int = 14
    shared_words: int = 20
    title_category_words: int = 3
    n_regions: int = 8
    metros_per_region: int = 4
    block_size: int = 5
    click_base: float = 0.12
    position_decay: float = 0.8
    click_floor: float = 0.4
    click_price_scale: float = 0.6
    cheaper_click_bonus: float = 1.15
    contact_base: float = 0.6
    other_region_factor: float = 0.4
    same_metro_bonus: float = 1.2
    contact_price_scale: float = 0.35
    catalogue_seed: int = 20240601

    def __post_init__(self) -> None:
        checks = [
            (self.n_listings >= 2 * self.n_categories, "n_listings must be >= 2 * n_categories"),
            (self.n_categories >= 1, "n_categories must be >= 1"),
            (1 <= self.title_category_words <= self.words_per_category, "bad title size"),
            (self.n_regions >= 1 and self.metros_per_region >= 1, "need regions and metros"),
            (self.block_size >= 1, "block_size must be >= 1"),
            (self.click_base > 0 and self.click_base * self.cheaper_click_bonus <= 1, "click"),
            (0 < self.contact_base * self.same_metro_bonus <= 1, "contact_base too large"),
            (0 < self.other_region_factor <= 1, "other_region_factor must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class Catalogue:
    """The listings, as arrays indexed by listing id."""

    categories: IntArray
    titles: BoolArray  # (n_listings, vocabulary): word w in the title of listing i
    metros: IntArray
    regions: IntArray
    prices: FloatArray


def make_catalogue(model: MarketModel) -> Catalogue:
    rng = np.random.default_rng(model.catalogue_seed)
    n = model.n_listings
    # Every category appears at least twice, so that every listing has a candidate.
    categories = np.concatenate(
        [np.repeat(np.arange(model.n_categories), 2), rng.integers(0, model.n_categories, n)]
    )[:n].astype(np.int64)
    rng.shuffle(categories)
    vocabulary = model.n_categories * model.words_per_category + model.shared_words
    titles = np.zeros((n, vocabulary), dtype=bool)
    # Zipf-like word popularity inside a category: some words ("iphone") are everywhere.
    popularity = 1.0 / np.arange(1, model.words_per_category + 1) ** 0.8
    popularity /= popularity.sum()
    for i in range(n):
        words = rng.choice(
            model.words_per_category, model.title_category_words, replace=False, p=popularity
        )
        titles[i, categories[i] * model.words_per_category + words] = True
        shared = rng.integers(0, model.shared_words)
        titles[i, model.n_categories * model.words_per_category + shared] = True
    n_metros = model.n_regions * model.metros_per_region
    metro_weights = 1.0 / np.arange(1, n_metros + 1) ** 0.7
    metros = rng.choice(n_metros, n, p=metro_weights / metro_weights.sum()).astype(np.int64)
    # Spread the big metros over the regions instead of packing them into region 0.
    metro_regions = rng.permutation(np.repeat(np.arange(model.n_regions), model.metros_per_region))
    regions = metro_regions[metros].astype(np.int64)
    price_levels = np.exp(rng.uniform(math.log(8_000), math.log(400_000), model.n_categories))
    prices = np.round(price_levels[categories] * rng.lognormal(0.0, 0.6, n), -2)
    return Catalogue(categories, titles, metros, regions, np.maximum(prices, 100.0))


@dataclass(frozen=True)
class CandidateFeatures:
    """Per source listing, its candidates (the other listings of its category), padded.

    ``candidates[s, j]`` is a listing id (or -1 past the end), ``features[f, s, j]`` the
    ranking factors in the order of :data:`FEATURES`, ``click_probs`` and
    ``contact_probs`` the hidden model's probabilities before the position factor and the
    daily cycle.
    """

    candidates: IntArray
    valid: BoolArray
    features: FloatArray
    click_probs: FloatArray
    contact_probs: FloatArray


def candidate_features(model: MarketModel, catalogue: Catalogue) -> CandidateFeatures:
    n = model.n_listings
    members = [np.flatnonzero(catalogue.categories == c) for c in range(model.n_categories)]
    width = max(len(m) for m in members) - 1
    candidates = np.full((n, width), -1, dtype=np.int64)
    for group in members:
        for s in group:
            others = group[group != s]
            candidates[s, : len(others)] = others
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    titles = catalogue.titles.astype(np.float64)
    sizes = titles.sum(axis=1)
    # Jaccard |A & B| / |A | B| of each source with each of its candidates.
    shared = np.take_along_axis(titles @ titles.T, safe, axis=1)
    text = shared / (sizes[:, None] + sizes[safe] - shared)
    same_metro = (catalogue.metros[safe] == catalogue.metros[:, None]).astype(np.float64)
    same_region = (catalogue.regions[safe] == catalogue.regions[:, None]).astype(np.float64)
    source_prices = catalogue.prices[:, None]
    item_prices = catalogue.prices[safe]
    closeness = PRICE_SCALE / (np.abs(item_prices - source_prices) + PRICE_SCALE)
    features = np.stack([text, same_metro, same_region, closeness])
    features[:, ~valid] = 0.0

    log_ratio = np.log(item_prices / source_prices)
    price_appeal = np.exp(-np.abs(log_ratio) / model.click_price_scale)
    price_appeal = price_appeal * np.where(log_ratio < 0, model.cheaper_click_bonus, 1.0)
    click_probs = (
        model.click_base * (model.click_floor + (1.0 - model.click_floor) * text) * price_appeal
    )
    contact_probs = (
        model.contact_base
        * np.where(same_region > 0, 1.0, model.other_region_factor)
        * np.where(same_metro > 0, model.same_metro_bonus, 1.0)
        * np.exp(-np.abs(log_ratio) / model.contact_price_scale)
    )
    click_probs[~valid] = 0.0
    contact_probs[~valid] = 0.0
    return CandidateFeatures(candidates, valid, features, click_probs, contact_probs)


def weights_of(config: dict[str, float]) -> FloatArray:
    """The ranking weights (in :data:`FEATURES` order) of an experiment configuration."""
    return np.array([float(config[name]) for name in PARAMETER_NAMES], dtype=np.float64)


def config_of(weights: npt.ArrayLike) -> dict[str, float]:
    values = np.asarray(weights, dtype=np.float64)
    return {name: float(v) for name, v in zip(PARAMETER_NAMES, values, strict=True)}


@dataclass(frozen=True)
class Blocks:
    """The block every source listing shows under one configuration, and its probabilities.

    ``click_probs[s, p]`` is the probability that a user viewing source ``s`` clicks the item
    at position ``p``; ``contact_probs[s, p]`` that the click leads to a contact (at the
    cycle's mean).
    """

    items: IntArray
    click_probs: FloatArray
    contact_probs: FloatArray

    @property
    def expected_views(self) -> float:
        """Expected clicks (listing views) from the block per page view."""
        return float(self.click_probs.sum(axis=1).mean())

    @property
    def expected_contacts(self) -> float:
        """Expected contacts from the block per page view (the target event rate)."""
        return float((self.click_probs * self.contact_probs).sum(axis=1).mean())


class Marketplace:
    """The catalogue with its candidate features, and exact evaluation of configurations."""

    def __init__(self, model: MarketModel) -> None:
        self.model = model
        self.catalogue = make_catalogue(model)
        self.candidates = candidate_features(model, self.catalogue)
        k = model.block_size
        self.position_factors = model.position_decay ** np.arange(k, dtype=np.float64)
        # A tiny, fixed tie-break (earlier candidates first) so that equal scores, for
        # example every candidate under all-zero weights, still give one definite block.
        width = self.candidates.valid.shape[1]
        tie_break = -1e-9 * np.arange(width, dtype=np.float64)
        self._masked_tie_break = np.where(self.candidates.valid, tie_break, -np.inf)

    @property
    def n_sources(self) -> int:
        return self.model.n_listings

    def blocks(self, weights: npt.ArrayLike) -> Blocks:
        """Rank every source's candidates by the score and keep the top ``block_size``."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(FEATURES),) or not np.all(np.isfinite(w)):
            raise ValueError(f"weights must be {len(FEATURES)} finite numbers, got {w!r}")
        c = self.candidates
        scores = self._masked_tie_break.copy()
        for f in range(len(FEATURES)):
            if w[f] != 0.0:
                scores += w[f] * c.features[f]
        k = min(self.model.block_size, scores.shape[1])
        # k rounds of argmax beat argpartition by far for a block of 5 out of ~100.
        rows = np.arange(scores.shape[0])
        top = np.empty((scores.shape[0], k), dtype=np.int64)
        for p in range(k):
            best = np.argmax(scores, axis=1)
            top[:, p] = best
            scores[rows, best] = -np.inf
        valid = c.valid[rows[:, None], top]
        clicks = c.click_probs[rows[:, None], top] * self.position_factors[:k]
        contacts = c.contact_probs[rows[:, None], top]
        items = np.where(valid, c.candidates[rows[:, None], top], -1)
        return Blocks(items, np.where(valid, clicks, 0.0), np.where(valid, contacts, 0.0))

    def expected_rates(self, weights: npt.ArrayLike) -> tuple[float, float]:
        """``(views, contacts)`` expected per page view under ``weights``."""
        blocks = self.blocks(weights)
        return blocks.expected_views, blocks.expected_contacts


@dataclass(frozen=True)
class SearchResult:
    """The best configuration by one objective, found by a grid and a local search."""

    objective: str  # "contacts" or "views"
    weights: FloatArray  # normalised to max(weights) = 1 (the space is [0, 1]^4)
    views: float
    contacts: float
    evaluated: int
    # (views, contacts) of every configuration the search evaluated, for plots
    evaluated_rates: FloatArray


def simplex_grid(steps: int) -> FloatArray:
    """Every ``w >= 0`` with ``sum(w) = 1`` on a grid of ``1/steps``: all ranking directions."""
    points = [
        (a, b, c, steps - a - b - c)
        for a in range(steps + 1)
        for b in range(steps + 1 - a)
        for c in range(steps + 1 - a - b)
    ]
    return np.asarray(points, dtype=np.float64) / steps


def search_best(
    market: Marketplace, objective: str, *, grid_steps: int = 10, refine_rounds: int = 6
) -> SearchResult:
    """Maximise expected ``contacts`` (or ``views``) per page view over all configurations.

    Only weight ratios matter, so the search covers the simplex: an exact evaluation of every
    grid point (``grid_steps = 10``: 286 points), then a compass search from the best three,
    halving its step ``refine_rounds`` times. Exact, but a grid optimum: the true maximum of
    this piecewise-constant function can only be slightly higher.
    """
    if objective not in ("contacts", "views"):
        raise ValueError(f"objective must be 'contacts' or 'views', got {objective!r}")
    index = 1 if objective == "contacts" else 0
    cache: dict[tuple[float, ...], tuple[float, float]] = {}

    def value(w: FloatArray) -> float:
        key = tuple(np.round(w / w.sum(), 10))
        if key not in cache:
            cache[key] = market.expected_rates(np.asarray(key))
        return cache[key][index]

    grid = simplex_grid(grid_steps)
    values = np.array([value(w) for w in grid])
    starts = grid[np.argsort(-values, kind="stable")[:3]]
    best_w, best_v = starts[0], float(values.max())
    for start in starts:
        w, v = start.copy(), value(start)
        step = 0.5 / grid_steps
        for _ in range(refine_rounds):
            improved = True
            while improved:
                improved = False
                for d in range(len(FEATURES)):
                    for sign in (1.0, -1.0):
                        trial = w.copy()
                        trial[d] = max(trial[d] + sign * step, 0.0)
                        if trial.sum() <= 0:
                            continue
                        trial = trial / trial.sum()
                        tv = value(trial)
                        if tv > v + 1e-12:
                            w, v, improved = trial, tv, True
            step /= 2
        if v > best_v:
            best_w, best_v = w, v
    normalised = best_w / best_w.max()
    views, contacts = market.expected_rates(normalised)
    rates = np.array(list(cache.values()), dtype=np.float64)
    return SearchResult(objective, normalised, views, contacts, len(cache), rates)


@dataclass(frozen=True)
class ViewsTrap:
    """The view-maximising configuration against the contact-maximising one (the views
    trap of docs/spec.md)."""

    view_maximiser: SearchResult
    contact_maximiser: SearchResult

    @property
    def views_gain(self) -> float:
        """How many more views the view-maximiser gets, relative (0.15 = +15%)."""
        return self.view_maximiser.views / self.contact_maximiser.views - 1.0

    @property
    def contacts_loss(self) -> float:
        """How many fewer contacts it gets, relative (0.15 = -15%)."""
        return 1.0 - self.view_maximiser.contacts / self.contact_maximiser.contacts

    @property
    def reproduced(self) -> bool:
        return (
            self.view_maximiser.views > self.contact_maximiser.views
            and self.view_maximiser.contacts < self.contact_maximiser.contacts
        )


@dataclass(frozen=True)
class DailyCycle:
    """Contact propensity over the day: ``1 + amplitude * cos(2 pi (hour - peak_hour) / 24)``.

    Peaks in the evening (20:00) and bottoms out at night; both groups see the same hour, so
    the reference-ratio update cancels it (docs/spec.md, "Updating"). Its mean over a day is 1.
    """

    amplitude: float = 0.3
    peak_hour: float = 20.0

    def factor(self, hours: npt.ArrayLike) -> FloatArray:
        h = np.asarray(hours, dtype=np.float64)
        return 1.0 + self.amplitude * np.cos(2.0 * np.pi * (h - self.peak_hour) / 24.0)

    @property
    def max_factor(self) -> float:
        return 1.0 + abs(self.amplitude)


# --- the scenario -------------------------------------------------------------------------

COMMAND = "marketplace"
EXPERIMENT_NAME = "similar-items"
# The experts' hand-tuned weights: decent, not optimal (about 85% of the best contact rate).
REFERENCE_CONFIG = {"text_match": 0.3, "distance": 0.2, "price_diff": 0.9, "region": 0.2}
# Expert alternatives that start as arms next to the random ones.
EXPERT_CONFIGS = (
    {"text_match": 0.2, "distance": 0.1, "price_diff": 1.0, "region": 0.3},
    {"text_match": 0.4, "distance": 0.1, "price_diff": 1.0, "region": 0.1},
    {"text_match": 0.2, "distance": 0.2, "price_diff": 1.0, "region": 0.2},
)
TRAP_LABEL = "views-trap"
POSITIVE = number(0.0, open_low=True)


@dataclass(frozen=True)
class MarketplaceConfig(ScenarioClock):
    """Everything that determines a run; saved with the results so it can be repeated.

    Each field but ``model`` is also the command's option of that name (see
    :mod:`simulations.options`); the hidden model keeps its defaults.
    """

    hours: float = option(6.0, POSITIVE, "simulated hours of traffic")
    views_per_minute: float = option(600.0, POSITIVE, "page views per simulated minute")
    seed: int = option_factory(
        fresh_seed,
        integer(minimum=0),
        "seed of all random draws; a fresh one is drawn and saved if omitted",
    )
    random_arms: int = option(
        3,
        integer(minimum=0),
        "random founder arms (besides the view-maximiser and 3 expert arms)",
        flag="--arms",
    )
    evolve: bool = option(True, SWITCH, "run the genetic step on schedule")
    evolve_minutes: float = option(60.0, POSITIVE, "simulated minutes between genetic steps")
    drop_count: int = option(1, integer(minimum=1), "arms each genetic step retires")
    model_weight: float = option(
        0.0,
        number(0.0),
        "weight of the surrogate model's proposals in the genetic step's mix, beside random, "
        "mutation and crossover at 1 each (0: the step without the model)",
    )
    tick_seconds: float = option(
        30.0,
        number(1.0),
        "simulated seconds between ticks (the experiment's update_interval_s)",
    )
    reference_share: float = option(0.2, POSITIVE, "share of users in the reference group")
    mode: str = option(
        "request",
        choice("request", "window"),
        "Thompson draw per request, or one arm per tick window",
    )
    users: int = option(20_000, integer(minimum=1), "distinct users (the randomised unit)")
    start_hour: float = option(
        8.0, number(0.0), "clock hour at which the simulation starts (for the daily cycle)"
    )
    cycle_amplitude: float = option(
        0.3, number(0.0), "daily contact cycle: 1 + a cos(2 pi (h - 20) / 24)"
    )
    bin_minutes: float = option(30.0, POSITIVE, "rows of the lift table")
    optimise: str = option(
        "contact",
        choice("contact", "view"),
        "the decision metric the bandit optimises: contacts (the design), or views (the old "
        "objective: the views trap, which the contact guardrail should catch)",
    )
    guardrail_loss: float = option(
        0.05,
        number(0.0),
        "the other metric (views, or contacts when optimising views) is a guardrail: an arm "
        "confidently worse than the reference by more than this fraction is retired "
        "(0: a secondary metric only)",
    )
    grid_steps: int = option(
        10,
        integer(minimum=2),
        "simplex grid 1/N of the search for the best possible configuration",
    )
    model: MarketModel = field(default_factory=MarketModel)

    def __post_init__(self) -> None:
        require(
            [
                *self.scenario_checks(),
                (self.mode in ("request", "window"), "mode must be request or window"),
                (0 <= self.cycle_amplitude < 1, "cycle_amplitude must be in [0, 1)"),
                (0 <= self.guardrail_loss < 1, "guardrail_loss must be in [0, 1)"),
                (self.optimise in ("contact", "view"), "optimise must be contact or view"),
            ]
        )


# --- what a run records -------------------------------------------------------------------


@dataclass
class ArmInfo:
    """What the simulator knows about an arm, including what the platform cannot see."""

    arm_id: int
    label: str
    origin: str
    config: dict[str, float]
    blocks: Blocks
    true_views: float
    true_contacts: float


@dataclass
class MarketplaceResult:
    config: MarketplaceConfig
    trap: ViewsTrap
    reference_arm_id: int
    trap_arm_id: int
    arms: dict[int, ArmInfo]
    log: WindowLog
    final_arms: list[dict[str, Any]]
    generations: list[GenerationLog]
    evolution_available: bool
    ticks_applied: int
    wall_time_s: float
    search_time_s: float
    # The platform's own report at the end (GET .../report) and the arms its decisions
    # retired (guardrails): arm id -> (simulated hour, the recorded reason).
    report: dict[str, Any] = field(default_factory=dict)
    guardrail_retired: dict[int, tuple[float, str]] = field(default_factory=dict)
    # When the circuit breaker paused the experiment (simulated hour) and why.
    paused: tuple[float, dict[str, Any]] | None = None
