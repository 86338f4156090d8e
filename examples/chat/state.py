"""The chat's shared state: one ChatRoom per room, and one Lobby counting who is where.

Who is where is presence, not state: a room page tracks in its ChatRoom as its
nickname (meta: whether it is typing) and in the Lobby as its room (meta: its
nickname), so that a node that dies takes its pages out of both within its lease.

Pages never write a room's state: its ACL gives them `read` only, and a post or a
clear is one of ChatRoom's actions, which run on the server as the view's
identity (its nickname), and whose writes the schema checks.

Settings come from the environment so that tests and `livestate demo` can
shorten them: CHAT_ROOM_TTL (seconds a room outlives its last visitor, default
60) and CHAT_TYPING_SECONDS (how long "is typing" lasts without a keystroke,
default 3).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import msgspec

from livestate import ActionContext, InvalidValueError, LiveState, PermissionDeniedError, action

from .store import store

ROOM_TTL = float(os.environ.get("CHAT_ROOM_TTL", "60"))
TYPING_SECONDS = float(os.environ.get("CHAT_TYPING_SECONDS", "3"))
MAX_MESSAGES = 200
MAX_TEXT = 500
MAX_NICK = 30
LOBBY = "main"

MessageId = Annotated[str, msgspec.Meta(pattern="^(?:[0-9a-f]{12}|[0-9a-f]{32})$")]
"""12 hex digits chosen by the server, or the 32 that chat.js gives a post it kept offline."""
Nick = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NICK)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


class Message(msgspec.Struct, forbid_unknown_fields=True):
    """One message: who posted it (the server-known nickname), what, and when."""

    id: MessageId
    nick: Nick
    text: Text
    at: float


class ChatRoom(LiveState):
    """One chat room: its last MAX_MESSAGES messages; its presence is nick -> {"typing": bool}."""

    ttl = ROOM_TTL
    # Nobody writes a property: views (group) and other code (public) read, and
    # change a room only through the actions below.
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": ["read"]}
    schema: ClassVar[Mapping[str, Any]] = {
        "messages": Annotated[list[Message], msgspec.Meta(max_length=MAX_MESSAGES)],
    }

    persist_interval = 1.0  # the history is saved at most once a second (store.py)

    async def on_mount(self, key: str) -> dict[str, Any]:
        saved = await store().load(self.name, key)  # the history, if any
        return {"messages": fitting(saved[1].get("messages", [])) if saved else []}

    async def on_persist(
        self, key: str, state: Mapping[str, Any], version: int, final: bool
    ) -> None:
        await store().save(self.name, key, version, {"messages": state.get("messages", [])})

    @action
    def post(self, ctx: ActionContext, text: Text, cid: MessageId | None = None) -> str:
        """Post `text` as the caller's nickname; return the message's id.

        The nickname is the caller's identity (the view's, from `live_state`), never
        an argument: a page cannot post as anyone else. `cid` is the id chat.js gave
        a post it kept while offline, which may come twice: the room adds it once.
        """
        nick = ctx.caller.identity if ctx.caller is not None else None
        if nick is None:
            raise PermissionDeniedError("Choose a nickname before you post.")
        words = text.strip()
        if not words:
            raise InvalidValueError("A message needs some text.")
        if cid is not None and any(m["id"] == cid for m in ctx.state["messages"]):
            return cid  # a kept post sent again: it is there already
        message = {
            "id": cid or uuid.uuid4().hex[:12],
            "nick": nick,
            "text": words,
            "at": time.time(),
        }
        # An append: concurrent posts from any node all land, in one order.
        ctx.append("messages", message, max_len=MAX_MESSAGES)
        return str(message["id"])

    @action
    def clear(self, ctx: ActionContext) -> None:
        """Delete every message, for everyone ("Clear the room", which the page confirms)."""
        ctx.put("messages", [])


class Lobby(LiveState):
    """Who is in which room, as presence: room -> {"nick": ...} per open room page.

    It has no state of its own. Tracking needs only read, which is all the group
    (the pages) has: nothing a browser sends can write here.
    """

    ttl = None
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


def fitting(messages: Sequence[Any]) -> list[Any]:
    """The saved messages that fit the schema (an older release saved other shapes)."""
    kept = []
    for message in messages[-MAX_MESSAGES:]:
        try:
            msgspec.convert(message, Message)
        except msgspec.ValidationError:
            continue
        kept.append(message)
    return kept


def room_name(raw: str) -> str:
    """A safe room name from user input: lower case letters, digits, `-` and `_`."""
    return re.sub(r"[^a-z0-9_-]", "", raw.lower())[:40] or "general"


def nick_name(raw: str) -> str:
    """A nickname from user input: printable, trimmed, at most MAX_NICK characters."""
    return "".join(ch for ch in raw if ch.isprintable()).strip()[:MAX_NICK]
