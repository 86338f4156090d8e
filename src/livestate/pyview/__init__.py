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
after live navigation) is bridged in `_compat`, gated on its version.

Presence: `await live_track(socket, identity, meta)` shows the socket's client in
the live state's presence (several tabs of one identity group under it, as in
Phoenix Presence); the template sees `live_presence` (identity -> metas), and
every join, meta update and leave re-renders the view.

`OriginCheckMiddleware` closes WebSocket handshakes from other sites, which
PyView does not check by itself; `WebSocketLimitsMiddleware` closes sockets
that never join and caps sockets per client address.

The package: `_bindings` (sockets bound to live states, renders), `_assigns`
(what templates see), `_writes` (the live_* writes), `_presence`,
`_middleware`, `_metrics`, and `_compat` (what PyView lacks, by its version).
"""

from __future__ import annotations

from .._extras import require

require("pyview", "livestate.pyview", "pyview")

# The modules below import pyview: after the line above, which says how to install it.
from ._assigns import LiveAssigns  # noqa: E402
from ._bindings import LIVE_STATE_EVENT, LiveSocket, live_client, live_state  # noqa: E402
from ._metrics import PrometheusInstrumentation  # noqa: E402
from ._middleware import OriginCheckMiddleware, WebSocketLimitsMiddleware  # noqa: E402
from ._presence import LivePresence  # noqa: E402
from ._writes import (  # noqa: E402
    live_append,
    live_assign,
    live_call,
    live_delete,
    live_increment,
    live_reset,
    live_track,
    live_untrack,
    live_update,
)

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
