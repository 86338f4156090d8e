"""A connection that follows the primary: through Sentinel, or a managed endpoint's name.

The seam `standalone.SentinelTransport` uses:

    service, settings = urls.parse_sentinel_url(url, settings)  # redis+sentinel://…/SERVICE
    pipe = PrimaryPipe(Sentinels(service, timeout).primary, timeout)
    await pipe.call(*args)        # one command at the primary
    endpoint = await pipe.resolve()  # where the primary is now (for a pub/sub connection)
    pipe.follow(Sentinels(...))   # optional: leave on +switch-master, before a READONLY
    await pipe.aclose()

For a managed service whose one DNS name moves to the new primary on failover
(ElastiCache, MemoryDB, Memorystore, Azure Cache), `PrimaryPipe(fixed(endpoint),
timeout)` does the same with the name resolved again on each connect.

How the primary is followed:

- Every new connection asks ROLE; one that is not `master` is dropped and the
  primary looked up again, until `timeout`.
- READONLY, LOADING or MASTERDOWN to a command: the node is not a usable
  primary now (a failover demoted it, or it is loading). The command did not
  run, so the connection is dropped, the primary looked up again and the
  command sent there, until `timeout`.
- A connection lost after a command left: the command may have run, so it is
  not retried; BackendUnavailableError says so and the next call reconnects.
- With `follow(sentinels)`, the pipe listens for `+switch-master` on the
  Sentinels and drops the connection at once, without waiting for a READONLY.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from ..._exceptions import BackendUnavailableError
from ..._retry import Backoff, delay
from .errors import RECONNECT
from .link import Link
from .resp import Connection, Endpoint, ReplyError, connect
from .urls import SentinelService

RETRYING = Backoff((0.05, 0.1, 0.2, 0.5))
"""How long to wait before each new attempt to reach the primary (or a Sentinel)."""

NOT_PRIMARY = ("READONLY", "LOADING", "MASTERDOWN")
"""Error codes that mean the node cannot take writes now, and the command did not run."""

Resolve = Callable[[], Awaitable[Endpoint]]
"""Finds where the primary is now; raises BackendUnavailableError if it cannot."""


class Sentinels:
    """The Sentinels of one service: ask them where its primary is, or hear of a switch."""

    def __init__(self, service: SentinelService, timeout: float) -> None:
        self.service = service
        self.timeout = timeout
        self._order = list(service.sentinels)  # the last one that answered goes first

    async def primary(self) -> Endpoint:
        """The primary's endpoint, as the first Sentinel that knows the service says.

        Raises BackendUnavailableError if none answers.
        """
        errors = []
        for sentinel in list(self._order):
            try:
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    connection = await connect(sentinel)
                    try:
                        reply = await connection.send(
                            ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service.name)
                        )
                    finally:
                        connection.abort("closed the connection")
            except (OSError, TimeoutError, ConnectionError, ReplyError) as error:
                errors.append(f"{sentinel}: {error or type(error).__name__}")
                continue
            if not reply:
                errors.append(f"{sentinel}: does not know the service")
                continue
            self._order.remove(sentinel)
            self._order.insert(0, sentinel)
            host, port = reply
            return dataclasses.replace(self.service.primary, host=host, port=int(port))
        raise BackendUnavailableError(
            f"No Sentinel named the primary of service {self.service.name!r} "
            f"({'; '.join(errors)}). Check the Sentinel addresses and the service name in "
            "LIVESTATE_URL."
        )

    def watch(self, on_switch: Callable[[Endpoint], None]) -> asyncio.Task[None]:
        """Listen for `+switch-master` of this service on a Sentinel, calling `on_switch`
        with the new primary; reconnects (to the next Sentinel) until the task is cancelled."""
        return asyncio.get_running_loop().create_task(self._watch(on_switch))

    async def _watch(self, on_switch: Callable[[Endpoint], None]) -> None:
        attempt = 0
        while True:
            for sentinel in list(self._order):

                def push(reply: Any) -> None:
                    if isinstance(reply, list) and reply[:2] == ["message", "+switch-master"]:
                        name, _, _, host, port = str(reply[2]).split()
                        if name == self.service.name:
                            on_switch(
                                dataclasses.replace(self.service.primary, host=host, port=int(port))
                            )

                try:
                    async with asyncio.timeout(min(self.timeout, 1.0)):
                        connection: Connection = await connect(sentinel, push)
                except (OSError, TimeoutError, ReplyError):
                    continue
                attempt = 0
                connection.write(("SUBSCRIBE", "+switch-master"))
                try:
                    await connection.closed
                finally:
                    connection.abort("closed the connection")
            attempt += 1
            await asyncio.sleep(delay(RETRYING, attempt))


def fixed(endpoint: Endpoint) -> Resolve:
    """A resolver for one address whose name the service moves on failover (its DNS name
    is looked up again at each connect)."""

    async def resolve() -> Endpoint:
        return endpoint

    return resolve


class _NotPrimaryError(Exception):
    """A new connection reached a node whose ROLE is not master."""


async def _check_role(connection: Connection) -> None:
    role = await connection.send(("ROLE",))
    if not role or role[0] != "master":
        raise _NotPrimaryError(f"its ROLE is {role[0] if role else 'unknown'}, not master")


class PrimaryPipe:
    """One command connection to whatever node is the primary now.

    `resolve` says where the primary is (Sentinels, or a fixed name); `timeout`
    bounds each call, its retries included. See the module docstring for what
    is retried and what is not.
    """

    def __init__(self, resolve: Resolve, timeout: float) -> None:
        self._resolve = resolve
        self.timeout = timeout
        self._link: Link | None = None
        self._closed = False
        self._watch: asyncio.Task[None] | None = None
        self.reconnects = 0  # how many connections were opened (for tests)
        self.switches = 0  # how many +switch-master were heard (for tests)
        self.answers: collections.Counter[str] = collections.Counter()  # error codes handled

    async def resolve(self) -> Endpoint:
        """Where the primary is now. Raises BackendUnavailableError if that is not known."""
        return await self._resolve()

    async def call(self, *args: Any) -> Any:
        """Send one command to the primary and return its reply.

        Raises BackendUnavailableError if no primary took it within the timeout,
        or if the connection dropped after it left (it may have run); ReplyError
        for any other error reply; RuntimeError once closed.
        """
        link = self._link
        connection = link.connection if link is not None else None
        if connection is None:
            return await self._call(args, None)
        try:
            return await connection.send(args)
        except ReplyError as error:
            return await self._call(args, error)
        except ConnectionError as lost:
            raise self._lost(str(lost)) from None

    def drop(self, why: str) -> None:
        """Drop the connection (the next call looks the primary up again)."""
        if self._link is not None:
            self._link.drop(why)

    def follow(self, sentinels: Sentinels) -> None:
        """Hear `+switch-master` from `sentinels` and leave the old primary at once, so
        that the next call goes to the new one without meeting a READONLY first."""
        if self._watch is None:
            self._watch = sentinels.watch(self._switched)

    def _switched(self, primary: Endpoint) -> None:
        self.switches += 1
        if self._link is not None and self._link.endpoint != primary:
            self.drop(f"is no longer the primary (the Sentinels chose {primary})")

    async def aclose(self) -> None:
        """Close the connection (and stop following the Sentinels); later calls raise
        RuntimeError."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        if self._link is not None:
            self._link.close()

    async def _call(self, args: tuple[Any, ...], error: ReplyError | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 0
        why = ""
        while True:
            if error is not None:
                code = str(error).partition(" ")[0]
                if code not in NOT_PRIMARY:
                    if code in RECONNECT:  # UNBLOCKED: not retried, but the next call reconnects
                        self.drop(f"answered {code}")
                    raise error
                self.answers[code] += 1
                self.drop(f"is not the primary now ({code})")
                why = f"answered {error}"
                error = None
                attempt += 1
                await self._pause(loop, deadline, attempt, why)
            try:
                async with asyncio.timeout_at(deadline):
                    connection = await self._connect()
            except (OSError, TimeoutError, ReplyError, _NotPrimaryError) as failure:
                attempt += 1
                why = f"could not be used ({failure or type(failure).__name__})"
                await self._pause(loop, deadline, attempt, why)
                continue
            except BackendUnavailableError as failure:
                attempt += 1
                await self._pause(loop, deadline, attempt, str(failure))
                continue
            try:
                return await connection.send(args)
            except ReplyError as reply:
                error = reply
            except ConnectionError as lost:
                raise self._lost(str(lost)) from None

    async def _connect(self) -> Connection:
        if self._closed:
            raise RuntimeError("This livestate Redis connection is closed; create a new Node.")
        if self._link is not None and (connection := self._link.connection) is not None:
            return connection
        endpoint = await self._resolve()
        if self._link is None or self._link.endpoint != endpoint:
            if self._link is not None:
                self._link.close()
            self._link = Link(endpoint, self.timeout, prepare=_check_role)
        try:
            connection = await self._link.open()
        except RuntimeError:
            if self._closed:
                raise
            # Another call moved to a newer primary while this one connected: retry.
            raise ConnectionResetError(f"the link to {endpoint} was replaced") from None
        self.reconnects += 1
        return connection

    def _lost(self, why: str) -> BackendUnavailableError:
        where = self._link.endpoint if self._link is not None else "(unknown)"
        return BackendUnavailableError(
            f"The Redis primary at {where} {why}; the command may have run. It is looked up "
            "again on the next call; retry."
        )

    async def _pause(self, loop: Any, deadline: float, attempt: int, why: str) -> None:
        pause = delay(RETRYING, attempt)
        if loop.time() + pause > deadline:
            where = self._link.endpoint if self._link is not None else "(unknown)"
            raise BackendUnavailableError(
                f"No Redis primary took the command within {self.timeout}s: the last one "
                f"tried, {where}, {why}. Check that a primary is up, then retry."
            )
        await asyncio.sleep(pause)
