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

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from .._acl import Role
from .._changes import Change
from .._client import Client
from .._declare import DEFAULT, Spec, actions_of
from .._exceptions import (
    InvalidValueError,
    LiveStateError,
    PermissionDeniedError,
    PropertyNotFoundError,
)
from .._node import Node, current_node, lifespan
from .._rules import Caller
from .._spec import LiveState
from ._frames import (
    PRESENCE,
    PROTOCOL,
    TOKENS,
    FrameError,
    change_body,
    decode,
    encode,
    error_frame,
    field,
    livestate_error_frame,
    presence_json,
)
from ._outbox import Flusher, Outbox

__all__ = [
    "CLIENT_JS",
    "PROTOCOL",
    "Authorize",
    "Connection",
    "EndpointLimits",
    "Identify",
    "LiveStateEndpoint",
]

logger = logging.getLogger("livestate")

CLIENT_JS: Final = Path(__file__).with_name("client.js")
"""The built JavaScript client (an ES module) that the endpoint serves as `livestate.js`."""

_Scope = MutableMapping[str, Any]
_Receive = Any  # ASGI's receive and send callables: typed loosely, to fit every
_Send = Any  # framework's own aliases for them

_CLOSE_POLICY: Final = 1008  # RFC 6455: a message that violates policy (foreign origin)
_CLOSE_IDLE: Final = 4000  # private range: idle or silent too long
_CLOSE_SLOW: Final = 1013  # RFC 6455: try again later (the socket fell too far behind)


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
        if isinstance(allowed_origins, str):
            allowed_origins = (allowed_origins,)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
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
        # Fan-out hands the same Change to every socket in turn: encode its body once.
        self._last_change: Change | None = None
        self._last_body = ""

    def __repr__(self) -> str:
        return f"<LiveStateEndpoint of {', '.join(self.specs) or 'no specs'}>"

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI connection: a WebSocket, an HTTP request or the lifespan."""
        kind = scope["type"]
        if kind == "websocket":
            await _Session(self, scope, receive, send).run()
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def allows_origin(self, headers: Mapping[str, str]) -> bool:
        """Whether a handshake with these (lower-case) headers comes from an allowed origin.

        Without Origin (not a browser) it passes; with one, it must be the app's own
        host (same host and port as `Host`) or be listed in `allowed_origins`.
        """
        origin = headers.get("origin", "").rstrip("/").lower()
        if not origin or "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        host = headers.get("host", "").lower()
        scheme, _, rest = origin.partition("://")
        return bool(host) and scheme in ("http", "https") and rest == host

    def body(self, change: Change) -> str:
        """The shared tail of the `change` frame for `change`."""
        if change is not self._last_change:
            self._last_body = change_body(change)
            self._last_change = change
        return self._last_body

    async def _http(self, scope: _Scope, send: _Send) -> None:
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

    async def _lifespan(self, receive: _Receive, send: _Send) -> None:
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


class _Attachment:
    """One live state attached on a socket: the core's client, and its spec for replies."""

    __slots__ = ("client", "head", "id")

    def __init__(self, id: int) -> None:
        self.id = id
        self.head = f'{{"type":"change","id":{id},'
        self.client: Client | None = None


class _Session:
    """One WebSocket connection: its attachments, outbox, limits and timers."""

    def __init__(self, endpoint: LiveStateEndpoint, scope: _Scope, receive: _Receive, send: _Send):
        self.endpoint = endpoint
        self.limits = endpoint.limits
        self.scope = scope
        self.receive = receive
        self.send = send
        self.connection = Connection.from_scope(scope)
        self.attachments: dict[int, _Attachment] = {}
        self.roles: dict[tuple[str, str], Role | None] = {}
        self.identity: str | None = None  # from identify, at the first track
        self.next_id = 1
        self.outbox = Outbox(send, endpoint.flusher)
        self.closed = False
        limits = self.limits
        self.writes = _Bucket(limits.writes_per_second, limits.write_burst)
        self.attaches = _Bucket(limits.attaches_per_second, limits.attach_burst)
        self.last_heard = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        await self.send({"type": "websocket.accept"})
        if not self.endpoint.allows_origin(self.connection.headers):
            origin = self.connection.headers.get("origin", "")[:200]
            await self._send_text(
                error_frame(
                    "forbidden_origin",
                    f"This endpoint does not accept pages from {origin!r}; add it to the "
                    "endpoint's allowed_origins if it is yours.",
                )
            )
            await self.send({"type": "websocket.close", "code": _CLOSE_POLICY})
            return
        self.endpoint.sockets += 1
        try:
            self.push(
                encode(
                    {
                        "type": "welcome",
                        "protocol": PROTOCOL,
                        "heartbeat": self.endpoint.heartbeat,
                        "specs": sorted(self.endpoint.specs),
                        "limits": {
                            "max_frame_bytes": self.limits.max_frame_bytes,
                            "max_states": self.limits.max_states,
                            "writes_per_second": self.limits.writes_per_second,
                            "write_burst": self.limits.write_burst,
                            "attaches_per_second": self.limits.attaches_per_second,
                            "attach_burst": self.limits.attach_burst,
                        },
                    }
                )
            )
            self._arm_timer()
            await self._serve()
        finally:
            self.closed = True
            self.endpoint.sockets -= 1
            if self.timer:
                self.timer.cancel()
            for attachment in list(self.attachments.values()):
                if attachment.client is not None:
                    await _quietly(attachment.client.detach())
            self.attachments.clear()
            self.outbox.stop()

    async def _serve(self) -> None:
        # Until the peer is gone: a socket closed by the endpoint still needs its close
        # handshake, and requests that arrive meanwhile are ignored.
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive" or self.closed:
                continue
            self.last_heard = time.monotonic()
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                if len(data) > self.limits.max_frame_bytes:
                    self._too_large(len(data))
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    self.push(error_frame("bad_frame", "A binary frame must hold UTF-8 JSON."))
                    continue
            elif len(text) > self.limits.max_frame_bytes // 4 and (
                len(text.encode("utf-8", "surrogatepass")) > self.limits.max_frame_bytes
            ):
                self._too_large(len(text.encode("utf-8", "surrogatepass")))
                continue
            await self._handle(text)

    def _too_large(self, nbytes: int) -> None:
        self.push(
            error_frame(
                "frame_too_large",
                f"A frame of {nbytes} bytes is over this endpoint's limit of "
                f"{self.limits.max_frame_bytes}; send smaller values.",
            )
        )

    async def _handle(self, text: str) -> None:
        ref: object = None
        try:
            frame = decode(text)
            ref = frame.get("ref")
            kind = frame["type"]
            if kind == "ping":
                self.push(encode({"type": "pong", "ref": ref}))
                return
            if kind in TOKENS and not self.writes.take():
                limits = self.limits
                raise FrameError(
                    "rate_limited",
                    f"Too many writes on this socket: at most {limits.writes_per_second:g} per "
                    f"second (bursts of {limits.write_burst}); this write was not applied, retry "
                    "later.",
                    ref,
                )
            if kind == "attach":
                await self._attach(frame, ref)
            elif kind == "detach":
                await self._detach(frame, ref)
            elif "id" in frame:
                await self._through_client(frame, ref)
            else:
                await self._public(frame, ref)
        except FrameError as error:
            self.push(error_frame(error.code, error.message, error.ref))
        except LiveStateError as error:
            self.push(livestate_error_frame(error, ref))
        except Exception as error:
            logger.exception("livestate endpoint: a %r request failed", text[:200])
            self.push(
                error_frame(
                    "internal",
                    "The server failed to handle this request; it is logged there.",
                    ref,
                    type(error).__name__,
                )
            )

    def _spec(self, frame: Mapping[str, Any]) -> tuple[type[LiveState], str]:
        name = field(frame, "spec", str, "the name of a state spec")
        key = field(frame, "key", str, "the key of the live state")
        spec = self.endpoint.specs.get(name)
        if spec is None:
            raise FrameError(
                "unknown_spec",
                f"No state spec named {name[:200]!r} is exposed by this endpoint; "
                "list it in LiveStateEndpoint(specs).",
                frame.get("ref"),
            )
        return spec, key

    async def _role(self, spec: type[LiveState], key: str, ref: object) -> Role:
        slot = (spec.name, key)
        if slot in self.roles:
            role = self.roles[slot]
        else:
            try:
                answer = self.endpoint.authorize(self.connection, spec, key)
                if inspect.isawaitable(answer):
                    answer = await answer
            except PermissionDeniedError as error:
                raise FrameError("forbidden", str(error), ref) from None
            if answer == "group":
                role = "group"
            elif answer == "public":
                role = "public"
            else:
                if answer is not None:
                    logger.error(
                        "authorize returned %r, not group, public or None: refused", answer
                    )
                role = None
            if len(self.roles) >= 4096:
                self.roles.clear()  # a socket that probes many keys must not grow without bound
            self.roles[slot] = role
        if role is None:
            raise FrameError(
                "forbidden",
                f"This connection may not use {spec.name} {key[:200]!r}: the server's "
                "authorize refused it (sign in, or check the key).",
                ref,
            )
        return role

    async def _attach(self, frame: Mapping[str, Any], ref: object) -> None:
        spec, key = self._spec(frame)
        role = await self._role(spec, key, ref)
        if role != "group":
            raise FrameError(
                "forbidden",
                f"This connection's role on {spec.name} {key[:200]!r} is public, which may not "
                "attach; use get and writes by spec and key instead.",
                ref,
            )
        if len(self.attachments) >= self.limits.max_states:
            raise FrameError(
                "too_many_states",
                f"This socket already holds {self.limits.max_states} live states, its limit; "
                "detach one first.",
                ref,
            )
        if not self.attaches.take():
            node = self.endpoint.node or current_node()
            if node.metrics is not None:
                node.metrics.refused("attaches")
            raise FrameError(
                "rate_limited",
                f"Too many attaches on this socket: at most {self.limits.attaches_per_second:g} "
                f"per second (bursts of {self.limits.attach_burst}), since each may start a live "
                "state; this one was not made, retry later.",
                ref,
            )
        attachment = _Attachment(self.next_id)
        self.next_id += 1
        self.attachments[attachment.id] = attachment
        try:
            node = self.endpoint.node or current_node()
            caller = Caller("group", await self._who(ref))
            client = await node.attach(spec, key, self._receiver(attachment), caller=caller)
        except BaseException:
            del self.attachments[attachment.id]
            raise
        if self.closed:
            await client.detach()
            return
        attachment.client = client
        self._arm_timer()  # with an attachment, only silence_timeout applies
        # Synchronous from attach's return to here: no change can slip in between.
        self.push(
            encode(
                {
                    "type": "attached",
                    "ref": ref,
                    "id": attachment.id,
                    "spec": spec.name,
                    "key": key,
                    "state": dict(client.state),
                    "version": client.version,
                    "presence": presence_json(client.presence),
                }
            )
        )

    def _receiver(self, attachment: _Attachment) -> Any:
        head = attachment.head
        body = self.endpoint.body
        outbox = self.outbox
        frames = outbox.frames
        limit = self.limits.max_queued_frames

        def receive(change: Change) -> None:
            # Called once per socket for every change: the common case is inlined.
            if change.kind == "stopped":
                self.push(head + body(change))
                self.attachments.pop(attachment.id, None)
                self._arm_timer()
            elif change.kind == "reset" and attachment.client is not None:
                # The presence may have changed unseen too (the core re-reads it with the
                # state): the reset carries it, so the page replaces both at once.
                presence = encode(presence_json(attachment.client.presence))
                self.push(head + body(change)[:-1] + f',"presence":{presence}}}')
            elif self.closed or len(frames) >= limit or outbox.close_code is not None:
                self.push(head + body(change))  # drops it, or closes a socket too far behind
            else:
                frames.append(head + body(change))
                outbox.wake()

        return receive

    def _attachment(self, frame: Mapping[str, Any], ref: object) -> Client:
        id = field(frame, "id", int, "the id of an attachment, from its attached frame")
        attachment = self.attachments.get(id)
        if attachment is None or attachment.client is None or not attachment.client.attached:
            self.attachments.pop(id, None)
            raise FrameError(
                "not_attached",
                f"No attachment {id} on this socket (it was detached or its live state "
                "stopped); attach again.",
                ref,
            )
        return attachment.client

    async def _detach(self, frame: Mapping[str, Any], ref: object) -> None:
        client = self._attachment(frame, ref)
        self.attachments.pop(frame["id"], None)
        self._arm_timer()
        await client.detach()
        self.push(encode({"type": "ok", "ref": ref, "result": None}))

    async def _through_client(self, frame: Mapping[str, Any], ref: object) -> None:
        client = self._attachment(frame, ref)
        kind = frame["type"]
        result: Any = None
        if kind == "get":
            result = dict(client.state) if "prop" not in frame else _prop(client, frame)
        elif kind == "presence":
            result = presence_json(client.presence)
        elif kind == "track":
            if "meta" not in frame:
                raise FrameError("bad_frame", "A 'track' frame needs 'meta': any JSON value.", ref)
            await client.track(await self._identity(client, ref), frame["meta"])
        elif kind == "untrack":
            await client.untrack()
        else:
            result = await self._write(client.spec, client.key, "group", client.caller, frame, ref)
        self.push(encode({"type": "ok", "ref": ref, "result": result}))

    async def _public(self, frame: Mapping[str, Any], ref: object) -> None:
        spec, key = self._spec(frame)
        await self._role(spec, key, ref)  # either role may act as a public caller
        kind = frame["type"]
        result: Any = None
        if kind == "get":
            node = self.endpoint.node or current_node()
            result = await node.get(spec, key, frame.get("prop", DEFAULT), role="public")
        elif kind == "presence":
            node = self.endpoint.node or current_node()
            result = presence_json(await node.presence(spec, key, role="public"))
        elif kind in PRESENCE:
            raise FrameError(
                "bad_frame",
                f"A {kind!r} frame goes through an attachment: give its 'id', not spec and key.",
                ref,
            )
        else:
            caller = Caller("public", await self._who(ref))
            result = await self._write(spec, key, "public", caller, frame, ref)
        self.push(encode({"type": "ok", "ref": ref, "result": result}))

    async def _write(
        self,
        spec: type[Spec],
        key: str,
        role: Role,
        caller: Caller | None,
        frame: Mapping[str, Any],
        ref: object,
    ) -> Any:
        """Make the write (or call) a frame asks for, as `caller` in `role`; its result."""
        node = self.endpoint.node or current_node()
        kind = frame["type"]
        write_id = frame.get("write_id")
        if write_id is not None and type(write_id) is not str:
            raise FrameError(
                "bad_frame", "A frame's 'write_id' is a string that names the write.", ref
            )
        who: dict[str, Any] = {"role": role, "caller": caller, "write_id": write_id}
        if kind == "reset":
            return await node.reset(spec, key, **who)
        if kind == "call":
            action, args = _action(spec, frame, ref)
            return await node.call(spec, key, action, args, **who)
        prop = field(frame, "prop", str, "the property's name")
        if kind == "put":
            return await node.put(spec, key, prop, _value(frame), **who)
        if kind == "delete":
            return await node.delete(spec, key, prop, **who)
        if kind == "append":
            max_len = frame.get("max_len")
            return await node.append(spec, key, prop, _value(frame), max_len=max_len, **who)
        return await node.increment(spec, key, prop, frame.get("by", 1), **who)

    async def _who(self, ref: object) -> str | None:
        """Who this socket is for rules and actions: identify's answer, None if anonymous
        (no identify, or it names nobody or refuses). Asked until it names someone."""
        try:
            return await self._ask_identify(ref)
        except FrameError:
            return None

    async def _ask_identify(self, ref: object) -> str | None:
        """identify's answer, kept once it names someone; FrameError if it refuses."""
        if self.identity is not None:
            return self.identity
        identify = self.endpoint.identify
        answer: object = None
        if identify is not None:
            try:
                answer = identify(self.connection)
                if inspect.isawaitable(answer):
                    answer = await answer
            except PermissionDeniedError as error:
                raise FrameError("forbidden", str(error), ref) from None
        if answer is not None and not isinstance(answer, str):
            logger.error("identify returned %r, not a str or None: refused", answer)
            answer = None
        self.identity = answer
        return answer

    async def _identity(self, client: Client, ref: object) -> str:
        """Who this socket is in presence: identify's answer; FrameError if it names nobody."""
        answer = await self._ask_identify(ref)
        if answer is None:
            identify = self.endpoint.identify
            why = (
                "this endpoint has no identify"
                if identify is None
                else "the server's identify gave no identity (sign in first)"
            )
            raise FrameError(
                "forbidden",
                f"This connection may not track in {client.spec.name} {client.key[:200]!r}: {why}.",
                ref,
            )
        return answer

    # Sending.

    def push(self, frame: str) -> None:
        """Queue one frame, in order; a socket too far behind is closed instead."""
        if self.closed:
            return
        if len(self.outbox.frames) < self.limits.max_queued_frames:
            self.outbox.push(frame)
            return
        self.closed = True
        self.outbox.close(
            _CLOSE_SLOW,
            error_frame(
                "too_slow",
                "This socket fell too far behind the changes; it is closed, and a client "
                "that reconnects gets the whole state again.",
            ),
        )

    async def _send_text(self, text: str) -> None:
        await self.send({"type": "websocket.send", "text": text})

    # Timers.

    def _arm_timer(self) -> None:
        """Check for idleness when the current deadline passes (again if frames came meanwhile)."""
        if self.timer is not None:
            self.timer.cancel()
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        limits = self.limits
        delay = limits.silence_timeout if self.attachments else limits.idle_timeout
        self.timer = loop.call_at(loop.time() + max(0.02, delay - self._silent()), self._tick)

    def _silent(self) -> float:
        return time.monotonic() - self.last_heard

    def _tick(self) -> None:
        if self.closed:
            return
        limits = self.limits
        silent = self._silent()
        if not self.attachments and silent >= limits.idle_timeout:
            reason = (
                f"This socket held no live state and sent nothing for {limits.idle_timeout:g} s; "
                "it is closed. Attach within that time, or reconnect when you need one."
            )
        elif silent >= limits.silence_timeout:
            reason = (
                f"This socket sent nothing, not even a ping, for {limits.silence_timeout:g} s; "
                "it is closed. Ping at the welcome frame's heartbeat interval."
            )
        else:
            self._arm_timer()
            return
        self.closed = True
        self.outbox.close(_CLOSE_IDLE, error_frame("idle", reason))


class _Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("burst", "rate", "refilled", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = self.burst
        self.refilled = time.monotonic()

    def take(self) -> bool:
        """Take one token if there is one; say whether there was."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _value(frame: Mapping[str, Any]) -> Any:
    if "value" not in frame:
        raise FrameError(
            "bad_frame",
            f"A {frame['type']!r} frame needs 'value': any JSON value.",
            frame.get("ref"),
        )
    return frame["value"]


def _action(spec: type[Spec], frame: Mapping[str, Any], ref: object) -> tuple[str, dict[str, Any]]:
    """A `call` frame's action (one the spec has) and its arguments."""
    action = field(frame, "action", str, "the name of one of the spec's actions")
    if action not in actions_of(spec):
        names = ", ".join(sorted(actions_of(spec))) or "none"
        raise FrameError(
            "unknown_action",
            f"{spec.name} has no action {action[:100]!r}; its actions are: {names}.",
            ref,
        )
    args = frame.get("args", {})
    if type(args) is not dict:
        raise FrameError(
            "bad_frame",
            "A 'call' frame's 'args' is a JSON object of argument names to values.",
            ref,
        )
    return action, args


def _prop(client: Client, frame: Mapping[str, Any]) -> Any:
    prop = field(frame, "prop", str, "the property's name")
    state = client.state
    if prop not in state:
        raise PropertyNotFoundError(
            f"{client.spec.name} {client.key[:200]!r} has no property {prop!r}."
        )
    return state[prop]


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("livestate endpoint: detaching a closed socket's client failed")
