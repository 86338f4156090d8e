"""What the WebSocket endpoint's tests share: a real uvicorn server, and protocol clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from livestate.testing import free_port
from tests.support import eventually


@asynccontextmanager
async def serving(app: Any, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """Run `app` in a real uvicorn server in this loop (`options` go to its Config);
    yield its ws:// base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    await eventually(lambda: server.started or task.done(), within=10)
    assert server.started, "uvicorn did not start"
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Peer:
    """A protocol client: numbered requests, and the frames that arrive between replies."""

    def __init__(self, socket: ClientConnection, welcome: dict[str, Any]) -> None:
        self.socket = socket
        self.welcome = welcome
        self.ref = 0
        self.frames: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        """The next frame from the server."""
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), 5))
        return frame

    async def request(self, type: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply (ok, attached or error); keep the rest."""
        self.ref += 1
        ref = self.ref
        await self.socket.send(json.dumps({"type": type, "ref": ref, **fields}))
        return await self.reply(ref)

    async def reply(self, ref: object) -> dict[str, Any]:
        """Wait for the frame answering `ref`, keeping the frames before it."""
        while True:
            frame = await self.receive()
            if frame.get("ref") == ref and frame["type"] != "change":
                return frame
            self.frames.append(frame)

    async def raw(self, text: str | bytes) -> dict[str, Any]:
        """Send a raw message and return the next error frame."""
        await self.socket.send(text)
        while True:
            frame = await self.receive()
            if frame["type"] == "error":
                return frame
            self.frames.append(frame)

    async def change(self) -> dict[str, Any]:
        """The next change frame (kept ones first)."""
        for index, frame in enumerate(self.frames):
            if frame["type"] == "change":
                return self.frames.pop(index)
        while True:
            frame = await self.receive()
            if frame["type"] == "change":
                return frame
            self.frames.append(frame)

    async def attach(self, spec: str, key: str) -> dict[str, Any]:
        """Attach, failing the test unless the server says attached."""
        reply = await self.request("attach", spec=spec, key=key)
        assert reply["type"] == "attached", reply
        return reply


Open = Callable[..., Awaitable[Peer]]


@asynccontextmanager
async def peer_opener() -> AsyncIterator[Open]:
    """Opens protocol clients on `url + "/ws" + query`, reading each one's welcome frame;
    closes them all on leaving."""
    sockets: list[ClientConnection] = []

    async def open_peer(url: str, query: str = "", **options: Any) -> Peer:
        client = await connect(url + "/ws" + query, **options)
        sockets.append(client)
        welcome = json.loads(await asyncio.wait_for(client.recv(), 5))
        return Peer(client, welcome)

    try:
        yield open_peer
    finally:
        for each in sockets:
            await each.close()


class RawSocket:
    """A WebSocket client made by hand, which reads only when asked (and buffers little)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base: str, path: str = "/ws") -> RawSocket:
        """Connect with a 64 KiB receive buffer, fixed before connecting, and shake hands."""
        port = int(base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one masked text frame (a zero mask: the bytes go as they are)."""
        data = json.dumps(frame).encode()
        assert len(data) < 126
        self.writer.write(bytes([0x81, 0x80 | len(data)]) + b"\0\0\0\0" + data)
        await self.writer.drain()

    async def frame(self) -> tuple[int, Any, bytes]:
        """The next frame: its opcode, its JSON (for text) and its raw payload."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        payload = await asyncio.wait_for(self.reader.readexactly(length), 5)
        opcode = first & 0x0F
        return opcode, json.loads(payload) if opcode == 1 else None, payload
