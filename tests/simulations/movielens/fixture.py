"""A tiny generated MovieLens 100k look-alike, in both formats the loader reads.

200 users rate 12 films over 100 days (about 60% of the pairs), with tastes that depend on
the films' genres so that co-likes are not uniform. Written as RecBole's atomic files
(``ml-100k.inter``, ``ml-100k.item``) or as the official archive's ``u.data`` and
``u.item``; both hold the same ratings, so both parse to the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulations.movielens.data import GENRES

N_USERS = 200
N_FILMS = 12
START = 880_000_000  # Unix seconds, late 1997 like the real data
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Fixture:
    ratings: np.ndarray  # (n, 4): user, film, rating, timestamp
    years: list[int | None]  # per film 1..N_FILMS (index 0 unused)
    genres: list[list[str]]  # per film, in GENRES order


def generate(seed: int = 7) -> Fixture:
    rng = np.random.default_rng(seed)
    genre_pool = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Thriller"]
    genres: list[list[str]] = [[]]
    years: list[int | None] = [None]
    for film in range(1, N_FILMS + 1):
        picked = rng.choice(genre_pool, size=int(rng.integers(1, 3)), replace=False)
        genres.append(sorted(picked, key=GENRES.index))
        years.append(None if film == N_FILMS else int(rng.integers(1960, 1998)))
    taste = rng.normal(size=(N_USERS + 1, len(genre_pool)))
    rows = []
    for user in range(1, N_USERS + 1):
        for film in range(1, N_FILMS + 1):
            if rng.random() < 0.6:
                affinity = np.mean([taste[user, genre_pool.index(g)] for g in genres[film]])
                rating = int(np.clip(np.round(3.2 + 1.2 * affinity + rng.normal(0, 0.7)), 1, 5))
                when = START + int(rng.integers(0, 100 * 86_400))
                rows.append((user, film, rating, when))
    return Fixture(np.array(rows, dtype=np.int64), years, genres)


def write_atomic(directory: Path, fixture: Fixture) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += ["\t".join(str(v) for v in row) for row in fixture.ratings]
    (directory / "ml-100k.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for film in range(1, N_FILMS + 1):
        year = fixture.years[film]
        item.append(
            f"{film}\tFilm {film}\t{'' if year is None else year}\t{' '.join(fixture.genres[film])}"
        )
    (directory / "ml-100k.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    return directory


def write_official(directory: Path, fixture: Fixture) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = ["\t".join(str(v) for v in row) for row in fixture.ratings]
    (directory / "u.data").write_text("\n".join(data) + "\n", encoding="latin-1")
    item = []
    for film in range(1, N_FILMS + 1):
        year = fixture.years[film]
        date = "" if year is None else f"01-{MONTHS[film % 12]}-{year}"
        flags = "|".join("1" if g in fixture.genres[film] else "0" for g in GENRES)
        item.append(f"{film}|Film {film} ({year})|{date}||http://example.org/{film}|{flags}")
    (directory / "u.item").write_text("\n".join(item) + "\n", encoding="latin-1")
    return directory
