"""Presence: who is attached, on every node, as ordered changes; on memory and on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

import livestate
from livestate import (
    Change,
    InvalidValueError,
    LiveState,
    Node,
    NotFoundError,
    PermissionDeniedError,
)
from livestate.testing import ServerProcess

from ..conftest import SHORT_LEASE
from ..support import MakeNode, eventually, in_order
from ..support.node_process import ProcessRoom, kill, start_process
from ..support.proxy import Proxy


class Lounge(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"topic": key}


class Private(LiveState):
    acl = {"group": "all", "public": []}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


def presence_changes(changes: list[Change]) -> list[Any]:
    """The values of the presence changes among `changes`, as plain dicts of lists."""
    return [
        {identity: list(metas) for identity, metas in change.value.items()}
        for change in changes
        if change.kind == "presence"
    ]


async def test_a_join_and_a_leave_reach_every_node_as_ordered_changes(
    make_node: MakeNode,
) -> None:
    """A client on node A tracks "ann": B's client sees her join, then her leave, as
    presence changes at consecutive versions, and so does A's own client."""
    a, b = await make_node(), await make_node()
    seen_a: list[Change] = []
    seen_b: list[Change] = []
    ann = await a.attach(Lounge, "join", on_change=seen_a.append)
    watcher = await b.attach(Lounge, "join", on_change=seen_b.append)
    await ann.put("settled", True)  # B's subscription is confirmed once it sees this
    await eventually(lambda: "settled" in watcher.state)
    seen_a.clear()
    seen_b.clear()
    await ann.track("ann", {"status": "online"})
    assert ann.presence == {"ann": [{"status": "online"}]}  # read your writes
    await eventually(lambda: "ann" in watcher.presence)
    assert watcher.presence == {"ann": [{"status": "online"}]}
    await ann.untrack()
    await eventually(lambda: not watcher.presence)
    assert presence_changes(seen_b) == [{"ann": [{"status": "online"}]}, {"ann": []}]
    assert presence_changes(seen_a) == presence_changes(seen_b)
    assert in_order(seen_b) and in_order(seen_a)
    assert watcher.version == ann.version == seen_b[-1].version


async def test_tabs_of_one_identity_are_listed_under_it(make_node: MakeNode) -> None:
    """Two clients (tabs) track "ann" on two nodes: she is listed once, with both metas
    in join order; when one tab leaves, the other's meta stays."""
    a, b = await make_node(), await make_node()
    first = await a.attach(Lounge, "tabs")
    second = await b.attach(Lounge, "tabs")
    await first.track("ann", {"tab": 1})
    await second.track("ann", {"tab": 2})
    await eventually(lambda: len(first.presence.get("ann", ())) == 2)
    assert first.presence == second.presence == {"ann": [{"tab": 1}, {"tab": 2}]}
    await second.detach()
    await eventually(lambda: first.presence == {"ann": [{"tab": 1}]})


async def test_meta_updates_replace_the_meta_in_place(make_node: MakeNode) -> None:
    """Tracking again changes the meta of the same presence: no second entry appears."""
    a, b = await make_node(), await make_node()
    ann = await a.attach(Lounge, "meta")
    bob = await a.attach(Lounge, "meta")
    watcher = await b.attach(Lounge, "meta")
    await ann.track("ann", {"typing": False})
    await bob.track("bob", {"typing": False})
    await ann.track("ann", {"typing": True})
    await eventually(lambda: watcher.presence.get("ann") == [{"typing": True}])
    assert dict(watcher.presence) == {"ann": [{"typing": True}], "bob": [{"typing": False}]}
    assert list(watcher.presence) == ["ann", "bob"]


async def test_a_burst_of_meta_updates_is_coalesced(make_node: MakeNode) -> None:
    """Fifty meta updates made at once cost two writes (the first, then the latest of the
    rest), and every node ends with the last one."""
    a, b = await make_node(), await make_node()
    typist = await a.attach(Lounge, "burst")
    watcher = await b.attach(Lounge, "burst")
    await typist.track("ann", {"n": 0})
    before = typist.version
    await asyncio.gather(*(typist.track("ann", {"n": n}) for n in range(1, 51)))
    assert typist.presence == {"ann": [{"n": 50}]}
    assert typist.version == before + 2
    await eventually(lambda: watcher.presence == {"ann": [{"n": 50}]})


async def test_a_client_that_attaches_later_gets_the_whole_list(make_node: MakeNode) -> None:
    """Presence is part of what an attach loads: a late client sees who is there at once."""
    a, b = await make_node(), await make_node()
    for identity in ("ann", "bob", "cy"):
        client = await a.attach(Lounge, "late")
        await client.track(identity, {"name": identity.title()})
    late = await b.attach(Lounge, "late")
    assert late.presence == {
        "ann": [{"name": "Ann"}],
        "bob": [{"name": "Bob"}],
        "cy": [{"name": "Cy"}],
    }


async def test_the_server_api_lists_presence_for_any_key(make_node: MakeNode) -> None:
    """LiveState.presence lists who is there, needs read, and raises for no live state."""
    node = await make_node()
    with livestate.use(node):
        client = await Lounge.attach("api")
        await client.track("ann", {"x": 1})
        assert await Lounge.presence("api") == {"ann": [{"x": 1}]}
        assert await node.presence(Lounge, "api", role="group") == {"ann": [{"x": 1}]}
        with pytest.raises(NotFoundError, match="Lounge 'nowhere' is not running"):
            await Lounge.presence("nowhere")
        secret = await Private.attach("s")
        await secret.track("ann")
        with pytest.raises(PermissionDeniedError, match="read the presence of Private 's'"):
            await Private.presence("s")
        assert await node.presence(Private, "s", role="group") == {"ann": [None]}


async def test_detach_and_a_closed_node_end_their_presences(make_node: MakeNode) -> None:
    """Detaching a tracked client, or closing its node, removes its presences everywhere."""
    a, b, c = await make_node(), await make_node(), await make_node()
    watcher = await a.attach(Lounge, "bye")
    leaving = await b.attach(Lounge, "bye")
    await leaving.track("ann")
    for identity in ("bob", "cy"):
        await (await c.attach(Lounge, "bye")).track(identity)
    await eventually(lambda: set(watcher.presence) == {"ann", "bob", "cy"})
    await leaving.detach()
    await eventually(lambda: set(watcher.presence) == {"bob", "cy"})
    await c.aclose()
    await eventually(lambda: not watcher.presence)


async def test_bad_presences_are_refused_with_the_key(node: Node) -> None:
    """A bad identity or a meta that is not JSON or too large is refused before writing."""
    client = await node.attach(Lounge, "bad")
    with pytest.raises(InvalidValueError, match="Lounge 'bad': the identity must be a str"):
        await client.track("")
    with pytest.raises(InvalidValueError, match="the identity must be a str"):
        await client.track(7)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="'identity' of a presence in Lounge 'bad'"):
        await client.track("\ud800")
    with pytest.raises(InvalidValueError, match="'meta' of presence 'ann' in Lounge 'bad'"):
        await client.track("ann", {"when": object()})
    with pytest.raises(InvalidValueError, match="over the limit of 2,048"):
        await client.track("ann", {"note": "x" * 3000})
    assert not client.presence
    await client.detach()
    with pytest.raises(RuntimeError, match="detached"):
        await client.track("ann")


# Redis only: nodes that die or are cut off.


@pytest.fixture
async def watcher_node(lease_url: str) -> AsyncIterator[Node]:
    """A node that watches, on the server directly."""
    async with Node(lease_url) as node:
        yield node


async def test_a_killed_nodes_presences_go_within_its_lease(
    lease_url: str, watcher_node: Node
) -> None:
    """kill -9 of a node: its presences are gone on the other nodes within lease + 1 s,
    and the others' stay."""
    watcher = await watcher_node.attach(ProcessRoom, "kill")
    await watcher.track("watcher")
    process = start_process(lease_url, "kill", "--track", "doomed")
    try:
        await eventually(lambda: "doomed" in watcher.presence)
        kill(process)
        killed = time.monotonic()
        await eventually(lambda: "doomed" not in watcher.presence, within=SHORT_LEASE + 1.0)
        assert time.monotonic() - killed <= SHORT_LEASE + 1.0
        assert watcher.presence == {"watcher": [None]}
        assert await watcher_node.presence(ProcessRoom, "kill") == {"watcher": [None]}
    finally:
        kill(process)


async def test_a_node_cut_off_past_its_lease_shows_its_presences_again(
    redis_server: ServerProcess, watcher_node: Node
) -> None:
    """A node partitioned from Redis for longer than its lease has its presences swept;
    when the network mends, it shows them again, once each (no duplicate)."""
    async with Proxy(redis_server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?lease={SHORT_LEASE}&timeout=1") as cut:
            watcher = await watcher_node.attach(Lounge, "cut")
            ann = await cut.attach(Lounge, "cut")
            await ann.track("ann", {"tab": 1})
            await eventually(lambda: "ann" in watcher.presence)
            proxy.cut()
            await eventually(lambda: "ann" not in watcher.presence, within=SHORT_LEASE + 1.5)
            proxy.mend()
            await eventually(lambda: "ann" in watcher.presence, within=5.0)
            assert watcher.presence == {"ann": [{"tab": 1}]}
            await eventually(lambda: ann.presence == {"ann": [{"tab": 1}]})
            assert await watcher_node.presence(Lounge, "cut") == {"ann": [{"tab": 1}]}


async def test_a_killed_subscriber_connection_duplicates_no_presence(
    lease_url: str, watcher_node: Node
) -> None:
    """The pub/sub connections are killed: the nodes resync, and every presence is still
    listed exactly once, with later joins still reaching everyone."""
    async with Node(lease_url) as other:
        watcher = await watcher_node.attach(Lounge, "sub")
        ann = await other.attach(Lounge, "sub")
        await ann.track("ann")
        await watcher.track("wat")
        await eventually(lambda: set(watcher.presence) == {"ann", "wat"})
        with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
            assert connection.client_kill_filter(_type="pubsub") >= 2
        bob = await other.attach(Lounge, "sub")
        await bob.track("bob")
        for client in (watcher, ann, bob):
            await eventually(lambda c=client: set(c.presence) == {"ann", "wat", "bob"})  # type: ignore[misc]
        assert all(len(metas) == 1 for metas in watcher.presence.values())
        with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
            assert connection.hlen("ls:{Lounge:sub}:p") == 3


async def test_presences_come_back_when_the_live_state_is_started_anew(
    lease_url: str, watcher_node: Node
) -> None:
    """Redis loses everything under attached clients: the live state starts anew, and each
    node shows its clients' presences in the new lifetime, once each."""
    async with Node(lease_url) as other:
        seen: list[Change] = []
        watcher = await watcher_node.attach(Lounge, "anew", on_change=seen.append)
        ann = await other.attach(Lounge, "anew")
        await ann.track("ann", {"tab": 1})
        await watcher.track("wat")
        await eventually(lambda: set(watcher.presence) == {"ann", "wat"})
        with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
            connection.flushall()
        await eventually(lambda: any(change.kind == "reset" for change in seen), within=5.0)
        expected = {"ann": [{"tab": 1}], "wat": [None]}
        await eventually(lambda: watcher.presence == ann.presence == expected, within=3.0)
        assert await watcher_node.presence(Lounge, "anew") == expected


async def test_a_read_lists_no_presence_of_a_dead_node_nobody_swept(
    lease_url: str, watcher_node: Node
) -> None:
    """The killed node was the only one holding the live state, so no heartbeat sweeps
    its presences: a read from a node that is not attached already leaves them out
    once its lease lapsed, while the live state still runs (its TTL counts from there)."""
    process = start_process(lease_url, "alone", "--track", "doomed")
    try:
        listed = await watcher_node.presence(ProcessRoom, "alone")
        assert listed == {"doomed": [{"pid": process.pid}]}
        kill(process)
        killed = time.monotonic()
        while "doomed" in await watcher_node.presence(ProcessRoom, "alone"):
            assert time.monotonic() - killed < SHORT_LEASE + 1.0, "still listed"
            await asyncio.sleep(0.05)
        assert await watcher_node.get(ProcessRoom, "alone") == {"n": 0}  # still running
    finally:
        kill(process)


async def test_a_track_cancelled_by_its_caller_then_detached_leaves_no_presence(
    make_node: MakeNode,
) -> None:
    """A handler cancelled while it awaits track() (its peer went away) detaches in its
    `finally`: the join it started may still land, and the detach ends it, while another
    client keeps the node's replica."""
    a, b = await make_node(), await make_node()
    await a.attach(Lounge, "cancel")  # keeps the live state's replica on node a
    watcher = await b.attach(Lounge, "cancel")
    for round_ in range(5):
        client = await a.attach(Lounge, "cancel")
        tracking = asyncio.ensure_future(client.track(f"ghost-{round_}"))
        await asyncio.sleep(0)
        tracking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tracking
        await client.detach()
    assert await b.presence(Lounge, "cancel") == {}
    await eventually(lambda: not watcher.presence)


async def test_a_client_detached_while_redis_is_out_of_reach_is_removed_after(
    redis_server: ServerProcess, lease_url: str, watcher_node: Node
) -> None:
    """Its leave never reaches the server (cut off, then the connection dropped), and
    another client keeps the node's replica and lease: once the server is in reach again,
    the node ends the presence no client of its own tracks."""
    async with Proxy(redis_server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?timeout=0.3") as node:
            keeper = await node.attach(Lounge, "reach")
            await keeper.track("keeper")
            leaving = await node.attach(Lounge, "reach")
            await leaving.track("leaving")
            watcher = await watcher_node.attach(Lounge, "reach")
            await eventually(lambda: set(watcher.presence) == {"keeper", "leaving"})
            proxy.cut()
            await leaving.detach()  # logs that it could not end the presence
            proxy.sever()
            proxy.mend()
            await eventually(lambda: set(watcher.presence) == {"keeper"}, within=3.0)
            assert await watcher_node.presence(Lounge, "reach") == {"keeper": [None]}


async def test_a_presence_key_lost_alone_is_made_whole_again(
    lease_url: str, watcher_node: Node
) -> None:
    """The presence hash evicted alone: the heartbeat finds fewer presences than the
    clients list, they resync, and each node shows its clients again. The per-node count
    hash lost alone: it is counted again, so a killed node is still swept."""
    client = await watcher_node.attach(ProcessRoom, "lost")
    await client.track("ann", {"typing": True})
    with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
        connection.delete("ls:{ProcessRoom:lost}:p")
        assert connection.hlen("ls:{ProcessRoom:lost}:p") == 0
        await eventually(lambda: connection.hlen("ls:{ProcessRoom:lost}:p") == 1, within=2.0)
    # The hash is whole again when the refresh lands on the server; the client shows it
    # once its change comes back to this node (the next loop turns, not at once).
    await eventually(lambda: client.presence == {"ann": [{"typing": True}]}, within=1.0)
    process = start_process(lease_url, "lost", "--track", "doomed")
    try:
        await eventually(lambda: "doomed" in client.presence)
        with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
            connection.delete("ls:{ProcessRoom:lost}:pn")
        kill(process)
        await eventually(lambda: "doomed" not in client.presence, within=SHORT_LEASE + 1.5)
        assert await watcher_node.presence(ProcessRoom, "lost") == {"ann": [{"typing": True}]}
    finally:
        kill(process)


async def test_meta_updates_in_flight_when_the_live_state_is_lost_are_not_lost(
    lease_url: str, watcher_node: Node
) -> None:
    """Thirty clients send meta updates while Redis is emptied under them: afterwards
    every one is listed, with its last meta, on every node."""
    async with Node(lease_url) as other:
        clients = [await other.attach(Lounge, "typing") for _ in range(30)]
        watcher = await watcher_node.attach(Lounge, "typing")
        await asyncio.gather(*(c.track(f"u{n}", 0) for n, c in enumerate(clients)))

        async def typing(n: int, client: livestate.Client) -> None:
            for t in range(1, 6):
                with contextlib.suppress(livestate.LiveStateError):
                    await client.track(f"u{n}", t)
                await asyncio.sleep(0.005)

        burst = asyncio.gather(*(typing(n, c) for n, c in enumerate(clients)))
        await asyncio.sleep(0.01)
        with redis.Redis.from_url(lease_url.partition("?")[0]) as connection:
            connection.flushall()
        await burst
        want = {f"u{n}": [5] for n in range(30)}
        await eventually(lambda: dict(watcher.presence) == want, within=4.0)
        assert dict(await watcher_node.presence(Lounge, "typing")) == want
