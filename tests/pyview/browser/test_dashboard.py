"""The dashboard example in real Chromium: written by server code, shown live, read-only."""

from __future__ import annotations

import json
import urllib.request

from playwright.sync_api import expect

from .conftest import NewPage


def post(url: str, body: dict[str, str]) -> int:
    """POST `body` as JSON to `url`; returns the status."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


def test_server_writes_show_live_in_every_page(dashboard: str, new_page: NewPage) -> None:
    """A POST and the background task update every open dashboard without a reload."""
    first = new_page(f"{dashboard}/")
    second = new_page(f"{dashboard}/dashboards/main")
    ticks = int(first.inner_text("#ticks"))
    assert post(f"{dashboard}/api/dashboards/main", {"status": "green", "event": "deployed"}) == 200
    for page in (first, second):
        expect(page.locator("#status")).to_have_text("green", timeout=2000)
        expect(page.locator("#events .event").last).to_have_text("deployed", timeout=2000)
    first.wait_for_function(f"Number(document.querySelector('#ticks').innerText) > {ticks}")


def test_viewers_cannot_write(dashboard: str, new_page: NewPage) -> None:
    """Clicking reset as a viewer is denied by the ACL and changes nothing."""
    page = new_page(f"{dashboard}/")
    assert post(f"{dashboard}/api/dashboards/main", {"status": "kept"}) == 200
    expect(page.locator("#status")).to_have_text("kept", timeout=2000)
    page.click("#reset")
    expect(page.locator("#error")).to_have_text("Viewers cannot change the dashboard.")
    expect(page.locator("#status")).to_have_text("kept")
