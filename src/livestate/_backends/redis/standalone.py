"""Transports to one primary: a standalone server (or a managed service's endpoint), and
the primary that Sentinels name.

Both have one pipelined command connection and one pub/sub connection
(`subscriber.Subscriber`). Every key is on the one primary, so a call's key only
says which live state it is for. WAIT counts the replicas that have the writes of
the connection it is sent on: a write confirmed on another connection (the pipe
reconnected between the two) counts as not confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from .resp import Endpoint, Pipe
from .sentinel import PrimaryPipe, Resolve, Sentinels, fixed
from .subscriber import Subscriber
from .transport import Events, Log, Transport
from .urls import SentinelService


class PrimaryTransport(Transport):
    """Commands over `pipe` to the one primary it reaches, and a pub/sub connection to the
    primary `where()` names at each (re)connect. `server` names it in messages."""

    def __init__(
        self,
        pipe: Pipe | PrimaryPipe,
        where: Resolve,
        server: str,
        timeout: float,
        heartbeat: float,
        events: Events,
        log: Log,
    ) -> None:
        self.server = server
        self._pipe = pipe
        self._subscriber = Subscriber(where, events, heartbeat, timeout, log, server)

    async def start(self) -> None:
        pass  # the pipe connects on its first call

    def listen(self) -> None:
        self._subscriber.start()

    async def aclose(self) -> None:
        await self._subscriber.aclose()
        await self._pipe.aclose()

    def call(self, key: str | int, *command: Any) -> Awaitable[Any]:
        return self._pipe.call(*command)

    async def call_and_wait(
        self, key: str | int, command: tuple[Any, ...], replicas: int, milliseconds: int
    ) -> tuple[Any, int]:
        pipe = self._pipe
        before = pipe.reconnects
        reply = await pipe.call(*command)
        if type(reply) is not str:
            return reply, 0  # refused: nothing to wait for
        copies: int = await pipe.call("WAIT", replicas, milliseconds)
        return reply, copies if pipe.reconnects == before else 0

    async def load_script(self, source: str) -> str:
        sha: str = await self._pipe.call("SCRIPT", "LOAD", source)
        return sha

    def primaries(self) -> list[str | int]:
        return [""]

    def subscribe(self, channel: str) -> None:
        self._subscriber.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscriber.remove(channel)

    def subscribed(self, channel: str) -> bool:
        return self._subscriber.subscribed(channel)


class StandaloneTransport(PrimaryTransport):
    """One server at a fixed address, over `resp.Pipe`.

    The address may be a managed service's endpoint whose name moves to the new
    primary on failover: the pipe drops its connection on a reply that says the node
    is no longer a usable primary (READONLY and the like), and the subscriber
    reconnects when its connection drops, so both resolve the name again.
    """

    def __init__(
        self, endpoint: Endpoint, timeout: float, heartbeat: float, events: Events, log: Log
    ) -> None:
        pipe = Pipe(endpoint, timeout)
        super().__init__(pipe, fixed(endpoint), str(endpoint), timeout, heartbeat, events, log)


class SentinelTransport(PrimaryTransport):
    """The primary the Sentinels of a service name, over `sentinel.PrimaryPipe`.

    Each new connection asks the Sentinels where the primary is and checks ROLE;
    both connections leave the old primary as soon as a Sentinel announces
    `+switch-master`, before any READONLY.
    """

    def __init__(
        self,
        service: SentinelService,
        timeout: float,
        heartbeat: float,
        events: Events,
        log: Log,
    ) -> None:
        self._sentinels = sentinels = Sentinels(service, timeout)
        self._primary_pipe = PrimaryPipe(sentinels.primary, timeout)
        self._watch: asyncio.Task[None] | None = None
        super().__init__(
            self._primary_pipe, sentinels.primary, str(service), timeout, heartbeat, events, log
        )

    async def start(self) -> None:
        self._primary_pipe.follow(self._sentinels)

    def listen(self) -> None:
        super().listen()
        subscriber = self._subscriber
        self._watch = self._sentinels.watch(lambda primary: subscriber.drop(f"{primary} took over"))

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await super().aclose()
