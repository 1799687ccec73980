"""The MovieLens 100k ratings, loaded at run time (never committed: the licence forbids
redistribution).

MovieLens 100k (GroupLens, University of Minnesota): 100,000 ratings (1-5) by 943 users of
1,682 films, September 1997 to April 1998, with each film's genres and release date.

Where the files come from, in order:

1. ``--data DIR``: a local copy, either the official archive's ``u.data`` and ``u.item``
   (https://grouplens.org/datasets/movielens/100k/, unpacked) or RecBole's atomic files
   ``ml-100k.inter`` and ``ml-100k.item``.
2. The cache: ``$RANKTUNE_CACHE_DIR/movielens-100k`` when that variable is set, else
   ``$XDG_CACHE_HOME/ranktune/movielens-100k`` (``~/.cache/ranktune/...`` without it).
3. A download: the ``recbole`` wheel on PyPI (version :data:`RECBOLE_VERSION`) carries
   ``dataset_example/ml-100k/``. The wheel is fetched with the standard library (PyPI's JSON
   API gives its address), its SHA-256 is checked, and the two files are read out of the zip:
   recbole and its dependencies are never installed or imported.

Every file read from the cache or a download is checked against :data:`CHECKSUMS` before
use; a local ``--data`` copy is parsed and checked for its shape instead (the official
archive's bytes differ from RecBole's). Nothing here needs the network once the cache holds
the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from simulations.cache import CACHE_ENV, user_cache_dir

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RECBOLE_VERSION = "1.2.1"
WHEEL_NAME = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
WHEEL_MEMBER = "recbole/dataset_example/ml-100k/"
PYPI_JSON = "https://pypi.org/pypi/recbole/json"
# SHA-256 of the atomic files as the wheel ships them.
CHECKSUMS = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
CACHE_SUBDIR = "movielens-100k"
# The official archive's 19 genres, in the order of u.item's flags (and of u.genre).
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
WHAT_TO_DO = (
    "download https://files.grouplens.org/datasets/movielens/ml-100k.zip, unzip it and pass "
    "--data ml-100k (the directory with u.data and u.item), or retry with network access to "
    f"pypi.org (the data comes from the {WHEEL_NAME} wheel)"
)


class DataUnavailable(RuntimeError):
    """The ratings could not be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class MovieLens:
    """Ratings and films as arrays. Film ``f`` is row ``f`` of the film arrays (ids
    1..n_films; row 0 is an empty placeholder so that ids index directly)."""

    users: IntArray  # (n_ratings,) user ids, 1-based
    films: IntArray  # (n_ratings,) film ids, 1-based
    ratings: IntArray  # (n_ratings,) 1..5
    timestamps: IntArray  # (n_ratings,) Unix seconds
    years: FloatArray  # (n_films + 1,) release year, NaN when unknown
    genres: BoolArray  # (n_films + 1, len(GENRES))
    titles: tuple[str, ...]  # (n_films + 1,)
    source: str  # where the files came from

    @property
    def n_films(self) -> int:
        return len(self.titles) - 1

    @property
    def n_users(self) -> int:
        return int(self.users.max())

    def __post_init__(self) -> None:
        n = len(self.ratings)
        if not (len(self.users) == len(self.films) == len(self.timestamps) == n) or n == 0:
            raise DataUnavailable(f"{self.source}: ratings columns of unequal length or empty")
        if self.films.min() < 1 or self.films.max() > self.n_films:
            raise DataUnavailable(f"{self.source}: a rating names a film not in the film list")
        if self.ratings.min() < 1 or self.ratings.max() > 5:
            raise DataUnavailable(f"{self.source}: ratings must be 1..5")


# --- parsing ------------------------------------------------------------------------------


def _ratings_table(text: str, source: str) -> IntArray:
    """``user item rating timestamp`` rows (tab-separated, header already removed)."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError as error:
        raise DataUnavailable(f"{source}: ratings are not integers ({error})") from error
    if values.size % 4:
        raise DataUnavailable(f"{source}: ratings rows must have 4 columns")
    return values.reshape(-1, 4)


def _year(text: str) -> float:
    digits = text.strip()[-4:]
    return float(digits) if digits.isdigit() else float("nan")


def parse_atomic(inter: str, item: str, source: str) -> MovieLens:
    """RecBole's ``ml-100k.inter`` and ``ml-100k.item`` (tab-separated, typed header)."""
    inter_lines = inter.split("\n", 1)
    if not inter_lines[0].startswith("user_id"):
        raise DataUnavailable(f"{source}: ml-100k.inter must start with its header")
    table = _ratings_table(inter_lines[1] if len(inter_lines) > 1 else "", source)
    rows = [line.split("\t") for line in item.splitlines()[1:] if line.strip()]
    ids = [int(r[0]) for r in rows]
    n = max(ids)
    years = np.full(n + 1, np.nan)
    genres = np.zeros((n + 1, len(GENRES)), dtype=bool)
    titles = [""] * (n + 1)
    index = {g: i for i, g in enumerate(GENRES)}
    for film, row in zip(ids, rows, strict=True):
        if len(row) != 4:
            raise DataUnavailable(f"{source}: ml-100k.item rows must have 4 columns")
        titles[film] = row[1]
        years[film] = _year(row[2])
        for genre in row[3].split():
            if genre not in index:
                raise DataUnavailable(f"{source}: unknown genre {genre!r}")
            genres[film, index[genre]] = True
    return _movielens(table, years, genres, titles, source)


def parse_official(data: str, item: str, source: str) -> MovieLens:
    """The official archive's ``u.data`` (tab-separated, no header) and ``u.item``
    (``|``-separated: id, title, release date, video date, URL, 19 genre flags)."""
    table = _ratings_table(data, source)
    rows = [line.split("|") for line in item.splitlines() if line.strip()]
    ids = [int(r[0]) for r in rows]
    n = max(ids)
    years = np.full(n + 1, np.nan)
    genres = np.zeros((n + 1, len(GENRES)), dtype=bool)
    titles = [""] * (n + 1)
    for film, row in zip(ids, rows, strict=True):
        if len(row) != 5 + len(GENRES):
            raise DataUnavailable(f"{source}: u.item rows must have {5 + len(GENRES)} fields")
        titles[film] = row[1]
        years[film] = _year(row[2])
        genres[film] = [flag == "1" for flag in row[5:]]
    return _movielens(table, years, genres, titles, source)


def _movielens(
    table: IntArray, years: FloatArray, genres: BoolArray, titles: list[str], source: str
) -> MovieLens:
    return MovieLens(
        users=table[:, 0].copy(),
        films=table[:, 1].copy(),
        ratings=table[:, 2].copy(),
        timestamps=table[:, 3].copy(),
        years=years,
        genres=genres,
        titles=tuple(titles),
        source=source,
    )


# --- where the files come from ------------------------------------------------------------


def cache_dir() -> Path:
    """``$RANKTUNE_CACHE_DIR/movielens-100k``, else the XDG cache directory's."""
    return user_cache_dir(CACHE_SUBDIR)


def load_local(directory: Path) -> MovieLens:
    """A local copy: the official archive (``u.data``, ``u.item``) or the atomic files."""
    if (directory / "u.data").is_file() and (directory / "u.item").is_file():
        return parse_official(
            (directory / "u.data").read_text(encoding="latin-1"),
            (directory / "u.item").read_text(encoding="latin-1"),
            str(directory),
        )
    if all((directory / name).is_file() for name in CHECKSUMS):
        return parse_atomic(
            (directory / "ml-100k.inter").read_text(encoding="utf-8"),
            (directory / "ml-100k.item").read_text(encoding="utf-8"),
            str(directory),
        )
    raise DataUnavailable(
        f"--data {directory}: expected u.data and u.item (the official archive, unpacked) "
        "or ml-100k.inter and ml-100k.item"
    )


def _checked(name: str, content: bytes, where: str) -> str:
    digest = hashlib.sha256(content).hexdigest()
    if digest != CHECKSUMS[name]:
        raise DataUnavailable(
            f"{where}: {name} has SHA-256 {digest}, expected {CHECKSUMS[name]}; "
            "delete the cache directory to download it again, or " + WHAT_TO_DO
        )
    return content.decode("utf-8")


def load_cached(directory: Path) -> MovieLens | None:
    """The cached atomic files, checksum-verified; ``None`` when the cache is empty."""
    if not all((directory / name).is_file() for name in CHECKSUMS):
        return None
    texts = {
        name: _checked(name, (directory / name).read_bytes(), str(directory)) for name in CHECKSUMS
    }
    return parse_atomic(texts["ml-100k.inter"], texts["ml-100k.item"], f"cache {directory}")


def wheel_url(timeout: float = 30.0) -> str:
    """The wheel's address, from PyPI's JSON API."""
    with urllib.request.urlopen(PYPI_JSON, timeout=timeout) as answer:
        document = json.load(answer)
    files = [*document.get("releases", {}).get(RECBOLE_VERSION, []), *document.get("urls", [])]
    for entry in files:
        if entry.get("filename") == WHEEL_NAME:
            return str(entry["url"])
    raise DataUnavailable(f"PyPI lists no {WHEEL_NAME}; " + WHAT_TO_DO)


def extract_from_wheel(wheel: bytes, where: str) -> dict[str, bytes]:
    """The atomic files out of the wheel's bytes, after checking the wheel's SHA-256."""
    digest = hashlib.sha256(wheel).hexdigest()
    if digest != WHEEL_SHA256:
        raise DataUnavailable(f"{where}: SHA-256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return {name: archive.read(WHEEL_MEMBER + name) for name in CHECKSUMS}


def download(directory: Path, timeout: float = 60.0) -> None:
    """Fetch the wheel, check it, and write the two files into ``directory``."""
    try:
        url = wheel_url(timeout)
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            wheel = answer.read()
    except OSError as error:
        raise DataUnavailable(f"cannot download {WHEEL_NAME} ({error}); " + WHAT_TO_DO) from error
    files = extract_from_wheel(wheel, url)
    for name, content in files.items():
        _checked(name, content, url)
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        partial = directory / f".{name}.partial"
        partial.write_bytes(content)
        partial.replace(directory / name)  # atomic: a reader never sees half a file


def load(data_dir: Path | None = None) -> MovieLens:
    """The ratings from ``data_dir``, else the cache, else a download into the cache."""
    if data_dir is not None:
        return load_local(data_dir)
    directory = cache_dir()
    cached = load_cached(directory)
    if cached is not None:
        return cached
    try:
        download(directory)
    except OSError as error:  # the cache directory cannot be written
        raise DataUnavailable(
            f"cannot write the cache {directory} ({error}); set {CACHE_ENV} to a writable "
            "directory, or " + WHAT_TO_DO
        ) from error
    loaded = load_cached(directory)
    assert loaded is not None
    return loaded
