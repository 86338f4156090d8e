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

Each write is one Lua script (lua/*.lua): ACL check, size checks, apply, raise
the version, publish `(epoch, version, op)`, all or nothing: every check and
read comes before the first write. JSON is written by Python; Lua only ever
parses numbers, for increment. Ordering what arrives is the replicas' job
(_replica.py): this backend only hands each message to the listeners of its
live state, and tells them to resync when messages may have been missed.

Connections, per backend object (one per node), both resp.py's: one command
connection on which concurrent calls are pipelined (the calls made while others
are in flight leave together, one send per event loop turn), and one pub/sub
connection subscribed only to the live states that have local clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

try:
    from .resp import Endpoint, Pipe, ReplyError, parse_url
except ImportError as error:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "The Redis backend of livestate needs the hiredis package; "
        "install it with pip install 'livestate[redis]'."
    ) from error

from ..._acl import ACL, DELETE, Role, denied
from ..._changes import Op, StateId, describe, evaluate, permission
from ..._exceptions import BackendError, BackendUnavailableError, InvalidValueError, LiveStateError
from ..._schema import NO_BOUNDS, out_of_range
from ..._values import JSON, FrozenList, check_size, encode, size
from ..base import (
    Applied,
    Backend,
    Census,
    ConflictError,
    Listener,
    Message,
    MountFunction,
    NodeReport,
    Snapshot,
    StateReport,
    Survey,
    not_running,
    started_anew,
)
from .batch import plan
from .codec import (
    acl_and_ttl,
    decode,
    decode_op,
    encode_state,
    escape,
    key_prefix,
    message_head,
    parse_prefix,
    ttl_args,
)
from .errors import RECONNECT, TRANSIENT, code, translate
from .sentinel import PrimaryPipe, Sentinels, SentinelService, parse_sentinel_url
from .slots import parse_cluster_url
from .subscriber import Subscriber, Subscription
from .topology import Router, cluster_enabled

TIMEOUT = 2.0
"""Seconds any one call may take, retries of transient failures included, before it
raises BackendUnavailableError."""

LEASE = 5.0
"""Seconds a node's hold on a live state lasts unless its heartbeat renews it."""

LOCK = 3.0
"""Seconds the start lock lasts; renewed every third of that while on_mount runs."""

LAYOUT = 2
"""The data layout and message format of this release's Redis backend; the scripts'
`LAYOUT` (lua/common.lua) is the same number. A node refuses a server whose
`ls:layout` names another one."""

POLICY_BEATS = 10
"""Heartbeats between two looks at the server's maxmemory-policy."""

RETRY = (0.01, 0.02, 0.05, 0.1, 0.2)
"""Seconds between retries of a call that failed in passing (busy, loading, reconnecting)."""

_SCRIPTS = ("open", "init", "lock", "read", "lease", "put", "delete", "append", "increment",
            "reset", "stop", "presence", "save", "batch")  # fmt: skip

_ROLE_FIELD = {"group": "g", "public": "p"}

_KEYS = {"M": "m", "S": "s", "Z": "z", "H": "h", "L": "L", "O": "o", "LK": "l:", "K": "k",
         "W": "w", "V": "v", "P": "p", "PN": "pn"}  # fmt: skip
"""Each key of a live state: its name in the scripts, and what follows `ls:{spec:key}:` in
it (LK, a list property's key, ends with the property's escaped name). A key added here
is declared to every script that `_DECLARES` does not list (see lua/common.lua)."""

_DECLARES = {
    "increment": ("M", "S", "Z", "K", "W", "V"),
    "put": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "delete": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "append": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "lock": ("O",),
}
"""The keys a script declares, in order, when not all of `_KEYS`. During a cluster's slot
migration a script waits (TRYAGAIN) while any key it declares is not on the node that runs
it, and a key that does not exist counts as not there: so each declares only the keys it
may touch. put and delete go first with the six before L and LK (their property is rarely
a list), and reply 'lists' when it is one, without writing; they are called again with all
eight."""

_WITHOUT_LISTS = 6
"""How many of put's and delete's keys come before L and LK."""


class RedisBackend(Backend):
    """Live states on a Redis 7+ or Valkey 8+ server, shared by every node that uses it.

    `url` is `redis://[[user]:password@]host:port/db` (also `rediss://`,
    `unix://`, `valkey://`) or `redis+sentinel://h1:p1[,h2:p2…]/SERVICE[/db]`
    (see sentinel.py), optionally with livestate's settings as query
    parameters: `timeout` (seconds per call, retries included, default 2),
    `lease` (seconds a node's hold lasts without a heartbeat, default 5; the
    heartbeat runs five times per lease), `replicas` (how many replicas must
    confirm each write before it is acknowledged, with WAIT: 1 on Sentinel,
    else 0), and the login and TLS parameters of `resp.parse_url`. Raises
    InvalidValueError for a URL it cannot use, and ImportError, saying what to
    install, if the hiredis package is missing.
    """

    def __init__(self, url: str) -> None:
        scheme = url.partition("://")[0].lower()
        sentinel = scheme.endswith("+sentinel")
        defaults = {"timeout": TIMEOUT, "lease": LEASE, "replicas": 1 if sentinel else 0}
        self._service: SentinelService | None = None
        self._seeds: list[Endpoint] | None = None  # a cluster's, once known to be one
        if sentinel:
            self._service, settings = parse_sentinel_url(url, defaults)
            self.endpoint: Endpoint | str = (
                f"the primary of {self._service.name!r} (Sentinels "
                f"{', '.join(map(str, self._service.sentinels))})"
            )
        elif scheme.endswith("+cluster"):
            self._seeds, settings = parse_cluster_url(url, defaults)
            self.endpoint = f"the cluster of {', '.join(map(str, self._seeds))}"
        else:
            self.endpoint, settings = parse_url(url, defaults)
        self.url = url
        self.timeout = settings["timeout"]
        self.lease = settings["lease"]
        self.replicas = int(settings["replicas"])
        self.heartbeat = self.lease / 5
        self._pipe: Pipe | PrimaryPipe | None = None
        self._router: Router | None = None
        self._sentinels: Sentinels | None = None
        self._shas: dict[str, str] = {}
        self._sources = _load_scripts()
        self._subscriptions: dict[StateId, Subscription] = {}
        self._by_name: dict[str, Subscription] = {}
        self._held: dict[StateId, set[str]] = {}
        self._subscriber: Subscriber | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._policy: str | None = None  # the server's maxmemory-policy, as last read
        self._censuses: dict[str, Census] = {}
        # Write ids: this backend's tag and a counter, unique across nodes and restarts.
        self._tag = secrets.token_hex(6)
        self._writes = itertools.count(1)

    def __repr__(self) -> str:
        return f"<RedisBackend {self.endpoint}>"

    async def start(self) -> None:
        """Connect, load the scripts and start the heartbeat.

        Raises BackendUnavailableError if the server does not answer in time, and
        BackendError if it refuses the login or the scripts. Safe to call again
        after it failed.
        """
        if self._seeds is None and self._service is None:
            await self._detect_cluster()
        if self._seeds is not None:
            self._router = Router(
                self._seeds, self.timeout, on_message=self._received, on_resync=self._moved
            )
            try:
                await self._router.start()
                await self._prepare()
            except BaseException:
                router, self._router = self._router, None
                await router.aclose()
                raise
            self._tasks.append(asyncio.get_running_loop().create_task(self._beat()))
            return
        if self._service is not None:
            # Sentinel: every connection goes to the primary they name now, and leaves it
            # when they announce another (before any READONLY).
            self._sentinels = Sentinels(self._service, self.timeout)
            primary = PrimaryPipe(self._sentinels.primary, self.timeout)
            primary.follow(self._sentinels)
            pipe: Pipe | PrimaryPipe = primary
        else:
            pipe = Pipe(self.endpoint, self.timeout)  # type: ignore[arg-type]
        self._pipe = pipe
        try:
            await self._prepare()
        except BaseException:
            self._pipe = None
            await pipe.aclose()
            raise
        self._subscriber = subscriber = Subscriber(
            self.primary,
            self._subscriptions_now,
            self._received,
            self._confirmed,
            self._reconnected,
            self.heartbeat,
            self.timeout,
            self.log,
            self.endpoint,
        )
        subscriber.start()
        if self._sentinels is not None:
            self._tasks.append(
                self._sentinels.watch(lambda primary: subscriber.drop(f"{primary} took over"))
            )
        self._tasks.append(asyncio.get_running_loop().create_task(self._beat()))

    async def aclose(self) -> None:
        """Stop the heartbeat, close both connections; the backend is unusable afterwards."""
        for task in self._tasks:
            task.cancel()
        if self._subscriber:
            await self._subscriber.aclose()
        self._subscriptions.clear()
        self._by_name.clear()
        if self._pipe:
            await self._pipe.aclose()
        if self._router:
            await self._router.aclose()

    async def _detect_cluster(self) -> None:
        """A redis:// URL may name any node of a cluster: then route by slot from there."""
        endpoint = self.endpoint
        if not isinstance(endpoint, Endpoint):
            return  # a Sentinel or cluster URL: nothing to detect
        try:
            clustered = await cluster_enabled(endpoint, self.timeout)
        except (OSError, TimeoutError) as error:
            raise BackendUnavailableError(
                f"The Redis server at {endpoint} could not be reached ({error}); check that it "
                "runs and is reachable, then retry."
            ) from None
        except ReplyError:
            clustered = False  # CLUSTER refused (ACL, a managed service): not a cluster to us
        if clustered:
            if endpoint.db:
                raise InvalidValueError(
                    f"LIVESTATE_URL names database {endpoint.db}, but {endpoint} is a cluster "
                    "node and a cluster has only database 0: leave the /db out."
                )
            self._seeds = [endpoint]
            self.endpoint = f"the cluster of {endpoint}"

    async def _prepare(self) -> None:
        await self._load()
        await self._check_layout()
        await self._check_eviction()

    async def _call(self, key: str | int, *args: Any) -> Any:
        """One command: to the primary of `key`'s slot on a cluster, else to the primary."""
        if self._router is not None:
            return await self._router.call(key, *args)
        if self._pipe is None:
            raise RuntimeError("The Redis backend was used before start(); use it through a Node.")
        return await self._pipe.call(*args)

    def _moved(self, channel: str) -> None:
        """The cluster placed a channel anew (a slot moved, a shard failed over): resync."""
        subscription = self._by_name.get(channel)
        if subscription is not None:
            self._resync(subscription, "reconnect")

    # The Backend contract.

    def register(self, node: str, census: Census) -> None:
        self._censuses[node] = census

    def unregister(self, node: str) -> None:
        self._censuses.pop(node, None)

    async def survey(self, id: StateId | None = None) -> Survey:
        call = self._call
        metas = [f"{key_prefix(id)}:m"] if id is not None else await self._scan("ls:{*}:m")
        node_keys = await self._scan("ls:node:*")
        replies = await asyncio.gather(
            *(call(meta, "HMGET", meta, "e", "v", "n", "T") for meta in metas),
            *(call(meta, "PTTL", meta) for meta in metas),
            *(call(meta, "ZRANGE", meta[:-1] + "h", 0, -1, "WITHSCORES") for meta in metas),
            *(call(meta, "HLEN", meta[:-1] + "p") for meta in metas),
            *(call(key, "GET", key) for key in node_keys),
            *(call(key, "PTTL", key) for key in node_keys),
            call("ls:layout", "TIME"),
        )
        count = len(metas)
        fields, ttls, holders, present = (
            replies[:count],
            replies[count : 2 * count],
            replies[2 * count : 3 * count],
            replies[3 * count : 4 * count],
        )
        nodes = len(node_keys)
        infos = replies[4 * count : 4 * count + nodes]
        leases = replies[4 * count + nodes : 4 * count + 2 * nodes]
        seconds, micros = replies[-1]
        now = int(seconds) * 1000 + int(micros) // 1000
        clients: dict[tuple[str, str], dict[str, int]] = {}
        node_reports = []
        for key, info, lease in zip(node_keys, infos, leases, strict=True):
            if info is None:
                continue  # its lease ran out between the scan and now
            node = key[len("ls:node:") :]
            counts = json.loads(info)["clients"]
            for spec, state_key, n in counts:
                clients.setdefault((spec, state_key), {})[node] = n
            node_reports.append(
                NodeReport(node, max(0, lease) / 1000, len(counts), sum(c[2] for c in counts))
            )
        states = []
        for meta, (epoch, version, size_, ttl), pttl, held, shown in zip(
            metas, fields, ttls, holders, present, strict=True
        ):
            if epoch is None:
                continue  # ended between the scan and now
            spec, key = parse_prefix(meta[: -len(":m")])
            leases_left: dict[str, float | None] = {
                held[i]: max(0.0, (float(held[i + 1]) - now) / 1000) for i in range(0, len(held), 2)
            }
            states.append(
                StateReport(
                    spec,
                    key,
                    int(version),
                    epoch,
                    int(size_ or 0),
                    None if not ttl else float(ttl),
                    None if pttl < 0 else pttl / 1000,
                    leases_left,
                    clients.get((spec, key), {}),
                    shown,
                )
            )
        states.sort(key=lambda state: (state.spec, state.key))
        node_reports.sort(key=lambda report: report.id)
        return Survey(states, node_reports)

    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        keys = self._keys(id, script="open")
        hold_flag = "1" if hold else "0"
        token = secrets.token_hex(8)
        lease = int(self.lease * 1000)
        delay = 0.002
        while True:
            reply = await self._run(
                "open", id, keys, node, hold_flag, lease, token, int(LOCK * 1000)
            )
            status = reply[0]
            if status == "ok":
                snapshot = self._snapshot(reply)
                break
            if status == "layout":
                raise self._layout(id, reply[1])
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
        subscription = self._subscriptions.get(id)
        if subscription is not None and (
            subscription.confirmed is None or not subscription.confirmed.done()
        ):
            # The subscription may have begun after this snapshot was read: check once more.
            subscription.resubscribed = True
        return snapshot

    async def release(self, id: StateId, node: str) -> None:
        holders = self._held.get(id)
        if holders is not None:
            holders.discard(node)
            if not holders:
                del self._held[id]
        await self._run("lease", id, self._keys(id, script="lease"), "release", node, 0)

    async def read(
        self, id: StateId, prop: str | None = None, *, presence_only: bool = False
    ) -> Snapshot | None:
        what = "" if prop is None else prop
        keys = self._keys(id, script="read")
        reply = await self._run("read", id, keys, what, "p" if presence_only else "")
        if reply[0] == "layout":
            raise self._layout(id, reply[1])
        if reply[0] != "ok":
            return None
        return self._snapshot(reply)

    async def apply(self, id: StateId, op: Op, role: Role) -> Applied:
        prop = op.prop or ""
        kind = op.kind
        script = "presence" if kind == "join" or kind == "leave" else kind
        # put and delete declare L and LK only if the property turns out to be a list.
        lists = kind != "delete" and (kind != "put" or type(op.value) is FrozenList)
        prefix = key_prefix(id)
        # A presence's ref names no list: its keys are the same for every client, so the
        # caches below hold one entry per live state, not one per client.
        listed = "" if script == "presence" else prop
        # (Inline, not through _keys: this is every write's path, and a call costs.)
        if len(prefix) + len(listed) <= _CACHED_KEYS:
            keys = _declared_cached(prefix, script, listed, lists)
        else:
            keys = _declared_now(prefix, script, listed, lists)
        head = (
            encode([kind, op.prop, op.max_len, *acl_and_ttl(op)])
            if kind == "reset"
            else message_head(kind, op.prop, op.max_len)
        )
        # The writer's clock (µs) travels along, for the cross-node latency metric.
        value = encode(op.value) if kind == "reset" else op.encoded
        body = f"{head}\n{time.time_ns() // 1000}\n{value}"
        expect = fence(op.expect, op.epoch)
        write = self._write_id(op)
        args: list[Any] = [_ROLE_FIELD[role], permission(op), expect, body, write]
        if kind == "join":
            args += ["join", prop, op.encoded, int(self.lease * 1000)]
        elif kind == "leave":
            args += ["leave", *op.value]
        elif kind == "reset":
            acl = op.acl or ACL()
            total, state = encode_state(op.value, key_prefix(id))
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
        reply = await self._run(script, id, keys, *args, op=op, write=True)
        if type(reply) is not str and reply[0] == "lists":
            # Not applied: the property is a list. Again, with the list keys declared.
            keys = self._keys(id, prop, script)
            reply = await self._run(script, id, keys, *args, op=op, write=True)
        if type(reply) is not str:
            self._fail(id, op, role, reply)
        # Applied now, or (a retry of a write whose reply was lost) once before.
        repeated = reply.startswith("!")
        version, epoch, result = reply[repeated:].split("\n", 2)
        return Applied(
            epoch, int(version), _number(result) if kind == "increment" else None, repeated
        )

    async def apply_many(
        self, id: StateId, ops: Sequence[Op], expect: int, state: Mapping[str, JSON]
    ) -> Applied:
        keys = self._keys(id, script="batch")
        lists, args = plan(id, key_prefix(id), ops, state, len(keys) + 1)
        write = self._write_id(ops[0])
        reply = await self._run(
            "batch",
            id,
            (*keys, *lists),
            "g",
            0,
            fence(expect, ops[0].epoch),
            "",
            write,
            *args,
            op=ops[0],
            write=True,
        )
        if type(reply) is not str:
            if reply[0] in ("value_size", "state_size"):
                prop = reply[3]
                op = next(op for op in ops if op.prop == prop)
                self._fail(id, op, "group", reply[:3])
            self._fail(id, ops[0], "group", reply)
        repeated = reply.startswith("!")
        version, epoch, _ = reply[repeated:].split("\n", 2)
        return Applied(epoch, int(version), None, repeated)

    def _write_id(self, op: Op) -> str:
        """ARGV[7]: the caller's id for the write, looked up at once ('+'), or one of ours."""
        if op.write_id is not None:
            return f"+u:{op.write_id}"
        return f"{self._tag}{next(self._writes):x}"

    async def stop(self, id: StateId, role: Role) -> None:
        keys = self._keys(id, script="stop")
        reply = await self._run("stop", id, keys, _ROLE_FIELD[role], DELETE)
        status = reply[0]
        if status == "missing":
            raise not_running(id)
        if status == "denied":
            raise denied(role, DELETE, "stop", str(id))
        self._held.pop(id, None)
        # The published copy may come later: tell the local listeners now.
        if subscription := self._subscriptions.get(id):
            self._deliver(subscription, Message(reply[1], 0, "stopped"))

    async def announce(self, id: StateId, kind: str, value: JSON) -> None:
        channel = f"{key_prefix(id)}:c"
        try:
            await self._call(channel, "SPUBLISH", channel, f"\n0\nnotice\n{kind}\n{encode(value)}")
        except ReplyError as error:
            raise translate(error, self.endpoint, f"tell the clients of {id}") from None

    async def subscribe(self, id: StateId, listener: Listener) -> None:
        subscription = self._subscriptions.get(id)
        if subscription is None:
            name = f"{key_prefix(id)}:c"
            subscription = Subscription(name)
            self._subscriptions[id] = self._by_name[name] = subscription
            if self._router is not None:
                subscription.confirmed = asyncio.get_running_loop().create_future()
                self._tasks.append(asyncio.create_task(self._place(subscription)))
            elif self._subscriber is None:
                raise RuntimeError("The Redis backend was used before start(); use a Node.")
            else:
                self._subscriber.add(subscription)
        subscription.listeners.append(listener)
        # No wait for the server's confirmation (attach stays within one timeout): `open`
        # checks whether it came, and a late one makes the listeners resync.

    async def unsubscribe(self, id: StateId, listener: Listener) -> None:
        subscription = self._subscriptions.get(id)
        if subscription is None:
            return
        if listener in subscription.listeners:
            subscription.listeners.remove(listener)
        if not subscription.listeners:
            del self._subscriptions[id]
            self._by_name.pop(subscription.name, None)
            if self._router is not None:
                await self._router.unsubscribe(subscription.name)
            elif self._subscriber:
                self._subscriber.remove(subscription)

    # Internals.

    def _keys(self, id: StateId, prop: str = "", script: str = "", lists: bool = True) -> Keys:
        """The keys `script` declares for live state `id` (every key for a script that
        `_DECLARES` does not list); `prop` names the property of LK, the list key."""
        return _declared(key_prefix(id), script, prop, lists)

    async def _place(self, subscription: Subscription) -> None:
        """Subscribe a channel at its slot's owner in the cluster; confirm it when done."""
        if self._router is None:
            return
        try:
            await self._router.subscribe(subscription.name)
        except LiveStateError as error:
            self.log.warning("%s: could not subscribe (%s); resyncing", subscription.name, error)
            subscription.resubscribed = True
            self._resync(subscription, "reconnect")
            return
        self._confirmed(subscription.name)

    async def _run(
        self,
        script: str,
        id: StateId,
        keys: Keys,
        *args: Any,
        op: Op | None = None,
        write: bool = False,
    ) -> Any:
        """Run one script by its SHA; the one boundary where server errors are translated.

        Failures that pass (busy, loading, a failover, a reconnect) are retried
        until `timeout` is spent. For a `write`, args[4] is its id (ARGV[7]); a
        retry marks it with '+', and the script answers a retry of a write it
        already applied with the reply it gave then.
        """
        pipe = self._pipe
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 0
        reloaded = False
        failure: LiveStateError
        while True:
            try:
                sha = self._shas[script]
                if len(keys[0]) + len(keys[-1]) <= 2 * _CACHED_KEYS:  # LK, if any, is last
                    call = _command_cached(sha, keys) + args
                else:
                    call = _command_now(sha, keys) + args
                router = self._router
                if pipe is not None:
                    if not write or not self.replicas:
                        return await pipe.call(*call)
                    # Acknowledge only what a replica has too, so a failover cannot lose it.
                    wait = max(1, int((deadline - loop.time()) * 1000))
                    before = pipe.reconnects
                    reply = await pipe.call(*call)
                    if type(reply) is not str:
                        return reply  # refused: nothing to wait for
                    copies = await pipe.call("WAIT", self.replicas, wait)
                    if pipe.reconnects == before and copies >= self.replicas:
                        return reply
                elif router is not None:  # routed by its first key: all share one slot
                    if not write or not self.replicas:
                        return await router.call(keys[0], *call)
                    # WAIT travels right behind the script, on the same shard connection. It
                    # holds that connection while it waits: end it well before the link's
                    # watchdog would drop the connection as stalled (at `timeout`).
                    wait = max(1, int((deadline - loop.time()) * 800))
                    reply, copies = await router.call_and_wait(keys[0], call, self.replicas, wait)
                    if type(reply) is not str or copies >= self.replicas:
                        return reply
                else:
                    raise RuntimeError(
                        "The Redis backend was used before start(); use it through a Node."
                    )
                failure = BackendUnavailableError(
                    f"The Redis server at {self.endpoint} did not confirm that {self.replicas} "
                    f"replica(s) have the write to {_what(script, id, op)} within the "
                    "timeout; it may be lost if the primary fails. Retry, or lower ?replicas=."
                )
            except ReplyError as error:
                kind = code(error)
                if kind == "NOSCRIPT" and not reloaded:
                    # The server restarted, failed over, or SCRIPT FLUSH ran: load them again,
                    # once per call. A write's id stays as it was: the script never ran.
                    reloaded = True
                    await self._load()
                    continue
                if kind in RECONNECT and pipe is not None:
                    pipe.drop(f"answered {kind}")
                failure = translate(error, self.endpoint, _what(script, id, op))
                if self.metrics is not None:
                    self.metrics.failed(kind or "error")
                if kind not in TRANSIENT:
                    raise failure from None
            except BackendUnavailableError as error:
                if self.metrics is not None:
                    self.metrics.failed("unavailable")
                failure = error
            delay = RETRY[min(attempt, len(RETRY) - 1)]
            attempt += 1
            if loop.time() + delay > deadline:
                raise failure from None
            if write and attempt == 1:
                if not args[4].startswith("+"):  # (a caller's id is looked up already)
                    args = (*args[:4], f"+{args[4]}", *args[5:])  # from now on, a retry
            await asyncio.sleep(delay)

    async def primary(self) -> Endpoint:
        """Where the primary is now: the URL's server, or the one the Sentinels name."""
        if self._sentinels is not None:
            return await self._sentinels.primary()
        return self.endpoint  # type: ignore[return-value]

    def _layout(self, id: StateId | None, found: str) -> BackendError:
        """The error for data of another release's layout."""
        what = (
            f"{id} on the Redis server at {self.endpoint} is"
            if id
            else (f"The Redis server at {self.endpoint} holds live states")
        )
        return BackendError(
            f"{what} in livestate's data layout {found}, and this release reads and writes "
            f"layout {LAYOUT} only, so it leaves them alone. Run one release on every node "
            "(stop the other release's nodes and delete its ls:* keys, or upgrade this node)."
        )

    async def _check_layout(self) -> None:
        """Claim the server for this layout, or refuse to start if another release has it."""
        try:
            await self._call("ls:layout", "SET", "ls:layout", LAYOUT, "NX")
            found = await self._call("ls:layout", "GET", "ls:layout")
        except ReplyError as error:
            raise translate(error, self.endpoint, "check its data layout") from None
        if found != str(LAYOUT):
            raise self._layout(None, found)

    async def _scan(self, pattern: str) -> list[str]:
        """Every key matching `pattern` (SCAN: the server is never blocked for long)."""
        found: set[str] = set()
        # One slot of each primary, to reach each (a cluster's keys are spread over them).
        routes: list[str | int] = ["ls:layout"]
        if self._router is not None:
            owned = {self._router.owner(slot): slot for slot in range(16383, -1, -1)}
            routes = [slot for address, slot in owned.items() if address is not None]
        for route in routes:
            cursor = "0"
            while True:
                cursor, keys = await self._call(
                    route, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000
                )
                found.update(keys)
                if cursor == "0":
                    break
        return sorted(found)

    async def _announce(self) -> None:
        """Tell the deployment (for `livestate inspect`) what each node here holds, for a lease."""
        lease = int(self.lease * 1000)
        for node, census in list(self._censuses.items()):
            counts = [[id.spec, id.key, n] for id, n in census().items()]
            if not counts:
                continue  # a node that holds nothing (say, `livestate inspect`) stays unlisted
            info = json.dumps({"clients": counts}, separators=(",", ":"))
            key = f"ls:node:{node}"
            await self._call(key, "SET", key, info, "PX", lease)

    async def _load(self) -> None:
        router = self._router
        try:
            if router is not None:  # on every primary, and again on any that lacks them
                shas = await asyncio.gather(
                    *(router.load_script(self._sources[name]) for name in _SCRIPTS)
                )
            else:
                shas = await asyncio.gather(
                    *(self._call("", "SCRIPT", "LOAD", self._sources[name]) for name in _SCRIPTS)
                )
        except ReplyError as error:
            raise translate(error, self.endpoint, "load its scripts") from None
        self._shas = dict(zip(_SCRIPTS, shas, strict=True))

    async def _check_eviction(self) -> None:
        """Warn when maxmemory-policy may evict live state keys: at start, then on each change."""
        if self._policy == "unreadable":
            return
        try:
            reply = await self._call("ls:layout", "CONFIG", "GET", "maxmemory-policy")
        except ReplyError:
            self._policy = "unreadable"
            self.log.info(
                "livestate could not read maxmemory-policy on %s (CONFIG is refused, as on "
                "many managed services); make sure it is noeviction.",
                self.endpoint,
            )
            return
        policy = reply[1] if len(reply) > 1 else "noeviction"
        if policy != self._policy and policy != "noeviction":
            self.log.warning(
                "The Redis server at %s has maxmemory-policy %s, so it may evict live state "
                "keys under memory pressure, and clients would see their live state restart; "
                "set maxmemory-policy noeviction (or give it enough memory).",
                self.endpoint,
                policy,
            )
        self._policy = policy

    async def _mount(
        self,
        id: StateId,
        keys: Keys,
        mount: MountFunction,
        node: str,
        hold: str,
        token: str,
    ) -> Snapshot | None:
        """Run on_mount while holding the start lock and store it; None if another won."""
        renew = asyncio.get_running_loop().create_task(self._renew_lock(id, token))
        try:
            mounted = await mount()
        except BaseException:
            renew.cancel()
            try:
                await self._run("lock", id, self._keys(id, script="lock"), "unlock", token, 0)
            except Exception:
                pass  # the lock expires on its own within LOCK seconds
            raise
        renew.cancel()
        epoch = secrets.token_hex(8)
        total, state = encode_state(mounted.state, key_prefix(id))
        limits = mounted.limits
        reply = await self._run(
            "init", id, keys, node, hold, int(self.lease * 1000), token, epoch,
            mounted.acl.group, mounted.acl.public, *ttl_args(mounted.ttl),
            limits.max_value_bytes, limits.max_state_bytes, total, mounted.declared, *state,
        )  # fmt: skip
        if reply[0] != "ok":
            return None  # our lock ran out and another node started it: use theirs
        return Snapshot(
            dict(mounted.state), int(reply[1]), epoch, mounted.acl, mounted.ttl, mounted.declared
        )

    async def _renew_lock(self, id: StateId, token: str) -> None:
        keys = self._keys(id, script="lock")
        while True:
            await asyncio.sleep(LOCK / 3)
            try:
                await self._run("lock", id, keys, "extend", token, int(LOCK * 1000))
            except LiveStateError as error:
                self.log.debug("%s: could not renew its start lock (%s)", id, error)

    def _snapshot(self, reply: list[Any]) -> Snapshot:
        _, epoch, version, group, public, ttl, props, values, declared, shown = reply
        state = {
            prop: FrozenList([decode(item) for item in value])
            if type(value) is list
            else decode(value)
            for prop, value in zip(props, values, strict=True)
        }
        acl = ACL(int(group), int(public))
        presence = {}
        for i in range(0, len(shown), 2):
            joined, _, entry = shown[i + 1].partition(" ")
            identity, meta = decode(entry)
            presence[shown[i]] = (identity, meta, int(joined))
        return Snapshot(
            state, int(version), epoch, acl, None if ttl == "" else float(ttl), declared, presence
        )

    def _fail(self, id: StateId, op: Op, role: Role, reply: list[Any]) -> Any:
        """Raise the error the script reported, as MemoryBackend would."""
        status = reply[0]
        if status == "missing":
            raise not_running(id)
        if status == "layout":
            raise self._layout(id, reply[1])
        if status == "denied":
            raise denied(role, permission(op), describe(op), str(id))
        if status == "conflict":
            raise ConflictError(id)
        if status == "stale":
            raise started_anew(id, op)
        if status == "value_size":
            check_size(int(reply[1]), int(reply[2]), id, op.prop)
        if status == "state_size":
            check_size(int(reply[1]), int(reply[2]), id, op.prop, whole=True)
        if status == "bounds":
            raise InvalidValueError(
                out_of_range(op.prop or "", id, reply[1], op.bounds or NO_BOUNDS)
            )
        if status == "invalid":
            # Let the same function every replica uses raise the same error.
            current = reply[1] if len(reply) > 1 else None
            state: dict[str, JSON] = {}
            if current is not None:
                state[op.prop] = (  # type: ignore[index]
                    FrozenList() if current.startswith("\0") else decode(current)
                )
            evaluate(state, op, id)
        raise RuntimeError(f"A livestate script on {id} replied {reply!r}, which is a bug.")

    async def _beat(self) -> None:
        """Renew this node's leases, show each replica where the server is, and every
        `POLICY_BEATS` beats look at the eviction policy again."""
        for beat in itertools.count(1):
            await asyncio.sleep(self.heartbeat)
            if beat % POLICY_BEATS == 0:
                with contextlib.suppress(LiveStateError):
                    await self._check_eviction()
            with contextlib.suppress(LiveStateError, ReplyError):
                await self._announce()
            held = [(id, node) for id, nodes in self._held.items() for node in nodes]
            lease = int(self.lease * 1000)
            results = await asyncio.gather(
                *(
                    self._run("lease", id, self._keys(id, script="lease"), "hold", node, lease)
                    for id, node in held
                ),
                return_exceptions=True,
            )
            if self.metrics is not None:
                self.metrics.renewed(sum(type(reply) is list for reply in results))
            seen: set[StateId] = set()
            for (id, _), reply in zip(held, results, strict=True):
                subscription = self._subscriptions.get(id)
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

    def _received(self, channel: str, data: Any) -> None:
        """One published message: hand it to the listeners of its live state."""
        subscription = self._by_name.get(channel)
        if subscription is None:
            return
        listeners = subscription.listeners
        try:
            epoch, version_text, rest = data.split("\n", 2)
            version = int(version_text)
            if rest[:1] == "[":  # a write: its head is a JSON array
                if len(listeners) == 1:  # the usual case: one replica per live state
                    wanted = listeners[0].wants(epoch, version)
                else:
                    wanted = any(each.wants(epoch, version) for each in listeners)
                if not wanted:
                    return  # seen already (this node's own write, applied when it returned)
                head, sent, value = rest.split("\n", 2)
                message = Message(epoch, version, decode_op(head, value), int(sent) / 1e6)
            elif rest.startswith("notice\n"):
                kind, text = rest[len("notice\n") :].split("\n", 1)
                self._notice(subscription, kind, decode(text))
                return
            elif rest == "stop":
                message = Message(epoch, version, "stopped")
            elif rest == "start":
                message = Message(epoch, version, "started")
            else:
                raise ValueError(rest)
        except Exception:
            # From a newer release, or damaged: this live state alone loads a snapshot.
            self.log.warning(
                "%s: a message livestate cannot read (%.80r); resyncing", channel, data
            )
            self._resync(subscription, "unreadable")
            return
        self._deliver(subscription, message)

    def _deliver(self, subscription: Subscription, message: Message) -> None:
        # A copy: a listener may unsubscribe (a client detaching on `stopped`) while we loop.
        listeners = subscription.listeners
        for listener in (listeners[0],) if len(listeners) == 1 else tuple(listeners):
            try:
                listener.receive(message)
            except Exception:
                self.log.exception("%s: a replica raised on a message", subscription.name)

    def _notice(self, subscription: Subscription, kind: str, value: JSON) -> None:
        for listener in tuple(subscription.listeners):
            try:
                listener.notice(kind, value)
            except Exception:
                self.log.exception("%s: a replica raised on a notice", subscription.name)

    def _resync(self, subscription: Subscription, cause: str) -> None:
        for listener in tuple(subscription.listeners):
            listener.resync(cause)

    def _confirmed(self, name: str) -> None:
        """The server confirmed a subscription: after a reconnect, its listeners resync."""
        subscription = self._by_name.get(name)
        if subscription is None:
            return
        if subscription.confirmed and not subscription.confirmed.done():
            subscription.confirmed.set_result(None)
        if subscription.resubscribed:
            # Messages may have been missed while unsubscribed.
            subscription.resubscribed = False
            self._resync(subscription, "reconnect")

    def _reconnected(self) -> None:
        if self.metrics is not None:
            self.metrics.reconnected()

    def _subscriptions_now(self) -> Iterable[Subscription]:
        return tuple(self._by_name.values())

    # Persistence: the claim is the key `ls:{<spec>:<key>}:save` (lua/save.lua).

    # `ls:saving` lists the claims, scored by when each lapses (ms), so that a node finds the
    # live states nobody saves any more (`orphans`: their saver died, or let go and nobody
    # claimed them). It is one key for all live states, not under a hash tag, so it is kept
    # by separate commands beside the script; an entry goes when a claim finds it ended.

    async def claim_save(
        self, id: StateId, node: str, lease: float
    ) -> tuple[bool, str | None, int, int]:
        prefix = key_prefix(id)
        keys = (*self._keys(id), f"{prefix}:save")
        reply = await self._run("save", id, keys, "claim", node, max(1, int(lease * 1000)))
        if reply[0] != "ok":
            await self._call("ls:saving", "ZREM", "ls:saving", prefix)
            return reply[1] == 1, None, 0, 0
        held = reply[1] == 1
        if held:
            lapses = int((time.time() + lease) * 1000)
            await self._call("ls:saving", "ZADD", "ls:saving", lapses, prefix)
        return held, reply[2], int(reply[3]), int(reply[4])

    async def release_save(self, id: StateId, node: str) -> None:
        prefix = key_prefix(id)
        keys = (*self._keys(id), f"{prefix}:save")
        # Its entry in `ls:saving` stays: if no node claims the live state within a lease,
        # one takes it up as an orphan; one that finds it ended removes the entry.
        await self._run("save", id, keys, "release", node, 0)

    async def orphans(self, limit: int) -> list[StateId]:
        now = int(time.time() * 1000)
        found = await self._call(
            "ls:saving", "ZRANGE", "ls:saving", "-inf", now, "BYSCORE", "LIMIT", 0, limit
        )
        return [StateId(*parse_prefix(prefix)) for prefix in found]

    def save_lease(self) -> float:
        return float(self.lease)


def _what(script: str, id: StateId, op: Op | None) -> str:
    """What a script does, for error messages: "write 'x' of Chat 'lobby'"."""
    if op is not None:
        return f"{describe(op)} {id}"
    verbs = {"open": "start or attach to", "init": "start", "read": "read", "stop": "stop"}
    return f"{verbs.get(script, 'keep its hold on')} {id}"


Keys = tuple[str, ...]

_CACHED_KEYS = 256
"""Key lists and commands are cached for a live state's key prefix and property name of
up to this many characters together; longer ones (keys and property names can be
kilobytes long) are built each time, so hostile keys cannot grow the caches' memory."""


def _declared(prefix: str, script: str, prop: str, lists: bool = True) -> Keys:
    """The keys `script` declares for the live state of `prefix` (and property `prop`);
    without `lists`, those before L and LK (see `_DECLARES`)."""
    if len(prefix) + len(prop) <= _CACHED_KEYS:
        return _declared_cached(prefix, script, prop, lists)
    return _declared_now(prefix, script, prop, lists)


def _declared_now(prefix: str, script: str, prop: str, lists: bool) -> Keys:
    """`_declared`, built anew."""
    names = tuple(_DECLARES.get(script, _KEYS))
    return tuple(
        f"{prefix}:l:{escape(prop)}" if name == "LK" else f"{prefix}:{_KEYS[name]}"
        for name in (names if lists else names[:_WITHOUT_LISTS])
    )


_declared_cached = functools.lru_cache(maxsize=4096)(_declared_now)


def fence(expect: int | None, epoch: str | None) -> str:
    """ARGV[5] of a write: the version it expects and the lifetime it was made for."""
    if epoch is None:
        return "" if expect is None else str(expect)
    return f"{'' if expect is None else expect}@{epoch}"


def _number(text: str) -> int | float:
    """The sum increment.lua wrote: digits, or a float as Python's repr writes it (cheaper
    than json.loads, and the same number)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _command_now(sha: str, keys: Keys) -> tuple[Any, ...]:
    """EVALSHA of script `sha` on `keys`, up to ARGV 1 and 2: the channel and SPUBLISH."""
    prefix = keys[0].rpartition(":")[0]  # every key is the live state's prefix, ':' and more
    return ("EVALSHA", sha, len(keys), *keys, f"{prefix}:c", "SPUBLISH")


_command_cached = functools.lru_cache(maxsize=4096)(_command_now)


_PARTS = {"increment": ("common", "write", "number"), "put": ("common", "write"),
          "batch": ("common", "write"),
          "delete": ("common", "write"), "append": ("common", "write"),
          "reset": ("common", "state", "write"), "lock": ("common",),
          "presence": ("common", "state", "write"),
          "open": ("common", "state", "roster"),
          "lease": ("common", "state", "roster"),
          "read": ("common", "state", "roster")}  # fmt: skip
"""The shared parts each script is built from (the rest take common and state). A script
defines every function of its parts on each call, so each gets only what it uses."""


def _load_scripts() -> dict[str, str]:
    """Each script with its shared parts before it (after its `#!lua flags=` line, if any)."""
    folder = resources.files(__package__).joinpath("lua")
    parts = {
        name: folder.joinpath(f"{name}.lua").read_text()
        for name in ("common", "state", "write", "number", "roster")
    }
    if f"local LAYOUT = '{LAYOUT}'" not in parts["common"]:
        raise RuntimeError("lua/common.lua's LAYOUT differs from redis.py's: a packaging bug.")
    sources = {}
    for name in _SCRIPTS:
        text = folder.joinpath(f"{name}.lua").read_text()
        shebang = ""
        if text.startswith("#!"):
            shebang, _, text = text.partition("\n")
            shebang += "\n"
        shared = "".join(parts[part] for part in _PARTS.get(name, ("common", "state")))
        # Its keys by their names in the scripts; the ones it does not declare are nil.
        declared = _DECLARES.get(name, tuple(_KEYS))
        names = [*declared, *(key for key in _KEYS if key not in declared)]
        values = ", ".join(f"KEYS[{i}]" for i in range(1, len(declared) + 1))
        sources[name] = f"{shebang}local {', '.join(names)} = {values}\n{shared}{text}"
    return sources
