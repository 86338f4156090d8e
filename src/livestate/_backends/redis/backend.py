"""The Redis/Valkey backend: live states shared by any number of nodes through one server.

Layout: every key of one live state shares the hash tag `{<spec>:<key>}`, both
percent-escaped, so a script touches one slot and Redis Cluster works:

    ls:{Chat:lobby}:m        meta hash: epoch, version, ACL, TTL, limits, total bytes, count
    ls:{Chat:lobby}:s        state hash: property -> JSON (or a marker for a list)
    ls:{Chat:lobby}:z        sizes hash: property -> bytes it counts, for the limits
    ls:{Chat:lobby}:h        holders: node id -> lease end, a sorted set
    ls:{Chat:lobby}:L        the set of list keys
    ls:{Chat:lobby}:l:<prop> a list property's items, one JSON text each
    ls:{Chat:lobby}:k        the order of the properties: property -> place, a sorted set
    ls:{Chat:lobby}:o        the start lock, while one node runs on_mount
    ls:{Chat:lobby}:w, :v    recent write ids -> their replies (so a retry applies once)
    ls:{Chat:lobby}:p        presence: client ref -> [identity, meta]; :pn refs per node
    ls:{Chat:lobby}:save     which node saves it (on_persist); `ls:saving` lists the claims
    ls:{Chat:lobby}:c        the pub/sub channel

Each write is one Lua script (lua/*.lua, catalogued in scripts.py): ACL check, size
checks, apply, raise the version, publish `(epoch, version, op)`, all or nothing: every
check and read comes before the first write. JSON is written by Python; Lua only parses
numbers, for increment. Ordering what arrives is the replicas' job (_replica.py): this
backend hands each message to its live state's listeners (channels.py), and has them
resync when messages may have been missed. Commands reach the deployment through a
`transport.Transport` (connect.py picks one), by way of dispatch.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..._acl import ACL, DELETE, Role, denied
from ..._changes import Op, StateId, describe, permission
from ..._exceptions import LiveStateError
from ..._values import JSON, FrozenList, encode, size
from ..base import (
    Applied,
    Backend,
    Census,
    Listener,
    Message,
    MountFunction,
    Snapshot,
    Survey,
    applied,
    not_running,
)
from . import claims, starting, survey
from .batch import plan
from .channels import Channels
from .checks import EvictionPolicy, check_layout
from .coalesce import Coalescer
from .codec import acl_and_ttl, encode_state, message_head, ttl_args
from .connect import open_transport
from .dispatch import Dispatcher
from .errors import translate
from .replies import fail, layout_error, number, snapshot
from .resp import ReplyError
from .scripts import (
    CACHED_KEYS,
    ROLE_FIELD,
    SHARED,
    WITHOUT_LISTS,
    Keys,
    declared,
    declared_cached,
    declared_now,
    fence,
    load_sources,
)
from .urls import form, names, parse

TIMEOUT = 2.0
"""Seconds any one call may take, retries of transient failures included, before it
raises BackendUnavailableError."""

LEASE = 5.0
"""Seconds a node's hold on a live state lasts unless its heartbeat renews it."""

Queued = tuple[Op, Role] | Callable[[], Awaitable[Applied]]
"""A write waiting its turn for a live state (coalesce.py): an op and the role writing it,
or an action's ops, ready to send."""

POLICY_BEATS = 10
"""Heartbeats between two looks at the server's maxmemory-policy."""


class RedisBackend(Backend):
    """Live states on a Redis 7+ or Valkey 8+ server, shared by every node that uses it.

    `url` is `redis://[[user]:password@]host:port/db` (also `rediss://`,
    `unix://`, `valkey://`), `redis+cluster://h1:p1[,h2:p2…]` or
    `redis+sentinel://h1:p1[,h2:p2…]/SERVICE[/db]` (see urls.py), optionally
    with livestate's settings as query parameters: `timeout` (seconds per call,
    retries included, default 2), `lease` (seconds a node's hold lasts without a
    heartbeat, default 5; the heartbeat runs five times per lease), `replicas`
    (how many replicas must confirm each write before it is acknowledged, with
    WAIT: 1 on Sentinel, else 0), and the login and TLS parameters of
    `urls.parse_url`. Raises InvalidValueError for a URL it cannot use, and
    ImportError, saying what to install, if the hiredis package is missing.
    """

    def __init__(self, url: str) -> None:
        # Sentinel exists to fail over, and a failover loses what its primary had not
        # replicated yet: there each write waits for one replica unless the URL says not.
        defaults = {
            "timeout": TIMEOUT,
            "lease": LEASE,
            "replicas": 1 if form(url) == "sentinel" else 0,
        }
        self._target, settings = parse(url, defaults)
        self.names = names(url, self._target)  # where its keys and channels are
        self.url = url
        self.timeout = settings["timeout"]
        self.lease = settings["lease"]
        self.replicas = int(settings["replicas"])
        self.heartbeat = self.lease / 5
        self._sources = load_sources()
        self._dispatcher: Dispatcher | None = None
        self._channels = Channels(self, self.names)
        self._held: dict[StateId, set[str]] = {}
        self._beating: asyncio.Task[None] | None = None
        self._policy = EvictionPolicy()
        self._censuses: dict[str, Census] = {}
        self._announcer = survey.Announcer(self._censuses, self.lease)
        # Write ids: this backend's tag and a counter, unique across nodes and restarts.
        self._tag = secrets.token_hex(6)
        self._writes = itertools.count(1)
        self._coalescer: Coalescer[Queued, Applied] = Coalescer(
            self._apply_alone, self._apply_together
        )

    def __repr__(self) -> str:
        return f"<RedisBackend {self.endpoint}>"

    @property
    def endpoint(self) -> str:
        """The deployment, as messages name it: a server's address, or a description."""
        if self._dispatcher is not None:
            return self._dispatcher.transport.server
        return str(self._target)

    @property
    def _dispatch(self) -> Dispatcher:
        """Where every command goes, once `start()` connected."""
        if self._dispatcher is None:
            raise RuntimeError("The Redis backend was used before start(); use it through a Node.")
        return self._dispatcher

    async def start(self) -> None:
        """Connect, load the scripts and start the heartbeat.

        Raises BackendUnavailableError if the server does not answer in time, and
        BackendError if it refuses the login or the scripts. Safe to call again
        after it failed.
        """
        events = self._channels.events()
        transport = await open_transport(
            self._target, self.timeout, self.heartbeat, events, self.log
        )
        dispatcher = Dispatcher(
            transport, self._sources, self.timeout, self.replicas, self._failed, self.names
        )
        try:
            await dispatcher.load()
            await check_layout(dispatcher)
            await self._policy.check(dispatcher, self.log)
            transport.listen()
        except BaseException:
            await transport.aclose()
            raise
        self._dispatcher = dispatcher
        self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def aclose(self) -> None:
        """Stop the heartbeat, close every connection; the backend is unusable afterwards."""
        if self._beating is not None:
            self._beating.cancel()
        self._announcer.cancel()
        self._channels.clear()
        if self._dispatcher is not None:
            await self._dispatcher.transport.aclose()

    def _failed(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.failed(kind)

    # The Backend contract.

    def register(self, node: str, census: Census) -> None:
        self._censuses[node] = census

    def unregister(self, node: str) -> None:
        self._censuses.pop(node, None)

    def recount(self, node: str) -> None:
        if self._dispatcher is not None:
            self._announcer.soon(self._dispatcher, self.log)

    async def survey(self, id: StateId | None = None) -> Survey:
        return await survey.survey(self._dispatch, id)

    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        dispatcher = self._dispatch
        opened = await starting.open_state(dispatcher, id, mount, node, hold, self.lease, self.log)
        if hold:
            self._held.setdefault(id, set()).add(node)
        subscription = self._channels.get(id)
        if subscription is not None and not dispatcher.transport.subscribed(subscription.name):
            # The subscription may have begun after this snapshot was read: check once more.
            subscription.recheck = True
        return opened

    async def release(self, id: StateId, node: str) -> None:
        holders = self._held.get(id)
        if holders is not None:
            holders.discard(node)
            if not holders:
                del self._held[id]
        await self._dispatch.run("lease", id, self._keys(id, script="lease"), "release", node, 0)

    async def read(
        self, id: StateId, prop: str | None = None, *, presence_only: bool = False
    ) -> Snapshot | None:
        what = "" if prop is None else prop
        keys = self._keys(id, script="read")
        reply = await self._dispatch.run("read", id, keys, what, "p" if presence_only else "")
        if reply[0] == "layout":
            raise layout_error(id, reply[1], self.endpoint)
        if reply[0] != "ok":
            return None
        return snapshot(reply)

    async def apply(self, id: StateId, op: Op, role: Role) -> Applied:
        if self.replicas:
            # Each write waits (WAIT) for its replicas on the connection it ran on: alone.
            return await self._apply_alone(id, (op, role))
        kind = op.kind
        shared = kind in SHARED and (kind != "put" or type(op.value) is not FrozenList)
        return await self._coalescer.write(id, (op, role), shared)

    async def apply_many(
        self, id: StateId, ops: Sequence[Op], expect: int, state: Mapping[str, JSON]
    ) -> Applied:
        action = functools.partial(self._apply_action, id, ops, expect, state)
        if self.replicas:
            return await action()
        return await self._coalescer.write(id, action, shared=False)  # in its place in order

    async def _apply_alone(self, id: StateId, write: Queued) -> Applied:
        """Send one queued write by itself: an op, or an action's batch."""
        if callable(write):
            return await write()
        op, role = write
        script, keys, args = self._command(id, op, role)
        run = (self._dispatcher or self._dispatch).run  # the property raises before start()
        reply = await run(script, id, keys, *args, op=op, write=True)
        if type(reply) is not str and reply[0] == "lists":
            # Not applied: the property is a list. Again, with the list keys declared.
            keys = self._keys(id, op.prop or "", script)
            reply = await run(script, id, keys, *args, op=op, write=True)
        return self._applied(id, op, role, reply)

    async def _apply_together(
        self, id: StateId, writes: Sequence[Queued], number: int | None, after: int | None
    ) -> list[Applied | BaseException] | None:
        """Send several ops (each of SHARED) in one call of lua/many.lua, named `number`
        once applied whole and applied only once call `after` was (see coalesce.py); each
        op's result or error, in order, or None if call `after` had not been applied."""
        prefix = self.names.state(id)
        keys = list(declared(prefix, "increment"))  # the keys every one of them declares
        args: list[Any] = [len(writes), self._call_name(number), self._call_name(after)]
        ids: list[int] = []
        ops: list[tuple[Op, Role]] = []
        for write in writes:
            if callable(write):
                raise RuntimeError("An action's batch was coalesced with other writes: a bug.")
            op, role = write
            script, op_keys, op_args = self._command(id, op, role)
            index = 0
            if len(op_keys) > WITHOUT_LISTS:  # L and the list key (an append)
                if len(keys) == WITHOUT_LISTS:
                    keys.append(op_keys[WITHOUT_LISTS])
                if op_keys[-1] not in keys:
                    keys.append(op_keys[-1])
                index = keys.index(op_keys[-1]) + 1
            ids.append(len(args) + 3 + 4)  # the op's ARGV[7], among what follows ARGV 2
            args += [script, index, len(op_args), *op_args]
            ops.append(write)
        run = self._dispatch.run
        replies = await run(
            "many", id, tuple(keys), *args, op=ops[0][0], write=True, ids=tuple(ids)
        )
        if replies[0] == "wait":
            return None  # call `after` was not applied (yet): nothing of this one was
        results: list[Applied | BaseException] = []
        for (op, role), reply in zip(ops, replies, strict=True):
            try:
                if type(reply) is not str and reply[0] in ("lists", "later"):
                    # Not applied: a list, whose keys it did not declare, or a write after
                    # one. Alone, in order (lua/many.lua).
                    results.append(await self._apply_alone(id, (op, role)))
                elif type(reply) is not str and reply[0] == "error":
                    raise translate(ReplyError(reply[1]), self.endpoint, f"{describe(op)} {id}")
                else:
                    results.append(self._applied(id, op, role, reply))
            except Exception as error:
                results.append(error)
        return results

    def _command(self, id: StateId, op: Op, role: Role) -> tuple[str, Keys, list[Any]]:
        """The script that writes `op`, its keys (put and delete first without the list
        keys, see scripts.DECLARES) and its arguments from ARGV 3 on."""
        prop = op.prop or ""
        kind = op.kind
        script = "presence" if kind == "join" or kind == "leave" else kind
        # put and delete declare L and LK only if the property turns out to be a list.
        lists = kind != "delete" and (kind != "put" or type(op.value) is FrozenList)
        prefix = self.names.state(id)
        # A presence's ref names no list: its keys are the same for every client, so the
        # caches hold one entry per live state. (Inline, not declared(): every write's path.)
        listed = "" if script == "presence" else prop
        if len(prefix) + len(listed) <= CACHED_KEYS:
            keys = declared_cached(prefix, script, listed, lists)
        else:
            keys = declared_now(prefix, script, listed, lists)
        head = (
            encode([kind, op.prop, op.max_len, *acl_and_ttl(op)])
            if kind == "reset"
            else message_head(kind, op.prop, op.max_len)
        )
        # The writer's clock (µs) travels along, for the cross-node latency metric.
        value = encode(op.value) if kind == "reset" else op.encoded
        body = f"{head}\n{time.time_ns() // 1000}\n{value}"
        expect = fence(op.expect, op.epoch)
        # ARGV 3 to 7 are what every write shares (lua/write.lua), the rest each script's.
        args: list[Any] = [ROLE_FIELD[role], permission(op), expect, body, self._write_id(op)]
        if kind == "join":
            args += ["join", prop, op.encoded, int(self.lease * 1000)]
        elif kind == "leave":
            args += ["leave", *op.value]
        elif kind == "reset":
            acl = op.acl or ACL()
            total, state = encode_state(op.value, prefix)
            args += [acl.group, acl.public, *ttl_args(op.ttl), total, *state]
        else:
            weight = size(prop)  # a property's name counts, in bytes, as on MemoryBackend
            args += [prop, weight]
            if kind == "put":
                args.append(op.size)
                if type(op.value) is FrozenList:
                    args += ["l", *(encode(item) for item in op.value)]
                else:
                    args += ["v", op.encoded]
            elif kind == "append":
                args += [op.size, "" if op.max_len is None else op.max_len, op.encoded]
            elif kind == "increment":
                args += [op.encoded, "1" if type(op.value) is float else "0"]
                if op.bounds is not None:
                    low, low_strict, high, high_strict = op.bounds
                    args += ["" if low is None else repr(low), "1" if low_strict else "0"]
                    args += ["" if high is None else repr(high), "1" if high_strict else "0"]
            else:
                del args[-1]  # delete names the property only
        return script, keys, args

    def _applied(self, id: StateId, op: Op, role: Role, reply: Any) -> Applied:
        """What a write script's `reply` says was done; raises the error of a refusal."""
        if type(reply) is not str:
            fail(id, op, role, reply, self.endpoint)
        # Applied now, or (a retry of a write whose reply was lost) once before.
        if reply[0] == "!":
            version, epoch, result = reply[1:].split("\n", 2)
            value = number(result) if op.kind == "increment" else None
            return Applied(epoch, int(version), value, True)
        version, epoch, result = reply.split("\n", 2)
        return applied(epoch, int(version), number(result) if op.kind == "increment" else None)

    async def _apply_action(
        self, id: StateId, ops: Sequence[Op], expect: int, state: Mapping[str, JSON]
    ) -> Applied:
        """An action's ops, all or none (lua/batch.lua)."""
        keys = self._keys(id, script="batch")
        lists, args = plan(id, self.names.state(id), ops, state, len(keys) + 1)
        reply = await self._dispatch.run(
            "batch", id, (*keys, *lists), "g", 0, fence(expect, ops[0].epoch), "",
            self._write_id(ops[0]), *args, op=ops[0], write=True,
        )  # fmt: skip
        if type(reply) is not str:
            if reply[0] in ("value_size", "state_size"):
                prop = reply[3]
                op = next(op for op in ops if op.prop == prop)
                fail(id, op, "group", reply[:3], self.endpoint)
            fail(id, ops[0], "group", reply, self.endpoint)
        repeated = reply.startswith("!")
        version, epoch, _ = reply[repeated:].split("\n", 2)
        return Applied(epoch, int(version), None, repeated)

    def _call_name(self, number: int | None) -> str:
        """A coalesced call's name on the server ('' for none): this backend's tag, '/' and
        the number (no write id has a '/' after the tag)."""
        return "" if number is None else f"{self._tag}/{number:x}"

    def _write_id(self, op: Op) -> str:
        """ARGV[7]: the caller's id for the write, looked up at once ('+'), or one of ours."""
        if op.write_id is not None:
            return f"+u:{op.write_id}"
        return f"{self._tag}{next(self._writes):x}"

    async def stop(self, id: StateId, role: Role) -> None:
        keys = self._keys(id, script="stop")
        reply = await self._dispatch.run("stop", id, keys, ROLE_FIELD[role], DELETE)
        status = reply[0]
        if status == "missing":
            raise not_running(id)
        if status == "denied":
            raise denied(role, DELETE, "stop", str(id))
        self._held.pop(id, None)
        # The published copy may come later: tell the local listeners now.
        if subscription := self._channels.get(id):
            self._channels.deliver(subscription, Message(reply[1], 0, "stopped"))

    async def announce(self, id: StateId, kind: str, value: JSON) -> None:
        channel = self.names.channel(self.names.state(id))
        text = f"\n0\nnotice\n{kind}\n{encode(value)}"
        await self._dispatch.call(
            channel, "SPUBLISH", channel, text, doing=f"tell the clients of {id}"
        )

    async def subscribe(self, id: StateId, listener: Listener) -> None:
        transport = self._dispatch.transport
        subscription = self._channels.add(id, listener)
        if subscription is not None:
            transport.subscribe(subscription.name)
        # No wait for the server's confirmation (attach stays within one timeout): `open`
        # checks whether it came, and a late one makes the listeners resync.

    async def unsubscribe(self, id: StateId, listener: Listener) -> None:
        subscription = self._channels.remove(id, listener)
        if subscription is not None and self._dispatcher is not None:
            await self._dispatcher.transport.unsubscribe(subscription.name)

    # Persistence: the claim is the key `ls:{<spec>:<key>}:save` (claims.py).

    async def claim_save(
        self, id: StateId, node: str, lease: float
    ) -> tuple[bool, str | None, int, int]:
        return await claims.claim(self._dispatch, id, node, lease)

    async def release_save(self, id: StateId, node: str) -> None:
        await claims.release(self._dispatch, id, node)

    async def orphans(self, limit: int) -> list[StateId]:
        return await claims.orphans(self._dispatch, limit)

    def save_lease(self) -> float:
        return float(self.lease)

    # Internals.

    def _keys(self, id: StateId, prop: str = "", script: str = "", lists: bool = True) -> Keys:
        """The keys `script` declares for live state `id` (see scripts.declared)."""
        return declared(self.names.state(id), script, prop, lists)

    async def _beat(self) -> None:
        """Renew this node's leases, show each replica where the server is, and every
        `POLICY_BEATS` beats look at the eviction policy again."""
        dispatcher = self._dispatch
        for beat in itertools.count(1):
            await asyncio.sleep(self.heartbeat)
            if beat % POLICY_BEATS == 0:
                with contextlib.suppress(LiveStateError):
                    await self._policy.check(dispatcher, self.log)
            with contextlib.suppress(LiveStateError):
                await self._announcer.announce(dispatcher)
            held = [(id, node) for id, nodes in self._held.items() for node in nodes]
            lease = int(self.lease * 1000)
            results = await asyncio.gather(
                *(
                    dispatcher.run("lease", id, self._keys(id, script="lease"), "hold", node, lease)
                    for id, node in held
                ),
                return_exceptions=True,
            )
            if self.metrics is not None:
                self.metrics.renewed(sum(type(reply) is list for reply in results))
            seen: set[StateId] = set()
            for (id, _), reply in zip(held, results, strict=True):
                subscription = self._channels.get(id)
                if subscription is None or id in seen or isinstance(reply, BaseException):
                    continue  # unavailable: the pub/sub reconnect resyncs when it is back
                seen.add(id)
                ok = reply[0] == "ok"
                epoch, version = (reply[1], int(reply[2])) if ok else (None, 0)
                present = int(reply[3]) if ok else None
                for listener in tuple(subscription.listeners):
                    try:
                        listener.observe(epoch, version, present)
                    except Exception:
                        self.log.exception("%s: a replica's heartbeat check failed", id)
