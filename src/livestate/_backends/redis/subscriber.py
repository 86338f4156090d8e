"""The pub/sub connection of one node to one server (standalone, or the primary the
Sentinels name): subscribe, resubscribe after a reconnect, ping, notice silence.

On a cluster the Router (topology.py) keeps one such connection per shard instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..base import Listener
from .resp import BACKOFF, Connection, Endpoint, ReplyError, connect


@dataclass(slots=True, eq=False)
class Subscription:
    """The local listeners of one live state's channel, and where its subscription is."""

    name: str
    listeners: list[Listener] = field(default_factory=list)
    confirmed: asyncio.Future[None] | None = None
    resubscribed: bool = False  # the next confirmation follows a reconnect: resync then


class Subscriber:
    """A node's one pub/sub connection: subscribes, reconnects, resubscribes, pings.

    `where()` says which server to connect to now; `subscriptions()` lists what
    to subscribe after a (re)connect; `on_message(channel, data)` and
    `on_confirmed(channel)` get what arrives; `on_reconnect()` is called when a
    lost connection is opened again. Messages and confirmations are handled in
    `data_received`, with no task in between.
    """

    def __init__(
        self,
        where: Callable[[], Awaitable[Endpoint]],
        subscriptions: Callable[[], Iterable[Subscription]],
        on_message: Callable[[str, Any], None],
        on_confirmed: Callable[[str], None],
        on_reconnect: Callable[[], None],
        heartbeat: float,
        timeout: float,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        server: object,
    ) -> None:
        self._where = where
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_confirmed = on_confirmed
        self._on_reconnect = on_reconnect
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._log = log
        self._server = server
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._last = 0.0
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

    def add(self, subscription: Subscription) -> None:
        """Subscribe now if connected (a confirmation will come), else at the reconnect."""
        if self._connection is not None:
            subscription.confirmed = self._loop.create_future()
            self._connection.write(("SSUBSCRIBE", subscription.name))
        # Not connected: the reconnect subscribes it; nobody waits for a confirmation now.

    def remove(self, subscription: Subscription) -> None:
        """Unsubscribe, if connected (a reconnect subscribes only what is still wanted)."""
        if self._connection is not None:
            self._connection.write(("SUNSUBSCRIBE", subscription.name))

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
                    self._on_reconnect()
                for subscription in self._subscriptions():
                    if not first:
                        subscription.resubscribed = True
                    if subscription.confirmed is None or subscription.confirmed.done():
                        subscription.confirmed = self._loop.create_future()
                    connection.write(("SSUBSCRIBE", subscription.name))
                failures = 0
                self._last = self._loop.time()
                pinger = self._loop.create_task(self._ping(connection))
                try:
                    await connection.closed
                finally:
                    pinger.cancel()
                    self._connection = None
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
            for subscription in self._subscriptions():
                subscription.resubscribed = True
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    def _push(self, reply: Any) -> None:
        """Take one message, confirmation or error from the pub/sub connection; never raise."""
        self._last = self._loop.time()
        if type(reply) is not list or not reply:
            if isinstance(reply, ReplyError):
                # BUSY, LOADING … in answer to a PING: the server is alive, just not idle.
                self._log.debug("livestate's pub/sub connection got %s", reply)
            return
        kind = reply[0]
        if kind == "smessage" and len(reply) == 3:
            self._on_message(reply[1], reply[2])
        elif kind == "ssubscribe" and len(reply) == 3:
            self._on_confirmed(reply[1])

    async def _ping(self, connection: Connection) -> None:
        """Ping, and drop a connection that stays silent: it may be half-open."""
        heartbeat = self._heartbeat
        while True:
            await asyncio.sleep(heartbeat)
            if self._loop.time() - self._last > heartbeat + self._timeout:
                connection.abort("went silent")
                return
            connection.write(("PING",))
