"""WebSocketLimitsMiddleware against a real uvicorn server and PyView app, over raw WebSockets."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, RejectConnection, Request

from livestate import InvalidValueError
from livestate.pyview import WebSocketLimitsMiddleware
from livestate.testing import free_port

from ..support.phoenix import LiveViewClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    """The chat example on one uvicorn process, with a 1 s join deadline and a cap of 3."""
    port = free_port()
    env = dict(
        os.environ,
        LIVESTATE_URL="memory://",
        LIVESTATE_JOIN_TIMEOUT="1",
        LIVESTATE_MAX_SOCKETS_PER_CLIENT="3",
    )
    command = [
        sys.executable, "-m", "uvicorn", "chat.app:app", "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("The chat example did not start.") from None
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


class RawSocket:
    """A WebSocket to /live/websocket that sends nothing unless told."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, url: str) -> bool:
        """Handshake; True if accepted."""
        host, port = url.removeprefix("http://").split(":")
        self.reader, self.writer = await asyncio.open_connection(host, int(port))
        self.writer.write(self.ws.send(Request(host=f"{host}:{port}", target="/live/websocket")))
        while True:
            for event in await self.events():
                if isinstance(event, AcceptConnection):
                    return True
                if isinstance(event, RejectConnection):
                    return False

    async def closed_by_server(self) -> int | None:
        """Wait for the server's close frame; its code, or None if the connection just ended."""
        while True:
            events = await self.events()
            if events is None:
                return None
            for event in events:
                if isinstance(event, CloseConnection):
                    return event.code

    async def events(self) -> Any:
        """The next WebSocket events from the server, or None at the end of the stream."""
        assert self.reader is not None
        data = await self.reader.read(65536)
        if not data:
            return None
        self.ws.receive_data(data)
        return list(self.ws.events())

    def close(self) -> None:
        """Drop the connection."""
        if self.writer is not None:
            self.writer.close()


async def test_idle_socket_is_closed_after_the_join_timeout(chat_url: str) -> None:
    """A WebSocket that never joins is closed with 1008, once its 1 s deadline has passed."""
    idle = RawSocket()
    try:
        assert await idle.open(chat_url)
        started = time.monotonic()
        code = await asyncio.wait_for(idle.closed_by_server(), 10)
        assert code == 1008
        assert time.monotonic() - started >= 0.8  # not before its deadline
    finally:
        idle.close()


async def test_cap_per_address_holds_and_a_joining_page_stays(chat_url: str) -> None:
    """With a cap of 3, a 4th socket from one address is refused; a page that joins stays open
    past the join deadline; once the idle ones close, a new page joins."""
    page = LiveViewClient(f"{chat_url}/rooms/guard")
    idle = [RawSocket(), RawSocket()]
    extra = RawSocket()
    try:
        assert await page.connect(chat_url)
        assert (await page.join())["status"] == "ok"
        for sock in idle:
            assert await sock.open(chat_url)
        assert not await extra.open(chat_url)  # the 4th from 127.0.0.1
        for sock in idle:
            assert await asyncio.wait_for(sock.closed_by_server(), 5) == 1008
        reply = await page.event("nick", "nick=still-here")  # past the deadline, still served
        assert reply["status"] == "ok"
        later = LiveViewClient(f"{chat_url}/rooms/guard")
        try:
            assert await later.connect(chat_url)
            assert (await later.join())["status"] == "ok"
        finally:
            await later.close()
    finally:
        await page.close()
        for sock in [*idle, extra]:
            sock.close()


def test_limits_are_checked() -> None:
    """A cap below 1 or a non-positive timeout raises InvalidValueError saying what is allowed."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(InvalidValueError, match="max_per_client"):
        WebSocketLimitsMiddleware(app, max_per_client=0)
    with pytest.raises(InvalidValueError, match="join_timeout"):
        WebSocketLimitsMiddleware(app, join_timeout=0)
