"""One WebSocket connection of the endpoint: its attachments, outbox, limits and timers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .._acl import Role
from .._changes import Change
from .._client import Client
from .._declare import DEFAULT, Spec, actions_of
from .._exceptions import (
    LiveStateError,
    PermissionDeniedError,
    PropertyNotFoundError,
)
from .._node import current_node
from .._rules import Caller
from .._spec import LiveState
from ._frames import (
    BATCH_QUERY,
    PRESENCE,
    PROTOCOL,
    TOKENS,
    FrameError,
    decode,
    encode,
    error_frame,
    field,
    livestate_error_frame,
    presence_json,
)
from ._outbox import Outbox

if TYPE_CHECKING:
    from ._endpoint import Connection, LiveStateEndpoint

logger = logging.getLogger("livestate")

Scope = MutableMapping[str, Any]
Receive = Any  # ASGI's receive and send callables: typed loosely, to fit every
Send = Any  # framework's own aliases for them

_CLOSE_POLICY: Final = 1008  # RFC 6455: a message that violates policy (foreign origin)
_CLOSE_IDLE: Final = 4000  # private range: idle or silent too long
_CLOSE_SLOW: Final = 1013  # RFC 6455: try again later (the socket fell too far behind)
_OWN_FRAME: Final = frozenset({"stopped", "reset"})
"""Change kinds whose frame is this socket's own, not the one every socket shares."""


class Attachment:
    """One live state attached on a socket: the core's client, and its spec for replies."""

    __slots__ = ("client", "head", "id")

    def __init__(self, id: int) -> None:
        self.id = id
        self.head = f'{{"type":"change","id":{id},'
        self.client: Client | None = None


class Session:
    """One WebSocket connection: its attachments, outbox, limits and timers."""

    def __init__(
        self,
        endpoint: LiveStateEndpoint,
        connection: Connection,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        self.endpoint = endpoint
        self.limits = endpoint.limits
        self.scope = scope
        self.receive = receive
        self.send = send
        self.connection = connection
        self.attachments: dict[int, Attachment] = {}
        self.roles: dict[tuple[str, str], Role | None] = {}
        self.identity: str | None = None  # from identify, at the first track
        self.next_id = 1
        batched = connection.query.get(BATCH_QUERY) == "1"
        self.outbox = Outbox(send, endpoint.flusher, batched)
        self.closed = False
        limits = self.limits
        self.writes = Bucket(limits.writes_per_second, limits.write_burst)
        self.attaches = Bucket(limits.attaches_per_second, limits.attach_burst)
        self.last_heard = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        await self.send({"type": "websocket.accept"})
        self.outbox.accepted()
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
            welcome: dict[str, Any] = {
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
            if self.outbox.batched:
                welcome["batch"] = True
            self.push(encode(welcome))
            self._arm_timer()
            await self._serve()
        finally:
            self.closed = True
            self.outbox.stop()  # before the awaits below: nothing more is queued
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
        attachment = Attachment(self.next_id)
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

    def _receiver(self, attachment: Attachment) -> Any:
        head = attachment.head
        body = self.endpoint.body
        shared = self.endpoint.frame
        outbox = self.outbox
        frames = outbox.frames
        limit = self.limits.max_queued_frames

        def receive(change: Change) -> None:
            # Called once per socket for every change: the common case first, inlined.
            if outbox.open and len(frames) < limit and change.kind not in _OWN_FRAME:
                frames.append(shared(change, head))
                if not outbox.queued and outbox.task is None:
                    outbox.wake()
            elif change.kind == "stopped":
                self.push(head + body(change))
                self.attachments.pop(attachment.id, None)
                self._arm_timer()
            elif change.kind == "reset" and attachment.client is not None:
                # The presence may have changed unseen too (the core re-reads it with the
                # state): the reset carries it, so the page replaces both at once.
                presence = encode(presence_json(attachment.client.presence))
                self.push(head + body(change)[:-1] + f',"presence":{presence}}}')
            else:
                self.push(shared(change, head))  # drops it, or closes a socket too far behind

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


class Bucket:
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
