"""Changes delivered to clients, and writes as data.

A write is an `Op`: its kind, its property and its (frozen, encoded) argument.
The same pure function, `evaluate`, turns an op into its effect on the backend
that holds the authoritative state and on every node's replica, so an append
travels between nodes as the item, never as the whole list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from ._acl import ACL, DELETE, READ, RESET, WRITE
from ._exceptions import InvalidValueError, PropertyNotFoundError
from ._schema import Bounds, out_of_bounds, out_of_range
from ._values import JSON, MAX_SAFE_INTEGER, FrozenList

ChangeKind = Literal["new", "updated", "deleted", "reset", "stopped", "presence", "persist_failed"]
OpKind = Literal["put", "delete", "reset", "append", "increment", "join", "leave"]


class Change(NamedTuple):
    """One change of a live state, as its attached clients receive it.

    `kind` is `new` or `updated` (`prop` and its new `value`), `deleted` (`prop`,
    value None), `reset` (prop None, `value` the whole new state) or `stopped`
    (the live state was stopped while the client was attached; the client is
    detached), `presence` (prop None, `value` maps each identity whose presence
    changed to its metas now, an empty list when it left; see Client.track) or
    `persist_failed` (on_persist failed `max_persist_failures` times in a row; the
    state is intact, see docs/persistence.md).
    `version` is the live state's version after the change: each
    client sees versions in order, each once, or a `reset`. Immutable (a named
    tuple: made once per change and shared by every client).
    """

    key: str
    kind: ChangeKind
    prop: str | None
    value: Any
    version: int


class StateId(NamedTuple):
    """Which live state: the spec's name and the key."""

    spec: str
    key: str

    def __str__(self) -> str:
        return f"{self.spec} {self.key[:200]!r}"


def write_op(
    kind: OpKind,
    prop: str,
    value: JSON,
    encoded: str,
    size: int,
    max_len: int | None,
    bounds: Bounds | None,
    epoch: str | None,
    write_id: str | None,
) -> Op:
    """An Op for a checked write, made the fast way (one per write)."""
    made: Op = _new(Op, (kind, prop, value, encoded, size, max_len, None, None, None, bounds,
                         False, epoch, write_id))  # fmt: skip
    return made


_new: Any = tuple.__new__


class Op(NamedTuple):
    """A write as data. `value` is frozen and `encoded` is its JSON text of `size` bytes.

    For `put` the value, `append` the item, `increment` the amount, `reset` the
    whole new state (with the ACL and TTL from on_mount). `expect` makes the write
    conditional on the live state's version (how `update` commits). `bounds` are the
    numeric bounds the schema puts on an increment's result; a `trusted` op is an
    action's, which no ACL restricts. `epoch` fences a client's write to the lifetime it
    attached under: the backend refuses it in another one. `write_id` is the caller's name
    for the write: a repeat within the backend's window applies nothing. Presence ops
    (_presence.py): `join` a client's presence (`prop` its ref, `value` [identity,
    meta]), `leave` (`value` the refs that go).
    """

    kind: OpKind
    prop: str | None
    value: JSON = None
    encoded: str = "null"
    size: int = 0
    max_len: int | None = None
    expect: int | None = None
    acl: ACL | None = None
    ttl: float | None = None
    bounds: Bounds | None = None
    trusted: bool = False
    epoch: str | None = None
    write_id: str | None = None


PERMISSION = {
    "put": WRITE, "append": WRITE, "increment": WRITE, "delete": DELETE, "reset": RESET,
    "join": READ, "leave": READ,
}  # fmt: skip
"""The permission each op kind needs; a conditional put (update) also needs read. Showing a
presence needs only read: whoever may see the live state may be seen in it."""

_VERBS = {"put": "write", "append": "append to", "increment": "increment", "delete": "delete"}
_WHOLE = {"reset": "reset", "join": "show a presence in", "leave": "end a presence in"}


def describe(op: Op) -> str:
    """What `op` does, for error messages: "write 'x' of", "reset"."""
    if op.kind in _WHOLE:
        return _WHOLE[op.kind]
    verb = "update" if op.expect is not None else _VERBS[op.kind]
    return f"{verb} {op.prop!r} of"


def permission(op: Op) -> int:
    """The permission bits `op` needs (none for an action's own writes)."""
    if op.trusted:
        return 0
    if op.expect is not None:
        return READ | WRITE
    return PERMISSION[op.kind]


def evaluate(state: Mapping[str, JSON], op: Op, subject: object) -> tuple[ChangeKind, JSON]:
    """The effect of `op` on `state`: the change's kind and the property's new value.

    For a reset the value is the whole new state. `state` is not modified; raises
    PropertyNotFoundError or InvalidValueError, naming `subject`, if `op` does not apply.
    """
    kind = op.kind
    prop: str = op.prop  # type: ignore[assignment]  # every kind but reset names one
    if kind == "put":
        return ("updated" if prop in state else "new"), op.value
    if kind == "reset":
        return "reset", op.value
    old = state.get(prop, _MISSING)
    if kind == "delete":
        if old is _MISSING:
            raise PropertyNotFoundError(
                f"Cannot delete {prop!r} from {subject}: it has no such property."
            )
        return "deleted", None
    if kind == "append":
        if old is _MISSING:
            return "new", FrozenList((op.value,))
        if type(old) is not FrozenList:
            raise InvalidValueError(
                f"Cannot append to {prop!r} of {subject}: it holds {_kind(old)}, not a list; "
                "put a list there first, or append to another property."
            )
        start = 0 if op.max_len is None else max(0, len(old) + 1 - op.max_len)
        new = FrozenList(old[start:] if start else old)
        list.append(new, op.value)
        return "updated", new
    if kind == "increment":
        if old is _MISSING:
            old = 0
        elif type(old) is not int and type(old) is not float:
            raise InvalidValueError(
                f"Cannot increment {prop!r} of {subject}: it holds {_kind(old)}, not a number; "
                "put a number there first."
            )
        result = old + op.value
        if type(result) is int and not -MAX_SAFE_INTEGER <= result <= MAX_SAFE_INTEGER:
            raise InvalidValueError(
                f"Cannot increment {prop!r} of {subject}: the result {result} is outside "
                "±(2**53 - 1), the range a browser holds exactly."
            )
        if type(result) is float and result - result != 0.0:
            raise InvalidValueError(
                f"Cannot increment {prop!r} of {subject}: the result {result} is not finite."
            )
        if op.bounds is not None and out_of_bounds(op.bounds, result):
            raise InvalidValueError(out_of_range(prop, subject, result, op.bounds))
        return ("new" if prop not in state else "updated"), result
    raise ValueError(f"unknown op kind {kind!r}")  # pragma: no cover


def commit(state: dict[str, JSON], op: Op, kind: ChangeKind, value: JSON) -> None:
    """Write the effect that `evaluate` computed into `state`."""
    if kind == "deleted":
        del state[op.prop]  # type: ignore[arg-type]
    elif kind == "reset":
        state.clear()
        state.update(value)
    else:
        state[op.prop] = value  # type: ignore[index]


def apply(state: dict[str, JSON], op: Op, id: StateId, version: int) -> Change:
    """Evaluate `op` on `state` (of the live state `id`) and commit it; return the Change
    that makes it `version`, made the fast way (a replica makes one per write, for every
    client). Raises as `evaluate` does, and then changes nothing."""
    prop = op.prop
    if op.kind == "put":  # most writes, in one step
        kind: ChangeKind = "updated" if prop in state else "new"
        value = state[prop] = op.value  # type: ignore[index]
    else:
        kind, value = evaluate(state, op, id)
        commit(state, op, kind, value)
    made: Change = _new(Change, (id.key, kind, prop, value, version))
    return made


_MISSING: Any = object()


def _kind(value: JSON) -> str:
    names = {FrozenList: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "an object" if isinstance(value, dict) else "a number")
