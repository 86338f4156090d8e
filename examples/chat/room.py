"""A chat room page: nickname, messages, who is online and typing, and a guarded clear."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyview import LiveView, is_connected  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, template_file  # type: ignore[import-untyped]

from livestate import Change, LiveStateError
from livestate.pyview import (
    LIVE_STATE_EVENT,
    live_call,
    live_client,
    live_state,
    live_track,
)

from .node import PAGES, served_by
from .state import (
    LOBBY,
    MAX_TEXT,
    TYPING_SECONDS,
    ChatRoom,
    Lobby,
    nick_name,
    room_name,
)

TEMPLATE = template_file(str(Path(__file__).with_suffix(".html")))
CLIENT_ID = re.compile(r"[0-9a-f]{32}")  # the id chat.js gives a kept post


class RoomView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """One visitor's view of one room. PyView makes one instance per page (and per join).

    It binds two live states by name and tracks its visitor in the presence of
    both: the room (`live_assigns.room.messages`; `live_presence.room` is who is
    online, nick -> {"typing": bool} per page) and the lobby (tracked as the
    room, so that the lobby counts this page).

    It changes the room only through ChatRoom's actions (`live_call`), as the
    nickname this view holds: `live_state`'s identity, which no event can set.
    """

    def __init__(self) -> None:
        super().__init__()
        self._typing_timer: asyncio.TimerHandle | None = None
        self._is_typing = False  # whether this page's presence says it is typing
        self._tasks: set[asyncio.Task[None]] = set()

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {
            "room": "",
            "nick": "",
            "error": "",
            "notice": "",
            "here": "",
            "tracked": [],
            "version": 0,
            "confirm_clear": False,
            **served_by(),
        }

    async def handle_params(self, socket: Any, room: str, nick: str = "") -> None:
        context = socket.context
        context["room"] = room = room_name(room)
        context["nick"] = nick_name(nick)
        # The room comes from the URL only: every write of this view goes to the
        # room it joined here, whatever a browser puts into its events. The nickname
        # is the view's identity in the room: its actions (a post) act as it, and a
        # new nickname binds the room anew.
        await live_state(socket, ChatRoom, room, as_="room", identity=context["nick"] or None)
        await live_state(socket, Lobby, LOBBY, as_="lobby")
        client = live_client(socket, as_="room")
        context["version"] = client.version if client else 0
        if is_connected(socket):
            # Presence: the lobby counts this page in its room; the room lists its nickname.
            # handle_params runs again on each push_patch: track only what changed.
            if context["tracked"] != [room, context["nick"]]:
                context["tracked"] = [room, context["nick"]]
                await live_track(socket, room, {"nick": context["nick"]}, as_="lobby")
                if context["nick"]:
                    meta = {"typing": self._is_typing}
                    await live_track(socket, context["nick"], meta, as_="room")
            if context["here"] != room:
                if context["here"]:
                    PAGES[context["here"]] -= 1
                PAGES[room] += 1
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
            if text:
                cid = _field(payload, "cid")
                args = {"text": text, "cid": cid if CLIENT_ID.fullmatch(cid) else None}
                try:
                    # The action stamps this view's nickname, whatever else the payload holds.
                    await live_call(socket, "post", args, as_="room")
                except LiveStateError as error:
                    context["error"] = str(error)
                else:
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
            await live_call(socket, "clear", as_="room")
        self._note_version(socket)

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        if event.name == LIVE_STATE_EVENT:
            changes: tuple[Change, ...] = event.payload
            room = socket.context["room"]
            if any(_cleared(change, room) for change in changes):
                socket.context["notice"] = "Someone cleared the room."
        self._note_version(socket)

    async def disconnect(self, socket: Any) -> None:
        if self._typing_timer:
            self._typing_timer.cancel()
        # Detaching (right after this) takes the page out of both presences.
        if socket.context["here"]:
            PAGES[socket.context["here"]] -= 1
            socket.context["here"] = ""

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> LiveRender:
        here = assigns["live_presence"].room  # nick -> one meta per page, on any node
        online = [
            {"name": nick, "tabs": len(metas), "typing": nick != assigns["nick"] and _typing(metas)}
            for nick, metas in sorted(here.items())
        ]
        extra = {"typing_text": _typing_text(here, assigns["nick"]), "online": online}
        return LiveRender(TEMPLATE, {**assigns, **extra}, meta)

    def _note_version(self, socket: Any) -> None:
        client = live_client(socket, as_="room")
        if client is not None:
            socket.context["version"] = client.version

    async def _typing(self, socket: Any) -> None:
        """Show this visitor as typing (a meta update), until TYPING_SECONDS without a keystroke."""
        if not self._is_typing:
            self._is_typing = True
            await live_track(socket, socket.context["nick"], {"typing": True}, as_="room")
        if self._typing_timer:
            self._typing_timer.cancel()
        loop = asyncio.get_running_loop()
        self._typing_timer = loop.call_later(
            TYPING_SECONDS, lambda: self._spawn(self._stop_typing(socket))
        )

    async def _stop_typing(self, socket: Any) -> None:
        if not self._is_typing:
            return
        self._is_typing = False
        if is_connected(socket) and live_client(socket, as_="room") is not None:
            await live_track(socket, socket.context["nick"], {"typing": False}, as_="room")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _cleared(change: Change, room: str) -> bool:
    """Whether `change` is the room's `clear` action: its messages set to none."""
    return change.key == room and change.prop == "messages" and change.value == []


def _field(payload: Mapping[str, Any], name: str) -> str:
    """The first value of a form field (PyView hands forms over as lists of values)."""
    value = payload.get(name, [""])
    return str(value[0] if isinstance(value, list) and value else value or "")


def _typing(metas: Sequence[Any]) -> bool:
    """Whether any tab of a person says it is typing (each tab has its own meta)."""
    return any(isinstance(meta, Mapping) and meta.get("typing") is True for meta in metas)


def _typing_text(here: Mapping[str, Sequence[Any]], viewer: str) -> str:
    """ "alice is typing…": the others whose presence, in any of their tabs, says so."""
    names = sorted(nick for nick, metas in here.items() if nick != viewer and _typing(metas))
    if not names:
        return ""
    return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} typing…"
