"""The transport to a Redis Cluster: `topology.Router`, behind the `Transport` interface.

Each command goes to the primary of its key's slot (every key of a live state
shares one slot), scripts are loaded on every primary, and each channel is
subscribed at the owner of its slot, on that shard's sharded pub/sub
connection. The Router follows MOVED, ASK and failovers itself; here a channel
that could not be subscribed is logged and resynced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from ..._exceptions import LiveStateError
from .slots import SLOTS
from .topology import Router
from .transport import Events, Log, Transport
from .urls import ClusterSeeds


class ClusterTransport(Transport):
    """A cluster, learnt from `seeds`; `timeout` bounds each call, retries included."""

    def __init__(
        self,
        seeds: ClusterSeeds,
        timeout: float,
        events: Events,
        log: Log,
    ) -> None:
        self.server = str(seeds)
        self._router = Router(
            seeds.seeds, timeout, on_message=events.message, on_resync=events.resync
        )
        self._events = events
        self._log = log
        self._placing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._router.start()

    def listen(self) -> None:
        pass  # each shard's pub/sub connection opens with its first channel

    async def aclose(self) -> None:
        for task in self._placing:
            task.cancel()
        await self._router.aclose()

    def call(self, key: str | int, *command: Any) -> Awaitable[Any]:
        return self._router.call(key, *command)

    async def call_and_wait(
        self, key: str | int, command: tuple[Any, ...], replicas: int, milliseconds: int
    ) -> tuple[Any, int]:
        return await self._router.call_and_wait(key, command, replicas, milliseconds)

    async def load_script(self, source: str) -> str:
        return await self._router.load_script(source)

    def primaries(self) -> list[str | int]:
        # The lowest slot each primary owns, to reach it by.
        router = self._router
        owned = {router.owner(slot): slot for slot in range(SLOTS - 1, -1, -1)}
        return [slot for address, slot in owned.items() if address is not None]

    def subscribe(self, channel: str) -> None:
        task = asyncio.get_running_loop().create_task(self._place(channel))
        self._placing.add(task)
        task.add_done_callback(self._placing.discard)

    async def _place(self, channel: str) -> None:
        """Subscribe `channel` at its slot's owner; say when it is confirmed, or failed."""
        try:
            await self._router.subscribe(channel)
        except LiveStateError as error:
            self._log.warning("%s: could not subscribe (%s); resyncing", channel, error)
            self._events.resync(channel)
            return
        self._events.confirmed(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._router.unsubscribe(channel)

    def subscribed(self, channel: str) -> bool:
        return self._router.subscribed(channel)
