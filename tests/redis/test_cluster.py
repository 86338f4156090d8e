"""Several nodes on one real Redis/Valkey server, in one process and as separate processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState, Node

from ..conftest import SHORT_LEASE
from ..support import eventually, in_order, running
from ..support.node_process import ProcessRoom, kill, start_process


class Board(LiveState):
    """A live state with a list and a counter."""

    name = "ClusterBoard"  # examples/fastapi_board has a Board of its own

    ttl = 0.5

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"items": [], "count": 0}


@pytest.fixture
async def nodes(lease_url: str) -> AsyncIterator[list[Node]]:
    """Three nodes on the server, each with its own connections."""
    started = [await Node(lease_url).__aenter__() for _ in range(3)]
    yield started
    for node in started:
        await node.aclose()


async def test_concurrent_writers_on_three_nodes_lose_nothing(nodes: list[Node]) -> None:
    """3 nodes x 8 clients x 25 concurrent appends and increments leave exactly 600 of each."""
    seen: list[list[Change]] = []
    clients = []
    for node in nodes:
        for _ in range(8):
            changes: list[Change] = []
            seen.append(changes)
            clients.append(await node.attach(Board, "busy", on_change=changes.append))

    async def write(client: livestate.Client, number: int) -> None:
        for step in range(25):
            await client.append("items", [number, step])
            await client.increment("count")

    first = clients[0].version
    await asyncio.gather(*(write(client, n) for n, client in enumerate(clients)))
    state = await nodes[0].get(Board, "busy")
    assert len(state["items"]) == 600
    assert state["count"] == 600
    await eventually(lambda: all(client.version == first + 1200 for client in clients))
    for client, changes in zip(clients, seen, strict=True):
        assert client.state == state
        assert in_order(changes)


async def test_writes_reach_other_nodes_in_version_order(nodes: list[Node]) -> None:
    """Writes from two nodes at once reach a client on a third in version order, each once."""
    a, b, c = nodes
    changes: list[Change] = []
    watcher = await c.attach(Board, "order", on_change=changes.append)
    first = watcher.version

    async def write(node: Node) -> None:
        for _ in range(100):
            await node.increment(Board, "order", "count")

    await asyncio.gather(write(a), write(b))
    await eventually(lambda: watcher.version == first + 200)
    assert watcher.state["count"] == 200
    assert in_order(changes)
    assert [change.kind for change in changes].count("reset") == 0


async def test_ttl_counts_clients_on_every_node(nodes: list[Node]) -> None:
    """The live state lives while any node has a client, and ends ttl after the last one leaves."""
    a, b, _ = nodes
    first = await a.attach(Board, "ttl")
    second = await b.attach(Board, "ttl")
    await first.detach()
    await asyncio.sleep(Board.ttl * 2)
    assert await running(a, Board, "ttl")
    await second.detach()
    await asyncio.sleep(Board.ttl / 2)
    assert await running(a, Board, "ttl")
    deadline = time.monotonic() + Board.ttl + 1.0
    while await running(a, Board, "ttl"):
        assert time.monotonic() < deadline, "the live state outlived its TTL"
        await asyncio.sleep(0.05)


async def test_a_killed_node_stops_counting_within_lease_and_ttl(lease_url: str) -> None:
    """kill -9 of the node holding the last client ends the live state within lease + TTL."""
    process = start_process(lease_url, "crash")
    try:
        async with Node(lease_url) as node:
            assert await running(node, ProcessRoom, "crash")
            await asyncio.sleep(SHORT_LEASE + ProcessRoom.ttl + 0.5)
            assert await running(node, ProcessRoom, "crash"), "a live node's lease lapsed"
            kill(process)
            killed = time.monotonic()
            while await running(node, ProcessRoom, "crash"):
                assert time.monotonic() - killed < SHORT_LEASE + ProcessRoom.ttl + 1.0
                await asyncio.sleep(0.05)
    finally:
        kill(process)


async def test_state_written_by_a_killed_node_is_there_for_the_next_attach(lease_url: str) -> None:
    """What a node wrote survives its kill -9 for a client that attaches before the TTL ends."""
    process = start_process(lease_url, "survivor", "n", "42")
    try:
        kill(process)
        async with Node(lease_url) as node:
            client = await node.attach(ProcessRoom, "survivor")
            assert client.state["n"] == 42
            await asyncio.sleep(SHORT_LEASE + ProcessRoom.ttl + 0.5)
            assert (await node.get(ProcessRoom, "survivor"))["n"] == 42
    finally:
        kill(process)


async def test_on_mount_runs_once_when_many_nodes_race(lease_url: str) -> None:
    """Eight nodes attaching at once run on_mount once and all see its state."""
    mounts: list[str] = []

    class Slow(LiveState):
        async def on_mount(self, key: str) -> dict[str, Any]:
            mounts.append(key)
            await asyncio.sleep(0.2)
            return {"mounted": len(mounts)}

    racers = [await Node(lease_url).__aenter__() for _ in range(8)]
    try:
        clients = await asyncio.gather(*(node.attach(Slow, "race") for node in racers))
        assert mounts == ["race"]
        assert {client.state["mounted"] for client in clients} == {1}
        assert len({client.version for client in clients}) == 1
    finally:
        for node in racers:
            await node.aclose()


async def test_an_ended_live_state_leaves_no_key_behind(lease_url: str, nodes: list[Node]) -> None:
    """After its TTL, every key of a live state (lists and property order too) has expired."""
    import redis

    client = await nodes[0].attach(Board, "tidy")
    await client.append("items", "a")
    await client.put("extra", {"nested": [1, 2]})
    await client.put("tags", ["x", "y"])
    with redis.Redis.from_url(lease_url.partition("?")[0]) as admin:
        keys = admin.keys("ls:{ClusterBoard:tidy}:*")
        assert {key.decode().rpartition(":")[2] for key in keys} >= {
            "m", "s", "z", "h", "L", "k", "items", "tags",
        }  # fmt: skip
        await client.detach()
        started = time.monotonic()
        while admin.keys("ls:{ClusterBoard:tidy}:*"):
            assert time.monotonic() - started < Board.ttl + 2.0, admin.keys(
                "ls:{ClusterBoard:tidy}:*"
            )
            await asyncio.sleep(0.05)
