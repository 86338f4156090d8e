"""The Redis backend's connections: RESP2 over an asyncio Protocol, parsed by hiredis.

One livestate write is one command, so what a client library spends per command
is most of a write's cost. redis-py's asyncio connection spends a task per
command (its socket timeout is an `asyncio.wait_for`), a StreamReader wake-up
per reply and Python-level packing; profiling the peers benchmark found those
above half of the writer's CPU. Here hiredis packs each command, the commands
of one event loop turn leave in one send, and each reply resolves its caller's
future inside `data_received`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    import hiredis
except ImportError as error:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "The Redis backend of livestate needs the hiredis package; "
        "install it with pip install 'livestate[redis]'."
    ) from error

from ..._exceptions import BackendUnavailableError
from ..._retry import Backoff, delay
from .errors import RECONNECT, code, reason, translate
from .fence import Fence

logger = logging.getLogger("livestate")

RECONNECTING = Backoff((0.05, 0.1, 0.2, 0.5, 1.0, 2.0))
"""How long to wait before each new attempt to connect, after attempts that failed."""


class ReplyError(Exception):
    """An error reply from the server; its text starts with the error code (NOSCRIPT, …)."""


class NotRedisError(ConnectionError):
    """The peer answered with bytes that are not RESP: it is not a Redis server."""


@dataclass(frozen=True)
class Endpoint:
    """Where a Redis server listens and how to log in to it: what a redis:// URL says."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket instead of host and port
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"


class Connection(asyncio.Protocol):
    """One connection. Replies resolve the futures `send` returned, in order; a reply
    that no call waits for (a pub/sub message) goes to `on_push`."""

    def __init__(self, on_push: Callable[[Any], None] | None = None) -> None:
        self.on_push = on_push
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ReplyError)
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._sent: deque[float] = deque()  # when each waiting call went out
        self._outgoing: list[bytes] = []
        self.why = "closed the connection"  # how it ended, for messages: "<server> <why>"
        self.failure: type[ConnectionError] = ConnectionError  # what waiting calls get
        self.heard = self._loop.time()  # when bytes last came in (loop time)
        # Ended with calls in flight: the server may still hold them (see fence.py).
        self.unsettled = False

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply, or ReplyError, or ConnectionError."""
        loop = self._loop
        future = loop.create_future()
        if self._transport is None:
            future.set_exception(self.failure(self.why))
            return future
        self.write(args)
        self._waiting.append(future)
        self._sent.append(loop.time())
        return future

    def write(self, args: tuple[Any, ...]) -> None:
        """Queue one command whose replies go to `on_push` (SUBSCRIBE and the like)."""
        packed = hiredis.pack_command(args)
        if self._outgoing:
            self._outgoing.append(packed)
        elif self._waiting:
            # Calls are in flight, so others are likely being made: gather this turn's.
            self._outgoing.append(packed)
            self._loop.call_soon(self._flush)
        elif self._transport is not None:
            self._transport.write(packed)  # an idle connection: no reason to wait

    def oldest(self) -> float | None:
        """When the longest-waiting call went out (loop time), or None if none waits."""
        return self._sent[0] if self._sent else None

    def abort(self, why: str) -> None:
        """Drop the connection now; every waiting call fails with ConnectionError(why)."""
        self.why = why
        self.unsettled = self.unsettled or bool(self._waiting)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.why == "closed the connection":
            self.why = f"dropped the connection ({exc})"
        self._transport = None
        self.unsettled = self.unsettled or bool(self._waiting)
        self._outgoing.clear()
        self._sent.clear()
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(self.failure(self.why))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.heard = self._loop.time()  # once per read, not per reply
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                # Not a Redis server (an HTTP port, say): say so, once, and hang up; the
                # waiting calls fail with this, and nothing is logged as a crash.
                self.failure = NotRedisError
                self.abort(not_redis(data))
                return
            if reply is False:
                return
            if self._waiting:
                self._sent.popleft()
                future = self._waiting.popleft()
                if future.done():
                    continue  # its caller was cancelled
                if type(reply) is ReplyError:
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
            elif self.on_push is not None:
                try:
                    self.on_push(reply)
                except Exception:
                    # Never let one reply take the connection down with it.
                    logger.exception("livestate could not handle a reply on a Redis connection")

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None:
            self._transport.write(b"".join(outgoing))


def not_redis(data: bytes) -> str:
    """Why a connection that sent `data`, which is not RESP, is no use (after "<server> ")."""
    head = data[:40].split(b"\r\n", 1)[0].decode("ascii", "replace")
    shown = "".join(c if c.isprintable() else "?" for c in head)
    return (
        f"does not speak the Redis protocol (it sent {shown!r}); check the host and port "
        "of LIVESTATE_URL"
    )


async def connect(endpoint: Endpoint, on_push: Callable[[Any], None] | None = None) -> Connection:
    """A connection to `endpoint`, logged in and on its database (bound it with asyncio.timeout).

    Raises OSError if the server cannot be reached, ReplyError if it refuses the login.
    """
    loop = asyncio.get_running_loop()
    if endpoint.path is not None:
        _, connection = await loop.create_unix_connection(
            lambda: Connection(on_push), endpoint.path, ssl=endpoint.tls
        )
    else:
        _, connection = await loop.create_connection(
            lambda: Connection(on_push), endpoint.host, endpoint.port, ssl=endpoint.tls
        )
    try:
        login = []
        if endpoint.password is not None:
            user = (endpoint.username,) if endpoint.username else ()
            login.append(connection.send(("AUTH", *user, endpoint.password)))
        if endpoint.db:
            login.append(connection.send(("SELECT", endpoint.db)))
        if endpoint.client_name:
            login.append(connection.send(("CLIENT", "SETNAME", endpoint.client_name)))
        await asyncio.gather(*login)
    except BaseException:
        connection.abort("closed the connection")
        raise
    return connection


class Pipe:
    """One command connection shared by every caller of a backend; reconnects on demand.

    Calls made in one event loop turn leave in one send, and replies are matched
    to callers in order. A call that gets no reply within `timeout` raises
    BackendUnavailableError and drops the connection (its replies could no
    longer be trusted to arrive); the next call reconnects. So does a reply that
    says the server is no longer a usable primary (READONLY and the others of
    `errors.RECONNECT`): a managed service's endpoint whose name moved to another
    node on failover is looked up again.
    """

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._connection: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._fence = Fence()
        self.reconnects = 0  # connections opened so far: a change means another connection

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply.

        Raises BackendUnavailableError when the server does not answer in time,
        BackendError when it refuses the login, and ReplyError for an error reply.
        """
        connection = self._connection or await self._connect()
        try:
            return await connection.send(args)
        except ConnectionError as error:
            raise self._unavailable(str(error)) from None
        except ReplyError as error:
            if (kind := code(error)) in RECONNECT and self._connection is connection:
                self.drop(f"answered {kind}")
            raise

    def drop(self, why: str) -> None:
        """Drop the connection (calls waiting on it fail); the next call opens a new one."""
        if self._connection is not None:
            self._connection.abort(why)
            self._forget(self._connection)

    async def aclose(self) -> None:
        """Close the connection; later calls raise RuntimeError."""
        self._closed = True
        if self._watchdog:
            self._watchdog.cancel()
        if self._connection:
            self._connection.abort("closed the connection")
        if self._connecting:
            self._connecting.cancel()

    def _unavailable(self, why: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"The Redis server at {self._endpoint} {why}; the write may not have happened. "
            "Check that the server runs and is reachable, then retry."
        )

    async def _connect(self) -> Connection:
        if self._closed:
            raise RuntimeError(
                f"This livestate Redis backend ({self._endpoint}) is closed; create a new Node."
            )
        loop = asyncio.get_running_loop()
        if self._connecting is None:
            if loop.time() < self._retry_at:
                raise self._unavailable("could not be reached a moment ago")
            self._connecting = loop.create_task(self._open())
            # A caller that timed out no longer awaits it; its failure is reported to the next.
            self._connecting.add_done_callback(_ignore)
        try:
            return await asyncio.shield(self._connecting)
        except TimeoutError:
            raise self._unavailable(
                f"did not accept a connection within {self._timeout}s"
            ) from None
        except ReplyError as error:
            if code(error) in ("LOADING", "BUSY"):
                raise self._unavailable(f"refused the connection ({error})") from None
            raise translate(error, self._endpoint, "log in") from None
        except NotRedisError as error:
            raise self._unavailable(str(error)) from None
        except OSError as error:
            raise self._unavailable(f"refused the connection ({reason(error)})") from None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                connection = await connect(self._endpoint)
        except BaseException:
            self._failures += 1
            self._retry_at = loop.time() + delay(RECONNECTING, self._failures)
            raise
        finally:
            self._connecting = None
        self._failures = 0
        self._fence.guard(connection)
        self.reconnects += 1
        self._connection = connection
        connection.closed.add_done_callback(lambda _: self._forget(connection))
        self._watchdog = loop.create_task(self._watch(connection))
        return connection

    def _forget(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
            if self._watchdog:
                self._watchdog.cancel()

    async def _watch(self, connection: Connection) -> None:
        """Drop the connection when the oldest call has waited longer than the timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._timeout / 8)
            oldest = connection.oldest()
            if oldest is not None and loop.time() - oldest > self._timeout:
                connection.abort(f"did not answer within {self._timeout}s")
                self._forget(connection)
                return


def _ignore(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # reported to whoever awaits it; retrieved so asyncio does not log it
