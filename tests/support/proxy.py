"""A TCP proxy on 127.0.0.1 that can lose a reply on its way back: a real network fault."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class Proxy:
    """Forwards 127.0.0.1:`port` to a server, with two faults to arm.

    `lose_reply_to(marker)`: the first connection whose client sends bytes
    containing `marker` has the server's next bytes swallowed and both sides
    closed: the server did the work, and the client never hears of it.
    `pubsub_delay`: seconds by which everything the server sends on a pub/sub
    connection (one whose client subscribed) is held back, as on a slow link.
    `cut()` holds every byte both ways, on every connection, until `mend()`: a
    network partition (what was held is delivered after it, as TCP would, unless
    `sever()` closed the connections first).
    """

    def __init__(self, target_port: int, pubsub_delay: float = 0.0) -> None:
        self.target_port = target_port
        self.pubsub_delay = pubsub_delay
        self.port = 0
        self.marker: bytes | None = None
        self.lost = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def retarget(self, port: int) -> None:
        """Send new connections to `port` from now on (as a DNS name moved on failover);
        the connections already open stay where they are."""
        self.target_port = port

    def lose_reply_to(self, marker: bytes) -> None:
        """Arm the fault for the next request that contains `marker`."""
        self.marker = marker

    def cut(self) -> None:
        """Partition: hold all traffic, both ways, until `mend()`."""
        self._open.clear()

    def sever(self) -> None:
        """Close every connection now, dropping the bytes held by a cut: what was sent
        during the cut never arrives."""
        for task in list(self._tasks):
            task.cancel()

    def mend(self) -> None:
        """End the partition: traffic flows again."""
        self._open.set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        doomed = asyncio.Event()
        pubsub = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                await self._open.wait()
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    doomed.set()
                if b"SUBSCRIBE" in data:
                    pubsub.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            loop = asyncio.get_running_loop()
            while data := await up_reader.read(65536):
                await self._open.wait()
                if doomed.is_set():
                    self.lost += 1
                    break  # the reply is lost, and the connection with it
                if pubsub.is_set() and self.pubsub_delay:
                    # In order, each chunk `pubsub_delay` late.
                    loop.call_later(self.pubsub_delay, writer.write, data)
                    continue
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(tasks)
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            self._tasks.discard(task)
        for stream in (writer, up_writer):
            stream.close()
