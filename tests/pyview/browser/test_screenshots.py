"""Screenshots of the chat and the dashboard in headless Chromium, for the README.

They go to test-artifacts/ on every run, and to docs/img/ (the committed copies
the README shows) when LIVESTATE_SCREENSHOTS=docs is set:
`LIVESTATE_SCREENSHOTS=docs .venv/bin/pytest tests/browser/test_screenshots.py`.
"""

from __future__ import annotations

import json
import os
import struct
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect

from .conftest import ARTIFACTS, Cluster, wait_connected

DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"
SIZE: ViewportSize = {"width": 1100, "height": 720}


def destination() -> Path:
    """Where the screenshots go: docs/img/ if asked for, else test-artifacts/."""
    target = DOCS_IMG if os.environ.get("LIVESTATE_SCREENSHOTS") == "docs" else ARTIFACTS
    target.mkdir(parents=True, exist_ok=True)
    return target


def png_size(path: Path) -> tuple[int, int]:
    """The width and height a PNG file declares."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def open_page(browser: Browser, url: str) -> Page:
    """A page at the screenshot size, joined."""
    page = browser.new_context(viewport=SIZE, color_scheme="light").new_page()
    page.goto(url)
    wait_connected(page)
    return page


def test_chat_screenshot(one_node: Cluster, browser: Browser) -> None:
    """The chat room with two people and a few messages, as the README shows it."""
    room = f"{one_node.first}/rooms/general"
    ann, ben = open_page(browser, f"{room}?nick=ann"), open_page(browser, f"{room}?nick=ben")
    try:
        for page, text in [
            (ann, "Morning! Is the two-node demo up?"),
            (ben, "Yes: open the status page and kill node 2."),
            (ann, "My page reconnected and caught up with everything I missed."),
        ]:
            page.fill("#text-input", text)
            page.press("#text-input", "Enter")
            expect(page.locator("#messages .text").last).to_have_text(text)
        expect(ann.locator("#messages .text")).to_have_count(3, timeout=2000)
        expect(ann.locator("#online .name")).to_have_text(["ann", "ben"], timeout=2000)
        path = destination() / "chat.png"
        ann.screenshot(path=str(path))
        assert png_size(path) == (SIZE["width"], SIZE["height"])
    finally:
        ann.context.close()
        ben.context.close()


def test_dashboard_screenshot(dashboard: str, browser: Browser) -> None:
    """The dashboard with a status, an event and sparklines drawn from live history."""
    body = json.dumps({"status": "green", "event": "deployed v1.4.2"}).encode()
    request = urllib.request.Request(
        f"{dashboard}/api/dashboards/main", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    page = open_page(browser, f"{dashboard}/")
    try:
        expect(page.locator("#status")).to_have_text("green")
        page.wait_for_function(
            "Number(document.querySelector('#spark-load').dataset.points) >= 12", timeout=10000
        )
        points = page.get_attribute("#spark-load polyline", "points") or ""
        assert len(points.split()) >= 12
        path = destination() / "dashboard.png"
        page.screenshot(path=str(path))
        assert png_size(path) == (SIZE["width"], SIZE["height"])
    finally:
        page.context.close()
