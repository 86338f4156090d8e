"""Presence in the chat, in real Chromium: who is online and who is typing, on one node and
across two nodes over Redis, and the lobby's counts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from ...support.demo_process import start_demo, stop
from .conftest import Cluster, NewPage, get_json


def fresh_room() -> str:
    """A room name no other test uses."""
    return f"p{uuid.uuid4().hex[:10]}"


def join(new_page: NewPage, base: str, room: str, nick: str) -> Page:
    """Open the room on node `base` with a nickname (from the URL, as a reload keeps it)."""
    page = new_page(f"{base}/rooms/{room}?nick={nick}")
    expect(page.locator("#me")).to_have_text(nick)
    return page


def test_second_page_appears_online_and_disappears_when_closed(
    cluster: Cluster, new_page: NewPage
) -> None:
    """bob's page (on the other node) appears in alice's online list, and leaves it when
    its tab closes; the server API's presence agrees."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    online = alice.locator("#online .name")
    expect(online).to_have_text(["alice"], timeout=2000)
    bob = join(new_page, cluster.last, room, "bob")
    expect(online).to_have_text(["alice", "bob"], timeout=2000)
    expect(alice.locator("#online-count")).to_have_text("2")
    status, body = get_json(f"{cluster.first}/api/rooms/{room}/presence")
    assert status == 200 and sorted(body["presence"]) == ["alice", "bob"]
    bob.context.close()
    expect(online).to_have_text(["alice"], timeout=2000)
    expect(alice.locator("#online-count")).to_have_text("1")


def test_typing_is_a_meta_update_shown_beside_the_name(cluster: Cluster, new_page: NewPage) -> None:
    """Typing in bob's page marks bob as typing in alice's online list (not in his own)."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    bob_entry = alice.locator('#online .person[data-nick="bob"]')
    expect(bob_entry).to_be_visible(timeout=2000)
    expect(bob_entry.locator(".typing-dot")).to_have_count(0)
    bob.locator("#text-input").press_sequentially("hi", delay=30)
    expect(bob_entry.locator(".typing-dot")).to_have_count(1, timeout=2000)
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    expect(bob.locator('#online .person[data-nick="bob"] .typing-dot')).to_have_count(0)
    bob.press("#text-input", "Enter")
    expect(bob_entry.locator(".typing-dot")).to_have_count(0, timeout=2000)


def test_two_tabs_of_one_nickname_are_one_person(cluster: Cluster, new_page: NewPage) -> None:
    """Two tabs named ann show as one ann with two tabs; closing one leaves ann online."""
    room = fresh_room()
    watcher = join(new_page, cluster.first, room, "watcher")
    first = join(new_page, cluster.first, room, "ann")
    join(new_page, cluster.last, room, "ann")
    ann = watcher.locator('#online .person[data-nick="ann"]')
    expect(ann.locator(".tabs")).to_have_text("2 tabs", timeout=2000)
    expect(watcher.locator("#online .name")).to_have_text(["ann", "watcher"])
    first.context.close()
    expect(ann.locator(".tabs")).to_have_count(0, timeout=2000)
    expect(watcher.locator("#online .name")).to_have_text(["ann", "watcher"])


@pytest.fixture(scope="module")
def supervised() -> Iterator[tuple[list[str], str]]:
    """`livestate demo --nodes 2 --kill-control` whose killed node stays down for 60 s."""
    demo = start_demo("--kill-control", "--restart-delay", "60", "--room-ttl", "1.5")
    try:
        yield demo.node_urls, demo.status_url
    finally:
        stop(demo.process)


def test_killed_nodes_pages_leave_the_lists_and_counts_within_its_lease(
    supervised: tuple[list[str], str], new_page: NewPage, browser: Browser
) -> None:
    """SIGKILL node 2 (left down): its visitor leaves node 1's online list and the lobby's
    count within the lease (5 s) + 1 s, and the server API agrees."""
    (node1, node2), status_url = supervised
    room = fresh_room()
    lobby = new_page(f"{node1}/")
    count = lobby.locator(f'#rooms li[data-room="{room}"] .count')
    ann = join(new_page, node1, room, "ann")
    join(new_page, node2, room, "bob")
    expect(count).to_have_text("2", timeout=2000)
    expect(ann.locator("#online .name")).to_have_text(["ann", "bob"], timeout=2000)
    status = browser.new_context().new_page()
    try:
        status.goto(status_url)
        status.click("#kill-2")
        killed = time.monotonic()
        expect(status.locator("#node-2")).to_have_attribute("data-state", "restarting")
        expect(ann.locator("#online .name")).to_have_text(["ann"], timeout=7000)
        expect(count).to_have_text("1", timeout=1000)
        assert time.monotonic() - killed < 5.0 + 1.0 + 1.0  # the lease, a heartbeat, a render
        status_code, body = get_json(f"{node1}/api/rooms/{room}/presence")
        assert status_code == 200 and list(body["presence"]) == ["ann"]
    finally:
        status.context.close()
