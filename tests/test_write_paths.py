"""Every write path enforces the schema and the write rules: a table of bad writes, tried on
each path, on two nodes over a real Valkey, leaves the state unchanged on both.

The paths: an attached Client, the server API (LiveState's class methods), `livestate.sync`,
PyView's live_* helpers, WebSocket frames through an attachment and by spec and key, and
each path's actions (`call`). The WebSocket identity comes from the endpoint's `identify`
(here, the URL's `who`), never from a frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import pytest

import livestate
from livestate import (
    ActionContext,
    Caller,
    InvalidValueError,
    LiveState,
    LiveStateError,
    Node,
    PermissionDeniedError,
    Write,
    action,
    sync,
)
from livestate.asgi import Connection, LiveStateEndpoint
from livestate.testing import ServerProcess
from tests.support.asgi import Open, Peer, peer_opener, serving
from tests.support.pyview import RecordingView, connected_socket


class Card(msgspec.Struct, forbid_unknown_fields=True):
    """A card: its text and its author."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    by: str


class PathBoard(LiveState):
    """A board whose ACL lets anyone write: only the schema and the rule stand guard."""

    schema = {
        "title": Annotated[str, msgspec.Meta(max_length=20)],
        "card:*": Card,
        "votes": Annotated[int, msgspec.Meta(ge=0, le=100)],
        "log": list[Annotated[str, msgspec.Meta(max_length=10)]],
    }

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": "board", "card:ann": {"text": "ann's", "by": "ann"}, "votes": 0, "log": []}

    def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str:
        if caller is None:
            return True
        if write.kind in ("reset", "stop"):
            return "only the server resets a board"
        if write.prop is not None and write.prop.startswith("card:"):
            current = write.state.get(write.prop)
            if current is not None and current["by"] != caller.identity:
                return "only its author may change a card"
            if write.kind == "put" and write.value["by"] != caller.identity:
                return "a card's author is whoever writes it"
        return True

    @action
    def remove(self, ctx: ActionContext, card: str) -> None:
        current = ctx.state.get(f"card:{card}")
        if current is None or ctx.caller is None or current["by"] != ctx.caller.identity:
            raise PermissionDeniedError("Only its author may remove a card.")
        ctx.delete(f"card:{card}")

    @action
    def whoami(self, ctx: ActionContext) -> str | None:
        return None if ctx.caller is None else ctx.caller.identity


# Each bad write: (name, kind, args, the error it must raise). Bob writes them; ann wrote card:ann.
BAD = [
    ("long title", "put", ("title", "x" * 21), InvalidValueError),
    ("undeclared", "put", ("secret", 1), InvalidValueError),
    ("wrong type", "put", ("card:bob", {"text": 7, "by": "bob"}), InvalidValueError),
    ("extra field", "put", ("card:bob", {"text": "t", "by": "bob", "x": 1}), InvalidValueError),
    ("bad item", "append", ("log", "much too long"), InvalidValueError),
    ("over bound", "increment", ("votes", 101), InvalidValueError),
    ("another's card", "put", ("card:ann", {"text": "bob's", "by": "bob"}), PermissionDeniedError),
    ("forged author", "put", ("card:new", {"text": "t", "by": "ann"}), PermissionDeniedError),
    ("delete another's", "delete", ("card:ann",), PermissionDeniedError),
    ("reset", "reset", (), PermissionDeniedError),
    ("action bad args", "call", ("remove", {"card": 1}), InvalidValueError),
    ("action refuses", "call", ("remove", {"card": "ann"}), PermissionDeniedError),
]
CODES = {InvalidValueError: "invalid_value", PermissionDeniedError: "permission_denied"}

Writer = Callable[[str, tuple[Any, ...]], Awaitable[Any]]
"""Makes one write (kind, args) as bob on a path."""


@dataclass
class World:
    """Two nodes on one Valkey, the endpoint on the first, and a way to open sockets."""

    url: str
    first: Node
    second: Node
    ws: str
    open: Open
    blocking: list[sync.SyncNode]


@pytest.fixture
async def world(redis_server: ServerProcess) -> AsyncIterator[World]:
    import redis

    with redis.Redis.from_url(redis_server.url) as connection:
        connection.flushall()

    def identify(connection: Connection) -> str | None:
        return connection.query.get("who")

    async with Node(redis_server.url) as first, Node(redis_server.url) as second:
        endpoint = LiveStateEndpoint([PathBoard], identify=identify, node=first)
        async with serving(endpoint) as ws, peer_opener() as open_peer:
            await first.start(PathBoard, "k")
            world = World(redis_server.url, first, second, ws, open_peer, [])
            try:
                yield world
            finally:
                for blocking in world.blocking:
                    await asyncio.to_thread(blocking.close)


async def client_path(world: World) -> Writer:
    client = await world.first.attach(PathBoard, "k", caller=Caller("group", "bob"))
    return lambda kind, args: getattr(client, kind)(*args)


async def server_path(world: World) -> Writer:
    async def write(kind: str, args: tuple[Any, ...]) -> Any:
        with livestate.use(world.first):
            return await getattr(PathBoard, kind)("k", *args, caller=Caller("public", "bob"))

    return write


async def sync_path(world: World) -> Writer:
    blocking = sync.SyncNode(world.url)
    world.blocking.append(blocking)

    async def write(kind: str, args: tuple[Any, ...]) -> Any:
        call = getattr(blocking, kind)
        return await asyncio.to_thread(call, PathBoard, "k", *args, caller=Caller("public", "bob"))

    return write


async def pyview_path(world: World) -> Writer:
    from livestate import pyview

    socket = connected_socket(RecordingView())
    with livestate.use(world.first):
        await pyview.live_state(socket, PathBoard, "k", identity="bob")
    helpers: dict[str, Callable[..., Awaitable[Any]]] = {
        "put": pyview.live_assign, "append": pyview.live_append, "delete": pyview.live_delete,
        "increment": pyview.live_increment, "reset": pyview.live_reset, "call": pyview.live_call,
    }  # fmt: skip

    async def write(kind: str, args: tuple[Any, ...]) -> Any:
        with livestate.use(world.first):
            return await helpers[kind](socket, *args)

    return write


def frame(kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The request frame's fields for a write."""
    if kind == "call":
        return {"action": args[0], "args": args[1]}
    fields: dict[str, Any] = {"prop": args[0]} if args else {}
    if kind == "increment":
        fields["by"] = args[1]
    elif len(args) > 1:
        fields["value"] = args[1]
    return fields


async def through(peer: Peer, kind: str, fields: dict[str, Any]) -> Any:
    """Send a request; raise the livestate error its error frame names."""
    reply = await peer.request(kind, **fields)
    if reply["type"] == "error":
        kinds = {code: error for error, code in CODES.items()}
        raise kinds.get(reply["code"], LiveStateError)(reply["message"])
    return reply.get("result")


async def ws_attached_path(world: World) -> Writer:
    peer = await world.open(world.ws, "?who=bob")
    attached = await peer.attach("PathBoard", "k")
    return lambda kind, args: through(peer, kind, {"id": attached["id"], **frame(kind, args)})


async def ws_public_path(world: World) -> Writer:
    peer = await world.open(world.ws, "?who=bob")
    return lambda kind, args: through(
        peer, kind, {"spec": "PathBoard", "key": "k", **frame(kind, args)}
    )


PATHS = {
    "client": client_path,
    "server": server_path,
    "sync": sync_path,
    "pyview": pyview_path,
    "ws-attached": ws_attached_path,
    "ws-public": ws_public_path,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("name", "kind", "args", "error"), BAD, ids=[bad[0] for bad in BAD])
async def test_every_path_refuses_every_bad_write(
    world: World, path: str, name: str, kind: str, args: tuple[Any, ...], error: type[Exception]
) -> None:
    """The write is refused with the error for its cause, and neither node's state moved."""
    watcher = await world.second.attach(PathBoard, "k")
    before = (dict(watcher.state), watcher.version)
    write = await PATHS[path](world)
    with pytest.raises(error):
        await write(kind, args)
    assert (dict(await world.first.get(PathBoard, "k")), watcher.version) == before
    assert dict(watcher.state) == before[0]


@pytest.mark.parametrize("path", PATHS)
async def test_every_path_lets_a_good_write_through(world: World, path: str) -> None:
    """The same paths accept what the schema and the rule allow, with bob's identity."""
    write = await PATHS[path](world)
    await write("put", ("card:bob", {"text": "bob's", "by": "bob"}))
    assert await write("call", ("whoami", {})) == "bob"
    await write("call", ("remove", {"card": "bob"}))
    assert "card:bob" not in await world.second.get(PathBoard, "k")


async def test_a_forged_identity_in_a_frame_reaches_no_rule_or_action(world: World) -> None:
    """Bob's socket claims to be ann in every field a frame could carry: the rule and the
    action still see bob, the identity the endpoint's identify gave the socket."""
    peer = await world.open(world.ws, "?who=bob")
    attached = await peer.attach("PathBoard", "k")
    forged = {"identity": "ann", "caller": {"role": "group", "identity": "ann"}, "who": "ann"}
    reply = await peer.request("call", id=attached["id"], action="whoami", args={}, **forged)
    assert reply == {"type": "ok", "ref": reply["ref"], "result": "bob"}
    reply = await peer.request(
        "put", id=attached["id"], prop="card:ann", value={"text": "mine", "by": "ann"}, **forged
    )
    assert reply["code"] == "permission_denied"
    reply = await peer.request("call", id=attached["id"], action="remove", args={"card": "ann"})
    assert reply["code"] == "permission_denied"
    assert (await world.first.get(PathBoard, "k", "card:ann"))["by"] == "ann"
