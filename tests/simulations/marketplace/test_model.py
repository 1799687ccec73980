"""``simulations.marketplace.model``: the hidden model and the views trap.

The model tests are exact (expectations over every source listing), so they do not depend
on sampling.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations.marketplace.model import (
    FEATURES,
    PRICE_SCALE,
    MarketModel,
    Marketplace,
    ViewsTrap,
    search_best,
    simplex_grid,
)


@pytest.fixture(scope="module")
def market() -> Marketplace:
    return Marketplace(MarketModel())


@pytest.fixture(scope="module")
def trap(market: Marketplace) -> ViewsTrap:
    return ViewsTrap(
        view_maximiser=search_best(market, "views", grid_steps=8, refine_rounds=3),
        contact_maximiser=search_best(market, "contacts", grid_steps=8, refine_rounds=3),
    )


def test_block_is_the_spec_formula_ranked_by_brute_force(market: Marketplace) -> None:
    """For a few sources, rank every candidate by the score by hand and compare the block."""
    weights = np.array([0.7, 0.3, 0.5, 0.9])  # text, metro, region, price
    blocks = market.blocks(weights)
    catalogue = market.catalogue
    titles = catalogue.titles
    for source in (0, 17, 1234):
        same = np.flatnonzero(catalogue.categories == catalogue.categories[source])
        scores = []
        for item in same[same != source]:
            a, b = titles[source], titles[item]
            text = (a & b).sum() / (a | b).sum()
            price = PRICE_SCALE / (
                abs(catalogue.prices[item] - catalogue.prices[source]) + PRICE_SCALE
            )
            score = (
                weights[0] * text
                + weights[1] * (catalogue.metros[item] == catalogue.metros[source])
                + weights[2] * (catalogue.regions[item] == catalogue.regions[source])
                + weights[3] * price
            )
            scores.append((score, item))
        expected = [
            item for _, item in sorted(scores, key=lambda p: -p[0])[: blocks.items.shape[1]]
        ]
        assert blocks.items[source].tolist() == expected


def test_expected_rates_match_monte_carlo(market: Marketplace) -> None:
    weights = np.array([0.3, 0.2, 0.2, 0.9])
    blocks = market.blocks(weights)
    rng = np.random.default_rng(5)
    n = 400_000
    sources = rng.integers(0, market.n_sources, n)
    clicked = rng.random((n, blocks.items.shape[1])) < blocks.click_probs[sources]
    contacted = clicked & (rng.random(clicked.shape) < blocks.contact_probs[sources])
    views = clicked.sum() / n
    contacts = contacted.sum() / n
    assert views == pytest.approx(blocks.expected_views, rel=0.02)
    assert contacts == pytest.approx(blocks.expected_contacts, rel=0.04)


def test_simplex_grid_covers_every_direction() -> None:
    grid = simplex_grid(4)
    assert grid.shape == (35, len(FEATURES))  # C(4 + 3, 3)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()


def test_views_trap_reproduces_under_the_hidden_model(trap: ViewsTrap, market: Marketplace) -> None:
    """The view-maximiser drops the region weight, gets more views and fewer contacts."""
    views_best, contacts_best = trap.view_maximiser, trap.contact_maximiser
    region = FEATURES.index("same_region")
    assert views_best.weights[region] == 0.0
    assert contacts_best.weights[region] > 0.0
    assert trap.reproduced
    # docs/spec.md: views +15% while contacts fell by about as much.
    assert 0.05 < trap.views_gain < 0.5
    assert 0.05 < trap.contacts_loss < 0.5
    # Each maximiser is at least as good as every grid point at its own objective.
    rates = np.array([market.expected_rates(w) for w in simplex_grid(5)])
    assert views_best.views >= rates[:, 0].max() - 1e-12
    assert contacts_best.contacts >= rates[:, 1].max() - 1e-12
