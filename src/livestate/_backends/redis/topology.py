"""Redis/Valkey Cluster: routing by slot, and sharded pub/sub per shard.

The seam `cluster.ClusterTransport` uses (nothing else here is meant for it):

    router = Router(seeds, timeout, on_message=..., on_resync=...)
    await router.start()                     # reads the slot map
    await router.call(key, *args)            # one command at the primary of key's slot
    sha = await router.load_script(source)   # on every primary; reloaded where NOSCRIPT
    await router.subscribe(channel)          # SSUBSCRIBE at the owner of channel's slot
    router.subscribed(channel)               # whether it is confirmed there now
    await router.unsubscribe(channel)
    on_message(channel, data)                # a message on a subscribed channel
    on_resync(channel)                       # the channel was re-subscribed elsewhere, or its
                                             # connection dropped: messages may be missing,
                                             # read that state again
    await router.aclose()

`urls.parse_cluster_url` reads `redis+cluster://h1:p1,h2:p2` (and
`rediss+cluster://` for TLS) into the seeds; `cluster_enabled(endpoint,
timeout)` tells whether a plain redis:// endpoint is a cluster node. The slot
of a key and the map of owners are in `slots.py`.

What a call does with each answer:

- MOVED: the slot has a new owner. Note it in the map at once, refresh the
  whole map in the background, and send the command there.
- ASK: the slot is migrating and this key is already at the target. Send
  ASKING and the command there, back to back on one connection; the map stays.
- TRYAGAIN, CLUSTERDOWN: wait (50 ms, doubling to 500 ms) and retry, until
  `timeout` has passed since the call began.
- NOSCRIPT (EVALSHA of a script `load_script` loaded): load it on that node and
  retry. A promoted replica has an empty script cache.
- READONLY, LOADING, MASTERDOWN: that node is not a usable primary now: drop
  the connection, refresh the map, retry.
- The connection cannot be opened: refresh the map (a replica may have been
  promoted) and retry, as above.
- The connection drops, or stalls past `timeout`, after the command left: the
  command may have run, so it is not retried; BackendUnavailableError says so,
  and the map is refreshed for the next call.

Every retried case is one where the server did not run the command, so a retry
never applies a write twice.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from ..._exceptions import BackendUnavailableError, InvalidValueError
from ..._retry import Backoff, delay
from .errors import reason
from .link import Link, retrieve
from .resp import Connection, Endpoint, ReplyError, connect
from .shards import ShardSubscriber
from .slots import SLOTS, SlotMap, key_slot

RETRYING = Backoff((0.05, 0.1, 0.2, 0.5))
"""How long to wait before each retry of a call the cluster could not take yet."""

_NOT_PRIMARY = ("READONLY", "LOADING", "MASTERDOWN")


MessageHandler = Callable[[str, str], None]
"""Receives each message on a subscribed channel: (channel, data)."""

ResyncHandler = Callable[[str], None]
"""Told that a channel's messages may have been missed: read its state again."""


# One bound for the connect and the reply, as Pipe's: hence the timeout parameter.
async def cluster_enabled(endpoint: Endpoint, timeout: float) -> bool:  # noqa: ASYNC109
    """Whether the server at `endpoint` runs in cluster mode (asks CLUSTER MYID, not INFO).

    Raises OSError or TimeoutError if it cannot be reached, ReplyError if it
    refuses the login or the command for a reason other than cluster mode.
    """
    async with asyncio.timeout(timeout):
        connection = await connect(dataclasses.replace(endpoint, db=0))
        try:
            await connection.send(("CLUSTER", "MYID"))
        except ReplyError as error:
            if "cluster support disabled" in str(error) or "cluster mode" in str(error):
                return False
            raise
        finally:
            connection.abort("closed the connection")
    return True


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Router:
    """Commands and sharded subscriptions routed over a Redis/Valkey Cluster.

    `seeds` are nodes to learn the slot map from (any node of the cluster will
    do); each primary gets one pipelined command connection and, when a
    channel of its slots is subscribed, one sharded pub/sub connection.
    `timeout` bounds each call, retries included. `on_message(channel, data)`
    gets each message; `on_resync(channel)` is told when a channel's messages
    may have been missed (see the module docstring for when).
    """

    def __init__(
        self,
        seeds: Sequence[Endpoint],
        timeout: float,
        on_message: MessageHandler | None = None,
        on_resync: ResyncHandler | None = None,
    ) -> None:
        if not seeds:
            raise InvalidValueError("A cluster needs at least one seed address.")
        self.timeout = timeout
        self._seeds = list(seeds)
        self._template = seeds[0]
        self._on_message = on_message
        self._on_resync = on_resync
        self._map = SlotMap((None,) * SLOTS, frozenset())
        self._owners: list[str | None] = [None] * SLOTS
        self._links: dict[str, Link] = {}
        self._subscribers: dict[str, ShardSubscriber] = {}
        self._channels: dict[str, str] = {}  # wanted channel -> address it is placed at
        self._placing: dict[str, asyncio.Task[None]] = {}
        self._scripts: dict[str, str] = {}  # sha1 -> source
        self._moves: dict[int, tuple[float, str]] = {}  # slot -> (when, owner) from MOVED
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -1.0
        self._closed = False
        self.refreshes = 0  # how many times the map was read (for tests and benchmarks)
        self.answers: collections.Counter[str] = collections.Counter()  # error codes handled

    def endpoint(self, address: str) -> Endpoint:
        """The endpoint of the node at `address` ("host:port"), with the seeds' login and TLS."""
        host, port = _split_address(address)
        return dataclasses.replace(self._template, host=host, port=port, path=None, db=0)

    def owner(self, key: str | int) -> str | None:
        """The address of the primary that owns `key` (or slot number) as far as known."""
        return self._owners[key if isinstance(key, int) else key_slot(key)]

    @property
    def primaries(self) -> set[str]:
        """The addresses of the primaries in the current map."""
        return {owner for owner in self._owners if owner is not None}

    async def start(self) -> None:
        """Read the slot map from the seeds.

        Raises BackendUnavailableError if no seed answers within the timeout.
        """
        await self.refresh()

    async def call(self, key: str | int, *args: Any) -> Any:
        """Send one command to the primary of `key`'s slot (or slot `key`); return its reply.

        Raises BackendUnavailableError if no primary took it within the timeout,
        or if the connection dropped after it left (it may have run); ReplyError
        for any other error reply.
        """
        slot = key if isinstance(key, int) else key_slot(key)
        address = self._owners[slot]
        link = self._links.get(address) if address is not None else None
        connection = link.connection if link is not None else None
        if connection is None:
            return await self._call(slot, args, None)
        try:
            return await connection.send(args)
        except ReplyError as error:
            return await self._call(slot, args, error)
        except ConnectionError as error:
            raise self._lost(address, str(error)) from None

    async def call_and_wait(
        self, key: str | int, args: tuple[Any, ...], replicas: int, milliseconds: int
    ) -> tuple[Any, int]:
        """`call(key, *args)` with WAIT `replicas` `milliseconds` sent right behind it on the
        same connection (WAIT counts the replicas that have this connection's writes); the
        reply and how many replicas confirmed. Raises as `call` does.
        """
        slot = key if isinstance(key, int) else key_slot(key)
        replied: tuple[Any, int] = await self._call(slot, args, None, (replicas, milliseconds))
        return replied

    async def load_script(self, source: str) -> str:
        """Load a Lua script on every primary, and on any that later lacks it; its SHA1.

        Raises BackendUnavailableError if a primary cannot be reached in time.
        """
        sha = hashlib.sha1(source.encode()).hexdigest()
        self._scripts[sha] = source
        await asyncio.gather(*(self._load_on(address, sha) for address in self.primaries))
        return sha

    async def subscribe(self, channel: str) -> None:
        """Subscribe to sharded `channel` at the owner of its slot; return once confirmed.

        Raises BackendUnavailableError if that is not done within the timeout.
        """
        if self._channels.get(channel):
            return  # placed already
        self._channels[channel] = ""
        await self._place(channel)

    def subscribed(self, channel: str) -> bool:
        """Whether `channel` is subscribed now: its owner confirmed, and kept it since."""
        address = self._channels.get(channel)
        subscriber = self._subscribers.get(address) if address else None
        return subscriber is not None and channel in subscriber.channels

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`'s messages."""
        address = self._channels.pop(channel, None)
        task = self._placing.pop(channel, None)
        if task is not None:
            task.cancel()
        subscriber = self._subscribers.get(address) if address else None
        if subscriber is not None:
            subscriber.unsubscribe(channel)

    async def aclose(self) -> None:
        """Close every connection; later calls raise RuntimeError."""
        self._closed = True
        for task in [*self._placing.values(), self._refreshing]:
            if task is not None:
                task.cancel()
        for link in self._links.values():
            link.close()
        for subscriber in self._subscribers.values():
            subscriber.close()

    # -- commands

    async def _call(
        self,
        slot: int,
        args: tuple[Any, ...],
        error: ReplyError | None,
        wait: tuple[int, int] | None = None,
    ) -> Any:
        """The slow path: a call whose first attempt failed, or that has no connection yet;
        with `wait`, the WAIT arguments to send behind the command (see call_and_wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 0
        ask: str | None = None
        address = self._owners[slot]
        while True:
            if error is not None:
                code, _, rest = str(error).partition(" ")
                attempt += 1
                self.answers[code] += 1
                if code in ("MOVED", "ASK"):
                    target = rest.split()[1]
                    if target.startswith(":") and address is not None:
                        # An unknown endpoint: the node means "my host, this port".
                        target = address.rpartition(":")[0] + target
                    if code == "MOVED":
                        self._moved(int(rest.split()[0]), target)
                        ask = None
                    else:
                        ask = target
                    if attempt > 16:  # redirects that go round in circles: wait for the map
                        await self._pause(loop, deadline, attempt, f"slot {slot} keeps moving")
                elif code == "NOSCRIPT" and str(args[0]).upper() == "EVALSHA":
                    if args[1] not in self._scripts or address is None or attempt > 16:
                        raise error
                    await self._load_on(ask or address, str(args[1]))
                elif code in ("TRYAGAIN", "CLUSTERDOWN"):
                    ask = None  # start again at the owner, which may send us on again
                    await self._pause(loop, deadline, attempt, f"answered {error}")
                elif code in _NOT_PRIMARY:
                    if address is not None and address in self._links:
                        self._links[address].drop(f"is not a primary now ({code})")
                    await self._refresh_now(loop, deadline)
                    await self._pause(loop, deadline, attempt, f"answered {error}")
                else:
                    raise error
                error = None
            address = ask or self._owners[slot]
            if address is None:
                attempt += 1
                await self._refresh_now(loop, deadline)
                await self._pause(loop, deadline, attempt, f"no primary owns slot {slot}")
                continue
            try:
                connection = await self._connection(address, deadline)
            except (OSError, TimeoutError, ReplyError, BackendUnavailableError) as failure:
                attempt += 1
                await self._refresh_now(loop, deadline)
                await self._pause(
                    loop, deadline, attempt, f"could not be reached ({reason(failure)})"
                )
                ask = None
                continue
            if ask is not None:
                connection.send(("ASKING",)).add_done_callback(retrieve)
            sent = connection.send(args)
            confirmed = None
            if wait is not None:
                confirmed = connection.send(("WAIT", *wait))
                confirmed.add_done_callback(retrieve)  # not awaited when the command fails
            try:
                reply = await sent
                if confirmed is None:
                    return reply
                return reply, await confirmed
            except ReplyError as reply_error:
                error = reply_error
            except ConnectionError as lost:
                raise self._lost(address, str(lost)) from None

    async def _connection(self, address: str, deadline: float) -> Connection:
        if self._closed:
            raise RuntimeError("This livestate Redis Cluster router is closed; create a new Node.")
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = Link(
                self.endpoint(address), self.timeout, prepare=self._prepare
            )
        if (connection := link.connection) is not None:
            return connection
        try:
            async with asyncio.timeout_at(deadline):
                return await link.open()
        except RuntimeError:
            if self._closed:
                raise
            # A map refresh closed this link while it opened: the caller retries.
            raise ConnectionResetError(f"the link to {address} was closed") from None

    async def _prepare(self, connection: Connection) -> None:
        """A new primary connection gets every script loaded (a promoted replica has none)."""
        if self._scripts:
            await asyncio.gather(
                *(connection.send(("SCRIPT", "LOAD", source)) for source in self._scripts.values())
            )

    async def _load_on(self, address: str, sha: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection = await self._connection(address, loop.time() + self.timeout)
            await connection.send(("SCRIPT", "LOAD", self._scripts[sha]))
        except (OSError, TimeoutError, ConnectionError, ReplyError) as error:
            raise self._unavailable(address, f"could not load a script ({error})") from None

    def _lost(self, address: str | None, why: str) -> BackendUnavailableError:
        self._refresh_soon()
        return self._unavailable(address, f"{why}; the command may have run")

    def _unavailable(self, address: str | None, why: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"The Redis Cluster node {address or '(none)'} {why}. Check that the cluster is "
            "up (CLUSTER INFO says cluster_state:ok), then retry."
        )

    async def _pause(self, loop: Any, deadline: float, attempt: int, why: str) -> None:
        pause = delay(RETRYING, attempt)
        if loop.time() + pause > deadline:
            raise BackendUnavailableError(
                f"The Redis Cluster {why}, and did not take the command within "
                f"{self.timeout}s. Check that the cluster is up (CLUSTER INFO says "
                "cluster_state:ok), then retry."
            )
        await asyncio.sleep(pause)

    # -- the slot map

    async def refresh(self) -> None:
        """Read the slot map again now (one reading shared by concurrent callers).

        Raises BackendUnavailableError if no known node answers within the timeout.
        """
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._read_map())
            self._refreshing.add_done_callback(retrieve)
        await asyncio.shield(self._refreshing)

    async def _refresh_now(self, loop: Any, deadline: float) -> None:
        """Refresh, unless one finished a moment ago; failures are left to the caller's retry."""
        if loop.time() - self._refreshed_at < 0.05:
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self.refresh()
        except (BackendUnavailableError, TimeoutError):
            pass

    def _moved(self, slot: int, owner: str) -> None:
        """A node answered MOVED: note the owner now, and keep it over any map read that
        began before (a node that has not heard of the change yet may answer that)."""
        self._owners[slot] = owner
        self._moves[slot] = (asyncio.get_running_loop().time(), owner)
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        if self._refreshing is None and not self._closed:
            self._refreshing = asyncio.get_running_loop().create_task(self._read_map())
            self._refreshing.add_done_callback(retrieve)

    async def _read_map(self) -> None:
        started = asyncio.get_running_loop().time()
        # The newest owner a MOVED named knows of its change first: ask it first.
        newest = [owner for _, owner in sorted(self._moves.values(), reverse=True)[:1]]
        try:
            candidates = list(
                dict.fromkeys(
                    [
                        *newest,
                        *self.primaries,
                        *self._map.nodes,
                        *(f"{s.host}:{s.port}" for s in self._seeds),
                    ]
                )
            )
            errors = []
            for address in candidates:
                try:
                    new = await self._ask_map(address)
                except (OSError, TimeoutError, ConnectionError, ReplyError) as error:
                    errors.append(f"{address}: {error}")
                    continue
                self._apply(new, started)
                return
            raise BackendUnavailableError(
                "No node of the Redis Cluster answered CLUSTER SHARDS or CLUSTER SLOTS "
                f"({'; '.join(errors)}). Check the addresses in LIVESTATE_URL and that the "
                "cluster is up."
            )
        finally:
            self._refreshing = None
            self._refreshed_at = asyncio.get_running_loop().time()
            self.refreshes += 1

    async def _ask_map(self, address: str) -> SlotMap:
        async with asyncio.timeout(min(self.timeout, 1.0)):
            connection = await connect(self.endpoint(address))
            try:
                try:
                    reply = await connection.send(("CLUSTER", "SHARDS"))
                    return SlotMap.from_shards(reply, self._template.tls is not None)
                except ReplyError as error:
                    if "unknown" not in str(error).lower():
                        raise
                return SlotMap.from_slots(await connection.send(("CLUSTER", "SLOTS")))
            finally:
                connection.abort("closed the connection")

    def _apply(self, new: SlotMap, started: float) -> None:
        self._map = new
        self._moves = {slot: move for slot, move in self._moves.items() if move[0] >= started}
        owners = list(new.owners)
        for slot, (_, owner) in self._moves.items():
            owners[slot] = owner
        self._owners = owners
        primaries = new.primaries
        for address in [a for a in self._links if a not in primaries]:
            connection = self._links[address].connection
            # A call in flight there will get its answer (MOVED, most likely); close it later.
            if connection is None or connection.oldest() is None:
                self._links.pop(address).close()
        for address in [a for a in self._subscribers if a not in primaries]:
            subscriber = self._subscribers[address]
            if not subscriber.channels and not subscriber.pending:
                self._subscribers.pop(address).close()
        for channel, address in list(self._channels.items()):
            if address and owners[key_slot(channel)] != address:
                self.replace(channel, refresh=False)

    # -- sharded pub/sub

    def on_message(self, channel: str, data: str) -> None:
        """Pass a message to the `on_message` callback."""
        if self._on_message is not None and channel in self._channels:
            self._on_message(channel, data)

    def replace(self, channel: str, refresh: bool) -> None:
        """Subscribe `channel` again at its slot's (new) owner, then tell `on_resync`."""
        if self._closed or channel not in self._channels or channel in self._placing:
            return
        task = asyncio.get_running_loop().create_task(self._replace(channel, refresh))
        self._placing[channel] = task
        task.add_done_callback(lambda _: self._placing.pop(channel, None))
        task.add_done_callback(retrieve)

    async def _replace(self, channel: str, refresh: bool) -> None:
        old = self._channels.get(channel)
        if refresh:
            await self._refresh_now(asyncio.get_running_loop(), float("inf"))
        attempt = 0
        while channel in self._channels and not self._closed:
            if old and (subscriber := self._subscribers.get(old)) is not None:
                if old != self._owners[key_slot(channel)]:
                    subscriber.unsubscribe(channel)
            try:
                await self._place(channel)
            except BackendUnavailableError:
                attempt += 1
                await asyncio.sleep(delay(RETRYING, attempt))
                continue
            if self._on_resync is not None:
                self._on_resync(channel)
            return

    async def _place(self, channel: str) -> None:
        """SSUBSCRIBE `channel` at its owner, following MOVED, within the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        slot = key_slot(channel)
        attempt = 0
        while channel in self._channels:
            address = self._owners[slot]
            if address is None:
                attempt += 1
                await self._refresh_now(loop, deadline)
                await self._pause(loop, deadline, attempt, f"no primary owns slot {slot}")
                continue
            subscriber = self._subscribers.get(address)
            if subscriber is None:
                subscriber = self._subscribers[address] = ShardSubscriber(self, address)
            self._channels[channel] = address
            try:
                async with asyncio.timeout_at(deadline):
                    await subscriber.subscribe(channel)
                return
            except ReplyError as error:
                code, _, rest = str(error).partition(" ")
                if code != "MOVED":
                    raise self._unavailable(address, f"refused SSUBSCRIBE ({error})") from None
                self._moved(slot, rest.split()[1])
            except (OSError, TimeoutError, ConnectionError) as error:
                attempt += 1
                await self._refresh_now(loop, deadline)
                await self._pause(loop, deadline, attempt, f"could not subscribe ({error})")
