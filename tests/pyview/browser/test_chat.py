"""The chat example in real Chromium: pages on one node, and on two nodes over Redis."""

from __future__ import annotations

import time
import uuid

from playwright.sync_api import Page, expect

from .conftest import ROOM_TTL, TYPING_SECONDS, Cluster, NewPage, get_json, wait_connected


def fresh_room() -> str:
    """A room name no other test uses."""
    return f"r{uuid.uuid4().hex[:10]}"


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


def texts(page: Page) -> list[str]:
    """The message texts the page shows, in order."""
    return page.locator("#messages .text").all_inner_texts()


def test_message_reaches_other_page(cluster: Cluster, new_page: NewPage) -> None:
    """A message typed in one page appears in the other (on the other node) within 2 s."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    post(alice, "hello bob")
    expect(bob.locator("#messages .message")).to_have_text(["alice hello bob"], timeout=2000)
    expect(alice.locator("#messages .text")).to_have_text(["hello bob"])
    expect(alice.locator("#text-input")).to_have_value("")


def test_typing_indicator_appears_and_clears(cluster: Cluster, new_page: NewPage) -> None:
    """Typing in one page shows "alice is typing…" in the other, which clears itself."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    alice.locator("#text-input").press_sequentially("hel", delay=30)
    expect(bob.locator("#typing")).to_have_text("alice is typing…", timeout=2000)
    expect(alice.locator("#typing")).to_have_text("")
    expect(bob.locator("#typing")).to_have_text("", timeout=(TYPING_SECONDS + 2) * 1000)


def test_reload_keeps_history(cluster: Cluster, new_page: NewPage) -> None:
    """After a reload the page shows the room's messages and keeps the nickname."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    post(alice, "first")
    post(alice, "second")
    expect(bob.locator("#messages .text")).to_have_text(["first", "second"], timeout=2000)
    bob.reload()
    wait_connected(bob)
    expect(bob.locator("#messages .text")).to_have_text(["first", "second"])
    expect(bob.locator("#me")).to_have_text("bob")


# A form that awaits its reply takes no second submit, so the burst pushes "send"
# events the way a phx-click would, through LiveView's public execJS.
BURST = """
([who, count]) => {
  const form = document.querySelector("#send-form");
  for (let i = 0; i < count; i++) {
    const push = [["push", {event: "send", value: {text: `${who}-${i}`}}]];
    window.liveSocket.execJS(form, JSON.stringify(push), "click");
  }
}
"""


def test_burst_from_both_pages_arrives_everywhere_in_one_order(
    cluster: Cluster, new_page: NewPage
) -> None:
    """20 messages posted at once from both pages all show in both, in the same order."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    alice.evaluate(f"setTimeout(() => ({BURST})(['a', 10]), 0)")
    bob.evaluate(f"setTimeout(() => ({BURST})(['b', 10]), 0)")
    expect(alice.locator("#messages .text")).to_have_count(20, timeout=5000)
    expect(bob.locator("#messages .text")).to_have_count(20, timeout=5000)
    seen = texts(alice)
    assert sorted(seen) == sorted([f"a-{i}" for i in range(10)] + [f"b-{i}" for i in range(10)])
    assert texts(bob) == seen
    for who in "ab":
        mine = [text for text in seen if text.startswith(who)]
        assert mine == [f"{who}-{i}" for i in range(10)]


def test_lobby_counts_follow_people(cluster: Cluster, new_page: NewPage) -> None:
    """The lobby shows how many pages are in each room, as people come and go."""
    room = fresh_room()
    lobby = new_page(f"{cluster.first}/")
    count = lobby.locator(f'#rooms li[data-room="{room}"] .count')
    alice = join(new_page, cluster.first, room, "alice")
    expect(count).to_have_text("1", timeout=2000)
    bob = join(new_page, cluster.last, room, "bob")
    expect(count).to_have_text("2", timeout=2000)
    alice.close()
    expect(count).to_have_text("1", timeout=2000)
    bob.goto(f"{cluster.last}/")
    expect(count).to_have_count(0, timeout=2000)


def test_room_ends_after_ttl(cluster: Cluster, new_page: NewPage) -> None:
    """After everyone leaves, the room's messages stay for its TTL, then are gone."""
    room = fresh_room()
    alice = join(new_page, cluster.first, room, "alice")
    bob = join(new_page, cluster.last, room, "bob")
    post(alice, "remember me")
    expect(bob.locator("#messages .text")).to_have_text(["remember me"], timeout=2000)
    alice.close()
    bob.close()
    left = time.monotonic()
    status, body = get_json(f"{cluster.first}/api/rooms/{room}/messages")
    assert status == 200
    assert [m["text"] for m in body["messages"]] == ["remember me"]
    deadline = left + ROOM_TTL + 5
    while time.monotonic() < deadline:
        status, body = get_json(f"{cluster.last}/api/rooms/{room}/messages")
        if status == 404:
            break
        time.sleep(0.1)
    assert status == 404, body
    assert time.monotonic() - left >= ROOM_TTL - 0.2
