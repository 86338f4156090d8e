"""ASGI middleware for PyView's WebSocket: `OriginCheckMiddleware` refuses other sites'
pages; `WebSocketLimitsMiddleware` makes WebSockets join a LiveView soon, and few per address.

PyView accepts any WebSocket on its `/live/websocket` route and keeps it open,
joined or not (issue 11 reported 2,000 idle sockets from one address open for
30 s, costing the server 120 MB). `WebSocketLimitsMiddleware` closes a WebSocket that has sent
no `phx_join` within `join_timeout` seconds of its handshake, and refuses the
handshake of a client address that already holds `max_per_client` sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidValueError
from .._web import OriginRule

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OriginCheckMiddleware", "WebSocketLimitsMiddleware"]

CLOSE_POLICY = 1008
"""The WebSocket close code for both refusals: a policy violation."""


class WebSocketLimitsMiddleware:
    """ASGI middleware: close WebSockets that do not join in time; cap sockets per address.

    A WebSocket whose first `join_timeout` seconds (default 5) bring no LiveView
    `phx_join` is closed with code 1008 ("Join timeout"), and the app sees a
    `websocket.disconnect`. A handshake from an address that already has
    `max_per_client` (default 100) open WebSockets is refused (a 403 to the
    browser, close code 1008 "Too many connections"). HTTP requests pass
    untouched.

    The address is the ASGI `client` host, which is the direct peer. Behind a
    reverse proxy every client is the proxy's address unless the server rewrites
    it from the proxy's headers (uvicorn `--proxy-headers
    --forwarded-allow-ips=<proxy address>`): do that, or the cap counts all
    visitors together. The middleware never reads `X-Forwarded-For` itself,
    which any client could forge. Raises InvalidValueError (a ValueError) for a
    limit below 1 or a timeout that is not positive.
    """

    def __init__(self, app: ASGIApp, join_timeout: float = 5.0, max_per_client: int = 100) -> None:
        if not join_timeout > 0:
            raise InvalidValueError(f"join_timeout must be positive seconds; got {join_timeout!r}.")
        if max_per_client < 1:
            raise InvalidValueError(f"max_per_client must be at least 1; got {max_per_client!r}.")
        self.app = app
        self.join_timeout = join_timeout
        self.max_per_client = max_per_client
        self.open: Counter[str] = Counter()
        """Open WebSockets per client address, as the middleware counts them now."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if self.open[address] >= self.max_per_client:
            message = await receive()  # websocket.connect must come before the refusal
            if message["type"] == "websocket.connect":
                await send(
                    {
                        "type": "websocket.close",
                        "code": CLOSE_POLICY,
                        "reason": "Too many connections",
                    }
                )
            return
        self.open[address] += 1
        try:
            await _Guard(self.join_timeout, receive, send).run(self.app, scope)
        finally:
            self.open[address] -= 1
            if self.open[address] <= 0:
                del self.open[address]


class _Guard:
    """One WebSocket under the join deadline."""

    __slots__ = ("closed", "deadline", "joined", "receive_", "send_", "timeout")

    def __init__(self, timeout: float, receive: Receive, send: Send) -> None:
        self.timeout = timeout
        self.receive_ = receive
        self.send_ = send
        self.joined = False
        self.closed = False
        self.deadline: float | None = None  # set when the app accepts

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        await app(scope, self.receive, self.send)

    async def send(self, message: Message) -> None:
        if self.closed:
            return  # the middleware closed it: the app's last words go nowhere
        if message["type"] == "websocket.accept":
            self.deadline = asyncio.get_running_loop().time() + self.timeout
        await self.send_(message)

    async def receive(self) -> Message:
        if self.closed:
            return {"type": "websocket.disconnect", "code": CLOSE_POLICY}
        if self.joined or self.deadline is None:
            message = await self.receive_()
        else:
            left = self.deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(self.receive_(), max(left, 0.0))
            except TimeoutError:
                self.closed = True
                await self.send_(
                    {"type": "websocket.close", "code": CLOSE_POLICY, "reason": "Join timeout"}
                )
                return {"type": "websocket.disconnect", "code": CLOSE_POLICY}
        if not self.joined and message["type"] == "websocket.receive":
            self.joined = _is_join(message)
        return message


def _is_join(message: Message) -> bool:
    """Whether a received WebSocket message is a LiveView `phx_join` (Phoenix's array form)."""
    text: Any = message.get("text")
    if not isinstance(text, str) or "phx_join" not in text:
        return False
    try:
        decoded = json.loads(text)
    except ValueError:
        return False
    return (
        isinstance(decoded, list)
        and len(decoded) == 5
        and decoded[3] == "phx_join"
        and isinstance(decoded[2], str)
        and decoded[2].startswith("lv:")
    )


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
