"""What the Redis backend's scripts reply, read back into livestate's values and errors.

A snapshot reply (open, read) becomes a `Snapshot`; a refusal of a write becomes
the same error MemoryBackend raises for it, down to the message (checked by
tests/redis/test_differential.py); data in another release's layout becomes a
BackendError that says what to do.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..._acl import ACL, Role, denied
from ..._changes import Op, StateId, describe, evaluate, permission
from ..._exceptions import BackendError, InvalidValueError
from ..._schema import NO_BOUNDS, out_of_range
from ..._values import JSON, FrozenList, check_size
from ..base import ConflictError, Snapshot, not_running, started_anew
from .codec import decode
from .scripts import LAYOUT


def snapshot(reply: list[Any]) -> Snapshot:
    """The snapshot an `ok` reply of open.lua or read.lua carries."""
    _, epoch, version, group, public, ttl, props, values, declared, shown = reply
    state = {
        prop: FrozenList([decode(item) for item in value]) if type(value) is list else decode(value)
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


def number(text: str) -> int | float:
    """The sum increment.lua wrote: digits, or a float as Python's repr writes it (cheaper
    than json.loads, and the same number)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def fail(id: StateId, op: Op, role: Role, reply: list[Any], server: str) -> NoReturn:
    """Raise the error a write script reported, as MemoryBackend would."""
    status = reply[0]
    if status == "missing":
        raise not_running(id)
    if status == "layout":
        raise layout_error(id, reply[1], server)
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
        raise InvalidValueError(out_of_range(op.prop or "", id, reply[1], op.bounds or NO_BOUNDS))
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


def layout_error(id: StateId | None, found: str, server: str) -> BackendError:
    """The error for data of another release's layout: of `id`, or of the whole server."""
    what = (
        f"{id} on the Redis server at {server} is"
        if id
        else f"The Redis server at {server} holds live states"
    )
    return BackendError(
        f"{what} in livestate's data layout {found}, and this release reads and writes "
        f"layout {LAYOUT} only, so it leaves them alone. Run one release on every node "
        "(stop the other release's nodes and delete its ls:* keys, or upgrade this node)."
    )
