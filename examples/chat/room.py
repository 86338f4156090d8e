"""A chat room page: nickname, messages, who is online and typing, and a guarded clear."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyview import LiveView, is_connected  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, template_file  # type: ignore[import-untyped]

from livestate import Change
from livestate.pyview import (
    LIVE_STATE_EVENT,
    live_append,
    live_client,
    live_reset,
    live_state,
    live_update,
)

from .node import served_by
from .presence import HEARTBEAT, here, online
from .state import (
    LOBBY,
    MAX_MESSAGES,
    MAX_TEXT,
    TYPING_SECONDS,
    ChatRoom,
    Lobby,
    nick_name,
    room_name,
)

TEMPLATE = template_file(str(Path(__file__).with_suffix(".html")))
TICK = "tick"
CLIENT_ID = re.compile(r"[0-9a-f]{32}")  # the id chat.js gives a kept post


class RoomView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """One visitor's view of one room. PyView makes one instance per page (and per join).

    It binds two live states by name: the room (`live_assigns.room.messages`) and
    the lobby (`live_assigns.lobby.rooms`, for who is online).
    """

    def __init__(self) -> None:
        super().__init__()
        self._typing_timer: asyncio.TimerHandle | None = None
        self._typing_written = 0.0  # when this visitor last wrote "typing" (0: not typing)
        self._tasks: set[asyncio.Task[None]] = set()

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {
            "room": "",
            "nick": "",
            "error": "",
            "notice": "",
            "here": "",
            "page": uuid.uuid4().hex[:12],
            "version": 0,
            "confirm_clear": False,
            **served_by(),
        }
        if is_connected(socket):
            # Re-render every heartbeat, so that people on a dead node drop out of the list.
            socket.schedule_info(InfoEvent(TICK), HEARTBEAT)

    async def handle_params(self, socket: Any, room: str, nick: str = "") -> None:
        context = socket.context
        context["room"] = room = room_name(room)
        context["nick"] = nick_name(nick)
        # The room comes from the URL only: every write of this view goes to the
        # room it joined here, whatever a browser puts into its events.
        await live_state(socket, ChatRoom, room, as_="room")
        await live_state(socket, Lobby, LOBBY, as_="lobby")
        client = live_client(socket, as_="room")
        context["version"] = client.version if client else 0
        if is_connected(socket):
            if context["here"] and context["here"] != room:
                await here.leave(context["here"], context["page"])
            await here.enter(room, context["page"], context["nick"])
            context["here"] = room

    async def handle_event(self, event: str, payload: dict[str, Any], socket: Any) -> None:
        context = socket.context
        context["error"] = context["notice"] = ""
        if event == "nick":
            nick = nick_name(_field(payload, "nick"))
            if nick:
                # Keep the nickname in the URL, so that a reload keeps it.
                await socket.push_patch(f"/rooms/{context['room']}", {"nick": nick})
        elif event == "send":
            text = _field(payload, "text").strip()[:MAX_TEXT]
            if not context["nick"]:
                context["error"] = "Choose a nickname before you post."
            elif text:
                cid = _field(payload, "cid")
                message = {
                    "id": cid if CLIENT_ID.fullmatch(cid) else uuid.uuid4().hex[:12],
                    "nick": context["nick"],
                    "text": text,
                    "at": time.time(),
                }
                if cid == message["id"]:
                    # A kept post from the page's outbox: it may come again after a
                    # disconnect cut its first send short, so add it only once.
                    await live_update(
                        socket, "messages", _add_once(message), default=[], as_="room"
                    )
                else:
                    # Atomic: concurrent posts from any node all land, in one order.
                    await live_append(socket, "messages", message, max_len=MAX_MESSAGES, as_="room")
                await self._stop_typing(socket)
        elif event == "typing":
            if context["nick"] and _field(payload, "text"):
                await self._typing(socket)
        elif event == "clear-ask":
            context["confirm_clear"] = True
        elif event == "clear-cancel":
            context["confirm_clear"] = False
        elif event == "clear":
            context["confirm_clear"] = False
            await live_reset(socket, as_="room")
        self._note_version(socket)

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        if event.name == LIVE_STATE_EVENT:
            changes: tuple[Change, ...] = event.payload
            room = socket.context["room"]
            if any(c.kind == "reset" and c.key == room for c in changes):
                socket.context["notice"] = "Someone cleared the room."
        self._note_version(socket)

    async def disconnect(self, socket: Any) -> None:
        if self._typing_timer:
            self._typing_timer.cancel()
        await self._stop_typing(socket)
        if socket.context["here"]:
            await here.leave(socket.context["here"], socket.context["page"])
            socket.context["here"] = ""

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> LiveRender:
        live = assigns["live_assigns"]
        extra = {
            "typing_text": _typing_text(assigns),
            "online": online(live.lobby.rooms, assigns["room"]),
        }
        return LiveRender(TEMPLATE, {**assigns, **extra}, meta)

    def _note_version(self, socket: Any) -> None:
        client = live_client(socket, as_="room")
        if client is not None:
            socket.context["version"] = client.version

    async def _typing(self, socket: Any) -> None:
        """Mark this visitor as typing: written at most every TYPING_SECONDS / 2."""
        nick = socket.context["nick"]
        now = time.time()
        if now - self._typing_written > TYPING_SECONDS / 2:
            self._typing_written = now
            await live_update(socket, "typing", lambda t: {**t, nick: now}, default={}, as_="room")
        if self._typing_timer:
            self._typing_timer.cancel()
        loop = asyncio.get_running_loop()
        self._typing_timer = loop.call_later(
            TYPING_SECONDS, lambda: self._spawn(self._stop_typing(socket))
        )

    async def _stop_typing(self, socket: Any) -> None:
        if not self._typing_written:
            return
        self._typing_written = 0.0
        nick = socket.context["nick"]
        await live_update(
            socket,
            "typing",
            lambda t: {k: v for k, v in t.items() if k != nick},
            default={},
            as_="room",
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _add_once(message: Mapping[str, Any]) -> Callable[[Sequence[Any]], list[Any]]:
    """An update that appends `message` unless a message with its id is already there."""

    def add(messages: Sequence[Any]) -> list[Any]:
        if any(m.get("id") == message["id"] for m in messages):
            return list(messages)
        return [*messages, message][-MAX_MESSAGES:]

    return add


def _field(payload: Mapping[str, Any], name: str) -> str:
    """The first value of a form field (PyView hands forms over as lists of values)."""
    value = payload.get(name, [""])
    return str(value[0] if isinstance(value, list) and value else value or "")


def _typing_text(assigns: Mapping[str, Any]) -> str:
    """ "alice is typing…", leaving out the viewer and entries a crashed node left behind."""
    room = assigns["live_assigns"].room
    typing: Mapping[str, float] = room.typing if "typing" in room else {}
    fresh = time.time() - 2 * TYPING_SECONDS
    names = sorted(n for n, since in typing.items() if since > fresh and n != assigns["nick"])
    if not names:
        return ""
    return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} typing…"
