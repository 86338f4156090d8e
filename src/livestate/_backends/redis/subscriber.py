"""The pub/sub connection of one node to one server (standalone, or the primary the
Sentinels name): subscribe, resubscribe after a reconnect, ping, notice silence.

On a cluster the Router keeps one such connection per shard instead (shards.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..._retry import delay
from .resp import RECONNECTING, Connection, Endpoint, ReplyError, connect
from .transport import Events, Log


class Subscriber:
    """A node's one pub/sub connection: subscribes, reconnects, resubscribes, pings.

    `where()` says which server to connect to now; what arrives goes to `events`
    (see `transport.Events`): a channel subscribed again after a reconnect is told
    by `resync`, so that its state is read after the server confirmed it. Messages
    and confirmations are handled in `data_received`, with no task in between.
    """

    def __init__(
        self,
        where: Callable[[], Awaitable[Endpoint]],
        events: Events,
        heartbeat: float,
        timeout: float,
        log: Log,
        server: object,
    ) -> None:
        self._where = where
        self._events = events
        self._message = events.message  # per message: one lookup less
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._log = log
        self._server = server
        # Each wanted channel, and whether the server confirmed it on this connection.
        self._channels: dict[str, bool] = {}
        self._missed: set[str] = set()  # lost with a connection: resync once confirmed again
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False

    def start(self) -> None:
        """Connect and subscribe, in a task that reconnects until `aclose`."""
        self._task = self._loop.create_task(self._run())

    async def aclose(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closed = True
        if self._connection is not None:
            self._connection.abort("closed the connection")
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)

    def drop(self, why: str) -> None:
        """Drop the connection: the subscriber reconnects (to the primary now), resubscribes
        and has every live state resync."""
        if self._connection is not None:
            self._connection.abort(why)

    def add(self, channel: str) -> None:
        """Subscribe now if connected (a confirmation will come), else at the reconnect."""
        self._channels[channel] = False
        if self._connection is not None:
            self._connection.write(("SSUBSCRIBE", channel))

    def remove(self, channel: str) -> None:
        """Unsubscribe, if connected (a reconnect subscribes only what is still wanted)."""
        self._channels.pop(channel, None)
        self._missed.discard(channel)
        if self._connection is not None:
            self._connection.write(("SUNSUBSCRIBE", channel))

    def subscribed(self, channel: str) -> bool:
        """Whether the server confirmed `channel` on the connection open now."""
        return self._channels.get(channel, False)

    async def _run(self) -> None:
        failures = 0
        first = True
        while not self._closed:
            try:
                async with asyncio.timeout(self._timeout):
                    connection = await connect(await self._where(), self._push)
            except Exception as error:
                self._log.warning(
                    "livestate could not open its pub/sub connection to %s (%s); retrying",
                    self._server,
                    error,
                )
            else:
                if self._closed:
                    connection.abort("closed the connection")
                    return
                self._connection = connection
                if not first:
                    self._events.reconnected()
                    self._missed.update(self._channels)
                for channel in self._channels:
                    connection.write(("SSUBSCRIBE", channel))
                failures = 0
                pinger = self._loop.create_task(self._ping(connection))
                try:
                    await connection.closed
                finally:
                    pinger.cancel()
                    self._connection = None
                    self._channels = dict.fromkeys(self._channels, False)
                why = connection.why  # how it ended, before abort() below rewrites it
                connection.abort("closed the connection")
                if self._closed:
                    return
                self._log.warning(
                    "livestate lost its pub/sub connection to %s (it %s); reconnecting",
                    self._server,
                    why,
                )
            first = False
            self._missed.update(self._channels)
            failures += 1
            await asyncio.sleep(delay(RECONNECTING, failures))

    def _push(self, reply: Any) -> None:
        """Take one message, confirmation or error from the pub/sub connection; never raise."""
        if type(reply) is not list or len(reply) != 3:
            if isinstance(reply, ReplyError):
                # BUSY, LOADING … in answer to a PING: the server is alive, just not idle.
                self._log.debug("livestate's pub/sub connection got %s", reply)
            return
        kind = reply[0]
        if kind == "smessage":
            self._message(reply[1], reply[2])
        elif kind == "ssubscribe":
            channel = reply[1]
            if channel not in self._channels:
                return  # unsubscribed meanwhile
            self._channels[channel] = True
            if channel in self._missed:
                self._missed.discard(channel)
                self._events.resync(channel)
            else:
                self._events.confirmed(channel)

    async def _ping(self, connection: Connection) -> None:
        """Ping, and drop a connection that stays silent: it may be half-open."""
        heartbeat = self._heartbeat
        while True:
            await asyncio.sleep(heartbeat)
            if self._loop.time() - connection.heard > heartbeat + self._timeout:
                connection.abort("went silent")
                return
            connection.write(("PING",))
