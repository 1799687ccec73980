"""A tiny "similar items" service that ranks with the weights ranktune serves.

The block beside a listing shows the most similar other listings of its category, ranked
by the score of docs/spec.md,

    score = w_text * text_match + w_metro * [same metro] + w_region * [same region]
          + w_price * 110000 / (|price - source_price| + 110000)

where the experiment's parameters are the weights: ``text_match`` -> w_text (times the
Jaccard similarity of the titles' words), ``distance`` -> w_metro, ``region`` -> w_region,
``price_diff`` -> w_price. Each block asks ranktune for the viewer's configuration
(``get_config``: a page never fails because ranktune is down, it falls back to the
reference weights) and a contact on a block's listing is reported with ``track``.

    GET  /similar?listing=7&user=user-42 -> {"block": "<ticket>", "items": [...], "fallback": false}
    POST /contact {"block": "<ticket>", "listing": 12} -> 204 (404: unknown or expired block)

Run it beside the quickstart's server and experiment (standard library + the SDK):

    .venv/bin/python examples/similar_items_service.py --port 8080
    curl 'localhost:8080/similar?listing=7&user=user-42'

or simulate page views and contacts, print what ranktune stored, and exit:

    .venv/bin/python examples/similar_items_service.py --demo 1000 --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ranktune_client import Assignment, Client, Config

PRICE_SCALE = 110_000.0  # the price term halves at this absolute price difference
WORDS = ["sofa", "oak", "table", "chair", "lamp", "desk", "bed", "shelf", "rug", "mirror"]


@dataclass(frozen=True)
class Listing:
    id: int
    category: int
    words: frozenset[str]
    metro: int
    region: int
    price: float


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def score(weights: Config, source: Listing, candidate: Listing) -> float:
    """docs/spec.md's score of ``candidate`` beside ``source``."""
    return (
        weights["text_match"] * jaccard(source.words, candidate.words)
        + weights["distance"] * (source.metro == candidate.metro)
        + weights["region"] * (source.region == candidate.region)
        + weights["price_diff"] * PRICE_SCALE / (abs(candidate.price - source.price) + PRICE_SCALE)
    )


def similar(catalogue: list[Listing], source: Listing, weights: Config, size: int) -> list[Listing]:
    """The ``size`` best-scored other listings of the source's category (ties by id)."""
    candidates = [c for c in catalogue if c.category == source.category and c.id != source.id]
    return sorted(candidates, key=lambda c: (-score(weights, source, c), c.id))[:size]


def make_catalogue(size: int, rng: random.Random) -> list[Listing]:
    """Listings in 5 categories, 12 metros in 4 regions, prices around a category level."""
    catalogue = []
    for index in range(size):
        metro = rng.randrange(12)
        catalogue.append(
            Listing(
                id=index,
                category=index % 5,
                words=frozenset(rng.sample(WORDS, 3)),
                metro=metro,
                region=metro % 4,
                price=round(20_000 * (1 + index % 5) * rng.lognormvariate(0, 0.5), -2),
            )
        )
    return catalogue


class SimilarItems:
    """The service, without HTTP: blocks served and contacts reported through ranktune."""

    def __init__(
        self,
        ranktune: Client,
        catalogue: list[Listing],
        experiment: str = "similar-items",
        block_size: int = 5,
        remembered: int = 100_000,
    ) -> None:
        self.ranktune = ranktune
        self.catalogue = {listing.id: listing for listing in catalogue}
        self.experiment = experiment
        self.block_size = block_size
        # Recent blocks by ticket, so that a contact can be tracked on its assignment;
        # bounded (a block older than the experiment's attribution window could not be
        # credited anyway).
        self._blocks: OrderedDict[str, tuple[Assignment, frozenset[int]]] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def block(self, listing_id: int, user: str) -> dict[str, Any] | None:
        source = self.catalogue.get(listing_id)
        if source is None:
            return None
        assignment = self.ranktune.get_config(self.experiment, user)
        items = similar(list(self.catalogue.values()), source, assignment.config, self.block_size)
        self.ranktune.track_exposure(assignment)  # sent only if the experiment counts them
        if assignment.ticket is not None:
            with self._lock:
                self._blocks[assignment.ticket] = (assignment, frozenset(i.id for i in items))
                while len(self._blocks) > self._remembered:
                    self._blocks.popitem(last=False)
        return {
            "block": assignment.ticket,
            "items": [item.id for item in items],
            "fallback": assignment.fallback,
        }

    def contact(self, block: str, listing_id: int) -> bool:
        """Report a contact on a listing of a block; False if the block is unknown here
        (or a fallback's, which has no ticket) or the listing was not in it."""
        with self._lock:
            served = self._blocks.get(block)
        if served is None or listing_id not in served[1]:
            return False
        # One id per (block, listing): a page that posts the contact twice counts once.
        key = hashlib.blake2b(f"{block}/{listing_id}".encode(), digest_size=12).hexdigest()
        return self.ranktune.track(served[0], "contact", event_id=f"contact:{key}")


def make_server(service: SimilarItems, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/similar":
                return self._json(404, {"detail": "GET /similar?listing=<int>&user=<unit>"})
            query = parse_qs(url.query)
            try:
                answer = service.block(int(query["listing"][0]), query["user"][0])
            except (KeyError, ValueError):
                return self._json(422, {"detail": "expected ?listing=<int>&user=<unit>"})
            if answer is None:
                return self._json(404, {"detail": "no such listing"})
            self._json(200, answer)

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                block, listing = str(body["block"]), int(body["listing"])
            except (KeyError, ValueError, TypeError):
                return self._json(422, {"detail": 'expected {"block": "...", "listing": <int>}'})
            if self.path != "/contact" or not service.contact(block, listing):
                return self._json(404, {"detail": "unknown block or listing"})
            self.send_response(204)
            self.end_headers()

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def demo(service: SimilarItems, views: int, rng: random.Random) -> tuple[int, int]:
    """Simulated page views; a viewer contacts the block's first listing more often when
    it is in their region. (blocks served by ranktune, contacts tracked)."""
    served = contacts = 0
    listings = list(service.catalogue.values())
    for view in range(views):
        source = rng.choice(listings)
        answer = service.block(source.id, f"user-{view % 400}")
        assert answer is not None
        served += not answer["fallback"]
        if not answer["items"] or answer["block"] is None:
            continue
        first = service.catalogue[answer["items"][0]]
        if rng.random() < 0.05 + 0.25 * (first.region == source.region):
            contacts += service.contact(answer["block"], first.id)
    return served, contacts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ranktune", default="http://127.0.0.1:8000", help="ranktune's URL")
    parser.add_argument("--experiment", default="similar-items")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--listings", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--demo", type=int, metavar="VIEWS", help="simulate page views, exit")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    catalogue = make_catalogue(args.listings, rng)
    with Client(args.ranktune, experiments=[args.experiment]) as ranktune:
        service = SimilarItems(ranktune, catalogue, args.experiment)
        if args.demo is None:
            server = make_server(service, args.host, args.port)
            print(f"similar items on http://{args.host}:{args.port}/similar?listing=7&user=u1")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                server.server_close()
            return 0
        served, contacts = demo(service, args.demo, rng)
        delivered = ranktune.close(timeout=60)
    stats = ranktune.stats()
    print(
        f"{args.demo} blocks, {served} ranked with served weights ({stats.fallbacks} "
        f"fallbacks); {contacts} contacts tracked; {stats.events_accepted} events stored"
    )
    lost = stats.events_rejected + stats.events_conflicted + stats.events_dropped
    return 0 if delivered and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
