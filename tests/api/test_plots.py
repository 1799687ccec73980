"""Posteriors over time, as an image an admin can open."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.plots import ArmSeries, posteriors_figure
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
