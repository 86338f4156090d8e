"""The Redis/Valkey backend: live states shared by any number of nodes through one server.

Layout: every key of one live state shares the hash tag `{<spec>:<key>}`, both
percent-escaped, so a script touches one slot and Redis Cluster works:

    ls:{Chat:lobby}:m        meta hash: epoch, version, ACL, TTL, limits, total bytes, places
    ls:{Chat:lobby}:s        state hash: property -> JSON (or a marker for a list)
    ls:{Chat:lobby}:z        sizes hash: property -> bytes it counts, for the limits
    ls:{Chat:lobby}:h        holders: node id -> lease end, a sorted set
    ls:{Chat:lobby}:L        the set of list keys
    ls:{Chat:lobby}:l:<prop> a list property's items, one JSON text each
    ls:{Chat:lobby}:k        the order of the properties: property -> place, a sorted set
    ls:{Chat:lobby}:o        the start lock, while one node runs on_mount
    ls:{Chat:lobby}:c        the pub/sub channel

Each write is one Lua script (lua/*.lua): ACL check, size checks, apply, raise
the version, publish `(epoch, version, op)`, all or nothing. JSON is written by
Python; Lua only ever parses numbers, for increment.

Connections, per backend object (one per node), both resp.py's: one command
connection on which concurrent calls are pipelined (the calls made while others
are in flight leave together, one send per event loop turn), and one pub/sub
connection subscribed only to the live states that have local clients.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote

try:
    from .resp import BACKOFF, Connection, Pipe, ReplyError, connect, parse_url
except ImportError as error:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "The Redis backend of livestate needs the hiredis package; "
        "install it with pip install 'livestate[redis]'."
    ) from error

from .._acl import ACL, DELETE, Role, denied
from .._changes import Op, StateId, evaluate, permission
from .._values import JSON, FrozenDict, FrozenList, check_size, encode, size
from .base import Backend, ConflictError, Handler, Message, MountFunction, Snapshot, not_running

logger = logging.getLogger("livestate")

TIMEOUT = 2.0
"""Seconds any one Redis call may take before it raises BackendUnavailableError."""

LEASE = 5.0
"""Seconds a node's hold on a live state lasts unless its heartbeat renews it."""

HOLD = 1.0
"""Seconds a message that arrives ahead of its predecessor waits for it before the
replicas are told of a gap (and resynchronise)."""

LOCK = 3.0
"""Seconds the start lock lasts; renewed every third of that while on_mount runs."""

_RESYNC = Message("", 0, Op("reset", None, FrozenDict()))
"""Handed to handlers to make their replica resync: its epoch matches no live state."""

_SCRIPTS = ("open", "init", "lock", "read", "lease", "put", "delete", "append", "increment",
            "reset", "stop")  # fmt: skip

_ROLE_FIELD = {"group": "g", "public": "p"}


@functools.lru_cache(maxsize=1024)  # the same live states are written again and again
def _prefix(id: StateId) -> str:
    """The start of every key name of a live state: `ls:{<spec>:<key>}`."""
    return f"ls:{{{_escape(id.spec)}:{_escape(id.key)}}}"


@functools.lru_cache(maxsize=4096)  # the same property names come back write after write
def _escape(text: str) -> str:
    """Percent-escape every byte but [A-Za-z0-9_.~-], so no `{`, `}`, `:` or `*` is left."""
    return quote(text, safe="", errors="surrogatepass")


@dataclass(slots=True, eq=False)
class _Channel:
    """The local handlers of one live state, and the order in which they have been fed."""

    name: str
    handlers: list[Handler] = field(default_factory=list)
    epoch: str | None = None  # None: not known yet (before the first message or snapshot)
    version: int = 0
    highest: int = 0  # the highest version ever seen, so a restart never reuses one
    held: dict[int, Message] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    waiters: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    confirmed: asyncio.Future[None] | None = None
    resubscribed: bool = False  # the next confirmation follows a reconnect: resync then
    behind: int | None = None  # the version the last heartbeat found, if ahead of ours
    missing: int = 0  # heartbeats in a row that found the live state gone

    def feed(self, message: Message) -> None:
        """Deliver `message` in version order, holding it briefly if it came early."""
        epoch, version, _ = message
        if epoch != self.epoch or self.epoch is None:
            self._flush()
            self.epoch, self.version = epoch, version
            self.highest = max(self.highest, version)
            self._deliver(message)
            return
        if version <= self.version:
            return
        if version == self.version + 1:
            self.version = version
            self._deliver(message)
            self._release()
            return
        # Another node's earlier write is still on its way on the pub/sub connection.
        self.held[version] = message
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(HOLD, self._flush)

    def learn(self, epoch: str, version: int) -> None:
        """Take the version of a snapshot that a local replica loaded."""
        if self.epoch is None:
            self.epoch, self.version = epoch, version
        elif self.epoch == epoch and version > self.version:
            self.version = version
        else:
            return
        self.highest = max(self.highest, version)
        for seen in [v for v in self.held if v <= self.version]:
            self._resolve(seen)
            del self.held[seen]
        self._release()

    def resync(self) -> None:
        """Make every replica of this channel load a fresh snapshot."""
        self._flush()
        self.epoch, self.version = None, 0
        self._deliver(_RESYNC)

    def close(self) -> None:
        """Forget held messages and wake whoever waits for them."""
        if self.timer:
            self.timer.cancel()
            self.timer = None
        for version in list(self.waiters):
            self._resolve(version)
        self.held.clear()

    async def wait(self, version: int) -> None:
        """Return once `version` has been delivered (or dropped after a gap)."""
        if version in self.held:
            future = self.waiters.get(version)
            if future is None:
                future = self.waiters[version] = asyncio.get_running_loop().create_future()
            await future

    def _release(self) -> None:
        while (message := self.held.pop(self.version + 1, None)) is not None:
            self.version += 1
            self._deliver(message)
        if not self.held and self.timer:
            self.timer.cancel()
            self.timer = None

    def _flush(self) -> None:
        """Deliver everything held, in order, gaps and all: the replicas resync on a gap."""
        if self.timer:
            self.timer.cancel()
            self.timer = None
        for version in sorted(self.held):
            message = self.held.pop(version)
            self.version = max(self.version, version)
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        self.highest = max(self.highest, message.version)
        # A copy: a handler may unsubscribe (a client detaching on `stopped`) while we loop.
        for handler in tuple(self.handlers):
            try:
                handler(message)
            except Exception:
                logger.exception("A handler of %s raised", self.name)
        self._resolve(message.version)

    def _resolve(self, version: int) -> None:
        future = self.waiters.pop(version, None)
        if future is not None and not future.done():
            future.set_result(None)


class RedisBackend(Backend):
    """Live states on a Redis 7+ or Valkey 8+ server, shared by every node that uses it.

    `url` is `redis://[[user]:password@]host:port/db` (also `rediss://`,
    `unix://`, `valkey://`), optionally with livestate's settings as query
    parameters: `timeout` (seconds per call, default 2), `lease` (seconds a
    node's hold lasts without a heartbeat, default 5; the heartbeat runs five
    times per lease), and the login and TLS parameters of `resp.parse_url`.
    Raises InvalidValueError for a URL it cannot use, and ImportError, saying
    what to install, if the hiredis package is missing.
    """

    def __init__(self, url: str) -> None:
        self.endpoint, settings = parse_url(url, {"timeout": TIMEOUT, "lease": LEASE})
        self.url = url
        self.timeout = settings["timeout"]
        self.lease = settings["lease"]
        self.heartbeat = self.lease / 5
        self._pipe: Pipe | None = None
        self._shas: dict[str, str] = {}
        self._sources = _load_scripts()
        self._publish = "SPUBLISH"
        self._channels: dict[StateId, _Channel] = {}
        self._by_name: dict[str, _Channel] = {}
        self._held: dict[StateId, set[str]] = {}
        self._subscriber: _Subscriber | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisBackend {self.endpoint}>"

    async def start(self) -> None:
        """Connect, load the scripts and start the heartbeat.

        Raises BackendUnavailableError if the server does not answer in time.
        """
        self._pipe = Pipe(self.endpoint, self.timeout)
        pipe = self._pipe
        info = await pipe.call("COMMAND", "INFO", "SPUBLISH")
        sharded = bool(info and info[0])
        self._publish = "SPUBLISH" if sharded else "PUBLISH"
        await self._load()
        await self._check_eviction()
        self._subscriber = _Subscriber(self, sharded)
        self._subscriber.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._beat()))

    async def aclose(self) -> None:
        """Stop the heartbeat, close both connections; the backend is unusable afterwards."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._subscriber:
            await self._subscriber.aclose()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._by_name.clear()
        if self._pipe:
            await self._pipe.aclose()

    # The Backend contract.

    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        keys = self._keys(id)
        hold_flag = "1" if hold else "0"
        token = secrets.token_hex(8)
        lease = int(self.lease * 1000)
        delay = 0.002
        while True:
            reply = await self._run("open", keys, node, hold_flag, lease, token, int(LOCK * 1000))
            status = reply[0]
            if status == "ok":
                snapshot = self._snapshot(reply)
                break
            if status == "wait":
                # Another node runs on_mount: wait for its state rather than run it twice.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            started = await self._mount(id, keys, mount, node, hold_flag, token)
            if started is not None:
                snapshot = started
                break
        if hold:
            self._held.setdefault(id, set()).add(node)
        if channel := self._channels.get(id):
            channel.learn(snapshot.epoch, snapshot.version)
        return snapshot

    async def release(self, id: StateId, node: str) -> None:
        holders = self._held.get(id)
        if holders is not None:
            holders.discard(node)
            if not holders:
                del self._held[id]
        await self._run("lease", self._keys(id), "release", node, 0)

    async def read(self, id: StateId, prop: str | None = None) -> Snapshot | None:
        reply = await self._run("read", self._keys(id), "" if prop is None else prop)
        if reply[0] != "ok":
            return None
        snapshot = self._snapshot(reply)
        if prop is None and (channel := self._channels.get(id)):
            channel.learn(snapshot.epoch, snapshot.version)
        return snapshot

    async def apply(self, id: StateId, op: Op, role: Role) -> tuple[int, JSON]:
        prop = op.prop or ""
        keys = self._keys(id, prop)
        need = permission(op)
        expect = "" if op.expect is None else op.expect
        kind = op.kind
        weight = len(prop)  # as MemoryBackend counts a property's name
        value_text = encode(op.value) if kind == "reset" else op.encoded
        head = (
            encode([kind, op.prop, op.max_len, *_acl_and_ttl(op)])
            if kind == "reset"
            else _head(kind, op.prop, op.max_len)
        )
        args: list[Any] = [_ROLE_FIELD[role], need, expect, f"{head}\n{value_text}", prop]
        if kind == "put":
            args += [weight, op.size]
            if type(op.value) is FrozenList:
                args += ["l", *(encode(item) for item in op.value)]
            else:
                args += ["v", op.encoded]
        elif kind == "append":
            args += [weight, op.size, "" if op.max_len is None else op.max_len, op.encoded]
        elif kind == "increment":
            args += [weight, op.encoded, "1" if type(op.value) is float else "0"]
        elif kind == "reset":
            acl = op.acl or ACL()
            total, state = _encode_state(op.value, _prefix(id))
            del args[4]  # a reset names no property
            args += [acl.group, acl.public, *_ttl_args(op.ttl), total, *state]
        reply = await self._run(kind, keys, *args)
        status = reply[0]
        if status != "ok":
            self._fail(id, op, role, reply)
        version = int(reply[1])
        epoch = reply[2]
        result: JSON = None
        if kind == "increment":
            result = json.loads(reply[3])
        channel = self._channels.get(id)
        if channel is not None:
            message = Message(epoch, version, op)
            channel.feed(message)
            # Read your writes: the local replicas apply this before we return, after any
            # earlier version still on its way from another node.
            await channel.wait(version)
        return version, result

    async def stop(self, id: StateId, role: Role) -> None:
        reply = await self._run("stop", self._keys(id), _ROLE_FIELD[role], DELETE, "", "")
        status = reply[0]
        if status == "missing":
            raise not_running(id)
        if status == "denied":
            raise denied(role, DELETE, "stop", str(id))
        # The published copy may come later: tell the local replicas now.
        if channel := self._channels.get(id):
            if channel.epoch is not None:
                channel.feed(Message(channel.epoch, channel.version + 1, None))
        self._held.pop(id, None)

    async def subscribe(self, id: StateId, handler: Handler) -> None:
        channel = self._channels.get(id)
        if channel is None:
            name = f"{_prefix(id)}:c"
            channel = self._channels[id] = self._by_name[name] = _Channel(name)
            assert self._subscriber is not None  # start() ran: the node starts us first
            self._subscriber.add(channel)
        channel.handlers.append(handler)
        if channel.confirmed is not None:
            # Bounded: if the server is away, the reconnect subscribes it and resyncs.
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(channel.confirmed)
            except TimeoutError:
                channel.resubscribed = True

    async def unsubscribe(self, id: StateId, handler: Handler) -> None:
        channel = self._channels.get(id)
        if channel is None:
            return
        if handler in channel.handlers:
            channel.handlers.remove(handler)
        if not channel.handlers:
            del self._channels[id]
            self._by_name.pop(channel.name, None)
            channel.close()
            if self._subscriber:
                self._subscriber.remove(channel)

    # Internals.

    def _keys(self, id: StateId, prop: str = "") -> list[str]:
        prefix = _prefix(id)
        return [
            f"{prefix}:m", f"{prefix}:s", f"{prefix}:z", f"{prefix}:h", f"{prefix}:L",
            f"{prefix}:o", f"{prefix}:l:{_escape(prop)}", f"{prefix}:k",
        ]  # fmt: skip

    async def _run(self, script: str, keys: list[str], *args: Any) -> Any:
        """Run one script by its SHA, loading the scripts again if the server forgot them."""
        if self._pipe is None:
            raise RuntimeError("The Redis backend was used before start(); use it through a Node.")
        channel = keys[0][: -len(":m")] + ":c"
        call = ("EVALSHA", self._shas[script], len(keys), *keys, channel, self._publish, *args)
        try:
            return await self._pipe.call(*call)
        except ReplyError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            # The server restarted (or SCRIPT FLUSH ran): load them again, once.
            await self._load()
            return await self._pipe.call(*call)

    async def _load(self) -> None:
        assert self._pipe is not None
        shas = await asyncio.gather(
            *(self._pipe.call("SCRIPT", "LOAD", self._sources[name]) for name in _SCRIPTS)
        )
        self._shas = dict(zip(_SCRIPTS, shas, strict=True))

    async def _check_eviction(self) -> None:
        assert self._pipe is not None
        try:
            reply = await self._pipe.call("CONFIG", "GET", "maxmemory-policy")
        except ReplyError:
            return  # CONFIG is often disabled on managed servers; nothing to check then
        policy = reply[1] if len(reply) > 1 else "noeviction"
        if policy != "noeviction":
            logger.warning(
                "The Redis server at %s has maxmemory-policy %s, so it may evict live state "
                "keys under memory pressure, and clients would see their live state restart; "
                "set maxmemory-policy noeviction (or give it enough memory).",
                self.endpoint,
                policy,
            )

    async def _mount(
        self,
        id: StateId,
        keys: list[str],
        mount: MountFunction,
        node: str,
        hold: str,
        token: str,
    ) -> Snapshot | None:
        """Run on_mount while holding the start lock and store it; None if another won."""
        renew = asyncio.get_running_loop().create_task(self._renew_lock(keys, token))
        try:
            mounted = await mount()
        except BaseException:
            renew.cancel()
            try:
                await self._run("lock", keys, "unlock", token, 0)
            except Exception:
                pass  # the lock expires on its own within LOCK seconds
            raise
        renew.cancel()
        epoch = secrets.token_hex(8)
        channel = self._channels.get(id)
        # A live state lost under attached clients starts past every version they saw.
        version = channel.highest + 1 if channel and channel.highest else 1
        total, state = _encode_state(mounted.state, _prefix(id))
        limits = mounted.limits
        reply = await self._run(
            "init", keys, node, hold, int(self.lease * 1000), token, epoch, version,
            mounted.acl.group, mounted.acl.public, *_ttl_args(mounted.ttl),
            limits.max_value_bytes, limits.max_state_bytes, total, *state,
        )  # fmt: skip
        if reply[0] != "ok":
            return None  # our lock ran out and another node started it: use theirs
        return Snapshot(dict(mounted.state), version, epoch, mounted.acl, mounted.ttl)

    async def _renew_lock(self, keys: list[str], token: str) -> None:
        while True:
            await asyncio.sleep(LOCK / 3)
            try:
                await self._run("lock", keys, "extend", token, int(LOCK * 1000))
            except Exception:
                logger.debug("Could not renew a start lock", exc_info=True)

    def _snapshot(self, reply: list[Any]) -> Snapshot:
        _, epoch, version, group, public, ttl, props, values = reply
        state = {
            prop: FrozenList([_decode(item) for item in value])
            if type(value) is list
            else _decode(value)
            for prop, value in zip(props, values, strict=True)
        }
        acl = ACL(int(group), int(public))
        return Snapshot(state, int(version), epoch, acl, None if ttl == "" else float(ttl))

    def _fail(self, id: StateId, op: Op, role: Role, reply: list[Any]) -> None:
        """Raise the error the script reported, as MemoryBackend would."""
        status = reply[0]
        if status == "missing":
            raise not_running(id)
        if status == "denied":
            verb = "reset" if op.kind == "reset" else f"{op.kind} {op.prop!r} of"
            raise denied(role, permission(op), verb, str(id))
        if status == "conflict":
            raise ConflictError(id)
        if status == "value_size":
            check_size(int(reply[1]), int(reply[2]), id, op.prop)
        if status == "state_size":
            check_size(int(reply[1]), int(reply[2]), id, op.prop, whole=True)
        if status == "invalid":
            # Let the same function every replica uses raise the same error.
            current = reply[1] if len(reply) > 1 else None
            state: dict[str, JSON] = {}
            if current is not None:
                state[op.prop] = (  # type: ignore[index]
                    FrozenList() if current.startswith("\0") else _decode(current)
                )
            evaluate(state, op, id)
        raise RuntimeError(f"A livestate script on {id} replied {reply!r}, which is a bug.")

    async def _beat(self) -> None:
        """Renew this node's leases, and check that no replica fell behind unnoticed."""
        while True:
            await asyncio.sleep(self.heartbeat)
            held = [(id, node) for id, nodes in self._held.items() for node in nodes]
            lease = int(self.lease * 1000)
            results = await asyncio.gather(
                *(self._run("lease", self._keys(id), "hold", node, lease) for id, node in held),
                return_exceptions=True,
            )
            for (id, _), reply in zip(held, results, strict=True):
                channel = self._channels.get(id)
                if channel is None or isinstance(reply, BaseException):
                    continue  # unavailable: the pub/sub reconnect resyncs when it is back
                try:
                    self._check(channel, reply)
                except Exception:
                    logger.exception("livestate's heartbeat check of %s failed", id)

    def _check(self, channel: _Channel, reply: list[Any]) -> None:
        """Resync a channel that is two heartbeats behind the server (a silent drop)."""
        if reply[0] != "ok":
            # Gone: stopped (its message is on the way) or lost (the server restarted).
            channel.missing += 1
            if channel.missing >= 2:
                channel.missing = 0
                channel.resync()
            return
        channel.missing = 0
        epoch, version = reply[1], int(reply[2])
        if channel.epoch == epoch and channel.version >= version:
            channel.behind = None
        elif channel.behind is not None and (
            channel.epoch != epoch or channel.version < channel.behind
        ):
            channel.behind = None
            channel.resync()
        else:
            channel.behind = version

    def _received(self, name: str, data: str) -> None:
        channel = self._by_name.get(name)
        if channel is None:
            return
        epoch, version_text, rest = data.split("\n", 2)
        version = int(version_text)
        if rest == "stop":
            channel.feed(Message(epoch, version + 1, None))
        elif rest == "start":
            channel.feed(Message(epoch, version, _RESYNC.op))
        elif epoch != channel.epoch or version > channel.version:
            channel.feed(Message(epoch, version, _decode_op(rest)))
        # else seen already (this node's own write, fed when its reply came): no decoding


class _Subscriber:
    """The node's one pub/sub connection: subscribes, reconnects, resubscribes, pings."""

    def __init__(self, backend: RedisBackend, sharded: bool) -> None:
        self._backend = backend
        self._subscribe = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsubscribe = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._message = "smessage" if sharded else "message"
        self._confirm = "ssubscribe" if sharded else "subscribe"
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._last = 0.0
        self._closed = False

    def start(self) -> None:
        self._task = self._loop.create_task(self._run())

    async def aclose(self) -> None:
        self._closed = True
        if self._connection is not None:
            self._connection.abort("closed the connection")
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)

    def add(self, channel: _Channel) -> None:
        channel.confirmed = self._loop.create_future()
        self._send(self._subscribe, channel.name)

    def remove(self, channel: _Channel) -> None:
        self._send(self._unsubscribe, channel.name)

    def _send(self, *args: str) -> None:
        if self._connection is not None:
            self._connection.write(args)
        # Not connected: the reconnect subscribes every channel.

    async def _run(self) -> None:
        backend = self._backend
        failures = 0
        first = True
        while not self._closed:
            try:
                async with asyncio.timeout(backend.timeout):
                    connection = await connect(backend.endpoint, self._push)
            except Exception as error:
                logger.warning(
                    "livestate could not open its pub/sub connection to %s (%s); retrying",
                    backend.endpoint,
                    error,
                )
            else:
                if self._closed:
                    connection.abort("closed the connection")
                    return
                self._connection = connection
                for channel in backend._by_name.values():
                    if not first:
                        channel.resubscribed = True
                    if channel.confirmed is None or channel.confirmed.done():
                        channel.confirmed = self._loop.create_future()
                    connection.write((self._subscribe, channel.name))
                failures = 0
                self._last = self._loop.time()
                pinger = self._loop.create_task(self._ping(connection))
                try:
                    await connection.closed
                finally:
                    pinger.cancel()
                    self._connection = None
                    connection.abort("closed the connection")
                if self._closed:
                    return
                logger.warning(
                    "livestate lost its pub/sub connection to %s (it %s); reconnecting",
                    backend.endpoint,
                    connection.why,
                )
            first = False
            for channel in backend._by_name.values():
                channel.resubscribed = True
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1

    def _push(self, reply: Any) -> None:
        """Take one message or confirmation from the pub/sub connection."""
        self._last = self._loop.time()
        kind = reply[0]
        if kind == self._message:
            self._backend._received(reply[1], reply[2])
        elif kind == self._confirm:
            channel = self._backend._by_name.get(reply[1])
            if channel is None:
                return
            if channel.confirmed and not channel.confirmed.done():
                channel.confirmed.set_result(None)
            if channel.resubscribed:
                # Messages may have been missed while unsubscribed: resync.
                channel.resubscribed = False
                channel.resync()

    async def _ping(self, connection: Connection) -> None:
        """Ping, and drop a connection that stays silent: it may be half-open."""
        heartbeat = self._backend.heartbeat
        while True:
            await asyncio.sleep(heartbeat)
            if self._loop.time() - self._last > heartbeat + self._backend.timeout:
                connection.abort("went silent")
                return
            connection.write(("PING",))


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("lua")
    common = folder.joinpath("common.lua").read_text()
    return {name: common + folder.joinpath(f"{name}.lua").read_text() for name in _SCRIPTS}


def _ttl_args(ttl: float | None) -> tuple[int, str]:
    """The TTL in whole milliseconds (-1 for none) and as Python writes it."""
    if ttl is None:
        return -1, ""
    return round(ttl * 1000), repr(ttl)


def _acl_and_ttl(op: Op) -> list[Any]:
    if op.kind != "reset":
        return []
    acl = op.acl or ACL()
    return [acl.group, acl.public, op.ttl]


def _encode_state(
    state: Iterable[tuple[str, JSON]] | dict[str, JSON], prefix: str
) -> tuple[int, list[Any]]:
    """A whole state as write_state reads it, and its size as MemoryBackend counts it."""
    items = state.items() if isinstance(state, dict) else state
    args: list[Any] = [0]
    total = 0
    count = 0
    for prop, value in items:
        count += 1
        if type(value) is FrozenList:
            texts = [encode(item) for item in value]
            nbytes = 2 + sum(size(text) for text in texts) + max(0, len(texts) - 1)
            weight = len(prop) + nbytes
            args += [prop, weight, "l", f"{prefix}:l:{_escape(prop)}", len(texts), *texts]
        else:
            text = encode(value)
            weight = len(prop) + size(text)
            args += [prop, weight, "v", text]
        total += weight
    args[0] = count
    return total, args


@functools.lru_cache(maxsize=4096)
def _head(kind: str, prop: str | None, max_len: int | None) -> str:
    """The head of a message: what it does to which property (reset adds its ACL and TTL)."""
    return encode([kind, prop, max_len])


@functools.lru_cache(maxsize=4096)  # a live state's writes mostly repeat the same few
def _parse_head(text: str) -> list[Any]:
    head: list[Any] = json.loads(text)
    return head


def _decode_op(text: str) -> Op:
    head_text, _, value_text = text.partition("\n")
    head = _parse_head(head_text)
    kind: Literal["put", "delete", "reset", "append", "increment"] = head[0]
    value = _decode(value_text)
    if kind == "reset":
        return Op(kind, None, value, acl=ACL(head[3], head[4]), ttl=head[5])
    return Op(kind, head[1], value, max_len=head[2])


def _frozen_list(items: list[Any]) -> FrozenList:
    return FrozenList([_frozen_list(item) if type(item) is list else item for item in items])


def _frozen_object(pairs: list[tuple[str, Any]]) -> FrozenDict:
    frozen = FrozenDict(pairs)
    for key, value in pairs:
        if type(value) is list:
            dict.__setitem__(frozen, key, _frozen_list(value))
    return frozen


_decoder = json.JSONDecoder(object_pairs_hook=_frozen_object)


def _decode(text: str) -> JSON:
    """Decode JSON text that livestate wrote, into frozen values as every value handed out is.

    Objects are frozen by the decoder as it builds them, so only lists need a second look.
    """
    value = _decoder.raw_decode(text)[0]
    return _frozen_list(value) if type(value) is list else value
