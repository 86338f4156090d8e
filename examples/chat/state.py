"""The chat's shared state: one ChatRoom per room, and one Lobby counting who is where.

Who is where is presence, not state: a room page tracks in its ChatRoom as its
nickname (meta: whether it is typing) and in the Lobby as its room (meta: its
nickname), so that a node that dies takes its pages out of both within its lease.

Settings come from the environment so that tests and `livestate demo` can
shorten them: CHAT_ROOM_TTL (seconds a room outlives its last visitor, default
60) and CHAT_TYPING_SECONDS (how long "is typing" lasts without a keystroke,
default 3).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from livestate import LiveState, NotFoundError

from .store import store

ROOM_TTL = float(os.environ.get("CHAT_ROOM_TTL", "60"))
TYPING_SECONDS = float(os.environ.get("CHAT_TYPING_SECONDS", "3"))
MAX_MESSAGES = 200
MAX_TEXT = 500
MAX_NICK = 30
LOBBY = "main"


class ChatRoom(LiveState):
    """One chat room: its last MAX_MESSAGES messages; its presence is nick -> {"typing": bool}."""

    ttl = ROOM_TTL
    # Views write as group members. Public callers (the JSON endpoint, any other
    # server code) may only read: nothing outside a joined room's view can post.
    acl: ClassVar[Mapping[str, Any]] = {"group": "all", "public": ["read"]}

    persist_interval = 1.0  # the history is saved at most once a second (store.py)

    async def on_mount(self, key: str) -> dict[str, Any]:
        try:
            await ChatRoom.get(key)  # running: this is a reset ("Clear the room"), start empty
            return {"messages": []}
        except NotFoundError:
            saved = await store().load(self.name, key)  # a start: the history, if any
            return {"messages": saved[1]["messages"] if saved else []}

    async def on_persist(
        self, key: str, state: Mapping[str, Any], version: int, final: bool
    ) -> None:
        await store().save(self.name, key, version, {"messages": state.get("messages", [])})


class Lobby(LiveState):
    """Who is in which room, as presence: room -> {"nick": ...} per open room page.

    It has no state of its own. Tracking needs only read, which is all the group
    (the pages) has: nothing a browser sends can write here.
    """

    ttl = None
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


def room_name(raw: str) -> str:
    """A safe room name from user input: lower case letters, digits, `-` and `_`."""
    return re.sub(r"[^a-z0-9_-]", "", raw.lower())[:40] or "general"


def nick_name(raw: str) -> str:
    """A nickname from user input: printable, trimmed, at most MAX_NICK characters."""
    return "".join(ch for ch in raw if ch.isprintable()).strip()[:MAX_NICK]
