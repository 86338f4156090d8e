"""The sharded pub/sub connection of a cluster's Router to one primary, and its channels.

The Router (topology.py) keeps one per primary that owns a subscribed channel's
slot. It subscribes and unsubscribes, passes each message on, pings, and tells the
Router when a channel must be placed again: the server let it go (its slot moved
away), or the connection dropped (its messages may have been missed).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .link import Link, retrieve
from .resp import Connection, ReplyError
from .slots import key_slot

if TYPE_CHECKING:
    from .topology import Router


class ShardSubscriber:
    """The sharded pub/sub connection to one primary, and the channels it holds.

    A pub/sub connection waits for no reply, so a frozen server would leave it
    silently stale: it sends PING every quarter `timeout` and drops the
    connection (resyncing its channels) when one goes unanswered for `timeout`.
    """

    def __init__(self, router: Router, address: str) -> None:
        self.router = router
        self.address = address
        self.channels: set[str] = set()  # confirmed here
        self.pending: dict[str, asyncio.Future[None]] = {}  # asked for, not yet confirmed
        self.leaving: set[str] = set()  # SUNSUBSCRIBE sent by us, not yet confirmed
        self.link = Link(
            router.endpoint(address), router.timeout, self.on_push, on_lost=self.on_lost
        )
        self._checking: asyncio.Task[None] | None = None
        self._ping_sent: float | None = None
        self._closed = False

    def close(self) -> None:
        """Drop the connection for good."""
        self._closed = True
        if self._checking is not None:
            self._checking.cancel()
        self.link.close()

    def on_push(self, reply: Any) -> None:
        # A message first: nearly every push is one.
        if type(reply) is list and len(reply) == 3 and reply[0] == "smessage":
            if reply[1] in self.channels:
                self.router.on_message(reply[1], reply[2])
            return
        if isinstance(reply, ReplyError):
            self.on_error(str(reply))
            return
        if reply == "PONG" or (isinstance(reply, list) and reply and reply[0] == "pong"):
            self._ping_sent = None
            return
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel = reply[0], reply[1]
        if kind == "ssubscribe":
            self.channels.add(channel)
            future = self.pending.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "sunsubscribe":
            if channel in self.leaving:
                self.leaving.discard(channel)
            elif channel in self.channels:
                # The server let go: the slot moved away. Find the new owner and resync.
                self.channels.discard(channel)
                self.router.replace(channel, refresh=True)

    def on_error(self, text: str) -> None:
        """An error reply to an SSUBSCRIBE: MOVED (the slot is elsewhere) or a refusal."""
        code, _, rest = text.partition(" ")
        slot = int(rest.split()[0]) if code in ("MOVED", "ASK") else None
        for channel, future in list(self.pending.items()):
            if slot is None or key_slot(channel) == slot:
                del self.pending[channel]
                if not future.done():
                    future.set_exception(ReplyError(text))
                if slot is None:
                    return  # one refusal answers one SSUBSCRIBE: the oldest

    def on_lost(self, connection: Connection) -> None:
        """The connection dropped: every channel it held may have missed messages."""
        lost, self.channels = self.channels, set()
        self.leaving.clear()
        self._ping_sent = None
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(connection.why))
        self.pending.clear()
        for channel in lost:
            self.router.replace(channel, refresh=True)

    async def subscribe(self, channel: str) -> None:
        """SSUBSCRIBE here and wait for the confirmation (or the error) of it."""
        connection = await self.link.open()
        if self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._check())
        future = self.pending.get(channel)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(retrieve)
            self.pending[channel] = future
            self.leaving.discard(channel)
            connection.write(("SSUBSCRIBE", channel))
        await asyncio.shield(future)

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.router.timeout
        while not self._closed:
            await asyncio.sleep(timeout / 4)
            connection = self.link.connection
            if connection is None:
                self._ping_sent = None
            elif self._ping_sent is None:
                self._ping_sent = loop.time()
                connection.write(("PING",))
            elif loop.time() - self._ping_sent > timeout:
                self._ping_sent = None
                connection.abort(f"did not answer PING within {timeout}s")

    def unsubscribe(self, channel: str) -> None:
        """SUNSUBSCRIBE here, not waiting for the confirmation."""
        connection = self.link.connection
        self.channels.discard(channel)
        if connection is not None:
            self.leaving.add(channel)
            connection.write(("SUNSUBSCRIBE", channel))
