"""The supervised demo in real Chromium: a node killed from the status page, and the page on it
reconnecting to its restarted process and catching up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from ...support.demo_process import Demo, start_demo, stop
from .conftest import NewPage

RESTART_DELAY = 3.0
LEASE = 5.0
"""Seconds a node's hold lasts (the default: the demo sets no `?lease=`)."""


@pytest.fixture(scope="module")
def supervised() -> Iterator[Demo]:
    """Two supervised nodes over the demo's own Valkey, restarting a dead node after 3 s."""
    demo = start_demo("--kill-control", "--restart-delay", str(RESTART_DELAY), "--room-ttl", "1.5")
    try:
        yield demo
    finally:
        stop(demo.process)


def join(new_page: NewPage, base: str, room: str, nick: str) -> Page:
    """Open the room on node `base` and choose a nickname."""
    page = new_page(f"{base}/rooms/{room}")
    page.fill("#nick-input", nick)
    page.press("#nick-input", "Enter")
    expect(page.locator("#me")).to_have_text(nick)
    return page


def post(page: Page, text: str) -> None:
    """Type a message and send it with Enter."""
    page.fill("#text-input", text)
    page.press("#text-input", "Enter")


def test_killed_node_page_reconnects_catches_up_and_counts_stay_right(
    supervised: Demo, new_page: NewPage, browser: Browser
) -> None:
    """Kill node 2 with the status page's button: its page shows the offline banner, keeps a
    post made meanwhile, then reconnects to the restarted node 2, shows every message sent
    meanwhile in order, sends the kept post, and the lobby counts 2, not 3."""
    room = f"k{uuid.uuid4().hex[:8]}"
    node1, node2 = supervised.node_urls
    lobby = new_page(f"{node1}/")
    count = lobby.locator(f'#rooms li[data-room="{room}"] .count')
    alice = join(new_page, node2, room, "alice")
    bob = join(new_page, node1, room, "bob")
    post(bob, "before")
    expect(alice.locator("#messages .text")).to_have_text(["before"], timeout=2000)
    expect(count).to_have_text("2", timeout=3000)
    old_pid = alice.inner_text("#pid")

    status = browser.new_context().new_page()
    try:
        status.goto(supervised.status_url)
        status.click("#kill-2")
        killed = time.monotonic()
        expect(status.locator("#node-2")).to_have_attribute("data-state", "restarting")
        expect(alice.locator("#offline-banner")).to_be_visible(timeout=5000)
        expect(alice.locator(".conn-lost")).to_be_visible()
        post(bob, "while down 1")
        post(bob, "while down 2")
        post(alice, "kept while offline")
        pending = alice.locator("#outbox .pending")
        expect(pending.locator(".text")).to_have_text(["kept while offline"])
        expect(pending.locator(".why")).to_contain_text("Not sent yet")
        expect(alice.locator("#text-input")).to_have_value("")

        expect(alice.locator("[data-phx-main].phx-connected")).to_have_count(1, timeout=15000)
        expect(alice.locator("#pid")).not_to_have_text(old_pid)
        expect(alice.locator("#node")).to_have_text("node 2")
        expected = ["before", "while down 1", "while down 2", "kept while offline"]
        expect(alice.locator("#messages .text")).to_have_text(expected, timeout=5000)
        expect(bob.locator("#messages .text")).to_have_text(expected, timeout=2000)
        expect(alice.locator("#outbox .pending")).to_have_count(0)
        expect(alice.locator("#offline-banner")).to_be_hidden()
        expect(status.locator("#node-2")).to_have_attribute("data-state", "up", timeout=5000)
        expect(status.locator("#node-2 .restarts")).to_have_text("1")
        # The status panel: which node serves how many room pages (alice on 2, bob on 1).
        expect(status.locator("#node-2 .pages")).to_have_text("1", timeout=3000)
        expect(status.locator("#node-1 .pages")).to_have_text("1")
        # Once the dead node's lease has lapsed (+ a heartbeat), its presence is gone and
        # the restarted node shows alice once: 2 pages, not 3, and no "2 tabs".
        alice.wait_for_timeout(max(0.0, killed + LEASE + 1.0 - time.monotonic()) * 1000)
        expect(count).to_have_text("2", timeout=1000)
        expect(alice.locator("#online .name")).to_have_text(["alice", "bob"])
        expect(alice.locator("#online .tabs")).to_have_count(0)
        expect(bob.locator("#online .tabs")).to_have_count(0)
    finally:
        status.context.close()
