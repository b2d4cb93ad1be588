"""Driving the console in Debian's Chromium: launch it, sign in, move between views."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.serving import CHROMIUM, KEYS, Console

VIEWPORT = {"width": 1280, "height": 900}
MISSING_CHROMIUM = (
    f"the console's browser tests drive Debian's Chromium at {CHROMIUM}: run "
    "'sudo apt-get install chromium' (or 'make browser'); Playwright's own download needs "
    "the internet"
)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, headless, until the block ends."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(MISSING_CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, console: Console, user: str) -> Page:
    """Open the console and sign in with `user`'s key through the sign-in form."""
    page.goto(console.page)
    page.get_by_label("API key").fill(KEYS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Threads", level=1)).to_be_visible()
    return page


def show(page: Page, view: str) -> None:
    """Go to a view by its address (`#/inbox`, `#/thread/ID`), as a bookmark would."""
    page.evaluate("where => { location.hash = where; }", view)
    # the page marks `main` once the view of that address is drawn (the old one has an h1 too)
    expect(page.locator("main")).to_have_attribute("data-route", view)
