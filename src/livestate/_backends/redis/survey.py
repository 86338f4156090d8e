"""What `livestate inspect` sees of a Redis deployment: every live state and every node.

Each node's backend announces how many clients it holds of each live state
(`ls:node:<id>`, a JSON object that lapses with the node's lease): on its
heartbeat, and within `ANNOUNCE_WAIT` of a client attaching or detaching (one
announce for all that changed meanwhile). A survey scans for those and for the
live states' meta hashes, reads them all in one round of commands and puts the
two together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from typing import Any

from ..._changes import StateId
from ..._exceptions import LiveStateError
from ..base import Census, NodeReport, StateReport, Survey
from .dispatch import Dispatcher
from .transport import Log

ANNOUNCE_WAIT = 0.1
"""Seconds from a client attaching or detaching to the announce that shows it: the
changes of that moment go in one announce."""


class Announcer:
    """Announces what each node on one backend holds: on the heartbeat, and soon after
    its clients change."""

    def __init__(self, censuses: Mapping[str, Census], lease: float) -> None:
        self.censuses = censuses
        self.lease = lease
        self.shown: set[str] = set()  # the nodes whose key is up: one that empties drops it
        self.pending: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def announce(self, dispatcher: Dispatcher) -> None:
        """Tell the deployment what each node here holds, for the lease.

        Raises BackendUnavailableError or BackendError if the server does not take it.
        """
        milliseconds = int(self.lease * 1000)
        doing = "announce what its node holds"
        for node, census in list(self.censuses.items()):
            counts = [[id.spec, id.key, n] for id, n in census().items()]
            key = dispatcher.names.key(f"node:{node}")
            if counts:
                info = json.dumps({"clients": counts}, separators=(",", ":"))
                await dispatcher.call(key, "SET", key, info, "PX", milliseconds, doing=doing)
                self.shown.add(node)
            elif node in self.shown:
                await dispatcher.call(key, "DEL", key, doing=doing)
                self.shown.discard(node)
            # (A node that never held anything, say `livestate inspect`'s, stays unlisted.)

    def soon(self, dispatcher: Dispatcher, log: Log) -> None:
        """A node's clients changed: announce within ANNOUNCE_WAIT (once for all changes
        until then), not only at the next heartbeat; a failure goes to `log`."""
        if self.pending is None:
            loop = asyncio.get_running_loop()
            self.pending = loop.call_later(ANNOUNCE_WAIT, self._now, dispatcher, log)

    def cancel(self) -> None:
        """Announce nothing more (the backend closes)."""
        if self.pending is not None:
            self.pending.cancel()
        for task in self.tasks:
            task.cancel()

    def _now(self, dispatcher: Dispatcher, log: Log) -> None:
        self.pending = None
        task = asyncio.get_running_loop().create_task(self._announce_quietly(dispatcher, log))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _announce_quietly(self, dispatcher: Dispatcher, log: Log) -> None:
        try:
            await self.announce(dispatcher)
        except LiveStateError as error:  # the heartbeat announces again
            log.warning("could not announce this node's clients (%s)", error)


async def survey(dispatcher: Dispatcher, id: StateId | None = None) -> Survey:
    """Every live state (or only `id`) and every node that announced itself, sorted.

    Raises BackendUnavailableError or BackendError if the server does not answer.
    """
    doing = "survey its live states"

    def call(key: str, *command: str | int) -> Awaitable[Any]:
        return dispatcher.call(key, *command, doing=doing)

    names = dispatcher.names
    metas = (
        [f"{names.state(id)}:m"] if id is not None else await scan(dispatcher, names.key("{*}:m"))
    )
    node_keys = await scan(dispatcher, names.key("node:*"))
    replies = await asyncio.gather(
        *(call(meta, "HMGET", meta, "e", "v", "n", "T") for meta in metas),
        *(call(meta, "PTTL", meta) for meta in metas),
        *(call(meta, "ZRANGE", meta[:-1] + "h", 0, -1, "WITHSCORES") for meta in metas),
        *(call(meta, "HLEN", meta[:-1] + "p") for meta in metas),
        *(call(key, "GET", key) for key in node_keys),
        *(call(key, "PTTL", key) for key in node_keys),
        call(names.key("layout"), "TIME"),
    )
    count = len(metas)
    fields, ttls, holders, present = (
        replies[:count],
        replies[count : 2 * count],
        replies[2 * count : 3 * count],
        replies[3 * count : 4 * count],
    )
    nodes = len(node_keys)
    infos = replies[4 * count : 4 * count + nodes]
    leases = replies[4 * count + nodes : 4 * count + 2 * nodes]
    seconds, micros = replies[-1]
    now = int(seconds) * 1000 + int(micros) // 1000
    clients: dict[tuple[str, str], dict[str, int]] = {}
    node_reports = []
    for key, info, lease in zip(node_keys, infos, leases, strict=True):
        if info is None:
            continue  # its lease ran out between the scan and now
        node = key[len(names.key("node:")) :]
        counts = json.loads(info)["clients"]
        for spec, state_key, n in counts:
            clients.setdefault((spec, state_key), {})[node] = n
        node_reports.append(
            NodeReport(node, max(0, lease) / 1000, len(counts), sum(c[2] for c in counts))
        )
    states = []
    for meta, (epoch, version, size_, ttl), pttl, held, shown in zip(
        metas, fields, ttls, holders, present, strict=True
    ):
        if epoch is None:
            continue  # ended between the scan and now
        spec, key = names.parse(meta[: -len(":m")])
        leases_left: dict[str, float | None] = {
            held[i]: max(0.0, (float(held[i + 1]) - now) / 1000) for i in range(0, len(held), 2)
        }
        states.append(
            StateReport(
                spec,
                key,
                int(version),
                epoch,
                int(size_ or 0),
                None if not ttl else float(ttl),
                None if pttl < 0 else pttl / 1000,
                leases_left,
                clients.get((spec, key), {}),
                shown,
            )
        )
    states.sort(key=lambda state: (state.spec, state.key))
    node_reports.sort(key=lambda report: report.id)
    return Survey(states, node_reports)


async def scan(dispatcher: Dispatcher, pattern: str) -> list[str]:
    """Every key matching `pattern`, on every primary (SCAN: the server is never blocked
    for long)."""
    found: set[str] = set()
    for route in dispatcher.transport.primaries():
        cursor = "0"
        while True:
            cursor, keys = await dispatcher.call(
                route, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000, doing="list its keys"
            )
            found.update(keys)
            if cursor == "0":
                break
    return sorted(found)
