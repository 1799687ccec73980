"""Posteriors over time, as an image an admin can open."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.plots import ArmSeries, downsample, points_per_arm, posteriors_figure
from tests.api.helpers import ADMIN, assign, create, post_events, tick

PLOT = "/v1/experiments/similar-items/plots/posteriors"


def test_posteriors_plot_after_ticks_as_png_and_svg(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    for round_number in range(3):
        events = []
        for unit in range(60):
            answer = assign(sqlite_client, f"u{round_number}-{unit}")
            if unit % 3 == 0:
                events.append(
                    {
                        "ticket": answer["ticket"],
                        "type": "contact",
                        "count": 1,
                        "event_id": f"c{round_number}-{unit}",
                    }
                )
        post_events(sqlite_client, events)
        assert tick(sqlite_client)["applied"] is True
    png = sqlite_client.get(f"{PLOT}.png", headers=ADMIN)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = sqlite_client.get(f"{PLOT}.svg", params={"limit": 2}, headers=ADMIN)
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content and b"posteriors over ticks" in svg.content


def test_posteriors_plot_errors(sqlite_client: TestClient) -> None:
    create(sqlite_client)
    empty = sqlite_client.get(f"{PLOT}.png", headers=ADMIN)
    assert empty.status_code == 200  # no tick yet: an empty plot that says so
    assert sqlite_client.get(f"{PLOT}.png").status_code == 401
    assert sqlite_client.get(f"{PLOT}.gif", headers=ADMIN).status_code == 422
    missing = sqlite_client.get("/v1/experiments/nope/plots/posteriors.png", headers=ADMIN)
    assert missing.status_code == 404


def test_the_figure_draws_every_arm_with_its_band() -> None:
    image = posteriors_figure(
        "demo",
        [
            ArmSeries("arm 2 (expert)", [1, 2, 3], [2.0, 5.0, 9.0], [3.0, 4.0, 5.0]),
            ArmSeries("arm 3 (expert)", [1, 2, 3], [1.5, 2.0, 2.5], [2.0, 4.0, 6.0]),
        ],
        fmt="svg",
    )
    assert image.count(b"arm 2 (expert)") == 1 and image.count(b"arm 3 (expert)") == 1


# -- bounded: downsampling and many arms ---------------------------------------------------
@pytest.mark.parametrize(
    ("count", "max_points", "expected"),
    [
        (0, 5, []),
        (3, 5, [0, 1, 2]),  # fits: every point
        (5, 5, [0, 1, 2, 3, 4]),
        (10, 4, [0, 3, 6, 9]),  # spacing 3
        (11, 4, [0, 3, 7, 10]),  # spacing 3.33: rounded, first and last kept
        (1001, 3, [0, 500, 1000]),
        (7, 2, [0, 6]),
    ],
)
def test_downsample_keeps_evenly_spaced_points_with_both_ends(
    count: int, max_points: int, expected: list[int]
) -> None:
    assert downsample(count, max_points).tolist() == expected


def test_downsample_of_a_long_history_keeps_exactly_max_points() -> None:
    for count in (401, 2400, 4999, 5000):
        kept = downsample(count, 400)
        assert len(kept) == len(set(kept.tolist())) == 400
        assert (kept[0], kept[-1]) == (0, count - 1)
        gaps = np.diff(kept)
        assert gaps.max() - gaps.min() <= 1  # as even as integers allow


def test_downsample_needs_both_ends() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample(10, 1)


@pytest.mark.parametrize(
    ("arms", "expected"),
    [(1, 400), (50, 400), (500, 400), (501, 399), (1000, 200), (10**6, 2), (0, 400)],
)
def test_points_per_arm_fits_the_budget(arms: int, expected: int) -> None:
    assert points_per_arm(arms) == expected  # POINT_BUDGET = 200,000 points in all


def test_many_arms_colour_and_name_only_the_top_ones() -> None:
    # Arm k's latest mean is (k + 1) / (k + 2): the higher k, the better.
    series = [ArmSeries(f"arm {k} (expert)", [1, 2], [1.0, k + 1.0], [1.0, 1.0]) for k in range(30)]
    svg = posteriors_figure("demo", series, fmt="svg", subtitle="a note").decode()
    named = [k for k in range(30) if f"arm {k} (expert):" in svg]
    assert named == list(range(22, 30))
    assert svg.count("22 other arms") == 1 and "a note" in svg
    # Mean 30 / 31, read as the lift over the reference: 30 - 1 = +2900%.
    assert "arm 29 (expert): +2900%" in svg
