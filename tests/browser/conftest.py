"""A real ``ranktune serve`` and one headless Chromium shared by a module's browser tests.

Chromium is Debian's (``/usr/bin/chromium``; ``make test`` installs it when missing),
driven by Playwright for Python: never ``playwright install``. Without Chromium or
Playwright the tests are skipped with the reason, except under CI (``CI=true``), where
that is a failure: CI must drive the dashboard in a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.db import make_engine, make_session_factory
from benchmarks.history import HistoryShape, write_history
from tests.conftest import ADMIN, ADMIN_TOKEN, IN_CI, migrated_sqlite_url
from tests.process.conftest import ServerFactory, ServerProcess

CHROMIUM = os.environ.get("RANKTUNE_CHROMIUM", "/usr/bin/chromium")
# Where the tests write their screenshots: docs/img with `make screenshots`.
SCREENSHOT_DIR = os.environ.get("RANKTUNE_SCREENSHOT_DIR")
HISTORY = "similar-items"  # the experiment with a week of synthetic history


def _browser_unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; make test does it)"
    return None


@pytest.fixture(scope="module")
def browser_available() -> None:
    reason = _browser_unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(
    browser_available: None, _sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the module, on a database that already holds an experiment with a
    week of history (for the screenshots); ticks run only when a test asks (admin API)."""
    directory = tmp_path_factory.mktemp("browser")
    url = migrated_sqlite_url(_sqlite_template, directory)
    engine = make_engine(url)
    write_history(
        make_session_factory(engine),
        HISTORY,
        HistoryShape(
            arms=20,
            ticks=10_080,
            interval_s=60.0,
            requests_per_s=20.0,
            evolve_every=1_440,
            reallocate_every=30,
        ),
    )
    engine.dispose()
    factory = ServerFactory(directory)
    try:
        yield factory(url, RANKTUNE_SCHEDULER_ENABLED="false")
    finally:
        factory.kill_all()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    """The server's HTTP API, with the admin token (what a test drives traffic with)."""
    with httpx.Client(base_url=server.base_url, headers=ADMIN, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def browser(browser_available: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


class Console:
    """What a page said on its console and what it threw: a page must say no error.

    Chromium logs every answer of status 4xx as a console error ("Failed to load
    resource"); a test that provokes one on purpose (a form with an invalid field gets
    422, a refused POST 403) says so with :meth:`expect_status`, and only those lines are
    let through."""

    _resource = re.compile(r"Failed to load resource: .* status of (\d{3})")

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: set[int] = set()

    def expect_status(self, *statuses: int) -> None:
        self.expected.update(statuses)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        failed = self._resource.search(message.text)
        if failed and int(failed.group(1)) in self.expected:
            return
        self.errors.append(f"{message.type}: {message.text}")

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))


def sign_in(page: Any, base_url: str, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def signed_in_state(browser: Any, server: ServerProcess) -> dict[str, Any]:
    """A signed-in browser's cookies, reused by every test's fresh context."""
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.base_url)
    page.wait_for_url(f"{server.base_url}/")
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(
    browser: Any, server: ServerProcess, signed_in_state: dict[str, Any], console: Console
) -> Iterator[Any]:
    """A signed-in page at laptop width; no console error allowed (see Console)."""
    context = browser.new_context(
        storage_state=signed_in_state, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    console.attach(page)
    try:
        yield page
        assert console.errors == [], console.errors
    finally:
        context.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """Write a full-page screenshot: to RANKTUNE_SCREENSHOT_DIR (docs/img with `make
    screenshots`) or, by default, the test's temporary directory (an artifact)."""
    directory = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
