"""Presence through livestate.asgi and the JS client, in Chromium: the board's "here" avatars."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from .conftest import AppProcess, NewPage

CONVERGE = 2000  # ms


def test_viewers_appear_leave_and_come_back_after_a_drop(
    board_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """A page on the other node appears in the first page's viewers and leaves when closed;
    a second tab of one browser is one viewer; a dropped socket tracks again on reconnect.
    The identity is the server's visitor cookie, never the name the page shows."""
    key = f"p-{uuid.uuid4().hex[:10]}"
    ann = new_page(f"{board_nodes[0].url}/boards/{key}")
    expect(ann.locator("#viewer-count")).to_have_text("1", timeout=CONVERGE)
    expect(ann.locator(".viewer.me")).to_have_count(1)
    bob = new_page(f"{board_nodes[1].url}/boards/{key}")
    expect(ann.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    expect(bob.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    identities = ann.evaluate("Object.keys(window.livestate.board.presence)")
    assert len(identities) == 2 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in identities)

    second_tab = ann.context.new_page()
    second_tab.goto(f"{board_nodes[1].url}/boards/{key}")
    expect(second_tab.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    tabs = "Math.max(...Object.values(window.livestate.board.presence).map((m) => m.length))"
    ann.wait_for_function(f"{tabs} === 2", timeout=CONVERGE)
    second_tab.close()
    ann.wait_for_function(f"{tabs} === 1", timeout=CONVERGE)

    bob.evaluate("window.livestate.connection.drop()")
    expect(bob.locator("#status.live")).to_be_visible(timeout=5000)
    expect(bob.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    expect(ann.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    bob.context.close()
    expect(ann.locator("#viewer-count")).to_have_text("1", timeout=CONVERGE)
