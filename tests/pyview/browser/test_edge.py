"""Security at the edge of the demo: Origin checks, a shared secret, writes only where joined,
posts only as the view's own nickname."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...support.phoenix import LiveViewClient
from .conftest import Cluster, get_json


def in_thread(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own loop in a thread.

    Playwright's sync API, alive during the browser tests, marks a loop as running
    in the main thread, where pytest-asyncio could not start another.
    """

    @functools.wraps(test)  # keeps the signature, so pytest still passes the fixtures
    def run(**fixtures: Any) -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, test(**fixtures)).result()

    return run


@in_thread
async def test_websocket_from_other_site_is_refused(one_node: Cluster) -> None:
    """A WebSocket handshake whose Origin is another site is refused; the app's own passes."""
    page = f"{one_node.first}/rooms/{uuid.uuid4().hex[:8]}"
    evil = LiveViewClient(page)
    try:
        assert not await evil.connect(one_node.first, origin="http://evil.example")
    finally:
        await evil.close()
    own = LiveViewClient(page)
    try:
        assert await own.connect(one_node.first, origin=one_node.first)
        assert (await own.join())["status"] == "ok"
    finally:
        await own.close()


@in_thread
async def test_page_from_one_node_joins_on_another(two_nodes: Cluster) -> None:
    """A page served by node 1 joins over a WebSocket on node 2: the nodes share one secret."""
    client = LiveViewClient(f"{two_nodes.first}/rooms/{uuid.uuid4().hex[:8]}")
    try:
        assert await client.connect(two_nodes.last, origin=two_nodes.last)
        assert (await client.join())["status"] == "ok"
    finally:
        await client.close()


@in_thread
async def test_events_write_only_to_the_joined_room(one_node: Cluster) -> None:
    """A crafted event naming another room still writes only to the room the page joined."""
    joined, other = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    client = LiveViewClient(f"{one_node.first}/rooms/{joined}?nick=eve")
    try:
        assert await client.connect(one_node.first)
        assert (await client.join())["status"] == "ok"
        reply = await client.event("send", f"text=hi&room={other}")
        assert reply["status"] == "ok"
    finally:
        await client.close()
    status, body = get_json(f"{one_node.first}/api/rooms/{joined}/messages")
    assert status == 200 and [m["text"] for m in body["messages"]] == ["hi"]
    status, _ = get_json(f"{one_node.first}/api/rooms/{other}/messages")
    assert status == 404


@in_thread
async def test_posts_carry_the_nickname_the_view_holds(two_nodes: Cluster) -> None:
    """A crafted "send" naming another nickname (or an id, a time) still posts as the view's
    own nickname, the identity it bound the room with; a page without one cannot post at
    all, whatever nickname its payload claims. Every node serves the same messages."""
    room = uuid.uuid4().hex[:8]
    eve = LiveViewClient(f"{two_nodes.first}/rooms/{room}?nick=eve")
    nobody = LiveViewClient(f"{two_nodes.last}/rooms/{room}")
    try:
        assert await eve.connect(two_nodes.first)
        assert (await eve.join())["status"] == "ok"
        forged = "text=hi&nick=alice&id=000000000000&at=0&cid=not-an-id"
        assert (await eve.event("send", forged))["status"] == "ok"
        assert await nobody.connect(two_nodes.last)
        assert (await nobody.join())["status"] == "ok"
        reply = await nobody.event("send", "text=it+was+alice&nick=alice")
        assert "Choose a nickname before you post." in json.dumps(reply)
    finally:
        await eve.close()
        await nobody.close()
    for node in two_nodes.urls:
        status, body = get_json(f"{node}/api/rooms/{room}/messages")
        assert status == 200
        [message] = body["messages"]
        assert (message["nick"], message["text"]) == ("eve", "hi")
        assert message["id"] != "000000000000" and message["at"] > 0
