"""A LIVESTATE_URL that names something other than a Redis server: one clear error that says
what answered, never a traceback, from a node and from `livestate inspect`."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from livestate import BackendUnavailableError, LiveState, Node

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Anything(LiveState):
    """A spec to attach with."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server's answer to a request it cannot parse."""
    await reader.read(100)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes that are no protocol at all, and the connection left open."""
    await reader.read(100)
    writer.write(b"\x00\x01\x02garbage\r\n")
    await writer.drain()
    await reader.read()  # until the client hangs up
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that accepts and never answers."""
    await reader.read()  # until the client hangs up
    writer.close()


@asynccontextmanager
async def peer(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free loopback port running `handler`; yields the port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()  # (each handler ends when its client hangs up)


@pytest.mark.parametrize(
    ("handler", "sent"), [(http, "'HTTP/1.1 400 Bad Request'"), (garbage, "garbage")]
)
async def test_a_node_on_a_port_that_is_not_redis_says_so_in_one_line(
    handler: Handler, sent: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Attaching raises BackendUnavailableError naming what the port sent; the node logs
    one line naming itself, and asyncio logs no protocol crash."""
    caplog.set_level(logging.DEBUG)
    async with peer(handler) as port:
        node = Node(f"redis://127.0.0.1:{port}?timeout=2")
        with pytest.raises(BackendUnavailableError) as raised:
            async with node:
                pass  # starting it is what fails
    message = str(raised.value)
    assert f"127.0.0.1:{port} does not speak the Redis protocol" in message
    assert sent in message and "check the host and port" in message
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.getMessage() for record in errors] == [
        f"node {node.id}: could not start: {message}"
    ]
    assert all(record.exc_info is None for record in caplog.records)


async def test_a_node_on_a_port_that_never_answers_says_how_long_it_waited() -> None:
    """A server that accepts and stays silent gives a reason, not an empty one."""
    async with peer(silent) as port:
        with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.5 s"):
            async with Node(f"redis://127.0.0.1:{port}?timeout=0.5") as node:
                await node.attach(Anything, "k")


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (http, "does not speak the Redis protocol (it sent 'HTTP/1.1 400 Bad Request')"),
        (silent, "did not answer within"),
    ],
)
async def test_inspect_on_a_port_that_is_not_redis_prints_one_line(
    handler: Handler, expected: str
) -> None:
    """`livestate inspect` exits non-zero with one line on stderr saying what answered."""
    async with peer(handler) as port:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "livestate", "inspect", f"redis://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("livestate inspect: ") and expected in lines[0]
