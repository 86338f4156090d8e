"""The PyView integration: shared live state as `live_assigns` in a LiveView.

In `mount` or `handle_params`, `await live_state(socket, ChatRoom, room_id)`.
The template then sees `live_assigns` (`{% for m in live_assigns.messages %}`),
every change of the live state re-renders the view through PyView's own path
(`send_info`, so `handle_info` gets an `InfoEvent(LIVE_STATE_EVENT, changes)`),
and `live_assign`, `live_append` and friends write through the socket's client.

A view may bind several live states by name: `live_state(socket, Lobby, "main",
as_="lobby")` shows as `live_assigns.lobby.rooms`, and the writes take the same
`as_=`. The unnamed (default) live state's properties stay at the top level.

On the first HTTP render (an unconnected socket) nothing attaches: the live
state is started if needed and its current state rendered. On the WebSocket
connection the socket attaches, and detaches when PyView closes the socket.
What PyView lacks for this (close and join hooks, a socket it forgets to close
after live navigation) is bridged in `_pyview_compat`, gated on its version.

Presence: `await live_track(socket, identity, meta)` shows the socket's client in
the live state's presence (several tabs of one identity group under it, as in
Phoenix Presence); the template sees `live_presence` (identity -> metas), and
every join, meta update and leave re-renders the view.

`OriginCheckMiddleware` closes WebSocket handshakes from other sites, which
PyView does not check by itself; `WebSocketLimitsMiddleware` closes sockets
that never join and caps sockets per client address.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from .._changes import Change
from .._client import Client
from .._declare import DEFAULT
from .._exceptions import InvalidValueError, NotFoundError
from .._node import current_node
from .._rules import Caller
from .._spec import LiveState
from .._values import EMPTY, JSON
from .._web import OriginRule

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "LIVE_STATE_EVENT",
    "LiveAssigns",
    "LivePresence",
    "LiveSocket",
    "OriginCheckMiddleware",
    "PrometheusInstrumentation",
    "WebSocketLimitsMiddleware",
    "live_append",
    "live_assign",
    "live_call",
    "live_client",
    "live_delete",
    "live_increment",
    "live_reset",
    "live_state",
    "live_track",
    "live_untrack",
    "live_update",
]

logger = logging.getLogger("livestate")

LIVE_STATE_EVENT: Final = "livestate"
"""The name of the InfoEvent that `handle_info` gets after changes; its payload is a
tuple of the Change objects that the render covers, oldest first."""

ASSIGN_NAME: Final = "live_assigns"
PRESENCE_NAME: Final = "live_presence"

JOIN_WAIT = 2.0
"""Most seconds a render waits for PyView to send the socket's join reply first."""


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

from . import _compat as compat  # noqa: E402 - needs pyview, imported above
from ._metrics import PrometheusInstrumentation  # noqa: E402 - same
from ._middleware import WebSocketLimitsMiddleware  # noqa: E402 - same
from ._presence import LivePresence, Presence  # noqa: E402 - same


class LiveSocket(Protocol):
    """What livestate uses of a PyView socket (`UnconnectedSocket` or `ConnectedLiveViewSocket`).

    `context` is the view's assigns (a dict, a dataclass or any object) and
    `connected` tells the HTTP render (False) from the WebSocket (True).
    """

    context: Any

    @property
    def connected(self) -> bool:
        """Whether the socket is a joined WebSocket connection that is still open."""


class _ConnectedSocket(LiveSocket, Protocol):
    """What livestate uses of a connected socket beyond `LiveSocket`."""

    prev_rendered: dict[str, Any] | None

    async def send_info(self, event: Any) -> None:
        """Run the view's handle_info, render it and send the diff."""

    async def close(self) -> None:
        """Close the socket (PyView calls it on disconnect and on phx_leave)."""


class LiveAssigns:
    """What a template sees as `live_assigns`: the live state's properties as attributes.

    `live_assigns.messages` (or `live_assigns["messages"]`) is the current value,
    read-only. It has no public methods, so a property named `items` or `get`
    still reads as the property in a template. A property that is absent is
    `Undefined` in a template (renders as nothing) and raises AttributeError or
    KeyError in Python; `"typing" in live_assigns` tests for one. A live state
    bound with `as_="lobby"` is `live_assigns.lobby`, itself a LiveAssigns (a
    name hides a default property of the same name). `LiveAssigns()` is empty,
    a default for a dataclass context's `live_assigns` field.
    """

    __slots__ = ("_named", "_state")

    def __init__(self, state: Mapping[str, JSON] = EMPTY) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_named", EMPTY)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # keep copy, pickle and friends from seeing state
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"The live state has no property {name!r}; test with "
                f"'{name}' in live_assigns, or use getattr(live_assigns, {name!r}, None)."
            ) from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            "live_assigns is read-only; write with live_assign(socket, prop, value)."
        )

    def __getitem__(self, name: str) -> Any:
        named: Mapping[str, LiveAssigns] = self._named
        if name in named:
            return named[name]
        return self._state[name]

    def __contains__(self, name: object) -> bool:
        return name in self._named or name in self._state

    def __iter__(self) -> Iterator[str]:
        yield from self._named
        yield from (name for name in self._state if name not in self._named)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LiveAssigns):
            return {n: self[n] for n in self} == {n: other[n] for n in other}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LiveAssigns({ {n: self[n] for n in self}!r})"

    # dataclasses.asdict deep-copies a dataclass context for the HTTP render. The
    # state is immutable, so sharing it is a faithful copy, and it keeps deepcopy
    # away from the client behind it.
    def __copy__(self) -> LiveAssigns:
        return self

    def __deepcopy__(self, memo: object) -> LiveAssigns:
        return self


class _Binding:
    """One live state bound to a socket: its spec, key, client (when connected), pending renders."""

    __slots__ = (
        "__weakref__",
        "caller",
        "client",
        "closed",
        "key",
        "pending",
        "render_lock",
        "render_task",
        "snapshot",
        "snapshot_presence",
        "socket",
        "spec",
        "watch",
    )

    def __init__(
        self,
        socket: LiveSocket,
        spec: type[LiveState],
        key: str,
        render_lock: asyncio.Lock,
        caller: Caller,
    ) -> None:
        # A weak reference: a binding must not keep a closed socket alive.
        self.socket: weakref.ReferenceType[LiveSocket] = weakref.ref(socket)
        # Shared by the socket's bindings: two renders of one socket at once could
        # send an older render's diff last, and leave the page one change behind.
        self.render_lock = render_lock
        self.spec = spec
        self.key = key
        self.caller = caller  # who the view's writes and calls are for
        self.client: Client | None = None
        self.snapshot: Mapping[str, JSON] = EMPTY  # the state while not attached
        self.snapshot_presence: Presence = EMPTY  # the presence while not attached
        self.pending: list[Change] = []
        self.render_task: asyncio.Task[None] | None = None
        self.closed = False
        self.watch: compat.Watch | None = None

    @property
    def attached(self) -> bool:
        client = self.client
        return client is not None and client.attached

    @property
    def state(self) -> Mapping[str, JSON]:
        client = self.client
        if client is not None and client.attached:
            return client.state
        return self.snapshot

    @property
    def presence(self) -> Presence:
        client = self.client
        if client is not None and client.attached:
            return client.presence
        return self.snapshot_presence

    def on_change(self, change: Change) -> None:
        """Queue a render (runs inline during fan-out, so it only notes the change)."""
        if self.closed:
            return
        if change.kind == "stopped" and self.client is not None:
            # The client is detached by now; keep showing the last state.
            self.snapshot = dict(self.client.state)
            self.snapshot_presence = EMPTY  # its clients, this one too, are gone
        self.pending.append(change)
        if self.render_task is None:
            self.render_task = asyncio.get_running_loop().create_task(self._render())
            _tasks.add(self.render_task)
            self.render_task.add_done_callback(_tasks.discard)

    async def _render(self) -> None:
        """Re-render the socket through PyView until no change is left unrendered.

        One render runs at a time per socket (whatever its bindings), and it covers
        every change that came before it: a burst of changes becomes a few renders,
        not one per change.
        """
        try:
            # A change may arrive while PyView is still joining the socket (mount runs
            # before the join reply). A diff sent before the join reply would reach a
            # browser that has nothing to apply it to, so wait for the reply to go out.
            # PyView notes the join's render (prev_rendered) just before it sends the
            # reply, so a socket with one needs no wait.
            watch, socket = self.watch, self.socket()
            joining = socket is not None and _connected(socket).prev_rendered is None
            del socket
            if watch is not None and joining and not watch.joined.is_set():
                try:
                    await asyncio.wait_for(watch.joined.wait(), JOIN_WAIT)
                except TimeoutError:
                    pass  # render anyway: a diff late is better than none
            await asyncio.sleep(0)  # let the rest of a burst arrive first
            while self.pending:
                socket = self.socket()
                if self.closed or socket is None or not socket.connected:
                    self.pending.clear()
                    return
                async with self.render_lock:
                    changes, self.pending = tuple(self.pending), []
                    try:
                        await _connected(socket).send_info(InfoEvent(LIVE_STATE_EVENT, changes))
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


class _SocketBindings:
    """Every live state bound to one socket: the default one (name None) and named ones."""

    __slots__ = ("by_name", "render_lock")

    def __init__(self) -> None:
        self.by_name: dict[str | None, _Binding] = {}
        self.render_lock = asyncio.Lock()

    async def close(self) -> None:
        bindings = list(self.by_name.values())
        self.by_name.clear()
        for binding in bindings:
            await binding.close()


# Socket -> its bindings. Weak keys: the registry never keeps a socket alive.
_bindings: weakref.WeakKeyDictionary[LiveSocket, _SocketBindings] = weakref.WeakKeyDictionary()
# Render tasks, referenced so that they are not collected mid-way.
_tasks: set[asyncio.Task[Any]] = set()


async def live_state(
    socket: LiveSocket,
    spec: type[LiveState],
    key: str,
    *,
    as_: str | None = None,
    identity: str | None = None,
) -> LiveAssigns:
    """Bind `socket` to the live state of `spec` for `key`, and expose it as `live_assigns`.

    Call it in `mount` or `handle_params`. On an unconnected socket (the first
    HTTP render) it starts the live state if needed and shows its current state
    without attaching. On a connected socket it attaches a client, whose changes
    re-render the view and reach `handle_info` as `InfoEvent(LIVE_STATE_EVENT,
    changes)`; PyView closing the socket detaches it. Calling it again with the
    same spec and key does nothing; with another one it detaches from the old
    key first. With `as_="name"` the live state is one of several: it shows as
    `live_assigns.name` and the live_* writes take the same `as_=`; each name
    (and the default, unnamed one) binds one live state at a time. The context
    (a dict, a dataclass with a `live_assigns` field, or any object) gets
    `live_assigns`, which is also returned, and `live_presence` (who is in its
    live states: see `live_track`; a dataclass context gets it if it has a
    `live_presence` field).

    `identity` is who the user of this view is, from its session (a user id):
    the spec's `allow` and actions see it as `Caller("group", identity)` on
    every write and call this view makes (None: an anonymous user). Binding again
    with another identity attaches anew.

    Raises InvalidValueError for a bad key, identity or an `as_` that is not an
    identifier, PermissionDeniedError if the group may not read the live state,
    TypeError if the context cannot hold `live_assigns`, and whatever on_mount
    raises.
    """
    _check_context(socket)
    if as_ is not None and (not isinstance(as_, str) or not as_.isidentifier()):
        raise InvalidValueError(
            f"live_state's as_ for {spec.__qualname__} {key[:200]!r} must be a name a template "
            f"can use after live_assigns., such as 'lobby'; got {as_!r}."
        )
    bindings = _bindings.get(socket)
    if bindings is None:
        bindings = _bindings[socket] = _SocketBindings()
    caller = Caller("group", identity)
    binding = bindings.by_name.get(as_)
    connected = bool(socket.connected)
    if binding is not None and (binding.spec, binding.key, binding.caller) == (spec, key, caller):
        if not connected or binding.attached:
            return _expose(socket, bindings)
    if binding is not None:
        del bindings.by_name[as_]
        await binding.close()
    binding = _Binding(socket, spec, key, bindings.render_lock, caller)
    if connected:
        binding.client = await spec.attach(key, on_change=binding.on_change, caller=caller)
        binding.watch = compat.watch(socket, lambda: _unbind(socket))
    else:
        binding.snapshot, binding.snapshot_presence = await _read(spec, key)
    bindings.by_name[as_] = binding
    return _expose(socket, bindings)


def live_client(socket: LiveSocket, *, as_: str | None = None) -> Client | None:
    """The livestate Client of a connected socket bound by `live_state` (as `as_`), or None.

    None on an unconnected socket, before `live_state`, and after a `stopped`
    change or disconnect. Raises nothing.
    """
    bindings = _bindings.get(socket)
    binding = bindings.by_name.get(as_) if bindings is not None else None
    if binding is None or not binding.attached:
        return None
    return binding.client


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
    client = _attached_client(socket, _bound(socket, as_))
    if client is not None:
        await client.track(identity, meta)


async def live_untrack(socket: LiveSocket, *, as_: str | None = None) -> None:
    """Take the socket's client out of its live state's presence (the one bound `as_`).

    Does nothing if it was not tracked, or on an unconnected socket. Raises
    RuntimeError if `live_state` was not called on this socket, NotFoundError.
    """
    client = _attached_client(socket, _bound(socket, as_))
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
    await _write(socket, as_, "put", prop, value, write_id=write_id)


async def live_delete(
    socket: LiveSocket, prop: str, *, as_: str | None = None, write_id: str | None = None
) -> None:
    """Remove `prop` from the socket's live state (the one bound `as_`), as a group member.

    Raises RuntimeError if `live_state` was not called on this socket,
    PropertyNotFoundError, PermissionDeniedError (needs delete), NotFoundError.
    """
    await _write(socket, as_, "delete", prop, write_id=write_id)


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
    await _write(socket, as_, "append", prop, item, max_len=max_len, write_id=write_id)


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
    result: JSON = await _write(socket, as_, "increment", prop, by, write_id=write_id)
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
    result: JSON = await _write(socket, as_, "update", prop, fn, default=default, write_id=write_id)
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
    result: JSON = await _write(socket, as_, "call", action, args, write_id=write_id)
    return result


async def live_reset(
    socket: LiveSocket, *, as_: str | None = None, write_id: str | None = None
) -> None:
    """Run on_mount again and replace the whole state of the socket's live state.

    Raises RuntimeError if `live_state` was not called on this socket,
    PermissionDeniedError (needs reset), NotFoundError, and whatever on_mount raises.
    """
    await _write(socket, as_, "reset", write_id=write_id)


class OriginCheckMiddleware:
    """ASGI middleware that refuses WebSocket handshakes from pages of other sites.

    Browsers send cookies with a cross-site WebSocket handshake and PyView does not
    check `Origin`, so a page on another site could drive a user's live views.
    A handshake passes if its `Origin` has the same host and port as its `Host`
    header (the app's own host, also behind a proxy that keeps `Host`), or is
    listed in `allowed_origins` (such as `"https://example.com"`, or `"*"` for
    any: the same rule as livestate.asgi's endpoint). A handshake without `Origin`
    (not from a browser) passes. Others are closed with 1008. Raises
    InvalidValueError for an entry that is neither `"*"` nor `scheme://host[:port]`.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.origins = OriginRule(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.allows(scope):
            message = await receive()  # websocket.connect must come before the refusal
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": "Bad origin"})
            return
        await self.app(scope, receive, send)

    def allows(self, scope: Scope) -> bool:
        """Whether the handshake in `scope` comes from the app's own host or an allowed origin."""
        return self.origins.allows_scope(scope)


# Internals.


def _connected(socket: LiveSocket) -> _ConnectedSocket:
    """The socket as a connected one (only bindings with a client render)."""
    return socket  # type: ignore[return-value]


def _check_context(socket: LiveSocket) -> None:
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


def _expose(socket: LiveSocket, bindings: _SocketBindings) -> LiveAssigns:
    """Put `live_assigns` into the socket's context: a live view of its bindings' states."""
    assigns = _BoundAssigns(bindings)
    presence = _bound_presence(bindings, None)
    context = socket.context
    if isinstance(context, dict):
        context[ASSIGN_NAME] = assigns
        context[PRESENCE_NAME] = presence
    else:
        setattr(context, ASSIGN_NAME, assigns)
        if not is_dataclass(context) or PRESENCE_NAME in {f.name for f in fields(context)}:
            setattr(context, PRESENCE_NAME, presence)
    return assigns


def _bound_presence(bindings: _SocketBindings, name: str | None) -> LivePresence:
    """A LivePresence that reads the presence of the binding `name` (None: the default)."""

    def read() -> Presence:
        binding = bindings.by_name.get(name)
        return binding.presence if binding is not None else EMPTY

    def named() -> Mapping[str, LivePresence]:
        if name is not None:
            return EMPTY
        return {n: _bound_presence(bindings, n) for n in bindings.by_name if n is not None}

    return LivePresence(read, named)


class _BoundAssigns(LiveAssigns):
    """LiveAssigns that follow a socket's bindings: each client's current state, or snapshot."""

    __slots__ = ()

    def __init__(self, bindings: _SocketBindings) -> None:
        object.__setattr__(self, "_state", _BindingState(bindings, None))
        object.__setattr__(self, "_named", _NamedAssigns(bindings))


class _BindingState(Mapping[str, JSON]):
    """A Mapping that reads whatever state one binding shows now (it changes on attach)."""

    __slots__ = ("_bindings", "_name")

    def __init__(self, bindings: _SocketBindings, name: str | None) -> None:
        self._bindings = bindings
        self._name = name

    def _state(self) -> Mapping[str, JSON]:
        binding = self._bindings.by_name.get(self._name)
        return binding.state if binding is not None else EMPTY

    def __getitem__(self, name: str) -> JSON:
        return self._state()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state())

    def __len__(self) -> int:
        return len(self._state())


class _NamedAssigns(Mapping[str, LiveAssigns]):
    """The named bindings of a socket, each as a LiveAssigns of its own."""

    __slots__ = ("_bindings",)

    def __init__(self, bindings: _SocketBindings) -> None:
        self._bindings = bindings

    def __getitem__(self, name: str) -> LiveAssigns:
        if name not in self:
            raise KeyError(name)
        return LiveAssigns(_BindingState(self._bindings, name))

    def __contains__(self, name: object) -> bool:
        # Asked on every property read of live_assigns: no LiveAssigns made to say no.
        return isinstance(name, str) and name in self._bindings.by_name

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._bindings.by_name if name is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


async def _read(spec: type[LiveState], key: str) -> tuple[Mapping[str, JSON], Presence]:
    """Start the live state if needed and read it (and its presence) as a group member would."""
    node = current_node()
    for _ in range(3):
        await node.start(spec, key)
        try:
            state: Mapping[str, JSON] = await node.get(spec, key, role="group")
            presence: Presence = await node.presence(spec, key, role="group")
        except NotFoundError:
            continue  # its TTL ended between start and get: start it again
        return state, presence
    raise NotFoundError(f"{spec.__qualname__} {key[:200]!r} ended each time it was started.")


def _bound(socket: LiveSocket, as_: str | None) -> _Binding:
    """The socket's binding named `as_`; RuntimeError saying what to call if there is none."""
    bindings = _bindings.get(socket)
    binding = bindings.by_name.get(as_) if bindings is not None else None
    if binding is None:
        named = "" if as_ is None else f", as_={as_!r}"
        raise RuntimeError(
            f"This socket is bound to no live state{' named ' + repr(as_) if as_ else ''}; "
            f"call await live_state(socket, Spec, key{named}) in mount or handle_params first."
        )
    return binding


def _attached_client(socket: LiveSocket, binding: _Binding) -> Client | None:
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


async def _write(socket: LiveSocket, as_: str | None, kind: str, *args: Any, **kwargs: Any) -> Any:
    binding = _bound(socket, as_)
    client = _attached_client(socket, binding)
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


async def _unbind(socket: LiveSocket) -> None:
    """Detach every live state of a socket that PyView closed."""
    bindings = _bindings.pop(socket, None)
    if bindings is not None:
        await bindings.close()
