"""The node: this process's livestate runtime.

A node validates every write once, before the backend sees it; keeps one
replica (_replica.py) per live state that has clients here, which orders what
the backend publishes and hands each Change to the local clients; and lets go
of a replica when its last client leaves. It is also where the server API,
the metrics and the log of one process meet.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from ._acl import ACL, READ, Role, denied
from ._actions import ActionContext
from ._backends import Backend, Mounted, Snapshot, from_url
from ._backends.base import Applied, ConflictError, Message, Survey, not_running
from ._changes import PERMISSION, Op, StateId, describe, write_op
from ._client import Client, Inbox, OnChange
from ._declare import (
    DEFAULT,
    Mount,
    Spec,
    actions_of,
    check_ttl,
    declaration,
    rule_of,
    run_on_mount,
    schema_of,
)
from ._exceptions import (
    BackendUnavailableError,
    InvalidValueError,
    LiveStateError,
    NotFoundError,
    PropertyNotFoundError,
    QuotaExceededError,
    StartedAnewError,
    StateTooLargeError,
)
from ._log import NodeLog
from ._metrics import Metrics
from ._metrics import enabled as metrics_enabled
from ._persist import Persistence
from ._presence import Roster
from ._quota import MAX_LIVE_STATES, Quotas, check_limit, lapse
from ._replica import Replica
from ._retry import Backoff, delay
from ._rules import UNLOADED, Caller, NeedState, Write, refused
from ._values import (
    JSON,
    FrozenDict,
    FrozenList,
    check_key,
    check_property,
    check_size,
    freeze,
    prepare,
    size,
)

if TYPE_CHECKING:
    from typing import Self


class Base(NamedTuple):
    """The live state that a rule or an action works from, and its version and ACL."""

    state: Mapping[str, JSON]
    version: int
    acl: ACL
    epoch: str


UPDATE_ATTEMPTS = 50
"""How many times `update` runs its function before it gives up on a contended property."""


class Node:
    """One process's livestate runtime: its backend connection, replicas and clients.

    `Node()` uses LIVESTATE_URL (default `memory://`); pass `url` or a `backend`
    object instead (several nodes may share one MemoryBackend, as a cluster in
    one process). `metrics` turns the Prometheus metrics on or off; by default
    they are on when prometheus-client is installed (see docs/operations.md).
    `max_live_states` (default 100,000; None for no limit) bounds the live states
    this node runs: those it holds, and for their TTL (at most 10 minutes) those it
    started or let go of; a new one beyond it raises QuotaExceededError. A
    node starts on first use; `aclose()` (or `async with`) detaches its clients
    and closes what it opened. The methods mirror the
    LiveState server API with the spec first; `role="group"` is what attached
    clients use.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        backend: Backend | None = None,
        metrics: bool | None = None,
        max_live_states: int | None = MAX_LIVE_STATES,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.log = NodeLog(self.id)
        on = metrics_enabled() if metrics is None else metrics
        self.metrics: Metrics | None = Metrics(self.id) if on else None
        if backend is None:
            self.url = url or os.environ.get("LIVESTATE_URL") or "memory://"
            backend = from_url(self.url)
            backend.metrics, backend.log = self.metrics, self.log
            self._owns_backend = True
        else:
            self.url = url or f"<{type(backend).__name__}>"
            self._owns_backend = False
        self.backend = backend
        self._replicas: dict[StateId, Replica] = {}
        self._closing: dict[StateId, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: asyncio.Task[None] | None = None
        self._ready = False
        self._closed = False
        self._warned: set[str] = set()  # specs whose stored declaration differs, told once
        self._persistence = Persistence(self.backend, self.id, self.log)  # on_persist's saves
        self._quotas = Quotas(check_limit(max_live_states, "max_live_states"))
        self._keeper = _Keeper(self)  # what the replicas ask of this node
        self._writer = self._write_for  # what every client writes through: one bound method

    def __repr__(self) -> str:
        return f"<livestate.Node {self.id} on {self.url}>"

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` has been called."""
        return self._closed

    async def aclose(self) -> None:
        """Detach every client of this node, let go of its live states, close its backend."""
        if self._closed:
            return
        self._closed = True
        self._persistence.begin_close()  # the last holder of a live state saves it finally
        for replica in list(self._replicas.values()):
            for inbox in tuple(replica.inboxes):
                replica.discard(inbox)
                inbox.end(None)
            self._let_go(replica)
        await asyncio.gather(*self._closing.values(), return_exceptions=True)
        await self._persistence.aclose()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.backend.unregister(self.id)
        if self._owns_backend and self._started:
            await self.backend.aclose()
        if self.metrics is not None:
            self.metrics.close()

    # The server API, spec first.

    async def attach(
        self,
        spec: type[Spec],
        key: str,
        on_change: OnChange | None = None,
        *,
        max_pending: int = 1000,
        max_lag: float = 1.0,
        caller: Caller | None = None,
    ) -> Client:
        """Attach a client to the live state of `spec` for `key`; see LiveState.attach."""
        id = self._id(spec, key)
        self._check_caller("group", caller)
        if type(max_pending) is not int or max_pending < 1:
            raise InvalidValueError(f"max_pending must be an int ≥ 1, not {max_pending!r}.")
        if type(max_lag) not in (int, float) or not max_lag > 0:
            raise InvalidValueError(f"max_lag must be a number of seconds > 0, not {max_lag!r}.")
        if on_change is not None and not callable(on_change):
            raise InvalidValueError(f"on_change must be callable, not {on_change!r}.")
        await self._start()
        while True:
            replica = self._replicas.get(id)
            if replica is None:
                self._admit(spec, id)
                self._quotas.count(id)  # for as long as it is held here
                replica = self._replicas[id] = Replica(self._keeper, spec, id)
                replica.ready = self._spawn(self._open(replica))
            replica.waiting += 1
            try:
                await asyncio.shield(replica.ready)  # type: ignore[arg-type]
            finally:
                replica.waiting -= 1
            if not replica.closed:
                break
        if not replica.acl.allows("group", READ):
            self._let_go_if_unused(replica)
            raise denied("group", READ, "attach to", str(id))
        inbox = Inbox(self, replica, on_change, max_pending, float(max_lag), caller, self._writer)
        replica.add(inbox)
        self._count()
        return inbox.client

    async def detach(self, client: Client) -> None:
        """Detach `client`; the node lets go of the live state when its last client leaves."""
        await client.detach()

    async def get(
        self, spec: type[Spec], key: str, prop: Any = DEFAULT, *, role: Role = "public"
    ) -> Any:
        """The state or one property's value; see LiveState.get."""
        id = self._id(spec, key)
        snapshot = await self._read(id, None if prop is DEFAULT else check_property(prop, id))
        snapshot.acl.check(role, READ, "read", str(id))
        if prop is DEFAULT:
            return FrozenDict(snapshot.state)
        if prop not in snapshot.state:
            raise PropertyNotFoundError(f"{id} has no property {prop!r}.")
        return snapshot.state[prop]

    async def presence(
        self, spec: type[Spec], key: str, *, role: Role = "public"
    ) -> Mapping[str, FrozenList]:
        """Who is present in a live state; see LiveState.presence."""
        id = self._id(spec, key)
        await self._start()
        snapshot = await self.backend.read(id, presence_only=True)
        if snapshot is None:
            raise not_running(id)
        snapshot.acl.check(role, READ, "read the presence of", str(id))
        roster = Roster()
        roster.load(snapshot.presence)
        return roster.metas()

    async def put(
        self,
        spec: type[Spec],
        key: str,
        prop: str,
        value: Any,
        *,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Set a property; see LiveState.put."""
        id, epoch = self._aim(spec, key, role)
        op = self._op("put", spec, id, prop, value, None, epoch, write_id, role)
        await self._write(spec, id, op, role, caller)

    async def delete(
        self,
        spec: type[Spec],
        key: str,
        prop: str,
        *,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Remove a property; see LiveState.delete."""
        id, epoch = self._aim(spec, key, role)
        op = self._op("delete", spec, id, prop, None, None, epoch, write_id, role)
        await self._write(spec, id, op, role, caller)

    async def reset(
        self,
        spec: type[Spec],
        key: str,
        *,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Rerun on_mount and replace the whole state; see LiveState.reset."""
        id = self._id(spec, key)
        write_id = check_write_id(write_id, id)
        mounted = await self._mount(spec, id)
        op = Op(
            "reset", None, FrozenDict(mounted.state), acl=mounted.acl, ttl=mounted.ttl,
            epoch=self._fence(id, role), write_id=write_id,
        )  # fmt: skip
        await self._write(spec, id, op, role, caller)

    async def append(
        self,
        spec: type[Spec],
        key: str,
        prop: str,
        item: Any,
        *,
        max_len: int | None = None,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Append to a list atomically; see LiveState.append."""
        id, epoch = self._aim(spec, key, role)
        op = self._op("append", spec, id, prop, item, max_len, epoch, write_id, role)
        await self._write(spec, id, op, role, caller)

    async def increment(
        self,
        spec: type[Spec],
        key: str,
        prop: str,
        by: int | float = 1,
        *,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Add to a number atomically and return the result; see LiveState.increment."""
        id, epoch = self._aim(spec, key, role)
        op = self._op("increment", spec, id, prop, by, None, epoch, write_id, role)
        return (await self._write(spec, id, op, role, caller)).value

    async def update(
        self,
        spec: type[Spec],
        key: str,
        prop: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = DEFAULT,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Replace a property with fn(value) atomically; see LiveState.update."""
        id = self._id(spec, key)
        check_property(prop, id)
        write_id = check_write_id(write_id, id)
        for attempt in range(UPDATE_ATTEMPTS):
            if attempt:
                await _contended(attempt)
            snapshot = await self._read(id, None if rule_of(spec) else prop)
            snapshot.acl.check(role, READ, f"update {prop!r} of", str(id))
            if prop in snapshot.state:
                current = snapshot.state[prop]
            elif default is not DEFAULT:
                current = freeze(default, spec.limits.max_depth, id, prop)
            else:
                raise PropertyNotFoundError(
                    f"Cannot update {prop!r} of {id}: it has no such property; "
                    "pass default= to start from a value."
                )
            result = fn(current)
            if inspect.isawaitable(result):
                result = await result
            epoch = snapshot.epoch if role == "group" else None
            op = self._op("put", spec, id, prop, result, None, epoch, write_id, role)
            op = op._replace(expect=snapshot.version)
            try:
                base = Base(snapshot.state, snapshot.version, snapshot.acl, snapshot.epoch)
                applied = await self._write(spec, id, op, role, caller, base)
            except ConflictError:
                continue  # another write came first: run fn again on the newer value
            # A repeat of `write_id` wrote nothing now: the value is what the first one wrote.
            return current if applied.repeated else op.value
        raise BackendUnavailableError(
            f"Cannot update {prop!r} of {id}: other writes changed it first {UPDATE_ATTEMPTS} "
            "times in a row; use increment or append (atomic without a retry), or retry later."
        )

    async def call(
        self,
        spec: type[Spec],
        key: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        role: Role = "public",
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Run one of the spec's actions and return its result; see LiveState.call."""
        id = self._id(spec, key)
        write_id = check_write_id(write_id, id)
        declared = actions_of(spec).get(action) if type(action) is str else None
        if declared is None:
            raise InvalidValueError(unknown_action(spec, action, id))
        arguments = declared.arguments(args, id)
        self._check_caller(role, caller)
        await self._start()
        instance = spec()
        for attempt in range(UPDATE_ATTEMPTS):
            if attempt:
                await _contended(attempt)
            base = await self._now(id, fresh=attempt > 0)
            base.acl.check(role, READ, f"call the action {action!r} of", str(id))

            def make(
                kind: str, prop: str, value: Any, max_len: int | None, epoch: str = base.epoch
            ) -> Op:
                return self._op(kind, spec, id, prop, value, max_len, epoch)

            context = ActionContext(id, caller, base.state, base.version, make)
            result = declared.function(instance, context, **arguments)
            if inspect.isawaitable(result):
                result = await result
            value = freeze(result, spec.limits.max_depth, id, None)
            ops = context.ops
            if ops and write_id is not None:
                ops[0] = ops[0]._replace(write_id=write_id)  # the batch's (or the op's) id
            try:
                if len(ops) == 1:
                    op = ops[0]._replace(trusted=True)
                    await self._apply(id, op._replace(expect=base.version) if context.read else op)
                elif ops:
                    await self._apply_many(id, ops, base.version, base.state)
            except ConflictError:
                continue  # the live state changed since the action read it: run it again
            except StartedAnewError:
                if role == "group":
                    raise  # a client's lifetime ended: it gets the new one as a reset
                continue  # a public caller's action runs again on the new lifetime
            return value
        raise BackendUnavailableError(
            f"Cannot call the action {action!r} of {id}: other writes changed the live state "
            f"first {UPDATE_ATTEMPTS} times in a row; retry later."
        )

    async def start(self, spec: type[Spec], key: str) -> None:
        """Start a live state without attaching; see LiveState.start."""
        id = self._id(spec, key)
        await self._start()
        self._admit(spec, id)
        snapshot = await self.backend.open(id, lambda: self._mount(spec, id), self.id, hold=False)
        self._quotas.count(id, lapse(snapshot.ttl))  # started here: it counts for its TTL
        self._persistence.watch(spec, id)

    async def survey(self, spec: type[Spec] | str | None = None, key: str | None = None) -> Survey:
        """What the deployment holds now: every live state (or the one of `spec` and `key`)
        with its version, size, expiry, holders and clients per node, and every node.

        What `livestate inspect` and the inspector page show. Raises
        NotImplementedError on a backend that cannot tell.
        """
        await self._start()
        id = None
        if spec is not None and key is not None:
            id = StateId(spec if isinstance(spec, str) else spec.name, key)
        return await self.backend.survey(id)

    async def stop(
        self, spec: type[Spec], key: str, *, role: Role = "public", caller: Caller | None = None
    ) -> None:
        """End a live state now; see LiveState.stop."""
        id = self._id(spec, key)
        self._check_caller(role, caller)
        await self._start()
        if (rule := rule_of(spec)) is not None:
            answer, _, _ = await self._ask(rule, id, caller, Write("stop", None, None), False)
            if answer is not True:
                raise refused(answer, caller, "stop", str(id))
        await self.backend.stop(id, role)
        self._persistence.stopped(id)

    # Internals.

    def _id(self, spec: type[Spec], key: str) -> StateId:
        """The live state's id, its key checked (a held live state's was when it was opened)."""
        if self._closed:
            raise RuntimeError(
                f"This livestate node ({self.url}) is closed; create a new Node, or use it "
                "inside livestate.lifespan."
            )
        # A StateId is a tuple: the replicas' dict answers a plain (name, key) too.
        replica: Replica | None = (
            self._replicas.get((spec.name, key)) if type(key) is str else None  # type: ignore[call-overload]
        )
        if replica is not None:
            return replica.id
        return StateId(spec.name, check_key(key, spec.__qualname__))

    def _aim(self, spec: type[Spec], key: str, role: Role) -> tuple[StateId, str | None]:
        """A write's live state, as `_id` gives it, and the lifetime that fences it (see
        `_fence`), with one look at the replicas."""
        if self._closed or type(key) is not str:
            return self._id(spec, key), None
        replica: Replica | None = self._replicas.get((spec.name, key))  # type: ignore[call-overload]
        if replica is None:
            return self._id(spec, key), None
        return replica.id, replica.epoch or None if role == "group" else None

    def _op(
        self,
        kind: str,
        spec: type[Spec],
        id: StateId,
        prop: str,
        value: Any,
        max_len: int | None = None,
        epoch: str | None = None,
        write_id: str | None = None,
        role: Role | None = None,
    ) -> Op:
        """Check, freeze and encode a write once, for the backend and every replica: its
        value (JSON, sizes), its arguments, and the spec's schema. `epoch` fences it to the
        lifetime its client attached under (see `_fence`); `write_id` is the caller's.
        A bad write by a `role` that may not write at all is refused as that first (None:
        an action's own write, which its caller's permission does not govern)."""
        try:
            check_property(prop, id)
            if write_id is not None:
                check_write_id(write_id, id)
            if kind == "delete":
                return Op("delete", prop, epoch=epoch, write_id=write_id)
            frozen, text, nbytes = prepare(value, spec.limits, id, prop)
            schema = schema_of(spec)
            bounds = None
            if kind == "put":
                if schema is not None:
                    schema.check(prop, text, id)
            elif kind == "append":
                if max_len is not None and (type(max_len) is not int or max_len < 1):
                    raise InvalidValueError(
                        f"Cannot append to {prop!r} of {id}: max_len must be an int ≥ 1 or None, "
                        f"not {max_len!r}."
                    )
                if schema is not None:
                    cap = schema.check_item(prop, text, id)
                    if cap is not None and (max_len is None or max_len > cap):
                        max_len = cap  # the schema's max_length keeps the newest items
            elif kind == "increment":
                if type(frozen) is not int and type(frozen) is not float:
                    raise InvalidValueError(
                        f"Cannot increment {prop!r} of {id} by {value!r}: the amount must be a "
                        "number."
                    )
                if schema is not None:
                    bounds = schema.check_amount(prop, frozen, id)
            else:
                raise InvalidValueError(f"Unknown write {kind!r} to {id}.")  # pragma: no cover
            return write_op(kind, prop, frozen, text, nbytes, max_len, bounds, epoch, write_id)  # type: ignore[arg-type]
        except (InvalidValueError, StateTooLargeError):
            if role is not None:
                self._refused_first(id, role, kind, prop)
            raise

    def _refused_first(self, id: StateId, role: Role, kind: str, prop: str) -> None:
        """Raise PermissionDeniedError if this node's replica of `id` says `role` may not
        make a write of `kind` at all: a caller who may not write learns that, not what was
        wrong with the value. (Without a live replica, the backend's check says it later.)"""
        replica = self._replicas.get(id)
        if replica is not None and replica.live:
            needed = PERMISSION.get(kind, 0)
            replica.acl.check(role, needed, describe(Op(kind, prop)), str(id))  # type: ignore[arg-type]

    def _on_running_loop(self) -> bool:
        if self._started is None:
            return True
        try:
            return self._started.get_loop() is asyncio.get_running_loop()
        except RuntimeError:
            return True

    def _census(self) -> dict[StateId, int]:
        return {id: len(replica.inboxes) for id, replica in self._replicas.items()}

    async def _start(self) -> None:
        if self._ready:
            return
        if self._started is None:
            self.backend.register(self.id, self._census)
            self._started = asyncio.ensure_future(self.backend.start())
        try:
            await asyncio.shield(self._started)
        except BaseException as error:
            if self._started is not None and self._started.done():
                # A failed start is not kept: the next call tries again (the server may be up).
                self._started = None
                if isinstance(error, LiveStateError):
                    self.log.error("could not start: %s", error)  # one line, no traceback
            raise
        self._ready = True
        self._persistence.started()

    def _write_for(
        self,
        inbox: Inbox,
        kind: str,
        prop: str,
        value: Any,
        max_len: int | None,
        write_id: str | None,
    ) -> Awaitable[Applied]:
        """A put, delete, append or increment through an attached client, as `put` and the
        others make it for the group: the client's replica names the live state and the
        lifetime that fences the write, which `_aim` would look up."""
        replica = inbox.replica
        spec, id = replica.spec, replica.id
        op = self._op(
            kind, spec, id, prop, value, max_len, replica.epoch or None, write_id, "group"
        )
        return self._write(spec, id, op, "group", inbox.caller)

    def _write(
        self,
        spec: type[Spec],
        id: StateId,
        op: Op,
        role: Role,
        caller: Caller | None,
        base: Base | None = None,
    ) -> Awaitable[Applied]:
        """Write `op` for `caller` once the spec's `allow` says it may (`base`: the state that
        an `update` read, which the rule sees); see `_ruled`. Without a rule, the write
        itself (no coroutine in between: this is every write's path)."""
        if caller is not None and caller.role != role:
            self._check_caller(role, caller)
        rule = rule_of(spec)
        if rule is None:
            return self._apply(id, op, role)
        return self._ruled(rule, id, op, role, caller, base)

    async def _ruled(
        self,
        rule: Spec,
        id: StateId,
        op: Op,
        role: Role,
        caller: Caller | None,
        base: Base | None,
    ) -> Applied:
        """Ask `rule` about `op`, then write it. A rule that read the state makes the write
        conditional on it, and runs again, on the newer state, if another write came first.
        The rule reads this node's replica when it is live, else a snapshot, loaded only if
        the rule looks at the state."""
        value = None if op.kind == "delete" else op.value
        fresh = False
        for attempt in range(UPDATE_ATTEMPTS):
            if attempt:
                await _contended(attempt)
            if base is None and not fresh:
                base = self._local(id)
            write = Write(op.kind, op.prop, value, UNLOADED if base is None else base.state)  # type: ignore[arg-type]
            answer, write, loaded = await self._ask(rule, id, caller, write, fresh)
            base = loaded or base
            if answer is not True:
                raise refused(answer, caller, describe(op), str(id))
            if not write.read or op.expect is not None or base is None:
                return await self._apply(id, op, role)  # (an update's conflict is its own)
            try:
                return await self._apply(id, op._replace(expect=base.version), role)
            except ConflictError:
                base, fresh = None, True  # what the rule read changed: read it again, ask again
        raise BackendUnavailableError(
            f"Cannot {describe(op)} {id}: other writes changed what its spec's allow read "
            f"{UPDATE_ATTEMPTS} times in a row; retry later."
        )

    async def _ask(
        self, rule: Spec, id: StateId, caller: Caller | None, write: Write, fresh: bool
    ) -> tuple[object, Write, Base | None]:
        """The answer of the spec's `allow` to `write`, the Write it saw, and the state loaded
        for it, if any: a rule that reads a state not loaded yet is asked again once it is."""
        loaded = None
        while True:
            try:
                answer = rule.allow(id.key, caller, write)
                if type(answer) is not bool and inspect.isawaitable(answer):
                    answer = await answer
                return answer, write, loaded
            except NeedState:
                if loaded is not None:
                    raise
                loaded = await self._now(id, fresh)
                write = Write(write.kind, write.prop, write.value, loaded.state)

    def _fence(self, id: StateId, role: Role) -> str | None:
        """The lifetime a client's write is made for: its replica's, so that a write that
        waited (its node paused) while the live state ended and started anew is refused
        instead of landing in a lifetime the client never saw. Public writes have none."""
        if role != "group":
            return None
        replica = self._replicas.get(id)
        return replica.epoch or None if replica is not None else None

    def _admit(self, spec: type[Spec], id: StateId) -> None:
        """Make room for one more live state here, or raise QuotaExceededError."""
        try:
            self._quotas.admit(id, spec.max_live_states)
        except QuotaExceededError:
            if self.metrics is not None:
                self.metrics.refused("live_states")
            raise

    def _local(self, id: StateId) -> Base | None:
        """The live state as this node's replica has it, if it is live (its version may trail
        the backend's: a write conditional on it then conflicts, and is tried again)."""
        replica = self._replicas.get(id)
        if replica is None or not replica.live:
            return None
        # The replica's own view, not a copy: if it changes while a rule or an action awaits,
        # its version has moved too, and a write conditional on this one fails and runs again.
        return Base(replica.view, replica.version, replica.acl, replica.epoch)

    async def _now(self, id: StateId, fresh: bool) -> Base:
        """The live state now: this node's replica unless `fresh`, else the backend's."""
        local = None if fresh else self._local(id)
        if local is not None:
            return local
        snapshot = await self._read(id, None)
        return Base(snapshot.state, snapshot.version, snapshot.acl, snapshot.epoch)

    def _check_caller(self, role: Role, caller: Caller | None) -> None:
        if caller is not None and caller.role != role:
            kind = "an attached client" if role == "group" else "a public caller"
            raise InvalidValueError(
                f"{kind.capitalize()} acts for a Caller of role {role!r}, not {caller.role!r}; "
                f"pass Caller({role!r}, identity)."
            )

    async def _apply_many(
        self, id: StateId, ops: list[Op], expect: int, state: Mapping[str, JSON]
    ) -> None:
        """Write an action's `ops` at once, all or none, if the live state is at `expect`."""
        if not self._ready:
            await self._start()
        applied = await self.backend.apply_many(id, ops, expect, state)
        replica = self._replicas.get(id)
        if replica is not None and not replica.closed:
            first = applied.version - len(ops) + 1
            if applied.epoch != replica.epoch or applied.version > replica.version:
                for offset, op in enumerate(ops):
                    if applied.epoch != replica.epoch or first + offset > replica.version:
                        replica.receive(Message(applied.epoch, first + offset, op))
                await replica.reached(applied.epoch, applied.version)

    async def _apply(self, id: StateId, op: Op, role: Role = "group") -> Applied:
        """Write `op`; when it returns, this node's clients of the live state show it."""
        if not self._ready:  # checked here: a coroutine per write is a cost at 100k writes/s
            await self._start()
        started = time.perf_counter() if self.metrics is not None else 0.0
        try:
            applied = await self.backend.apply(id, op, role)
        except StartedAnewError:
            # The client's lifetime ended: it gets the new one as a reset; the caller, this.
            replica = self._replicas.get(id)
            if replica is not None and not replica.closed:
                replica.resync("lifetime")
            raise
        except NotFoundError:
            replica = self._replicas.get(id)
            if role != "group" or replica is None or replica.closed:
                raise
            # Lost under attached clients (say, Redis restarted empty): start it anew, and
            # retry in the new lifetime, which the clients have by then (their reset).
            replica.resync("lost")
            if replica.syncing:
                await asyncio.shield(replica.syncing)
            if op.epoch is not None:
                op = op._replace(epoch=replica.epoch)
            applied = await self.backend.apply(id, op, role)
        replica = self._replicas.get(id)
        if replica is not None and not replica.closed:
            epoch, version = applied.epoch, applied.version
            if epoch != replica.epoch or version > replica.version:
                # Not applied here yet (on memory:// it already is): apply, or wait for the
                # earlier versions still on their way.
                replica.receive(Message(epoch, version, op))
                await replica.reached(epoch, version)
        if self.metrics is not None:
            self.metrics.wrote(op.kind, started)
        return applied

    async def _read(self, id: StateId, prop: str | None) -> Snapshot:
        await self._start()
        snapshot = await self.backend.read(id, prop)
        if snapshot is None:
            raise not_running(id)
        return snapshot

    async def _mount(self, spec: type[Spec], id: StateId) -> Mounted:
        """Run on_mount and validate what it returns."""
        result = await run_on_mount(spec, id.key)
        acl: object = spec.acl
        ttl: object = spec.ttl
        if isinstance(result, Mount):
            acl = spec.acl if result.acl is None else result.acl
            ttl = spec.ttl if result.ttl is DEFAULT else result.ttl
            result = result.state
        if not isinstance(result, dict):
            raise InvalidValueError(
                f"{spec.__qualname__}.on_mount({id.key[:200]!r}) returned "
                f"{type(result).__name__}; return a dict of properties or a Mount(state=...)."
            )
        limits = spec.limits
        schema = schema_of(spec)
        state: dict[str, JSON] = {}
        total = 0
        for prop, value in result.items():
            check_property(prop, id)
            state[prop], text, nbytes = prepare(value, limits, id, prop)
            if schema is not None:
                schema.check(prop, text, id)
            total += size(prop) + nbytes
        check_size(total, limits.max_state_bytes, id, None, whole=True)
        return Mounted(
            state,
            ACL.parse(acl, str(id)),
            check_ttl(ttl, f"The TTL of {id}"),
            limits,
            declaration(spec),
        )

    async def _open(self, replica: Replica) -> None:
        id = replica.id
        if closing := self._closing.get(id):
            await closing  # let the previous replica release its hold first
        try:
            await replica.open()
        except BaseException:
            self._let_go(replica)
            raise
        self._persistence.opened(replica)
        declared = declaration(replica.spec)
        if replica.declared and replica.declared != declared and id.spec not in self._warned:
            self._warned.add(id.spec)  # once per spec: every key of it would say the same
            self.log.warning(
                "%s was started by a node whose %s declares %s; this node's declares %s. The "
                "stored one applies to this live state until it ends; deploy one release of "
                "the spec everywhere.",
                id, id.spec, replica.declared, declared,
            )  # fmt: skip
        # Every attach that waited for this was cancelled: nobody will use the replica.
        self._let_go_if_unused(replica)

    async def _release_if_unused(self, replica: Replica) -> None:
        self._count()
        if task := self._let_go_if_unused(replica):
            await asyncio.shield(task)

    def _count(self) -> None:
        """Tell the metrics how many live states and clients this node has, and the backend
        that they changed (`livestate inspect` shows it)."""
        self.backend.recount(self.id)
        if self.metrics is not None:
            clients = sum(len(replica.inboxes) for replica in self._replicas.values())
            self.metrics.population(len(self._replicas), clients)

    def _let_go_if_unused(self, replica: Replica) -> asyncio.Task[None] | None:
        if replica.inboxes or replica.waiting:
            return None
        return self._let_go(replica)

    def _let_go(self, replica: Replica) -> asyncio.Task[None] | None:
        """Forget the replica, then unsubscribe and release this node's hold in a task."""
        if replica.closed:
            return None
        replica.close()
        id = replica.id
        if self._replicas.get(id) is replica:
            del self._replicas[id]
            self._quotas.release(id, replica.spec.ttl)
        self._count()
        task = self._spawn(self._release(id, replica))
        self._persistence.closed(replica, task)
        self._closing[id] = task
        task.add_done_callback(
            lambda _: self._closing.pop(id) if self._closing.get(id) is task else None
        )
        return task

    async def _release(self, id: StateId, replica: Replica) -> None:
        try:
            await self.backend.unsubscribe(id, replica)
            await self.backend.release(id, self.id)
        except Exception as error:
            # Not fatal: the hold lapses with this node's lease, and the TTL counts from there.
            self.log.warning("%s: could not release this node's hold (%s)", id, error)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


CONTENDED = Backoff.exponential(0.002, 0.1, jitter=True)
"""The wait before each retry of a contended write (jittered, so that the writers do not
collide in lockstep)."""


async def _contended(attempt: int) -> None:
    """Back off before retry number `attempt` of a contended write."""
    await asyncio.sleep(delay(CONTENDED, attempt))


MAX_WRITE_ID = 128
"""The longest caller-chosen write id, in characters."""


def check_write_id(write_id: object, subject: object) -> str | None:
    """Return `write_id` if it is None or a str of 1 to 128 characters, else raise."""
    if write_id is not None and (
        type(write_id) is not str or not 0 < len(write_id) <= MAX_WRITE_ID
    ):
        raise InvalidValueError(
            f"A write id for {subject} is a str of 1 to {MAX_WRITE_ID} characters that names the "
            f"write (the same for each retry of it), or None; got {str(write_id)[:40]!r}."
        )
    return write_id


def unknown_action(spec: type[Spec], action: object, id: StateId) -> str:
    """The message for a call of an action that the spec does not have."""
    names = ", ".join(sorted(actions_of(spec))) or "none"
    return (
        f"{id} has no action {str(action)[:100]!r}; its spec {spec.__qualname__} has these: "
        f"{names} (methods decorated with @action)."
    )


class _Keeper:
    """The node as its replicas' host (`_replica.Host`): what they ask of it, and no more."""

    __slots__ = ("_node", "backend", "log", "metrics", "node")

    def __init__(self, node: Node) -> None:
        self._node = node
        self.node = node.id
        self.backend = node.backend
        self.log = node.log
        self.metrics = node.metrics

    def mount(self, spec: type[Spec], id: StateId) -> Awaitable[Mounted]:
        return self._node._mount(spec, id)

    def ended(self, replica: Replica) -> object:
        return self._node._let_go(replica)

    def release(self, replica: Replica) -> Awaitable[None]:
        return self._node._release_if_unused(replica)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._node._spawn(coroutine)

    def write(self, id: StateId, op: Op) -> Awaitable[object]:
        return self._node._apply(id, op)


_current: ContextVar[Node | None] = ContextVar("livestate._node", default=None)
_default: Node | None = None


def current_node() -> Node:
    """The node that LiveState class methods use here: `use(node)`'s, else the process default.

    The process default is created on first use from LIVESTATE_URL, or by `lifespan`.
    """
    global _default
    node = _current.get()
    if node is not None:
        return node
    if _default is None or _default.closed or not _default._on_running_loop():
        # A node belongs to one event loop; a script that calls asyncio.run twice gets a new one.
        _default = Node()
    return _default


@contextmanager
def use(node: Node) -> Iterator[Node]:
    """Make `node` the current node inside the `with` block (and the tasks it starts)."""
    token = _current.set(node)
    try:
        yield node
    finally:
        _current.reset(token)


@asynccontextmanager
async def lifespan(app: object = None) -> AsyncIterator[None]:
    """A Starlette-style lifespan: starts this process's node and closes it at shutdown.

    `PyView(lifespan=livestate.lifespan)`; combine it with your own lifespan by
    entering it inside yours (`async with livestate.lifespan(app): ...`).
    """
    global _default
    node = Node()
    await node.__aenter__()
    previous, _default = _default, node
    try:
        yield
    finally:
        _default = previous
        await node.aclose()
