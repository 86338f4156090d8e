"""Never trust the browser: the board's schema, actions and read-only ACL, from the console.

Each test runs on one memory:// process, then on two processes over Valkey. A
visitor's page tries every way it has to change the board other than the spec's
actions as they are meant to be used: its own connection, a fresh `connect()`
from the served client, and raw WebSocket frames. Each attempt is refused with
its protocol error code, and no page on any node sees any change.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright.sync_api import Locator, Page, expect

from .conftest import AppProcess, NewPage

CONVERGE = 2000  # ms

# Every attempt resolves to the error code it got, or "ok <result as JSON>".
ATTACKS = """
async ({ card, author }) => {
  const { board, connection } = window.livestate;
  const key = board.key;
  const outcome = (promise) =>
    promise.then((result) => `ok ${JSON.stringify(result)}`, (error) => error.code);
  const forged = { text: "pwned", column: "done", by: author, name: "Ann" };
  const results = {
    "put another's card, forging by": await outcome(board.put(`card:${card}`, forged)),
    "put a new card, forging by": await outcome(board.put("card:forged", forged)),
    "add_card naming by": await outcome(board.call("add_card", { text: "hi", by: author })),
    "edit another's card": await outcome(board.call("edit_card", { card, text: "pwned" })),
    "delete another's card": await outcome(board.call("delete_card", { card })),
    "delete another's card, raw": await outcome(board.delete(`card:${card}`)),
    "a card of the wrong shape": await outcome(board.put("card:bad", { text: 1 })),
    "votes of the wrong type": await outcome(board.put(`votes:${card}`, 1000)),
    "increment the voters": await outcome(board.increment(`votes:${card}`, 1000)),
    "vote with a number": await outcome(board.call("vote", { card: 5 })),
    "move to no column": await outcome(board.call("move_card", { card, column: "trash" })),
    "a text too long": await outcome(board.call("add_card", { text: "x".repeat(281) })),
    "an undeclared property": await outcome(board.put("admin", true)),
    "reset the board": await outcome(board.reset()),
    "an unknown action": await outcome(board.call("drop_everything")),
    "delete as a public caller": await outcome(
      connection.call("Board", key, "delete_card", { card })),
  };
  results.whoami = await board.call("whoami");

  // A fresh connection from the client the endpoint serves: the same cookie, the same visitor.
  const { connect } = await import("/livestate/livestate.js");
  const fresh = connect("/livestate/ws");
  const other = fresh.attach("Board", key);
  await other.ready;
  results["fresh: delete another's card"] = await outcome(other.call("delete_card", { card }));
  results["fresh: put the title"] = await outcome(other.put("title", "pwned"));
  results["fresh: whoami"] = await other.call("whoami");
  fresh.close();

  // Raw frames on a WebSocket of its own, with fields the protocol ignores.
  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/livestate/ws`);
  const waiting = new Map();
  ws.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (waiting.has(frame.ref)) {
      waiting.get(frame.ref)(frame);
      waiting.delete(frame.ref);
    }
  };
  await new Promise((resolve) => { ws.onopen = resolve; });
  let ref = 0;
  const send = (frame) => new Promise((resolve) => {
    ref += 1;
    waiting.set(ref, resolve);
    ws.send(JSON.stringify({ ...frame, ref }));
  });
  const code = (frame) =>
    frame.type === "error" ? frame.code : `ok ${JSON.stringify(frame.result)}`;
  const { id } = await send({ type: "attach", spec: "Board", key });
  const as = { identity: author, caller: { role: "group", identity: author }, by: author };
  results["raw: delete as the author"] = code(
    await send({ type: "call", id, action: "delete_card", args: { card }, ...as }));
  const edit = { action: "edit_card", args: { card, text: "pwned" } };
  results["raw: edit as the author, public"] = code(
    await send({ type: "call", spec: "Board", key, ...edit, ...as }));
  results["raw: an identity in the arguments"] = code(await send(
    { type: "call", id, action: "edit_card", args: { card, text: "pwned", identity: author } }));
  results["raw: put as the author"] = code(
    await send({ type: "put", id, prop: `card:${card}`, value: forged, ...as }));
  results["raw: public put of the title"] = code(
    await send({ type: "put", spec: "Board", key, prop: "title", value: "pwned", ...as }));
  results["raw: public reset"] = code(await send({ type: "reset", spec: "Board", key, ...as }));
  results["raw: append to the voters"] = code(
    await send({ type: "append", id, prop: `votes:${card}`, value: author, ...as }));
  results["raw: whoami as the author"] = code(
    await send({ type: "call", id, action: "whoami", ...as }));
  ws.close();
  return results;
}
"""

# The board's ACL gives pages read only: a raw write is refused for its permission,
# whatever its value; the values are checked in the actions' arguments and writes.
REFUSED = {
    "put another's card, forging by": "permission_denied",
    "put a new card, forging by": "permission_denied",
    "add_card naming by": "invalid_value",
    "edit another's card": "permission_denied",
    "delete another's card": "permission_denied",
    "delete another's card, raw": "permission_denied",
    "a card of the wrong shape": "permission_denied",
    "votes of the wrong type": "permission_denied",
    "increment the voters": "permission_denied",
    "vote with a number": "invalid_value",
    "move to no column": "invalid_value",
    "a text too long": "invalid_value",
    "an undeclared property": "permission_denied",
    "reset the board": "permission_denied",
    "an unknown action": "unknown_action",
    "delete as a public caller": "permission_denied",
    "fresh: delete another's card": "permission_denied",
    "fresh: put the title": "permission_denied",
    "raw: delete as the author": "permission_denied",
    "raw: edit as the author, public": "permission_denied",
    "raw: an identity in the arguments": "invalid_value",
    "raw: put as the author": "permission_denied",
    "raw: public put of the title": "permission_denied",
    "raw: public reset": "permission_denied",
    "raw: append to the voters": "permission_denied",
}


def slug() -> str:
    """A board name of its own for each test."""
    return f"r-{uuid.uuid4().hex[:10]}"


def card(page: Page, text: str) -> Locator:
    """The card showing `text` on `page`."""
    return page.locator("article", has_text=text)


def add_card(page: Page, text: str, column: str = "todo") -> None:
    """Add a card through the page's form."""
    page.fill("#card-text", text)
    page.select_option("#card-column", column)
    page.click("#add-card")


def board(page: Page) -> tuple[dict[str, Any], int]:
    """The board's state and version as `page` has them."""
    state, version = page.evaluate("[window.livestate.board.state, window.livestate.board.version]")
    return state, version


def test_the_console_cannot_corrupt_the_board(
    board_cluster: list[AppProcess], new_page: NewPage
) -> None:
    """Forging a card's author, editing or deleting another visitor's card, a wrong type, an
    undeclared property, a reset, an identity in a frame: each is refused with its code
    (through the page's connection, a fresh one and raw frames), and the board is unchanged
    on every page and every node."""
    key = slug()
    first, last = board_cluster[0], board_cluster[-1]
    ann = new_page(f"{first.url}/boards/{key}")
    add_card(ann, "Ann's card")
    expect(card(ann, "Ann's card")).to_have_attribute("data-mine", "true")
    mallory = new_page(f"{last.url}/boards/{key}")
    target = card(mallory, "Ann's card")
    expect(target).to_have_attribute("data-mine", "false", timeout=CONVERGE)
    expect(target.locator(".edit")).to_have_count(0)
    expect(target.locator(".delete")).to_have_count(0)
    card_id = (target.get_attribute("id") or "").removeprefix("card-")
    # Mallory's presence (a versioned change) must have reached Ann before the baseline.
    expect(ann.locator("#viewer-count")).to_have_text("2", timeout=CONVERGE)
    before, version = board(ann)
    author = before[f"card:{card_id}"]["by"]

    results = mallory.evaluate(ATTACKS, {"card": card_id, "author": author})

    assert {name: results[name] for name in REFUSED} == REFUSED
    whoami = results["whoami"]
    assert whoami != author and results["fresh: whoami"] == whoami
    assert results["raw: whoami as the author"] == f"ok {json.dumps(whoami)}"
    # Nothing changed: not on Ann's page, nor on new pages on every node.
    assert board(ann) == (before, version)
    for node in board_cluster:
        page = new_page(f"{node.url}/boards/{key}")
        expect(card(page, "Ann's card")).to_be_visible()
        assert board(page)[0] == before
    assert board(mallory)[0] == before
    expect(mallory.locator("#error")).to_be_hidden()


def test_authors_edit_and_delete_their_cards_and_everyone_votes_and_moves(
    board_cluster: list[AppProcess], new_page: NewPage
) -> None:
    """Through the page's buttons, across two pages (on two nodes over Valkey): a card shows its
    author's name, only the author's page offers edit and delete, anyone votes (once: a second
    click takes it back) and moves it."""
    key = slug()
    ann = new_page(f"{board_cluster[0].url}/boards/{key}")
    bob = new_page(f"{board_cluster[-1].url}/boards/{key}")
    add_card(ann, "Plan the release", "doing")
    mine, theirs = card(ann, "Plan the release"), card(bob, "Plan the release")
    expect(theirs).to_be_visible(timeout=CONVERGE)
    expect(mine.locator(".by")).to_have_text(ann.evaluate("localStorage['board-name']") + " (you)")
    expect(theirs.locator(".by")).to_have_text(ann.evaluate("localStorage['board-name']"))
    expect(theirs.locator(".edit")).to_have_count(0)
    expect(theirs.locator(".delete")).to_have_count(0)

    theirs.locator(".vote").click()
    expect(mine.locator(".vote")).to_have_text("▲ 1", timeout=CONVERGE)
    expect(theirs.locator(".vote")).to_have_attribute("aria-pressed", "true")
    expect(mine.locator(".vote")).to_have_attribute("aria-pressed", "false")
    mine.locator(".vote").click()
    expect(theirs.locator(".vote")).to_have_text("▲ 2", timeout=CONVERGE)
    theirs.locator(".vote").click()  # Bob takes his vote back
    expect(mine.locator(".vote")).to_have_text("▲ 1", timeout=CONVERGE)

    theirs.locator(".move-right").click()  # anyone moves a card
    expect(ann.locator("#column-done")).to_contain_text("Plan the release", timeout=CONVERGE)

    mine.locator(".edit").click()
    expect(ann.locator("#edit-dialog")).to_be_visible()
    ann.fill("#edit-text", "Plan the release, then ship it")
    ann.click("#edit-save")
    expect(ann.locator("#edit-dialog")).to_be_hidden()
    edited = card(bob, "Plan the release, then ship it")
    expect(edited).to_be_visible(timeout=CONVERGE)
    expect(edited).to_have_attribute("data-column", "done")
    expect(edited.locator(".vote")).to_have_text("▲ 1")

    card(ann, "Plan the release, then ship it").locator(".delete").click()
    expect(card(bob, "Plan the release")).to_have_count(0, timeout=CONVERGE)
    state, version = board(bob)
    assert sorted(prop for prop in state if prop.startswith(("card:", "votes:"))) == [
        "card:welcome"
    ], "the votes go with their card"
    ann.wait_for_function(f"window.livestate.board.version === {version}", timeout=CONVERGE)
    expect(ann.locator("#error")).to_be_hidden()
    expect(bob.locator("#error")).to_be_hidden()


def test_the_page_shows_the_servers_refusal(
    board_cluster: list[AppProcess], new_page: NewPage
) -> None:
    """A card text over the limit, past the input's own maxlength, is refused by the server's
    check; the page says why and keeps the text, and no page shows the card."""
    key = slug()
    ann = new_page(f"{board_cluster[0].url}/boards/{key}")
    bob = new_page(f"{board_cluster[-1].url}/boards/{key}")
    ann.evaluate("document.getElementById('card-text').value = 'x'.repeat(300)")
    ann.click("#add-card")
    expect(ann.locator("#error")).to_contain_text("length <= 280")
    expect(ann.locator("#error")).to_contain_text("`$.text`")
    expect(ann.locator("#card-text")).to_have_value("x" * 300)
    add_card(ann, "A short one")
    expect(card(bob, "A short one")).to_be_visible(timeout=CONVERGE)
    expect(ann.locator("#error")).to_be_hidden()
    for page in (ann, bob):
        assert not any("x" * 281 in json.dumps(value) for value in board(page)[0].values())
