"""A link: one connection to one server, opened on demand and dropped when it stalls.

resp.py's `Pipe` serves one fixed endpoint and turns every failure into
BackendUnavailableError. Cluster routing and Sentinel failover need the
pieces underneath instead: the open `Connection` itself (ASKING must travel
directly before its command, on the same connection), the raw connect error
(a refused connection is safe to retry elsewhere; a lost reply is not), and a
step after the login (ROLE check, script loading). A `Link` is that and no more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .fence import Fence
from .resp import Connection, Endpoint, connect

Prepare = Callable[[Connection], Awaitable[None]]
"""Runs on each new connection before any call uses it; raising refuses the connection."""


class Link:
    """One connection to the server at `endpoint`, opened by `open()` when needed.

    A call that waits longer than `timeout` for its reply drops the connection
    (its waiting calls fail with ConnectionError), so a frozen server cannot
    hold callers forever. `on_push` gets replies no call waits for (pub/sub).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        timeout: float,
        on_push: Callable[[Any], None] | None = None,
        prepare: Prepare | None = None,
        on_lost: Callable[[Connection], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._on_push = on_push
        self._prepare = prepare
        self._on_lost = on_lost
        self._connection: Connection | None = None
        self._opening: asyncio.Task[Connection] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self._fence = Fence()  # the next connection ends one dropped with calls in flight

    @property
    def connection(self) -> Connection | None:
        """The open connection, or None."""
        connection = self._connection
        if connection is not None and connection.closed.done():
            return None
        return connection

    async def open(self) -> Connection:
        """The open connection, or a new one (one attempt, shared by concurrent callers).

        Raises OSError or TimeoutError if the server cannot be reached in time,
        ReplyError if it refuses the login, whatever `prepare` raises, and
        RuntimeError once the link is closed.
        """
        if self._closed:
            raise RuntimeError(f"The link to {self.endpoint} is closed.")
        if (connection := self.connection) is not None:
            return connection
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())
            self._opening.add_done_callback(retrieve)
        return await asyncio.shield(self._opening)

    def drop(self, why: str) -> None:
        """Drop the connection now; its waiting calls fail with ConnectionError(why).

        From here on `connection` is None, though asyncio reports the loss a turn later.
        """
        connection, self._connection = self._connection, None
        if self._watchdog is not None:
            self._watchdog.cancel()
        if connection is not None:
            connection.abort(why)

    def close(self) -> None:
        """Drop the connection for good; `open()` then raises RuntimeError.

        A connection being opened is not cancelled (its waiters would see a
        CancelledError that is not theirs): it is dropped as it arrives, and
        they get the RuntimeError.
        """
        self._closed = True
        self.drop("closed the connection")

    async def _open(self) -> Connection:
        try:
            async with asyncio.timeout(self.timeout):
                connection = await connect(self.endpoint, self._on_push)
                self._fence.guard(connection)
                try:
                    if self._prepare is not None:
                        await self._prepare(connection)
                except BaseException:
                    connection.abort("closed the connection")
                    raise
        finally:
            self._opening = None
        if self._closed:
            connection.abort("closed the connection")
            raise RuntimeError(f"The link to {self.endpoint} is closed.")
        self._connection = connection
        connection.closed.add_done_callback(lambda _: self._lost(connection))
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(connection))
        return connection

    def _lost(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
            if self._watchdog is not None:
                self._watchdog.cancel()
        if self._on_lost is not None and not self._closed:
            self._on_lost(connection)

    async def _watch(self, connection: Connection) -> None:
        """Drop the connection when its oldest call has waited longer than the timeout."""
        loop = asyncio.get_running_loop()
        while not connection.closed.done():
            await asyncio.sleep(self.timeout / 8)
            oldest = connection.oldest()
            if oldest is not None and loop.time() - oldest > self.timeout:
                connection.abort(f"did not answer within {self.timeout}s")
                return


def retrieve(future: asyncio.Future[Any]) -> None:
    """A done-callback that marks a future's exception as retrieved.

    For futures whose failure someone else reports (or that nobody awaits), so
    that asyncio does not log "exception was never retrieved".
    """
    if not future.cancelled():
        future.exception()
