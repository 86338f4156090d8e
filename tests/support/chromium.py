"""Real headless Chromium for the browser tests: Debian's, driven by Playwright.

The two browser packages import `playwright` and `browser` into their conftest,
so each package gets its own driver (package scope, see `playwright`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Without the background-networking flags, this machine's closed network refuses
Chromium's own connections, many at a time."""


# Package scope: Playwright's sync API marks an event loop as running in this thread
# while it is alive, and asyncio tests run after the package need it gone.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, for one package of browser tests."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium; a missing one fails the tests with what to install."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"The browser tests need Chromium at {CHROMIUM}; run scripts/install-chromium "
            "(as root), or apt-get install chromium.",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
