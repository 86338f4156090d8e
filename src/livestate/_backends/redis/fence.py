"""Ending a dropped connection on the server before its successor carries anything.

A node drops a connection whose oldest call has waited past the timeout, and
goes on over a new one. A server that stalled (paused, swapping, a long script
elsewhere) rather than died still holds what the dropped connection carried: on
waking up it would run those calls, reported unknown to their callers, after
calls the new connection carried later, and a write reported unknown would land
after writes made after it. So the first command after the login on a new
connection ends each connection of the same owner that was dropped with calls in
flight: `CLIENT KILL` by the id and both addresses the server gave it (`CLIENT
INFO`, asked on every connection), which a server runs before anything later on
the new connection. Whatever the old one carried then either ran before the
kill, so before the new connection's calls, or never runs.

The server ANDs the three filters, so an endpoint whose name moved to another
server on failover finds no match there (short of a client with the same id and
both addresses). A server
that refuses `CLIENT INFO` or `CLIENT KILL` (older than 6.2, an ACL without
them, a proxy in between) kills nothing: the order of a write reported unknown
after a stall is then not kept, as docs/redis.md says (each write is still
applied at most once: every sending looks its id up).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .resp import Connection


class Fence:
    """The connections one owner (a Pipe, a Link) opened, and who the server says each is."""

    def __init__(self) -> None:
        # Open or dropped connections -> (id, addr, laddr), once the server said.
        self._known: dict[Connection, tuple[str, str, str]] = {}

    def guard(self, connection: Connection) -> None:
        """Before anything else goes on `connection`: end every connection dropped with
        calls in flight, then ask who `connection` is."""
        for old, (id, addr, laddr) in list(self._known.items()):
            if old.unsettled:
                kill = connection.send(("CLIENT", "KILL", "ID", id, "ADDR", addr, "LADDR", laddr))
                kill.add_done_callback(partial(self._ended, old))
            elif old.closed.done():
                del self._known[old]  # closed with nothing in flight: nothing to end
        info = connection.send(("CLIENT", "INFO"))
        info.add_done_callback(partial(self._learn, connection))

    def _learn(self, connection: Connection, done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # refused or lost: this connection cannot be ended later
        fields = dict(field.split("=", 1) for field in str(done.result()).split() if "=" in field)
        if {"id", "addr", "laddr"} <= fields.keys():
            self._known[connection] = (fields["id"], fields["addr"], fields["laddr"])

    def _ended(self, old: Connection, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        if isinstance(done.exception(), ConnectionError):
            return  # the new connection was lost too: the next one tries again
        self._known.pop(old, None)  # killed, gone already, or refused: nothing more to do
