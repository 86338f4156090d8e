"""The chat's pages in real Chromium: layout, the guarded clear, two live states in one view,
and live navigation on one WebSocket."""

from __future__ import annotations

import time
import uuid

from playwright.sync_api import Page, expect

from .conftest import ROOM_TTL, Cluster, NewPage, get_json


def fresh_room() -> str:
    """A room name no other test uses."""
    return f"p{uuid.uuid4().hex[:10]}"


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


def test_long_word_wraps_inside_the_page(one_node: Cluster, new_page: NewPage) -> None:
    """A 500-character word wraps inside its message: the page gets no horizontal scroll,
    on a desktop and on a phone-sized viewport. The lobby lists the room on one line, with
    the lobby's version."""
    room = fresh_room()
    alice = join(new_page, one_node.first, room, "alice")
    lobby = new_page(f"{one_node.first}/")
    entry = lobby.locator(f'#rooms li[data-room="{room}"]')
    expect(entry).to_have_text(f"#{room} 1 here", timeout=2000)
    box = entry.bounding_box()
    assert box is not None and box["height"] < 3 * 24, box
    assert int(lobby.inner_text("#version")) > 0
    word = "w" * 500
    post(alice, word)
    message = alice.locator("#messages .message").last
    expect(message.locator(".text")).to_have_text(word)
    for width in (1280, 390):
        alice.set_viewport_size({"width": width, "height": 800})
        page_width = alice.evaluate("document.documentElement.scrollWidth")
        assert page_width <= width, page_width
        box, list_box = message.bounding_box(), alice.locator("#messages").bounding_box()
        assert box is not None and list_box is not None
        assert box["x"] + box["width"] <= list_box["x"] + list_box["width"] + 1


# Pushes a "send" event the way chat.js sends a kept post, with its id.
PUSH_KEPT = """
([text, cid]) => {
  const form = document.querySelector("#send-form");
  const push = [["push", {event: "send", value: {text, cid}}]];
  window.liveSocket.execJS(form, JSON.stringify(push), "click");
}
"""


def test_a_kept_post_sent_twice_shows_once(cluster: Cluster, new_page: NewPage) -> None:
    """A kept post sent again (its first send cut short by a disconnect) carries the same id,
    and the room shows it once, in every page; posts without an id are never merged."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    cid = uuid.uuid4().hex
    alice.evaluate(PUSH_KEPT, ["kept", cid])
    alice.evaluate(PUSH_KEPT, ["kept", cid])
    post(alice, "same words")
    post(alice, "same words")
    expected = ["kept", "same words", "same words"]
    expect(alice.locator("#messages .text")).to_have_text(expected, timeout=2000)
    expect(bob.locator("#messages .text")).to_have_text(expected, timeout=2000)
    assert alice.locator(f'#messages .message[data-id="{cid}"]').count() == 1


def test_clear_asks_before_clearing_for_everyone(one_node: Cluster, new_page: NewPage) -> None:
    """ "Clear the room for everyone" asks first: Cancel keeps the messages; confirming clears
    them in every page and tells the others."""
    room = fresh_room()
    alice = join(new_page, one_node.first, room, "alice")
    bob = join(new_page, one_node.first, room, "bob")
    post(alice, "keep me")
    expect(bob.locator("#messages .text")).to_have_text(["keep me"], timeout=2000)
    alice.click("#clear")
    expect(alice.locator("#clear-question")).to_contain_text("for everyone")
    expect(alice.locator("#messages .text")).to_have_text(["keep me"])
    alice.click("#clear-cancel")
    expect(alice.locator("#clear-question")).to_have_count(0)
    expect(bob.locator("#messages .text")).to_have_text(["keep me"])
    alice.click("#clear")
    alice.click("#clear-confirm")
    expect(alice.locator("#messages .text")).to_have_count(0)
    expect(bob.locator("#messages .text")).to_have_count(0, timeout=2000)
    expect(bob.locator("#notice")).to_have_text("Someone cleared the room.")


def test_room_view_binds_two_named_live_states(cluster: Cluster, new_page: NewPage) -> None:
    """The room view binds the room (`live_assigns.room`) and the lobby (`live_assigns.lobby`)
    by name: a post updates the messages and the room's version, a visitor the online list."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    expect(alice.locator("#online .name")).to_have_text(["alice"], timeout=2000)
    version = int(alice.inner_text("#version"))
    bob = join(new_page, cluster.last, room, "bob")
    expect(alice.locator("#online .name")).to_have_text(["alice", "bob"], timeout=2000)
    expect(alice.locator("#online-count")).to_have_text("2")
    post(bob, "two states, one view")
    expect(alice.locator("#messages .text")).to_have_text(["two states, one view"], timeout=2000)
    alice.wait_for_function(f"Number(document.querySelector('#version').innerText) > {version}")
    bob.close()
    expect(alice.locator("#online .name")).to_have_text(["alice"], timeout=2000)


def test_live_navigation_detaches_each_view_it_leaves(one_node: Cluster, new_page: NewPage) -> None:
    """Room A -> lobby -> room B by live navigation, on one WebSocket: leaving A detaches it
    (its count drops, its state ends after its TTL); closing the page detaches B, the view
    PyView 0.9 itself never closes."""
    base = one_node.first
    first, second = fresh_room(), fresh_room()
    watcher = new_page(f"{base}/")
    page = new_page(f"{base}/rooms/{first}?nick=nav")
    page.evaluate("window.firstConnection = window.liveSocket.socket.conn")
    first_count = watcher.locator(f'#rooms li[data-room="{first}"] .count')
    second_count = watcher.locator(f'#rooms li[data-room="{second}"] .count')
    expect(first_count).to_have_text("1", timeout=2000)

    page.click("#lobby-link")  # a live_redirect link
    expect(page.locator("#go-form")).to_be_visible()
    expect(first_count).to_have_count(0, timeout=2000)
    ended(base, first)

    page.fill("#room-input", second)
    page.press("#room-input", "Enter")  # push_navigate from the lobby's handle_event
    expect(page.locator("h1")).to_have_text(f"#{second}")
    expect(page.locator("[data-phx-main].phx-connected")).to_have_count(1)
    expect(second_count).to_have_text("1", timeout=2000)
    assert page.evaluate("window.liveSocket.socket.conn === window.firstConnection")
    assert get_json(f"{base}/api/rooms/{second}/messages")[0] == 200

    page.close()
    expect(second_count).to_have_count(0, timeout=3000)
    ended(base, second)


def ended(base: str, room: str) -> None:
    """Wait until the room's live state has ended (its JSON endpoint says 404)."""
    deadline = time.monotonic() + ROOM_TTL + 5
    while time.monotonic() < deadline:
        status, _ = get_json(f"{base}/api/rooms/{room}/messages")
        if status == 404:
            return
        time.sleep(0.1)
    raise AssertionError(f"Room {room} did not end within its TTL: a client stayed attached.")
