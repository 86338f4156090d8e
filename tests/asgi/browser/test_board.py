"""The FastAPI board in Chromium: pages on two nodes, sync writers, drops, restarts, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

from playwright.sync_api import Page, expect

from livestate.testing import ServerProcess

from .conftest import EXAMPLES, AppProcess, NewPage

CONVERGE = 2000  # ms: after any write or fault, every page shows it within 2 s


def slug() -> str:
    """A board name of its own for each test."""
    return f"t-{uuid.uuid4().hex[:10]}"


def card(page: Page, text: str) -> Any:
    """The card showing `text` on `page`."""
    return page.locator("article", has_text=text)


def add_card(page: Page, text: str, column: str = "todo") -> None:
    """Add a card through the page's form."""
    page.fill("#card-text", text)
    page.select_option("#card-column", column)
    page.click("#add-card")


def post_card(base: str, key: str, text: str) -> int:
    """POST a card to the app's HTTP API (which writes through livestate.sync)."""
    request = urllib.request.Request(
        f"{base}/api/boards/{key}/cards",
        data=json.dumps({"text": text}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


def test_two_pages_on_two_nodes_edit_one_board(
    board_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """Cards added, voted, moved and deleted on either node show on the other page."""
    key = slug()
    ann = new_page(f"{board_nodes[0].url}/boards/{key}")
    bob = new_page(f"{board_nodes[1].url}/boards/{key}")
    expect(bob.locator("#board-title")).to_have_text(f"Board “{key}”")
    add_card(ann, "Write the docs")
    expect(card(bob, "Write the docs")).to_be_visible(timeout=CONVERGE)
    card(bob, "Write the docs").locator(".vote").click()
    expect(card(ann, "Write the docs").locator(".vote")).to_have_text("▲ 1", timeout=CONVERGE)
    card(ann, "Write the docs").locator(".vote").click()
    expect(card(bob, "Write the docs").locator(".vote")).to_have_text("▲ 2", timeout=CONVERGE)
    card(bob, "Write the docs").locator(".move-right").click()
    expect(ann.locator("#column-doing")).to_contain_text("Write the docs", timeout=CONVERGE)
    expect(ann.locator("#count-todo")).to_have_text("1")  # the welcome card stays
    card(ann, "Write the docs").locator(".delete").click()
    expect(card(bob, "Write the docs")).to_have_count(0, timeout=CONVERGE)
    expect(card(ann, "Write the docs")).to_have_count(0, timeout=CONVERGE)
    # Both pages show the delete, the last write: they show its version.
    expect(bob.locator("#version")).to_have_text(ann.locator("#version").inner_text())
    expect(ann.locator("#error")).to_be_hidden()


def test_writes_from_sync_code_show_on_both_nodes(
    board_nodes: list[AppProcess], valkey: ServerProcess, new_page: NewPage
) -> None:
    """A Celery-like worker process and the app's sync HTTP handler (a thread) reach both pages.

    The worker is the example's own `python -m fastapi_board.worker`: no event loop,
    livestate.sync's default node from LIVESTATE_URL. The handler is a plain `def`
    that FastAPI runs in a worker thread, writing through livestate.sync.
    """
    key = slug()
    pages = [new_page(f"{node.url}/boards/{key}") for node in board_nodes]
    worker = subprocess.run(
        [sys.executable, "-m", "fastapi_board.worker", key, "From a worker"],
        cwd=EXAMPLES,
        env=dict(os.environ, LIVESTATE_URL=valkey.url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert worker.returncode == 0, worker.stderr
    for page in pages:
        expect(card(page, "From a worker")).to_contain_text("a worker", timeout=CONVERGE)
    assert post_card(board_nodes[1].url, key, "From the API") == 201
    for page in pages:
        expect(card(page, "From the API")).to_contain_text("the API", timeout=CONVERGE)
    card(pages[0], "From the API").locator(".vote").click()
    expect(card(pages[1], "From the API").locator(".vote")).to_have_text("▲ 1", timeout=CONVERGE)


def test_a_dropped_socket_resyncs_with_one_reset(
    board_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """Writes made while a page's socket is down all show after it reconnects, via one reset."""
    key = slug()
    ann = new_page(f"{board_nodes[0].url}/boards/{key}")
    bob = new_page(f"{board_nodes[1].url}/boards/{key}")
    bob.evaluate(
        """() => {
            window.kinds = [];
            window.livestate.board.subscribe((change) => change && window.kinds.push(change.kind));
            window.livestate.connection.drop();
        }"""
    )
    for number in range(3):
        add_card(ann, f"While away {number}")
        expect(card(ann, f"While away {number}")).to_be_visible()
    expect(bob.locator("#status")).to_have_class("status live", timeout=CONVERGE)
    for number in range(3):
        expect(card(bob, f"While away {number}")).to_be_visible(timeout=CONVERGE)
    expect(bob.locator("#version")).to_have_text(ann.locator("#version").inner_text())
    kinds = bob.evaluate("window.kinds")
    assert kinds.count("reset") == 1, kinds


def test_a_server_restart_resyncs_the_page(
    board_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """A page whose node restarts goes offline, comes back live and shows what it missed."""
    key = slug()
    ann = new_page(f"{board_nodes[0].url}/boards/{key}")
    bob = new_page(f"{board_nodes[1].url}/boards/{key}")
    board_nodes[1].stop()
    try:
        expect(bob.locator("#status")).to_have_class("status offline", timeout=CONVERGE)
        add_card(ann, "Made during the restart")
        expect(card(ann, "Made during the restart")).to_be_visible()
    finally:
        board_nodes[1].start()
    # Reconnecting waits out the backoff (at most 5 s); then the page converges at once.
    expect(bob.locator("#status")).to_have_class("status live", timeout=8000)
    expect(card(bob, "Made during the restart")).to_be_visible(timeout=CONVERGE)
    add_card(bob, "After the restart")
    expect(card(ann, "After the restart")).to_be_visible(timeout=CONVERGE)


def test_an_offline_write_is_reported_on_the_page(
    board_nodes: list[AppProcess], new_page: NewPage
) -> None:
    """A write made while the page cannot reach its node fails visibly and changes nothing."""
    key = slug()
    ann = new_page(f"{board_nodes[0].url}/boards/{key}")
    bob = new_page(f"{board_nodes[1].url}/boards/{key}")
    board_nodes[1].stop()
    try:
        expect(bob.locator("#status")).to_have_text("Offline, retrying…", timeout=CONVERGE)
        add_card(bob, "Lost in the void")
        expect(bob.locator("#error")).to_contain_text("not connected to the server")
        expect(bob.locator("#card-text")).to_have_value("Lost in the void")  # kept, to retry
    finally:
        board_nodes[1].start()
    expect(bob.locator("#status")).to_have_text("Live", timeout=8000)
    expect(card(ann, "Lost in the void")).to_have_count(0)
    expect(card(bob, "Lost in the void")).to_have_count(0)


def test_the_board_runs_on_memory_with_sync_writes(
    board_memory: AppProcess, new_page: NewPage
) -> None:
    """On memory://, two pages share the board and the sync HTTP handler reaches both."""
    key = slug()
    pages = [new_page(f"{board_memory.url}/boards/{key}") for _ in range(2)]
    add_card(pages[0], "Memory card")
    expect(card(pages[1], "Memory card")).to_be_visible(timeout=CONVERGE)
    assert post_card(board_memory.url, key, "Posted on memory") == 201
    for page in pages:
        expect(card(page, "Posted on memory")).to_be_visible(timeout=CONVERGE)


def test_a_refused_board_name_is_shown(board_memory: AppProcess, new_page: NewPage) -> None:
    """The app's authorize refuses keys it does not accept, and the page says why."""
    page = new_page(f"{board_memory.url}/boards/{slug()}")
    # A refused attach rejects its `ready` with the server's code and message.
    refused = page.evaluate(
        """() => window.livestate.connection.attach('Board', 'Bad Key').ready.then(
            () => 'attached', (error) => error.code + ': ' + error.message)"""
    )
    assert refused.startswith("forbidden: ") and "authorize refused" in refused
