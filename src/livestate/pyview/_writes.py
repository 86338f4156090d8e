"""The writes of a LiveView: `live_assign`, `live_append`, ..., `live_call`, and presence.

Each writes through the socket's attached client, as a group member and as the
view's caller; on the first HTTP render (no client yet) through the node, as
the same caller, and the snapshot the render shows is read again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._client import Client
from .._declare import DEFAULT
from .._node import current_node
from .._values import JSON
from ._bindings import Binding, LiveSocket, binding_of

__all__ = [
    "live_append",
    "live_assign",
    "live_call",
    "live_delete",
    "live_increment",
    "live_reset",
    "live_track",
    "live_untrack",
    "live_update",
]


async def live_track(
    socket: LiveSocket, identity: str, meta: Any, *, as_: str | None = None
) -> None:
    """Show the socket's client in its live state's presence (the one bound `as_`).

    Phoenix's `Presence.track`: the view appears in every attached client's
    presence (`live_presence` in templates, `client.presence`) as `identity`
    (several tabs of one user group under it) with the JSON `meta`. Call it
    again to change the meta (frequent updates such as typing are coalesced:
    the latest wins) or the identity (it leaves the old one, then joins). Call it
    after `live_state`, in `handle_params` or `handle_event`; binding another key
    leaves the old key's presence. The presence ends when the socket closes,
    with `live_untrack`, or within a lease when its node dies. On the first HTTP
    render (an unconnected socket) nothing is attached, so it does nothing: the
    WebSocket mount, which runs the same code, tracks. When it returns,
    `live_presence` shows it.

    Raises RuntimeError if `live_state` was not called on this socket (or its
    live state was stopped), InvalidValueError for an identity that is not a
    string of 1 to 256 characters or a meta that is not JSON (at most 2,048
    bytes with the identity), PermissionDeniedError (needs read), NotFoundError.
    """
    client = attached_client(socket, bound(socket, as_))
    if client is not None:
        await client.track(identity, meta)


async def live_untrack(socket: LiveSocket, *, as_: str | None = None) -> None:
    """Take the socket's client out of its live state's presence (the one bound `as_`).

    Does nothing if it was not tracked, or on an unconnected socket. Raises
    RuntimeError if `live_state` was not called on this socket, NotFoundError.
    """
    client = attached_client(socket, bound(socket, as_))
    if client is not None:
        await client.untrack()


async def live_assign(
    socket: LiveSocket,
    prop: str,
    value: Any,
    *,
    as_: str | None = None,
    write_id: str | None = None,
) -> None:
    """Set `prop` to `value` in the socket's live state (the one bound `as_`), as a group member.

    When it returns, `live_assigns` (and so the writer's next render) shows the
    write. Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError, StateTooLargeError,
    NotFoundError.
    """
    await write_as_view(socket, as_, "put", prop, value, write_id=write_id)


async def live_delete(
    socket: LiveSocket, prop: str, *, as_: str | None = None, write_id: str | None = None
) -> None:
    """Remove `prop` from the socket's live state (the one bound `as_`), as a group member.

    Raises RuntimeError if `live_state` was not called on this socket,
    PropertyNotFoundError, PermissionDeniedError (needs delete), NotFoundError.
    """
    await write_as_view(socket, as_, "delete", prop, write_id=write_id)


async def live_append(
    socket: LiveSocket,
    prop: str,
    item: Any,
    *,
    max_len: int | None = None,
    as_: str | None = None,
    write_id: str | None = None,
) -> None:
    """Append `item` to the list `prop` atomically, dropping the oldest beyond `max_len`.

    Concurrent appends from any number of views and nodes all land, in one order.
    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError (also if `prop` holds
    no list), StateTooLargeError, NotFoundError.
    """
    await write_as_view(socket, as_, "append", prop, item, max_len=max_len, write_id=write_id)


async def live_increment(
    socket: LiveSocket,
    prop: str,
    by: int | float = 1,
    *,
    as_: str | None = None,
    write_id: str | None = None,
) -> JSON:
    """Add `by` to the number `prop` atomically and return the result.

    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError (also if `prop` holds
    no number), NotFoundError.
    """
    result: JSON = await write_as_view(socket, as_, "increment", prop, by, write_id=write_id)
    return result


async def live_update(
    socket: LiveSocket,
    prop: str,
    fn: Callable[[Any], Any],
    *,
    default: Any = DEFAULT,
    as_: str | None = None,
    write_id: str | None = None,
) -> JSON:
    """Replace `prop` with `fn(current value)` atomically and return the new value.

    `fn` may run more than once. Raises RuntimeError if `live_state` was not
    called on this socket, PropertyNotFoundError (absent, without `default`),
    PermissionDeniedError (needs read and write), InvalidValueError,
    StateTooLargeError, NotFoundError.
    """
    result: JSON = await write_as_view(
        socket, as_, "update", prop, fn, default=default, write_id=write_id
    )
    return result


async def live_call(
    socket: LiveSocket,
    action: str,
    args: Mapping[str, Any] | None = None,
    *,
    as_: str | None = None,
    write_id: str | None = None,
) -> JSON:
    """Run one of the spec's actions on the socket's live state (the one bound `as_`).

    The action runs as the view's caller (`live_state`'s identity, group role)
    and its result is returned; when it returns, `live_assigns` shows its writes.
    Raises RuntimeError if `live_state` was not called on this socket,
    InvalidValueError (no such action, arguments or writes that do not fit),
    PermissionDeniedError, NotFoundError, and whatever the action raises.
    """
    result: JSON = await write_as_view(socket, as_, "call", action, args, write_id=write_id)
    return result


async def live_reset(
    socket: LiveSocket, *, as_: str | None = None, write_id: str | None = None
) -> None:
    """Run on_mount again and replace the whole state of the socket's live state.

    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs reset), NotFoundError, and whatever on_mount raises.
    """
    await write_as_view(socket, as_, "reset", write_id=write_id)


def bound(socket: LiveSocket, as_: str | None) -> Binding:
    """The socket's binding named `as_`; RuntimeError saying what to call if there is none."""
    binding = binding_of(socket, as_)
    if binding is None:
        named = "" if as_ is None else f", as_={as_!r}"
        raise RuntimeError(
            f"This socket is bound to no live state{' named ' + repr(as_) if as_ else ''}; "
            f"call await live_state(socket, Spec, key{named}) in mount or handle_params first."
        )
    return binding


def attached_client(socket: LiveSocket, binding: Binding) -> Client | None:
    """The binding's attached client; None on an unconnected socket; RuntimeError if stopped."""
    client = binding.client
    if client is not None and client.attached:
        return client
    if socket.connected:
        raise RuntimeError(
            f"The live state {binding.spec.__qualname__} {binding.key[:200]!r} was stopped; "
            "call live_state again to start it anew."
        )
    return None


async def write_as_view(
    socket: LiveSocket, as_: str | None, kind: str, *args: Any, **kwargs: Any
) -> Any:
    binding = bound(socket, as_)
    client = attached_client(socket, binding)
    if client is not None:
        method: Callable[..., Awaitable[Any]] = getattr(client, kind)
        return await method(*args, **kwargs)
    # The first HTTP render has no client: write as the group member this view is,
    # then refresh what it shows.
    node = current_node()
    method = getattr(node, kind)
    result = await method(
        binding.spec, binding.key, *args, role="group", caller=binding.caller, **kwargs
    )
    binding.snapshot = await node.get(binding.spec, binding.key, role="group")
    return result
