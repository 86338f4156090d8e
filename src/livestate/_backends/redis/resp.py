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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis

from ..._exceptions import BackendUnavailableError, InvalidValueError
from .errors import code, translate

logger = logging.getLogger("livestate")

BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Seconds between attempts to reconnect."""

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TLS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_PARAMETERS = ("db", "username", "password", "client_name", *_TLS)


class ReplyError(Exception):
    """An error reply from the server; its text starts with the error code (NOSCRIPT, …)."""


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


def parse_url(url: str, settings: Mapping[str, float]) -> tuple[Endpoint, dict[str, float]]:
    """The endpoint a Redis URL names, and the values of livestate's own `settings` in it.

    Accepts redis://, rediss:// (TLS), unix:// and their valkey spellings, with
    `[[username]:password@]`, a `/db` path (`?db=` for unix://) and the query
    parameters db, username, password, client_name, ssl_ca_certs, ssl_certfile,
    ssl_keyfile, ssl_cert_reqs (none, optional, required) and ssl_check_hostname,
    plus the names in `settings` (numbers, whose defaults `settings` gives).
    Raises InvalidValueError for anything else.
    """
    parts = urlsplit(url)
    scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidValueError(f"LIVESTATE_URL {url!r}: use redis://, rediss:// or unix://.")
    values = dict(settings)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query):
        if name in values:
            try:
                values[name] = float(value)
            except ValueError:
                raise InvalidValueError(
                    f"The {name} in LIVESTATE_URL must be a number of seconds, not {value!r}."
                ) from None
        elif name in _PARAMETERS:
            query[name] = value
        else:
            known = ", ".join([*settings, *_PARAMETERS])
            raise InvalidValueError(
                f"LIVESTATE_URL has the parameter {name!r}, which livestate does not know; "
                f"use one of {known}."
            )
    db_text = query.get("db") or (parts.path.strip("/") if scheme != "unix" else "") or "0"
    if not db_text.isdigit():
        raise InvalidValueError(f"The database in LIVESTATE_URL must be a number, not {db_text!r}.")
    username = query.get("username") or (unquote(parts.username) if parts.username else None)
    password = query.get("password") or (unquote(parts.password) if parts.password else None)
    endpoint = Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        path=unquote(parts.path) if scheme == "unix" else None,
        tls=_tls(query) if scheme == "rediss" else None,
        username=username,
        password=password,
        db=int(db_text),
        client_name=query.get("client_name"),
    )
    return endpoint, values


def _tls(query: dict[str, str]) -> ssl.SSLContext:
    reqs = query.get("ssl_cert_reqs", "required")
    if reqs not in _CERT_REQS:
        raise InvalidValueError(
            f"ssl_cert_reqs in LIVESTATE_URL must be none, optional or required, not {reqs!r}."
        )
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    context.check_hostname = reqs != "none" and query.get("ssl_check_hostname", "true") in (
        "true", "1", "yes",
    )  # fmt: skip
    context.verify_mode = _CERT_REQS[reqs]
    if "ssl_certfile" in query:
        context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
    return context


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

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply, or ReplyError, or ConnectionError."""
        loop = self._loop
        future = loop.create_future()
        if self._transport is None:
            future.set_exception(ConnectionError(self.why))
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
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.why == "closed the connection":
            self.why = f"dropped the connection ({exc})"
        self._transport = None
        self._outgoing.clear()
        self._sent.clear()
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError(self.why))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
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
    longer be trusted to arrive); the next call reconnects.
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
        except OSError as error:
            raise self._unavailable(f"refused the connection ({error})") from None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                connection = await connect(self._endpoint)
        except BaseException:
            self._failures += 1
            self._retry_at = loop.time() + BACKOFF[min(self._failures, len(BACKOFF)) - 1]
            raise
        finally:
            self._connecting = None
        self._failures = 0
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
