"""The console's browser tests: one real `ensemble serve` with keys, one Chromium, a page each.

Each test gets a fresh browser context (its own session storage, so its own sign-in); a script
error on any page fails the test that caused it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Error

from tests.browser.pages import MISSING_CHROMIUM, VIEWPORT, chromium
from tests.browser.serving import CHROMIUM, Console, serving


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`ensemble serve` with rita (reviewer) and alice (author), offline, on a free port."""
    with serving(tmp_path_factory.mktemp("console")) as served:
        yield served


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (missing: the test fails saying how to install it).

    Package-scoped: Playwright's sync API keeps its event loop running in this thread while it
    lives, and the asyncio tests after this folder need the thread back.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(MISSING_CHROMIUM)
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile; fails the test on any uncaught script error of its pages."""
    errors: list[Error] = []
    fresh = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    fresh.set_default_timeout(20_000)
    fresh.on("weberror", lambda web_error: errors.append(web_error.error))
    yield fresh
    fresh.close()
    assert not errors, f"script errors in the console: {errors}"
