"""The PyView integration: shared live state as `live_assigns` in a LiveView.

In `mount` or `handle_params`, `await live_state(socket, ChatRoom, room_id)`.
The template then sees `live_assigns` (`{% for m in live_assigns.messages %}`),
every change of the live state re-renders the view through PyView's own path
(`send_info`, so `handle_info` gets an `InfoEvent(LIVE_STATE_EVENT, changes)`),
and `live_assign`, `live_append` and friends write through the socket's client.

On the first HTTP render (an unconnected socket) nothing attaches: the live
state is started if needed and its current state rendered. On the WebSocket
connection the socket attaches, and detaches when PyView closes the socket.

`OriginCheckMiddleware` closes WebSocket handshakes from other sites, which
PyView does not check by itself.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, Final

from ._changes import Change
from ._exceptions import NotFoundError
from ._node import current_node
from ._spec import DEFAULT, LiveState
from ._values import EMPTY, JSON

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "LIVE_STATE_EVENT",
    "LiveAssigns",
    "OriginCheckMiddleware",
    "live_append",
    "live_assign",
    "live_client",
    "live_delete",
    "live_increment",
    "live_reset",
    "live_state",
    "live_update",
]

logger = logging.getLogger("livestate")

LIVE_STATE_EVENT: Final = "livestate"
"""The name of the InfoEvent that `handle_info` gets after changes; its payload is a
tuple of the Change objects that the render covers, oldest first."""

ASSIGN_NAME: Final = "live_assigns"

JOIN_WAIT = 2.0
"""Seconds a render waits for PyView to finish joining a socket (see _Binding._render)."""


def _import_pyview() -> Any:
    """Import pyview, or raise an ImportError that says how to install it."""
    try:
        import pyview  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "livestate.pyview needs PyView, which is not installed; install it with "
            "pip install 'livestate[pyview]'."
        ) from error
    return pyview


_import_pyview()

from pyview.events import InfoEvent  # type: ignore[import-untyped]  # noqa: E402 - after the ImportError


class LiveAssigns:
    """What a template sees as `live_assigns`: the live state's properties as attributes.

    `live_assigns.messages` (or `live_assigns["messages"]`) is the current value,
    read-only. It has no public methods, so a property named `items` or `get`
    still reads as the property in a template. A property that is absent is
    `Undefined` in a template (renders as nothing) and raises AttributeError or
    KeyError in Python; `"typing" in live_assigns` tests for one. `LiveAssigns()`
    is empty, a default for a dataclass context's `live_assigns` field.
    """

    __slots__ = ("_state",)

    def __init__(self, state: Mapping[str, JSON] = EMPTY) -> None:
        object.__setattr__(self, "_state", state)

    def __getattr__(self, name: str) -> JSON:
        if name.startswith("__"):
            raise AttributeError(name)  # keep copy, pickle and friends from seeing state
        try:
            return self._state[name]
        except KeyError:
            raise AttributeError(
                f"The live state has no property {name!r}; test with "
                f"'{name}' in live_assigns, or use getattr(live_assigns, {name!r}, None)."
            ) from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            "live_assigns is read-only; write with live_assign(socket, prop, value)."
        )

    def __getitem__(self, name: str) -> JSON:
        return self._state[name]

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LiveAssigns):
            return dict(self._state) == dict(other._state)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LiveAssigns({dict(self._state)!r})"

    # dataclasses.asdict deep-copies a dataclass context for the HTTP render. The
    # state is immutable, so sharing it is a faithful copy, and it keeps deepcopy
    # away from the client behind it.
    def __copy__(self) -> LiveAssigns:
        return self

    def __deepcopy__(self, memo: object) -> LiveAssigns:
        return self


class _Binding:
    """One socket's attachment: its spec, key, client (when connected) and pending renders."""

    __slots__ = (
        "__weakref__",
        "client",
        "closed",
        "key",
        "pending",
        "render_task",
        "snapshot",
        "socket",
        "spec",
    )

    def __init__(self, socket: Any, spec: type[LiveState], key: str) -> None:
        # A weak reference: a binding must not keep a closed socket alive.
        self.socket: weakref.ReferenceType[Any] = weakref.ref(socket)
        self.spec = spec
        self.key = key
        self.client: Any = None  # livestate.Client once attached
        self.snapshot: Mapping[str, JSON] = EMPTY  # the state while not attached
        self.pending: list[Change] = []
        self.render_task: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def state(self) -> Mapping[str, JSON]:
        client = self.client
        if client is not None and client.attached:
            state: Mapping[str, JSON] = client.state
            return state
        return self.snapshot

    def on_change(self, change: Change) -> None:
        """Queue a render (runs inline during fan-out, so it only notes the change)."""
        if self.closed:
            return
        if change.kind == "stopped" and self.client is not None:
            # The client is detached by now; keep showing the last state.
            self.snapshot = dict(self.client.state)
        self.pending.append(change)
        if self.render_task is None:
            self.render_task = asyncio.get_running_loop().create_task(self._render())
            _tasks.add(self.render_task)
            self.render_task.add_done_callback(_tasks.discard)

    async def _render(self) -> None:
        """Re-render the socket through PyView until no change is left unrendered.

        One render runs at a time per socket, and it covers every change that came
        before it: a burst of changes becomes a few renders, not one per change.
        """
        try:
            socket = self.socket()
            # A change may arrive while PyView is still joining the socket (mount runs
            # before the join reply). A diff sent before the join reply would reach a
            # browser that has nothing to apply it to, so wait for the first render.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + JOIN_WAIT
            while (
                socket is not None
                and socket.connected
                and socket.prev_rendered is None
                and loop.time() < deadline
            ):
                await asyncio.sleep(0.005)
                socket = self.socket()
            await asyncio.sleep(0)  # let the rest of a burst arrive first
            while self.pending:
                socket = self.socket()
                if self.closed or socket is None or not socket.connected:
                    self.pending.clear()
                    return
                changes, self.pending = tuple(self.pending), []
                try:
                    await socket.send_info(InfoEvent(LIVE_STATE_EVENT, changes))
                except Exception:
                    logger.exception("Rendering %s after a livestate change raised", socket)
                del socket
        finally:
            self.render_task = None

    async def close(self) -> None:
        """Detach the client and drop pending renders.

        A render under way is left to finish rather than cancelled: PyView notes a
        diff as sent before it sends it, so a render cut short would leave the
        browser one diff behind the server for the rest of the connection.
        """
        self.closed = True
        self.pending.clear()
        client, self.client = self.client, None
        if client is not None:
            await client.detach()


# Socket -> its binding. Weak keys: the registry never keeps a socket alive.
_bindings: weakref.WeakKeyDictionary[Any, _Binding] = weakref.WeakKeyDictionary()
# Render and clean-up tasks, referenced so that they are not collected mid-way.
_tasks: set[asyncio.Task[Any]] = set()


async def live_state(socket: Any, spec: type[LiveState], key: str) -> LiveAssigns:
    """Bind `socket` to the live state of `spec` for `key`, and expose it as `live_assigns`.

    Call it in `mount` or `handle_params`. On an unconnected socket (the first
    HTTP render) it starts the live state if needed and shows its current state
    without attaching. On a connected socket it attaches a client, whose changes
    re-render the view and reach `handle_info` as `InfoEvent(LIVE_STATE_EVENT,
    changes)`; PyView closing the socket detaches it. Calling it again with the
    same spec and key does nothing; with another one it detaches from the old
    key first. The context (a dict, a dataclass with a `live_assigns` field, or
    any object) gets `live_assigns`, which is also returned.

    Raises InvalidValueError for a bad key, PermissionDeniedError if the group
    may not read the live state, TypeError if the context cannot hold
    `live_assigns`, and whatever on_mount raises.
    """
    _check_context(socket)
    binding = _bindings.get(socket)
    connected = bool(getattr(socket, "connected", False))
    if binding is not None and binding.spec is spec and binding.key == key:
        if not connected or (binding.client is not None and binding.client.attached):
            return _expose(socket, binding)
    if binding is not None:
        del _bindings[socket]
        await binding.close()
    binding = _Binding(socket, spec, key)
    if connected:
        binding.client = await spec.attach(key, on_change=binding.on_change)
        _watch(socket)
    else:
        binding.snapshot = await _read(spec, key)
    _bindings[socket] = binding
    return _expose(socket, binding)


def live_client(socket: Any) -> Any:
    """The livestate Client of a connected socket bound by `live_state`, or None.

    None on an unconnected socket, before `live_state`, and after a `stopped`
    change or disconnect. Raises nothing.
    """
    binding = _bindings.get(socket)
    if binding is None or binding.client is None or not binding.client.attached:
        return None
    return binding.client


async def live_assign(socket: Any, prop: str, value: Any) -> None:
    """Set `prop` to `value` in the socket's live state, as a group member.

    When it returns, `live_assigns` (and so the writer's next render) shows the
    write. Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError, StateTooLargeError,
    NotFoundError.
    """
    await _write(socket, "put", prop, value)


async def live_delete(socket: Any, prop: str) -> None:
    """Remove `prop` from the socket's live state, as a group member.

    Raises RuntimeError if `live_state` was not called on this socket,
    PropertyNotFoundError, PermissionDeniedError (needs delete), NotFoundError.
    """
    await _write(socket, "delete", prop)


async def live_append(socket: Any, prop: str, item: Any, *, max_len: int | None = None) -> None:
    """Append `item` to the list `prop` atomically, dropping the oldest beyond `max_len`.

    Concurrent appends from any number of views and nodes all land, in one order.
    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError (also if `prop` holds
    no list), StateTooLargeError, NotFoundError.
    """
    await _write(socket, "append", prop, item, max_len=max_len)


async def live_increment(socket: Any, prop: str, by: int | float = 1) -> JSON:
    """Add `by` to the number `prop` atomically and return the result.

    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs write), InvalidValueError (also if `prop` holds
    no number), NotFoundError.
    """
    return await _write(socket, "increment", prop, by)


async def live_update(
    socket: Any, prop: str, fn: Callable[[Any], Any], *, default: Any = DEFAULT
) -> JSON:
    """Replace `prop` with `fn(current value)` atomically and return the new value.

    `fn` may run more than once. Raises RuntimeError if `live_state` was not
    called on this socket, PropertyNotFoundError (absent, without `default`),
    PermissionDeniedError (needs read and write), InvalidValueError,
    StateTooLargeError, NotFoundError.
    """
    return await _write(socket, "update", prop, fn, default=default)


async def live_reset(socket: Any) -> None:
    """Run on_mount again and replace the whole state of the socket's live state.

    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs reset), NotFoundError, and whatever on_mount raises.
    """
    await _write(socket, "reset")


class OriginCheckMiddleware:
    """ASGI middleware that refuses WebSocket handshakes from pages of other sites.

    Browsers send cookies with a cross-site WebSocket handshake and PyView does not
    check `Origin`, so a page on another site could drive a user's live views.
    A handshake passes if its `Origin` has the same host and port as its `Host`
    header (the app's own host, also behind a proxy that keeps `Host`), or is
    listed in `allowed_origins` (such as `"https://example.com"`). A handshake
    without `Origin` (not from a browser) passes. Others are closed with 403.
    Raises nothing itself.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.allows(scope):
            message = await receive()  # websocket.connect must come before the refusal
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": "Bad origin"})
            return
        await self.app(scope, receive, send)

    def allows(self, scope: Scope) -> bool:
        """Whether the handshake in `scope` comes from the app's own host or an allowed origin."""
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
        if not origin:
            return True
        if origin in self.allowed_origins:
            return True
        host = headers.get(b"host", b"").decode("latin-1").lower()
        scheme, _, rest = origin.partition("://")
        return bool(host) and scheme in ("http", "https") and rest == host


# Internals.


def _check_context(socket: Any) -> None:
    context = getattr(socket, "context", None)
    if context is None:
        raise TypeError(
            "live_state needs socket.context set first; set it in mount, for example "
            "socket.context = {}."
        )
    if is_dataclass(context) and ASSIGN_NAME not in {field.name for field in fields(context)}:
        raise TypeError(
            f"{type(context).__qualname__} is a dataclass without a live_assigns field, so "
            "templates would not see it; add "
            "`live_assigns: LiveAssigns = field(default_factory=LiveAssigns)`."
        )


def _expose(socket: Any, binding: _Binding) -> LiveAssigns:
    """Put `live_assigns` into the socket's context: a live view of the binding's state."""
    assigns = _BoundAssigns(binding)
    context = socket.context
    if isinstance(context, dict):
        context[ASSIGN_NAME] = assigns
    else:
        setattr(context, ASSIGN_NAME, assigns)
    return assigns


class _BoundAssigns(LiveAssigns):
    """LiveAssigns that follow a binding: the client's current state, or the last snapshot."""

    __slots__ = ()

    def __init__(self, binding: _Binding) -> None:
        object.__setattr__(self, "_state", _BindingState(binding))


class _BindingState(Mapping[str, JSON]):
    """A Mapping that reads whatever state the binding shows now (it changes on attach)."""

    __slots__ = ("_binding",)

    def __init__(self, binding: _Binding) -> None:
        self._binding = binding

    def __getitem__(self, name: str) -> JSON:
        return self._binding.state[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._binding.state)

    def __len__(self) -> int:
        return len(self._binding.state)


async def _read(spec: type[LiveState], key: str) -> Mapping[str, JSON]:
    """Start the live state if needed and read it as a group member would, without attaching."""
    node = current_node()
    for _ in range(3):
        await node.start(spec, key)
        try:
            state: Mapping[str, JSON] = await node.get(spec, key, role="group")
        except NotFoundError:
            continue  # its TTL ended between start and get: start it again
        return state
    raise NotFoundError(f"{spec.__qualname__} {key[:200]!r} ended each time it was started.")


async def _write(socket: Any, kind: str, *args: Any, **kwargs: Any) -> Any:
    binding = _bindings.get(socket)
    if binding is None:
        raise RuntimeError(
            "This socket is bound to no live state; call await live_state(socket, Spec, key) "
            "in mount or handle_params first."
        )
    client = binding.client
    if client is not None and client.attached:
        method: Callable[..., Awaitable[Any]] = getattr(client, kind)
        return await method(*args, **kwargs)
    if getattr(socket, "connected", False):
        raise RuntimeError(
            f"The live state {binding.spec.__qualname__} {binding.key[:200]!r} was stopped; "
            "call live_state again to start it anew."
        )
    # The first HTTP render has no client: write as the group member this view is,
    # then refresh what it shows.
    node = current_node()
    method = getattr(node, kind)
    result = await method(binding.spec, binding.key, *args, role="group", **kwargs)
    binding.snapshot = await node.get(binding.spec, binding.key, role="group")
    return result


def _watch(socket: Any) -> None:
    """Detach `socket` when PyView closes it, or when its WebSocket ends.

    PyView calls `socket.close()` on disconnect and on `phx_leave`, but after a
    live navigation on the same WebSocket it never closes the new socket
    (pyview-web 0.9.0), so the end of the WebSocket itself is watched too.
    """
    if getattr(socket, "_livestate_watched", False):
        return
    original_close = socket.close

    async def close() -> None:
        try:
            await original_close()
        finally:
            await _unbind(socket)

    socket.close = close
    socket._livestate_watched = True
    websocket = getattr(socket, "websocket", None)
    if websocket is None or not hasattr(websocket, "receive"):
        return
    if getattr(websocket, "_livestate_sockets", None) is not None:
        websocket._livestate_sockets.add(socket)
        return
    sockets: weakref.WeakSet[Any] = weakref.WeakSet([socket])
    websocket._livestate_sockets = sockets
    original_receive = websocket.receive

    async def receive() -> Any:
        try:
            message = await original_receive()
        except BaseException:
            _close_all(sockets)
            raise
        if message.get("type") == "websocket.disconnect":
            _close_all(sockets)
        return message

    websocket.receive = receive


def _close_all(sockets: weakref.WeakSet[Any]) -> None:
    """Close every still-open socket of an ended WebSocket, in tasks (this runs inside receive)."""
    for socket in list(sockets):
        if socket.connected:
            task = asyncio.get_running_loop().create_task(socket.close())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    sockets.clear()


async def _unbind(socket: Any) -> None:
    binding = _bindings.pop(socket, None)
    if binding is not None:
        await binding.close()
