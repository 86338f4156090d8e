"""Who is in which room: a stand-in for presence, kept right when a node is killed.

livestate has no presence yet (issue 13); this module is where the chat's
"who is here" lives, so that presence can replace it whole. Each node keeps its
own pages per room and writes them into the Lobby live state as one entry per
node and room: `rooms[room][node] = {"at": time, "pages": n, "nicks": [...]}`.
It rewrites its entries every HEARTBEAT seconds. Readers count only entries
younger than STALE (three heartbeats), and every write prunes older ones, so a
node that dies without a goodbye (kill -9) drops out within STALE seconds;
live pages re-render every HEARTBEAT seconds to show it.

CHAT_HEARTBEAT (seconds, default 2) comes from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .state import LOBBY, Lobby

HEARTBEAT = float(os.environ.get("CHAT_HEARTBEAT", "2"))
STALE = 3 * HEARTBEAT

logger = logging.getLogger("chat")


class Here:
    """This node's open room pages (room -> page id -> nickname), written to the Lobby."""

    def __init__(self) -> None:
        self.node = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.pages: dict[str, dict[str, str]] = {}
        self._written: set[str] = set()  # rooms this node has an entry in

    async def enter(self, room: str, page: str, nick: str) -> None:
        """Count page `page` (showing `nick`, or "" before one is chosen) in `room`."""
        self.pages.setdefault(room, {})[page] = nick
        await self.publish()

    async def leave(self, room: str, page: str) -> None:
        """Stop counting page `page` in `room`."""
        pages = self.pages.get(room, {})
        pages.pop(page, None)
        if not pages:
            self.pages.pop(room, None)
        await self.publish()

    async def publish(self) -> None:
        """Write this node's entries (fresh timestamps), drop its empty ones, prune stale ones."""
        now = time.time()
        mine = {
            room: {
                "at": now,
                "pages": len(pages),
                "nicks": sorted({n for n in pages.values() if n}),
            }
            for room, pages in self.pages.items()
        }
        if not mine and not self._written:
            return
        node = self.node

        def change(rooms: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for room in set(rooms) | set(mine):
                entries = {
                    other: entry
                    for other, entry in rooms.get(room, {}).items()
                    if other != node and now - entry["at"] < STALE
                }
                if room in mine:
                    entries[node] = mine[room]
                if entries:
                    result[room] = entries
            return result

        await Lobby.start(LOBBY)
        await Lobby.update(LOBBY, "rooms", change, default={})
        self._written = set(mine)

    async def run(self) -> None:
        """Publish every HEARTBEAT seconds until cancelled, then remove this node's entries."""
        try:
            while True:
                await asyncio.sleep(HEARTBEAT)
                try:
                    await self.publish()
                except Exception:
                    # A backend hiccup must not end the heartbeat; the next one tries again.
                    logger.exception("The chat could not publish who is here")
        finally:
            self.pages.clear()
            with contextlib.suppress(Exception):
                await self.publish()


here = Here()
"""This process's pages."""


def fresh(entries: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The entries of one room that are younger than STALE."""
    now = time.time()
    return [entry for entry in entries.values() if now - entry["at"] < STALE]


def room_counts(rooms: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Open pages per room, from the Lobby's `rooms`, counting only fresh entries."""
    counts = {room: sum(e["pages"] for e in fresh(entries)) for room, entries in rooms.items()}
    return {room: count for room, count in counts.items() if count > 0}


def online(rooms: Mapping[str, Mapping[str, Mapping[str, Any]]], room: str) -> list[str]:
    """The nicknames in `room`, from the Lobby's `rooms`, counting only fresh entries."""
    return sorted({nick for entry in fresh(rooms.get(room, {})) for nick in entry["nicks"]})
