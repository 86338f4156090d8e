"""What `livestate.pyview` needs from PyView and PyView does not offer, in one place.

PyView (pyview-web 0.9.0, the latest release, checked 2026-11) has no hook for
"this socket has closed" nor for "this socket's join reply has gone out". So
this module wraps two methods on the instances it is given, and says why:

- `socket.close`: PyView calls it on disconnect and on `phx_leave`; livestate
  detaches the socket's clients right after.
- `websocket.receive` (the Starlette WebSocket under the socket): PyView's loop
  asks for the next message only after it has sent a join's reply, so the first
  `receive` after a join is the moment diffs may flow (see `Watch.joined`).

And one workaround, gated on the PyView versions known to need it
(`NAVIGATION_CLOSE_BUG`): after a live navigation (`push_navigate`, a
`live_redirect` link) PyView's connected-loop makes a new socket for the new
view on the same WebSocket, but on disconnect it closes only the socket the
loop started with, so the new view's socket is never closed. Here the end of
the WebSocket closes every socket still open on it. docs/pyview.md describes
the fix PyView would need.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

__all__ = ["NAVIGATION_CLOSE_BUG", "PYVIEW_VERSION", "Watch", "parse_version", "watch"]


def parse_version(text: str) -> tuple[int, ...]:
    """`"0.9.0"` -> `(0, 9, 0)`; stops after the first part that is not all digits (`"1.0rc1"`)."""
    parts: list[int] = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(parts)


def _installed_version() -> tuple[int, ...]:
    try:
        return parse_version(metadata.version("pyview-web"))
    except metadata.PackageNotFoundError:  # pragma: no cover - an unpackaged checkout of pyview
        return ()


PYVIEW_VERSION = _installed_version()
"""The installed pyview-web's version, as a tuple of ints (empty if unknown)."""

NAVIGATION_CLOSE_BUG = PYVIEW_VERSION == () or (0, 9) <= PYVIEW_VERSION < (0, 10)
"""Whether this PyView leaves a live-navigated socket open when its WebSocket ends.

True for 0.9.x (0.9.0, the latest release, has the bug) and for an unknown
version. Check a new PyView release against docs/pyview.md and widen or end
the range; the browser test of live navigation fails if a release needs it."""

Close = Callable[[], Awaitable[None]]


class Watch:
    """livestate's watch on one PyView socket: its close callback and its join."""

    __slots__ = ("joined",)

    def __init__(self) -> None:
        self.joined = asyncio.Event()
        """Set once the socket's join reply has gone out (or at once, if it had)."""


class _WebSocketWatch:
    """What is hooked onto one Starlette WebSocket: its sockets, and joins awaiting a reply."""

    __slots__ = ("joining", "sockets")

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.joining: list[asyncio.Event] = []


# Tasks that close sockets, referenced so that they are not collected mid-way.
_tasks: set[asyncio.Task[None]] = set()


def watch(socket: Any, on_close: Close) -> Watch:
    """Run `on_close()` after PyView closes `socket`, and note when its join has finished.

    Idempotent per socket: a second call returns the first call's Watch (its
    `on_close` stays). Raises nothing.
    """
    existing: Watch | None = getattr(socket, "_livestate_watch", None)
    if existing is not None:
        return existing
    result = Watch()
    socket._livestate_watch = result
    original_close = socket.close

    async def close() -> None:
        try:
            await original_close()
        finally:
            await on_close()

    socket.close = close
    if socket.prev_rendered is not None:
        result.joined.set()  # bound after its join: diffs may flow at once
    websocket = getattr(socket, "websocket", None)
    if websocket is None or not hasattr(websocket, "receive"):
        result.joined.set()  # nothing to watch; the render's JOIN_WAIT still bounds it
        return result
    hooked: _WebSocketWatch | None = getattr(websocket, "_livestate_watch", None)
    if hooked is None:
        hooked = _WebSocketWatch()
        websocket._livestate_watch = hooked
        _hook_receive(websocket, hooked)
    hooked.sockets.add(socket)
    if not result.joined.is_set():
        hooked.joining.append(result.joined)
    return result


def _hook_receive(websocket: Any, hooked: _WebSocketWatch) -> None:
    original_receive = websocket.receive

    async def receive() -> Any:
        # PyView reads the next message only after it sent the join reply.
        for joined in hooked.joining:
            joined.set()
        hooked.joining.clear()
        try:
            message = await original_receive()
        except BaseException:
            if NAVIGATION_CLOSE_BUG:
                _close_all(hooked.sockets)
            raise
        if NAVIGATION_CLOSE_BUG and message.get("type") == "websocket.disconnect":
            _close_all(hooked.sockets)
        return message

    websocket.receive = receive


def _close_all(sockets: weakref.WeakSet[Any]) -> None:
    """Close each still-open socket of an ended WebSocket, in tasks (this runs inside receive)."""
    for socket in list(sockets):
        if socket.connected:
            task = asyncio.get_running_loop().create_task(socket.close())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    sockets.clear()
