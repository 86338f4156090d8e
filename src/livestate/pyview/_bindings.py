"""Sockets bound to live states: attaching, re-rendering on changes, detaching.

A `Binding` is one live state bound to one socket: its client (when connected)
calls `on_change` inline during fan-out, which only notes the change and makes
sure a render is on its way. Renders are coalesced per loop turn: every change
that arrived before a socket's render starts is covered by that one render, and
a socket renders once at a time whatever its bindings.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, Final, Protocol

from pyview.events import InfoEvent  # type: ignore[import-untyped]

from .._changes import Change
from .._client import Client
from .._exceptions import InvalidValueError, NotFoundError
from .._node import current_node
from .._rules import Caller
from .._spec import LiveState
from .._values import EMPTY, JSON
from . import _compat as compat
from ._assigns import ASSIGN_NAME, LiveAssigns, expose
from ._presence import Presence
from ._renders import schedule

__all__ = [
    "JOIN_WAIT",
    "LIVE_STATE_EVENT",
    "Binding",
    "ConnectedSocket",
    "LiveSocket",
    "SocketBindings",
    "binding_of",
    "live_client",
    "live_state",
]

logger = logging.getLogger("livestate")

LIVE_STATE_EVENT: Final = "livestate"
"""The name of the InfoEvent that `handle_info` gets after changes; its payload is a
tuple of the Change objects that the render covers, oldest first."""

JOIN_WAIT = 2.0
"""Most seconds a render waits for PyView to send the socket's join reply first."""


class LiveSocket(Protocol):
    """What livestate uses of a PyView socket (`UnconnectedSocket` or `ConnectedLiveViewSocket`).

    `context` is the view's assigns (a dict, a dataclass or any object) and
    `connected` tells the HTTP render (False) from the WebSocket (True).
    """

    context: Any

    @property
    def connected(self) -> bool:
        """Whether the socket is a joined WebSocket connection that is still open."""


class ConnectedSocket(LiveSocket, Protocol):
    """What livestate uses of a connected socket beyond `LiveSocket`."""

    prev_rendered: dict[str, Any] | None

    async def send_info(self, event: Any) -> None:
        """Run the view's handle_info, render it and send the diff."""

    async def close(self) -> None:
        """Close the socket (PyView calls it on disconnect and on phx_leave)."""


class Binding:
    """One live state bound to a socket: its spec, key, client (when connected), pending renders."""

    __slots__ = (
        "__weakref__",
        "caller",
        "client",
        "closed",
        "key",
        "pending",
        "render_lock",
        "rendering",
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
        self.rendering = False  # a render is due or under way: it will cover new changes
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
        if not self.rendering:
            self.rendering = True
            schedule(self)

    async def render(self) -> None:
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
            joining = socket is not None and connected_socket(socket).prev_rendered is None
            del socket
            if watch is not None and joining and not watch.joined.is_set():
                try:
                    await asyncio.wait_for(watch.joined.wait(), JOIN_WAIT)
                except TimeoutError:
                    pass  # render anyway: a diff late is better than none
            while self.pending:
                socket = self.socket()
                if self.closed or socket is None or not socket.connected:
                    self.pending.clear()
                    return
                async with self.render_lock:
                    changes, self.pending = tuple(self.pending), []
                    try:
                        await connected_socket(socket).send_info(
                            InfoEvent(LIVE_STATE_EVENT, changes)
                        )
                    except Exception:
                        logger.exception("Rendering %s after a livestate change raised", socket)
                del socket
        finally:
            self.rendering = False

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


class SocketBindings:
    """Every live state bound to one socket: the default one (name None) and named ones."""

    __slots__ = ("by_name", "render_lock")

    def __init__(self) -> None:
        self.by_name: dict[str | None, Binding] = {}
        self.render_lock = asyncio.Lock()

    async def close(self) -> None:
        bindings = list(self.by_name.values())
        self.by_name.clear()
        for binding in bindings:
            await binding.close()


# Socket -> its bindings. Weak keys: the registry never keeps a socket alive.
_registry: weakref.WeakKeyDictionary[LiveSocket, SocketBindings] = weakref.WeakKeyDictionary()


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
    check_context(socket)
    if as_ is not None and (not isinstance(as_, str) or not as_.isidentifier()):
        raise InvalidValueError(
            f"live_state's as_ for {spec.__qualname__} {key[:200]!r} must be a name a template "
            f"can use after live_assigns., such as 'lobby'; got {as_!r}."
        )
    bindings = _registry.get(socket)
    if bindings is None:
        bindings = _registry[socket] = SocketBindings()
    caller = Caller("group", identity)
    binding = bindings.by_name.get(as_)
    connected = bool(socket.connected)
    if binding is not None and (binding.spec, binding.key, binding.caller) == (spec, key, caller):
        if not connected or binding.attached:
            return expose(socket, bindings)
    if binding is not None:
        del bindings.by_name[as_]
        await binding.close()
    binding = Binding(socket, spec, key, bindings.render_lock, caller)
    if connected:
        binding.client = await spec.attach(key, on_change=binding.on_change, caller=caller)
        binding.watch = compat.watch(socket, lambda: unbind(socket))
    else:
        binding.snapshot, binding.snapshot_presence = await read_as_group(spec, key)
    bindings.by_name[as_] = binding
    return expose(socket, bindings)


def live_client(socket: LiveSocket, *, as_: str | None = None) -> Client | None:
    """The livestate Client of a connected socket bound by `live_state` (as `as_`), or None.

    None on an unconnected socket, before `live_state`, and after a `stopped`
    change or disconnect. Raises nothing.
    """
    bindings = _registry.get(socket)
    binding = bindings.by_name.get(as_) if bindings is not None else None
    if binding is None or not binding.attached:
        return None
    return binding.client


def connected_socket(socket: LiveSocket) -> ConnectedSocket:
    """The socket as a connected one (only bindings with a client render)."""
    return socket  # type: ignore[return-value]


def check_context(socket: LiveSocket) -> None:
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


async def read_as_group(spec: type[LiveState], key: str) -> tuple[Mapping[str, JSON], Presence]:
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


async def unbind(socket: LiveSocket) -> None:
    """Detach every live state of a socket that PyView closed."""
    bindings = _registry.pop(socket, None)
    if bindings is not None:
        await bindings.close()


def binding_of(socket: LiveSocket, as_: str | None) -> Binding | None:
    """The socket's binding named `as_` (None: the default one), if it has one."""
    bindings = _registry.get(socket)
    return bindings.by_name.get(as_) if bindings is not None else None
