"""The React counter (built with Vite) in Chromium, on memory:// and on two nodes over Valkey."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect

from .conftest import AppProcess, NewPage


def test_the_react_counter_renders_and_updates_everywhere(
    counter_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """Both pages render the count; clicks on either update both, through useLiveState."""
    query = f"?counter=c-{uuid.uuid4().hex[:8]}"
    first = new_page(f"{counter_nodes[0].url}/{query}")
    last = new_page(f"{counter_nodes[-1].url}/{query}")
    for page in (first, last):
        expect(page.locator("#count")).to_have_text("0")
        expect(page.locator("#status")).to_have_text("Live")
    first.click("#increment")
    first.click("#increment")
    expect(last.locator("#count")).to_have_text("2", timeout=2000)
    last.click("#decrement")
    expect(first.locator("#count")).to_have_text("1", timeout=2000)
    last.click("#reset")
    expect(first.locator("#count")).to_have_text("0", timeout=2000)
    # The first page saw the last write, so its version is the final one: the other reaches it.
    expect(last.locator("#version")).to_have_text(first.locator("#version").inner_text())
    expect(first.locator("#error")).to_have_count(0)
