"""The inspector page in Chromium: it shows the live states and nodes, and only to whom
its `authorize` hook lets in."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, expect
from starlette.applications import Starlette

import livestate
from livestate import LiveState
from livestate.inspector import inspector
from livestate.testing import free_port


class Inspected(LiveState):
    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"key": key}


def is_operator(scope: Mapping[str, Any]) -> bool:
    """The test's own check: a cookie."""
    cookies = dict(scope["headers"]).get(b"cookie", b"")
    return b"operator=yes" in cookies


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with livestate.lifespan(app):
        clients = [await Inspected.attach("lobby") for _ in range(2)]
        clients.append(await Inspected.attach("kitchen"))
        await clients[0].put("n", 1)
        await clients[1].track("ann")
        yield


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """A Starlette app with the inspector at /livestate, served by uvicorn in a thread."""
    app = Starlette(lifespan=lifespan)
    app.mount("/livestate", inspector(authorize=is_operator))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the inspector's server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/livestate/"
    server.should_exit = True
    thread.join(10)


def test_the_page_shows_live_states_and_nodes(browser: Browser, site: str) -> None:
    """With the cookie, the page lists both live states, their clients, and the node."""
    context = browser.new_context()
    context.add_cookies([{"name": "operator", "value": "yes", "url": site}])
    page = context.new_page()
    page.goto(site)
    expect(page.locator("#summary")).to_have_text("2 live states · 1 node · 3 clients")
    lobby = page.locator('#states tr[data-key="Inspected:lobby"]')
    expect(lobby).to_contain_text("(2)")
    expect(lobby.locator("td").nth(4)).to_have_text("1")  # one client shows in its presence
    expect(page.locator('#states tr[data-key="Inspected:kitchen"]')).to_contain_text("(1)")
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    context.close()


def test_without_authorization_there_is_nothing_to_see(browser: Browser, site: str) -> None:
    """No cookie: the page and its data answer 403, and the browser shows no live state."""
    page = browser.new_page()
    response = page.goto(site)
    assert response is not None and response.status == 403
    expect(page.locator("body")).not_to_contain_text("lobby")
    page.close()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{site}survey.json", timeout=5)
    refused.value.close()
    assert refused.value.code == 403
