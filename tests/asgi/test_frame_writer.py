"""Frames written past uvicorn's `send` (livestate.asgi._uvicorn), over a real uvicorn server.

Under uvicorn's websockets-sansio protocol, a socket that negotiated no
extension gets its frames as bytes built once per change and written to its
transport; a compressed socket, a paused or closing one, and any other server
go through ASGI `send` as before. What a client receives must not change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from livestate import LiveState, MemoryBackend, Node
from livestate.asgi import LiveStateEndpoint
from livestate.asgi._uvicorn import Frames, FrameWriter, frame_writer
from tests.support import eventually
from tests.support.asgi import RawSocket, serving


class Board(LiveState):
    name = "WriterBoard"
    acl = {"group": "all", "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"text": ""}


class KeepSend:
    """ASGI middleware that keeps each connection's `send`, handing the app the same one."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sends: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Keep `send`, then pass the connection on untouched."""
        self.sends.append(send)
        await self.app(scope, receive, send)


class Written:
    """Counts the frames FrameWriter wrote itself (and not through `send`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        write = FrameWriter.write

        def counting(writer: FrameWriter, text: str) -> bool:
            wrote = write(writer, text)
            self.count += wrote
            return wrote

        monkeypatch.setattr(FrameWriter, "write", counting)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A node on its own memory backend."""
    async with Node(backend=MemoryBackend()) as node:
        yield node


@pytest.fixture
async def served(node: Node) -> AsyncIterator[tuple[str, KeepSend]]:
    """The endpoint, exposing Board, on a real uvicorn server, with each socket's `send` kept."""
    app = KeepSend(LiveStateEndpoint([Board], node=node))
    async with serving(app) as base:
        yield base, app


async def attached(base: str, **options: Any) -> ClientConnection:
    """A socket attached to Board 'wall', past its welcome and attached frames."""
    socket = await connect(f"{base}/ws", max_size=1 << 24, **options)
    assert json.loads(await socket.recv())["type"] == "welcome"
    await socket.send(
        json.dumps({"type": "attach", "ref": 1, "spec": "WriterBoard", "key": "wall"})
    )
    while json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] != "attached":
        pass
    return socket


async def texts(socket: ClientConnection, count: int) -> list[str]:
    """The values of the next `count` change frames."""
    values: list[str] = []
    while len(values) < count:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 5))
        if frame["type"] == "change":
            values.append(frame["value"])
    return values


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_built_frame_is_the_frame_websockets_builds(size: int) -> None:
    """Frames.build gives the bytes of websockets' own unmasked text frame, for every length
    encoding (7-bit, 16-bit, 64-bit) and for text that is not ASCII."""
    for text in ("a" * size, ("é" * size)[: max(size // 2, 0)]):
        expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        assert Frames().build(text) == expected


def test_a_frame_is_built_once_for_the_same_text() -> None:
    """Handing the same string again returns the bytes already built; another string, new ones."""
    frames = Frames()
    text = json.dumps({"type": "change", "value": "x" * 300})
    first = frames.build(text)
    assert frames.build(text) is first
    assert frames.build(text + " ") != first


async def test_changes_reach_plain_sockets_through_the_writer_intact_and_in_order(
    served: tuple[str, KeepSend], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uncompressed sockets get every change, large and not ASCII ones included, in
    order and byte for byte, and the writer (not `send`) carried them."""
    base, _ = served
    written = Written(monkeypatch)
    sockets = [await attached(base, compression=None) for _ in range(2)]
    try:
        values = [f"{n} é {'x' * (n * 7000)}" for n in range(12)]  # up to 77 KB
        for value in values:
            await node.put(Board, "wall", "text", value, role="group")
        for socket in sockets:
            assert await texts(socket, len(values)) == values
        assert written.count >= 2 * len(values)
    finally:
        for socket in sockets:
            await socket.close()


async def test_a_compressed_socket_goes_through_uvicorns_send(
    served: tuple[str, KeepSend], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket that negotiated permessage-deflate gets no writer (its frames are compressed
    by uvicorn, per socket) and still receives every change; a plain one beside it gets one."""
    base, app = served
    written = Written(monkeypatch)
    compressed = await attached(base)  # websockets offers permessage-deflate by default
    plain = await attached(base, compression=None)
    try:
        assert compressed.protocol.extensions, "the client should have negotiated compression"
        compressed_send, plain_send = app.sends
        assert frame_writer(compressed_send, Frames()) is None
        assert isinstance(frame_writer(plain_send, Frames()), FrameWriter)
        written.count = 0
        await node.put(Board, "wall", "text", "squeezed " * 1000, role="group")
        assert await texts(compressed, 1) == ["squeezed " * 1000]
        assert await texts(plain, 1) == ["squeezed " * 1000]
        assert written.count == 1, "the writer should carry the plain socket's frame alone"
    finally:
        await compressed.close()
        await plain.close()


async def test_a_server_without_compression_writes_for_clients_that_offer_it(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `ws_per_message_deflate=False` a client offering compression (as browsers do)
    negotiates none, so its frames go through the writer."""
    written = Written(monkeypatch)
    app = KeepSend(LiveStateEndpoint([Board], node=node))
    async with serving(app, ws_per_message_deflate=False) as base:
        socket = await attached(base)  # offers permessage-deflate
        try:
            assert not socket.protocol.extensions
            written.count = 0
            await node.put(Board, "wall", "text", "plain", role="group")
            assert await texts(socket, 1) == ["plain"]
            assert written.count == 1
        finally:
            await socket.close()


async def test_a_closed_socket_declines(
    served: tuple[str, KeepSend],
) -> None:
    """Once the peer has closed, the writer declines every frame (so `send`, which reports
    the disconnect, is used)."""
    base, app = served
    socket = await attached(base, compression=None)
    writer = frame_writer(app.sends[0], Frames())
    assert writer is not None
    await socket.close()
    await eventually(lambda: not writer.write('{"type":"late"}'), within=5)


async def test_a_paused_transport_declines_until_the_reader_catches_up(
    served: tuple[str, KeepSend], node: Node
) -> None:
    """A reader too slow for its buffers pauses uvicorn's writing: the writer then declines
    (so `send` waits, keeping order), and writes again once the reader drained the socket."""
    base, app = served
    raw = await RawSocket.open(base)
    try:
        assert (await raw.frame())[1]["type"] == "welcome"
        await raw.send({"type": "attach", "ref": 1, "spec": "WriterBoard", "key": "wall"})
        while (await raw.frame())[1]["type"] != "attached":
            pass
        writer = frame_writer(app.sends[0], Frames())
        assert writer is not None
        padding = "p" * 200_000
        sent = 0
        while writer.protocol.writable.is_set() and sent < 200:  # 40 MB at most
            await node.put(Board, "wall", "text", f"{sent} {padding}", role="group")
            sent += 1
            await asyncio.sleep(0)
        assert not writer.protocol.writable.is_set(), "the transport never paused"
        assert not writer.write('{"type":"late"}')
        got: list[int] = []
        while len(got) < sent:
            frame = (await raw.frame())[1]
            if frame["type"] == "change":
                got.append(int(frame["value"].split()[0]))
        assert got == list(range(sent)), "every change, in order, through both paths"
        await eventually(lambda: writer.protocol.writable.is_set(), within=5)
    finally:
        raw.writer.close()
        await raw.writer.wait_closed()


async def test_other_servers_sends_get_no_writer() -> None:
    """A `send` that is not uvicorn's websockets-sansio protocol's gets None: ASGI as usual."""

    async def send(message: Any) -> None:
        """An ASGI send of another server."""

    class Protocol:
        handshake_complete = True

        async def send(self, message: Any) -> None:
            """A bound method that is not uvicorn's."""

    assert frame_writer(send, Frames()) is None
    assert frame_writer(Protocol().send, Frames()) is None
