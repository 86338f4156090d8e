"""Presence through the WebSocket endpoint, over real sockets (uvicorn and a websockets client).

The identity comes from the endpoint's `identify(connection)` (here: the `user`
cookie), never from the frame; docs/protocol.md describes the frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from livestate import LiveState, Node, PermissionDeniedError
from livestate.asgi import Connection, EndpointLimits, LiveStateEndpoint
from tests.support.asgi import Open, Peer, peer_opener, serving


class Room(LiveState):
    name = "AsgiRoom"
    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"topic": key}


def user_cookie(connection: Connection) -> str | None:
    """The identity: the `user` cookie, as a real app would take it from its session."""
    return connection.cookies.get("user")


@pytest.fixture
def node(memory_node: Node) -> Node:
    """The endpoint's node: in memory (not the contract suite's node on each backend)."""
    return memory_node


@pytest.fixture
async def peers() -> AsyncIterator[Open]:
    """Opens protocol clients (closed at the end); reads each one's welcome frame."""
    async with peer_opener() as open_peer:
        yield open_peer


@pytest.fixture
async def url(node: Node) -> AsyncIterator[str]:
    """An endpoint whose identify reads the `user` cookie."""
    async with serving(LiveStateEndpoint([Room], node=node, identify=user_cookie)) as base:
        yield base


async def as_user(peers: Open, url: str, user: str) -> Peer:
    """A socket whose handshake carries the cookie user=`user`."""
    return await peers(url, additional_headers={"Cookie": f"user={user}"})


async def presence_change(peer: Peer) -> dict[str, Any]:
    """The next `presence` change frame on this socket."""
    while True:
        change = await peer.change()
        if change["kind"] == "presence":
            return change


async def test_attach_carries_presence_and_joins_arrive_as_changes(url: str, peers: Open) -> None:
    """`attached` has the presence; a track reaches every socket as one ordered change."""
    ann, bob = await as_user(peers, url, "ann"), await as_user(peers, url, "bob")
    first = await ann.attach("AsgiRoom", "r")
    assert first["presence"] == {}
    reply = await ann.request("track", id=first["id"], meta={"typing": False})
    assert reply["type"] == "ok"
    own = await presence_change(ann)  # before the ok: read your writes
    assert own["value"] == {"ann": [{"typing": False}]}
    assert own["version"] == first["version"] + 1
    second = await bob.attach("AsgiRoom", "r")
    assert second["presence"] == {"ann": [{"typing": False}]}
    await ann.request("track", id=first["id"], meta={"typing": True})
    update = await presence_change(bob)
    assert update == {
        "type": "change",
        "id": second["id"],
        "kind": "presence",
        "prop": None,
        "value": {"ann": [{"typing": True}]},
        "version": second["version"] + 1,
    }


async def test_identity_comes_from_the_server_not_the_frame(url: str, peers: Open) -> None:
    """A track frame that names an identity still shows as identify's answer."""
    ann = await as_user(peers, url, "ann")
    id = (await ann.attach("AsgiRoom", "spoof"))["id"]
    await ann.request("track", id=id, meta={}, identity="admin")
    assert (await presence_change(ann))["value"] == {"ann": [{}]}
    got = await ann.request("presence", spec="AsgiRoom", key="spoof")
    assert got["result"] == {"ann": [{}]}


async def test_no_identity_is_refused(node: Node, url: str, peers: Open) -> None:
    """Without identify, or when it gives None, track is `forbidden` and nothing shows."""
    anonymous = await peers(url)
    id = (await anonymous.attach("AsgiRoom", "n"))["id"]
    refused = await anonymous.request("track", id=id, meta={})
    assert refused["code"] == "forbidden" and "sign in" in refused["message"]
    async with serving(LiveStateEndpoint([Room], node=node)) as bare:
        peer = await peers(bare)
        id = (await peer.attach("AsgiRoom", "n"))["id"]
        refused = await peer.request("track", id=id, meta={})
        assert refused["code"] == "forbidden" and "no identify" in refused["message"]
    assert dict(await node.presence(Room, "n")) == {}


async def test_identify_may_refuse_with_its_own_message(node: Node, peers: Open) -> None:
    """An identify that raises PermissionDeniedError refuses the track with its message."""

    def identify(connection: Connection) -> str:
        raise PermissionDeniedError("Sign in to show yourself on this board.")

    async with serving(LiveStateEndpoint([Room], node=node, identify=identify)) as base:
        peer = await peers(base)
        id = (await peer.attach("AsgiRoom", "p"))["id"]
        refused = await peer.request("track", id=id, meta={})
        assert refused["code"] == "forbidden"
        assert refused["message"] == "Sign in to show yourself on this board."


async def test_untrack_and_close_leave(url: str, peers: Open) -> None:
    """untrack, and a closed socket, each reach the others as the identity with no metas."""
    ann, bob, watcher = [await as_user(peers, url, u) for u in ("ann", "bob", "w")]
    ids = [(await p.attach("AsgiRoom", "l"))["id"] for p in (ann, bob, watcher)]
    await ann.request("track", id=ids[0], meta={})
    await bob.request("track", id=ids[1], meta={})
    assert (await presence_change(watcher))["value"] == {"ann": [{}]}
    assert (await presence_change(watcher))["value"] == {"bob": [{}]}
    assert (await ann.request("untrack", id=ids[0]))["type"] == "ok"
    assert (await presence_change(watcher))["value"] == {"ann": []}
    await bob.socket.close()
    assert (await presence_change(watcher))["value"] == {"bob": []}


async def test_reset_frame_carries_presence(url: str, peers: Open) -> None:
    """A `reset` change carries the whole presence beside the state."""
    ann = await as_user(peers, url, "ann")
    id = (await ann.attach("AsgiRoom", "z"))["id"]
    await ann.request("track", id=id, meta={"n": 1})
    await ann.request("reset", id=id)
    reset = next(f for f in ann.frames if f["type"] == "change" and f["kind"] == "reset")
    assert reset["value"] == {"topic": "z"}
    assert reset["presence"] == {"ann": [{"n": 1}]}


async def test_bad_track_requests(url: str, peers: Open) -> None:
    """A meta too large is invalid_value; track by spec and key, or without meta, is bad_frame."""
    ann = await as_user(peers, url, "ann")
    id = (await ann.attach("AsgiRoom", "b"))["id"]
    large = await ann.request("track", id=id, meta={"blob": "x" * 4000})
    assert large["code"] == "invalid_value"
    assert (await ann.request("track", id=id))["code"] == "bad_frame"
    by_key = await ann.request("track", spec="AsgiRoom", key="b", meta={})
    assert by_key["code"] == "bad_frame" and "'id'" in by_key["message"]
    gone = await ann.request("track", id=999, meta={})
    assert gone["code"] == "not_attached"


async def test_async_identify_runs_once_per_socket(node: Node, peers: Open) -> None:
    """An async identify is awaited, once per socket, however often the socket tracks."""
    calls: list[str] = []

    async def identify(connection: Connection) -> str:
        calls.append(connection.path)
        return "async-user"

    async with serving(LiveStateEndpoint([Room], node=node, identify=identify)) as base:
        peer = await peers(base)
        id = (await peer.attach("AsgiRoom", "a"))["id"]
        for n in range(3):
            assert (await peer.request("track", id=id, meta={"n": n}))["type"] == "ok"
        assert calls == ["/ws"]
        assert (await peer.request("presence", id=id))["result"] == {"async-user": [{"n": 2}]}


async def test_track_takes_a_write_token(node: Node, peers: Open) -> None:
    """track and untrack count against the socket's write rate like writes do."""
    limits = EndpointLimits(writes_per_second=0.001, write_burst=2)
    endpoint = LiveStateEndpoint([Room], node=node, identify=user_cookie, limits=limits)
    async with serving(endpoint) as base:
        peer = await as_user(peers, base, "ann")
        id = (await peer.attach("AsgiRoom", "t"))["id"]
        assert (await peer.request("track", id=id, meta={}))["type"] == "ok"
        assert (await peer.request("untrack", id=id))["type"] == "ok"
        limited = await peer.request("track", id=id, meta={})
        assert limited["code"] == "rate_limited"
    assert dict(await node.presence(Room, "t")) == {}
