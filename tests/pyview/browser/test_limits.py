"""WebSocketLimitsMiddleware in real Chromium: idle sockets closed, a per-address cap, and a
normal page that still joins and works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from livestate.testing import free_port

from .conftest import NewPage

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
JOIN_TIMEOUT = 1.0
CAP = 3


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    """The chat on one node with a 1 s join deadline and at most 3 sockets per address."""
    port = free_port()
    env = dict(
        os.environ,
        LIVESTATE_URL="memory://",
        LIVESTATE_JOIN_TIMEOUT=str(JOIN_TIMEOUT),
        LIVESTATE_MAX_SOCKETS_PER_CLIENT=str(CAP),
    )
    command = [
        sys.executable, "-m", "uvicorn", "chat.app:app", "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                raise RuntimeError("The chat example did not start.") from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


# Opens `count` WebSockets that never join and records what happens to each.
OPEN_IDLE = """
(count) => {
  window.idle = [];
  for (let i = 0; i < count; i++) {
    const record = {opened: false, code: null, at: null};
    const ws = new WebSocket(`ws://${location.host}/live/websocket?vsn=2.0.0`);
    ws.onopen = () => { record.opened = true; record.openedAt = performance.now(); };
    ws.onclose = (event) => { record.code = event.code; record.at = performance.now(); };
    window.idle.push(record);
  }
}
"""


def test_idle_sockets_close_the_cap_holds_and_a_page_still_works(
    guarded: str, new_page: NewPage
) -> None:
    """With a cap of 3: a joined page plus 3 idle sockets from one address: 2 idle ones open and
    are closed (1008) after the 1 s join deadline, the 3rd is refused; the page stays joined
    and posts; once the idle ones are gone a new page joins."""
    room = f"g{uuid.uuid4().hex[:8]}"
    page = new_page(f"{guarded}/rooms/{room}?nick=alice")
    page.evaluate(OPEN_IDLE, CAP)
    page.wait_for_function("window.idle.every((r) => r.code !== null)", timeout=6000)
    idle = page.evaluate("window.idle")
    opened = [r for r in idle if r["opened"]]
    refused = [r for r in idle if not r["opened"]]
    assert len(opened) == CAP - 1 and len(refused) == 1, idle
    assert all(r["code"] == 1008 for r in opened), idle
    assert all(r["at"] - r["openedAt"] >= JOIN_TIMEOUT * 1000 * 0.8 for r in opened), idle
    assert refused[0]["code"] == 1006, idle  # the browser's code for a refused handshake
    expect(page.locator("[data-phx-main].phx-connected")).to_have_count(1)
    page.fill("#text-input", "still here")
    page.press("#text-input", "Enter")
    expect(page.locator("#messages .text")).to_have_text(["still here"])
    other = new_page(f"{guarded}/rooms/{room}?nick=bob")
    expect(other.locator("#messages .text")).to_have_text(["still here"])
