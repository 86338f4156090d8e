"""A WebSocket endpoint that exposes chosen state specs to browsers, in any ASGI app.

    from livestate.asgi import LiveStateEndpoint

    endpoint = LiveStateEndpoint([Board], authorize=authorize)
    app = FastAPI(lifespan=livestate.lifespan)
    app.mount("/livestate", endpoint)      # ws://host/livestate/ws, /livestate/livestate.js

The endpoint is plain ASGI (no framework needed). One socket carries any
number of attachments; each starts with the whole state and then gets every
change in version order (or one `reset`). Writes are acknowledged or refused
with the error's type and message. The wire protocol is docs/protocol.md.

Presence: an attachment may `track` a JSON meta and `untrack` it; the identity
it shows as comes from the server's `identify(connection)`, never from the
browser. `attached` frames carry the presence, and each join, meta update and
leave arrives as a `presence` change.

Secure by default: only the listed specs are reachable; `authorize` maps the
connection and the (spec, key) to a role, `"group"` or `"public"`, or refuses
(None); the live state's ACL then applies to that role. A `"group"` socket may
attach and write through its attachments; a `"public"` one may only `get` and
write by spec and key, as any public caller of the server API. The Origin of a
browser's handshake must be the app's own host or listed. Frames, attachments
and writes per second are limited, and a socket that holds no attachment and
sends nothing for `idle_timeout` seconds is closed.
"""

from __future__ import annotations

from ._endpoint import (
    CLIENT_JS,
    Authorize,
    Connection,
    EndpointLimits,
    Identify,
    LiveStateEndpoint,
)
from ._frames import PROTOCOL

__all__ = [
    "CLIENT_JS",
    "PROTOCOL",
    "Authorize",
    "Connection",
    "EndpointLimits",
    "Identify",
    "LiveStateEndpoint",
]
