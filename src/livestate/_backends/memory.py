"""The embedded backend: live states in this process, shared by the nodes that use this object."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._acl import ACL, DELETE, Role, denied
from .._changes import Op, StateId, commit, describe, evaluate, permission
from .._presence import Roster, leave_op, node_of
from .._values import JSON, Limits, check_size, encode, size
from .base import (
    WRITE_ID_SECONDS,
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
    applied,
    first_version,
    not_running,
    published,
    started_anew,
)


@dataclass(slots=True, eq=False)
class _Entry:
    state: dict[str, JSON]
    sizes: dict[str, int]
    total: int
    epoch: str
    acl: ACL
    ttl: float | None
    limits: Limits
    version: int
    declared: str
    holders: set[str] = field(default_factory=set)
    roster: Roster | None = None  # made at the first join: most live states have none
    timer: asyncio.TimerHandle | None = None
    # Caller-chosen write ids -> (when, what the write did), oldest first; made on first use.
    written: dict[str, tuple[float, Applied]] | None = None


class MemoryBackend(Backend):
    """Live states held in this process's memory: the default, `memory://`.

    Writes are applied and published synchronously, so every subscriber has the
    change before `apply` returns. Several nodes in one process may share one
    MemoryBackend to behave as a cluster (tests do).
    """

    def __init__(self) -> None:
        self._entries: dict[StateId, _Entry] = {}
        self._starting: dict[StateId, asyncio.Future[None]] = {}
        # Tuples, replaced on (un)subscribe: a publish loops over one without copying it, and
        # a listener may unsubscribe (a client detaching on `stopped`) while it does.
        self._listeners: dict[StateId, tuple[Listener, ...]] = {}
        self._censuses: dict[str, Census] = {}

    async def aclose(self) -> None:
        for entry in self._entries.values():
            if entry.timer:
                entry.timer.cancel()
        self._entries.clear()
        self._listeners.clear()

    def register(self, node: str, census: Census) -> None:
        self._censuses[node] = census

    def unregister(self, node: str) -> None:
        self._censuses.pop(node, None)

    async def survey(self, id: StateId | None = None) -> Survey:
        counts = {node: census() for node, census in self._censuses.items()}
        now = asyncio.get_running_loop().time()
        states = []
        for state_id, entry in sorted(self._entries.items()):
            if id is not None and state_id != id:
                continue
            clients = {node: n for node, by in counts.items() if (n := by.get(state_id, 0))}
            expires = None if entry.timer is None else max(0.0, entry.timer.when() - now)
            states.append(
                StateReport(
                    state_id.spec,
                    state_id.key,
                    entry.version,
                    entry.epoch,
                    entry.total,
                    entry.ttl,
                    expires,
                    dict.fromkeys(sorted(entry.holders)),
                    clients,
                    len(entry.roster or ()),
                )
            )
        nodes = [
            NodeReport(node, None, len(by), sum(by.values())) for node, by in sorted(counts.items())
        ]
        return Survey(states, nodes)

    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        entry = self._entries.get(id)
        started = False
        while entry is None:
            if starting := self._starting.get(id):
                # Someone else is running on_mount: wait for it rather than run it twice.
                await starting
            else:
                self._starting[id] = done = asyncio.get_running_loop().create_future()
                try:
                    mounted = await mount()
                finally:
                    del self._starting[id]
                    done.set_result(None)
                sizes = {
                    prop: size(prop) + size(encode(value)) for prop, value in mounted.state.items()
                }
                version = first_version()  # above any earlier lifetime's, as on Redis
                self._entries[id] = entry = _Entry(
                    dict(mounted.state),
                    sizes,
                    sum(sizes.values()),
                    secrets.token_hex(8),
                    mounted.acl,
                    mounted.ttl,
                    mounted.limits,
                    version,
                    mounted.declared,
                )
                started = True
                self._publish(id, Message(entry.epoch, version, "started"))
            entry = self._entries.get(id)
        if hold:
            entry.holders.add(node)
            if entry.timer:
                entry.timer.cancel()
                entry.timer = None
        elif started:
            self._count_down(id, entry)
        return _snapshot(entry, dict(entry.state))

    async def release(self, id: StateId, node: str) -> None:
        entry = self._entries.get(id)
        if entry and node in entry.holders:
            entry.holders.discard(node)
            gone = (
                [ref for ref in entry.roster.entries if node_of(ref) == node]
                if entry.roster
                else []
            )
            if gone:
                self._change(id, entry, leave_op(gone))
            if not entry.holders:
                self._count_down(id, entry)

    async def read(
        self, id: StateId, prop: str | None = None, *, presence_only: bool = False
    ) -> Snapshot | None:
        entry = self._entries.get(id)
        if entry is None:
            return None
        if presence_only:
            return _snapshot(entry, {})
        if prop is None:
            return _snapshot(entry, dict(entry.state))
        return _snapshot(entry, {prop: entry.state[prop]} if prop in entry.state else {})

    async def apply(self, id: StateId, op: Op, role: Role) -> Applied:
        entry = self._entries.get(id)
        if entry is None:
            raise not_running(id)
        if op.write_id is not None and (done := _repeat(entry, op.write_id)) is not None:
            return done
        needed = permission(op)
        acl = entry.acl
        granted = acl.group if role == "group" else acl.public
        if granted & needed != needed:  # the message is built only when it is needed
            raise denied(role, needed, describe(op), str(id))
        epoch = entry.epoch
        if op.epoch is not None and op.epoch != epoch:
            raise started_anew(id, op)
        if op.expect is not None and op.expect != entry.version:
            raise ConflictError(id)
        kind = op.kind
        if kind == "join" or kind == "leave":
            if kind == "leave" and not (entry.roster and entry.roster.removes(op)):
                return Applied(epoch, entry.version, None)  # gone already: no change
            self._change(id, entry, op)
            return Applied(epoch, entry.version, None)
        value = self._write(id, entry, op)
        version = entry.version
        # No `sent` time: in one process there is no hop between nodes to measure.
        message = published(epoch, version, op)
        for listener in self._listeners.get(id, ()):  # _publish's loop, without its call
            listener.receive(message)
        done = applied(epoch, version, value)
        return done if op.write_id is None else _remember(entry, op, done)

    async def apply_many(
        self, id: StateId, ops: Sequence[Op], expect: int, state: Mapping[str, JSON]
    ) -> Applied:
        entry = self._entries.get(id)
        if entry is None:
            raise not_running(id)
        if ops[0].write_id is not None and (done := _repeat(entry, ops[0].write_id)) is not None:
            return done
        if ops[0].epoch is not None and ops[0].epoch != entry.epoch:
            raise started_anew(id, ops[0])
        if expect != entry.version:
            raise ConflictError(id)
        # All or none: write each op in turn, and on a failure put back what was there.
        saved = (dict(entry.state), dict(entry.sizes), entry.total, entry.version)
        try:
            for op in ops:
                self._write(id, entry, op)
        except BaseException:
            entry.state, entry.sizes, entry.total, entry.version = saved
            raise
        for offset, op in enumerate(ops):
            self._publish(id, Message(entry.epoch, expect + 1 + offset, op))
        return _remember(entry, ops[0], Applied(entry.epoch, entry.version, None))

    def _write(self, id: StateId, entry: _Entry, op: Op) -> JSON:
        """Apply a state op to `entry` at the next version, checking its sizes first."""
        sizes = entry.sizes
        limits = entry.limits
        if op.kind == "put":  # most writes: the value's size is the op's
            prop: str = op.prop  # type: ignore[assignment]
            new = size(prop) + op.size
            total = entry.total - sizes.get(prop, 0) + new
            if op.size > limits.max_value_bytes or total > limits.max_state_bytes:
                check_size(op.size, limits.max_value_bytes, id, prop)
                check_size(total, limits.max_state_bytes, id, prop, whole=True)
            entry.state[prop] = op.value
            sizes[prop] = new
            entry.total = total
            entry.version += 1
            return op.value
        kind, value = evaluate(entry.state, op, id)
        if kind == "reset":
            new_sizes = {prop: size(prop) + size(encode(v)) for prop, v in value.items()}
            total = sum(new_sizes.values())
        else:
            prop = op.prop  # type: ignore[assignment]
            old = sizes.get(prop, 0)
            weight = size(prop)
            new = 0 if kind == "deleted" else weight + _value_size(entry, op, value, old)
            check_size(new - weight, entry.limits.max_value_bytes, id, prop)
            total = entry.total - old + new
        check_size(total, entry.limits.max_state_bytes, id, op.prop, whole=True)
        commit(entry.state, op, kind, value)
        if kind == "reset":
            entry.sizes = new_sizes
            entry.acl = op.acl or entry.acl
            entry.ttl = op.ttl
        elif kind == "deleted":
            del sizes[op.prop]  # type: ignore[arg-type]
        else:
            sizes[op.prop] = new  # type: ignore[index]
        entry.total = total
        entry.version += 1
        return value

    async def stop(self, id: StateId, role: Role) -> None:
        entry = self._entries.get(id)
        if entry is None:
            raise not_running(id)
        entry.acl.check(role, DELETE, "stop", str(id))
        self._end(id, entry)

    async def announce(self, id: StateId, kind: str, value: JSON) -> None:
        for listener in self._listeners.get(id, ()):
            listener.notice(kind, value)

    async def subscribe(self, id: StateId, listener: Listener) -> None:
        self._listeners[id] = (*self._listeners.get(id, ()), listener)

    async def unsubscribe(self, id: StateId, listener: Listener) -> None:
        listeners = list(self._listeners.get(id, ()))
        if listener in listeners:
            listeners.remove(listener)
        if listeners:
            self._listeners[id] = tuple(listeners)
        else:
            self._listeners.pop(id, None)

    def _change(self, id: StateId, entry: _Entry, op: Op) -> None:
        """Apply a presence op at the next version and publish it."""
        entry.version += 1
        if entry.roster is None:
            entry.roster = Roster()
        entry.roster.apply(op, entry.version)
        self._publish(id, Message(entry.epoch, entry.version, op))

    def _publish(self, id: StateId, message: Message) -> None:
        for listener in self._listeners.get(id, ()):
            listener.receive(message)

    def _count_down(self, id: StateId, entry: _Entry) -> None:
        if entry.ttl is not None:
            loop = asyncio.get_running_loop()
            entry.timer = loop.call_later(entry.ttl, self._expire, id, entry)

    def _expire(self, id: StateId, entry: _Entry) -> None:
        if self._entries.get(id) is entry and not entry.holders:
            self._end(id, entry)

    def _end(self, id: StateId, entry: _Entry) -> None:
        del self._entries[id]
        if entry.timer:
            entry.timer.cancel()
        self._publish(id, Message(entry.epoch, entry.version, "stopped"))

    # Persistence: claims are (node, loop time it lapses), per live state.

    async def claim_save(
        self, id: StateId, node: str, lease: float
    ) -> tuple[bool, str | None, int, int]:
        claims = self._save_claims()
        entry = self._entries.get(id)
        claim = claims.get(id)
        now = asyncio.get_running_loop().time()
        held = claim is None or claim[0] == node or claim[1] <= now
        if held:
            claims[id] = (node, now + lease)  # also once ended: kept for the last save
        if entry is None:
            return held, None, 0, 0
        return held, entry.epoch, entry.version, len(entry.holders)

    async def release_save(self, id: StateId, node: str) -> None:
        claims = self._save_claims()
        claim = claims.get(id)
        if claim is not None and claim[0] == node:
            del claims[id]

    def _save_claims(self) -> dict[StateId, tuple[str, float]]:
        # Made on first use, so that a backend nobody persists with carries nothing.
        claims: dict[StateId, tuple[str, float]] = self.__dict__.setdefault("_saves", {})
        return claims


def _repeat(entry: _Entry, write_id: str) -> Applied | None:
    """What the write named `write_id` did, if it was made within the window: a repeat."""
    done = entry.written.get(write_id) if entry.written else None
    return None if done is None else done[1]._replace(repeated=True)


def _remember(entry: _Entry, op: Op, applied: Applied) -> Applied:
    """Keep what a write with a caller-chosen id did, for WRITE_ID_SECONDS; forget older."""
    if op.write_id is not None:
        written = entry.written
        if written is None:
            written = entry.written = {}
        now = time.monotonic()
        for name, (when, _) in list(written.items()):
            if now - when < WRITE_ID_SECONDS:
                break  # oldest first: the rest are newer
            del written[name]
        written[op.write_id] = (now, applied)
    return applied


def _value_size(entry: _Entry, op: Op, value: JSON, old: int) -> int:
    """The JSON size of a property's new value, computed from the change, not the whole value."""
    if op.kind == "put":
        return op.size
    if op.kind == "append" and old:
        old_value = entry.state[op.prop]  # type: ignore[index]
        dropped = len(old_value) + 1 - len(value)
        # `[a,b]` + c is `[a,b,c]`: one comma more, then minus each dropped item and its comma.
        gone = sum(size(encode(item)) + 1 for item in old_value[:dropped])
        comma = 1 if len(old_value) else 0
        return old - size(op.prop) + op.size + comma - gone  # type: ignore[arg-type]
    return size(encode(value))


def _snapshot(entry: _Entry, state: dict[str, JSON]) -> Snapshot:
    return Snapshot(
        state,
        entry.version,
        entry.epoch,
        entry.acl,
        entry.ttl,
        entry.declared,
        dict(entry.roster.entries) if entry.roster else {},
    )
