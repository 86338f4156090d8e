"""The endpoint: an ASGI app that serves the WebSocket protocol, and what `authorize` and
`identify` are given. One `Session` (_session.py) per socket does the rest."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from .._acl import Role
from .._changes import Change
from .._exceptions import InvalidValueError
from .._node import Node, lifespan
from .._spec import LiveState
from .._web import OriginRule
from ._frames import change_body
from ._outbox import Flusher
from ._session import Receive, Scope, Send, Session

logger = logging.getLogger("livestate")

CLIENT_JS: Final = Path(__file__).with_name("client.js")
"""The built JavaScript client (an ES module) that the endpoint serves as `livestate.js`."""


@dataclass(frozen=True, slots=True)
class Connection:
    """What `authorize` knows of a WebSocket connection, taken from its handshake.

    `headers` and `cookies` are decoded, with lower-case header names; `query`
    holds the URL's query parameters (the last of each name); `client` is the
    peer's (host, port) if the server tells; `scope` is the raw ASGI scope.
    """

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    query: Mapping[str, str]
    path: str
    client: tuple[str, int] | None
    scope: Mapping[str, Any]

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> Connection:
        """Build a Connection from an ASGI `websocket` scope."""
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        cookies: dict[str, str] = {}
        for part in headers.get("cookie", "").split(";"):
            name, equals, value = part.strip().partition("=")
            if equals and name:
                cookies[name] = value
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        client = scope.get("client")
        return cls(
            headers,
            cookies,
            query,
            scope.get("path", "/"),
            (str(client[0]), int(client[1])) if client else None,
            scope,
        )


class Authorize(Protocol):
    """The shape of `authorize`: the role a connection gets on one live state, or None.

    Return `"group"` (may attach; the ACL's group permissions apply), `"public"`
    (may get and write by spec and key; the ACL's public permissions apply) or
    None to refuse. May be async. Raising PermissionDeniedError refuses with
    its message. It runs once per (spec, key) per socket; the answer is kept.
    """

    def __call__(
        self, connection: Connection, spec: type[LiveState], key: str, /
    ) -> str | Awaitable[str | None] | None: ...


class Identify(Protocol):
    """The shape of `identify`: who a connection is in presence, or None if it may not track.

    Return the identity (a string of 1 to 256 characters, such as a user id
    from the session cookie) that the socket's `track` requests show as, or
    None to refuse them. May be async. Raising PermissionDeniedError refuses
    with its message. It runs once per socket, at its first `track`; an
    identity is kept for the socket's life (a refusal is asked again).
    """

    def __call__(self, connection: Connection, /) -> str | Awaitable[str | None] | None: ...


def _allow_group(connection: Connection, spec: type[LiveState], key: str) -> Role:
    """The default `authorize`: every listed spec, every key, as a group member."""
    return "group"


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """Limits per socket; exceeding one gets an `error` frame with the code named here.

    - `max_frame_bytes`: a larger frame is refused unread (`frame_too_large`).
    - `max_states`: attachments held at once (`too_many_states`).
    - `writes_per_second`, `write_burst`: a token bucket for writes, presence and actions
      (`rate_limited`).
    - `attaches_per_second`, `attach_burst`: a token bucket for attaches, each of which may
      start a live state (`rate_limited`): a page may attach to many at once, but a socket
      cannot cycle through fresh keys to fill the server.
    - `idle_timeout`: seconds a socket with no attachment may stay silent (closed, `idle`).
    - `silence_timeout`: seconds any socket may send nothing, not even a ping (closed, `idle`).
    - `max_queued_frames`: frames waiting to be sent; a socket further behind is closed
      (`too_slow`), and its client resyncs when it reconnects.
    """

    max_frame_bytes: int = 1024 * 1024 + 4096
    max_states: int = 64
    writes_per_second: float = 50.0
    write_burst: int = 100
    attaches_per_second: float = 2.0
    attach_burst: int = 64
    idle_timeout: float = 15.0
    silence_timeout: float = 75.0
    max_queued_frames: int = 10_000

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes", "max_states", "write_burst", "attach_burst", "max_queued_frames"
        ):  # fmt: skip
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidValueError(f"EndpointLimits.{name} must be an int ≥ 1, not {value!r}.")
        for name in ("writes_per_second", "attaches_per_second", "idle_timeout", "silence_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidValueError(
                    f"EndpointLimits.{name} must be a number > 0, not {value!r}."
                )


class LiveStateEndpoint:
    """An ASGI app: the livestate WebSocket protocol, and the JS client at `livestate.js`.

    `specs` are the only state specs reachable, by their `name`. `authorize`
    (default: every key as a group member) gives each socket its role per live
    state. `allowed_origins` are origins (`"https://app.example.com"`) allowed
    besides the app's own host; `"*"` allows any. `heartbeat` is the interval in
    seconds the endpoint tells clients to ping at. `node` is the livestate node to
    use (default: the current one, see livestate.lifespan). Any WebSocket path
    speaks the protocol; an HTTP GET of a path ending in `/livestate.js` returns
    the client. Run alone (`uvicorn module:endpoint`) it starts and stops the
    node with its own lifespan. `sockets` counts the open sockets.
    `identify(connection)` names the identity a socket's `track` requests show
    as in presence (default None: sockets may not track, only see presence).
    Raises InvalidValueError for a bad argument.
    """

    def __init__(
        self,
        specs: Iterable[type[LiveState]],
        *,
        authorize: Authorize | None = None,
        allowed_origins: Sequence[str] = (),
        limits: EndpointLimits | None = None,
        heartbeat: float = 25.0,
        node: Node | None = None,
        identify: Identify | None = None,
    ) -> None:
        self.specs: dict[str, type[LiveState]] = {}
        for spec in specs:
            if not (isinstance(spec, type) and issubclass(spec, LiveState)):
                raise InvalidValueError(
                    f"LiveStateEndpoint lists state specs (LiveState subclasses), not {spec!r}."
                )
            self.specs[spec.name] = spec
        self.origins = OriginRule(allowed_origins)
        self.authorize: Authorize = authorize or _allow_group
        self.identify = identify
        self.limits = limits or EndpointLimits()
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
            raise InvalidValueError(
                f"heartbeat must be a number of seconds > 0, not {heartbeat!r}."
            )
        self.heartbeat = float(heartbeat)
        self.node = node
        self.sockets = 0
        self.flusher = Flusher()
        self._client_js: bytes | None = None
        # Fan-out hands the same Change to every socket in turn (the replica's loop, with
        # nothing in between): encode it once, and make each attachment id's frame once.
        self._last_change: Change | None = None
        self._last_body = ""
        self._last_frames: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<LiveStateEndpoint of {', '.join(self.specs) or 'no specs'}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: a WebSocket, an HTTP request or the lifespan."""
        kind = scope["type"]
        if kind == "websocket":
            await Session(self, Connection.from_scope(scope), scope, receive, send).run()
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def allows_origin(self, headers: Mapping[str, str]) -> bool:
        """Whether a handshake with these (lower-case) headers comes from an allowed origin.

        Without Origin (not a browser) it passes; with one, it must be the app's own
        host (same host and port as `Host`) or be listed in `allowed_origins` (`"*"`:
        any). The same rule as livestate.pyview's OriginCheckMiddleware.
        """
        return self.origins.allows_headers(headers)

    def body(self, change: Change) -> str:
        """The shared tail of the `change` frame for `change`, encoded once per change."""
        if change is not self._last_change:
            self._last_body = change_body(change)
            self._last_frames = {}
            self._last_change = change
        return self._last_body

    def frame(self, change: Change, head: str) -> str:
        """The `change` frame of `change` for an attachment whose frames begin with `head`.

        One string per change and attachment id, shared by every socket that holds the
        live state under that id (most pages attach one live state, as id 1): a change
        costs one encoding per node, and the frames queued for slow sockets share memory.
        """
        if change is not self._last_change:
            self.body(change)
        frames = self._last_frames
        frame = frames.get(head)
        if frame is None:
            frame = frames[head] = head + self._last_body
        return frame

    async def _http(self, scope: Scope, send: Send) -> None:
        if scope.get("method") in ("GET", "HEAD") and scope.get("path", "").endswith(
            "/livestate.js"
        ):
            if self._client_js is None:
                self._client_js = CLIENT_JS.read_bytes()
            status, body = 200, self._client_js
            headers = [
                (b"content-type", b"text/javascript; charset=utf-8"),
                (b"cache-control", b"no-cache"),
            ]
        else:
            status, body = 404, b"Not found: this is a livestate WebSocket endpoint.\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        if self.node is not None:
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        async with lifespan(self):
            await send({"type": "lifespan.startup.complete"})
            await receive()
        await send({"type": "lifespan.shutdown.complete"})
