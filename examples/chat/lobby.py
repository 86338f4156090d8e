"""The lobby page: every room with people in it, and how many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyview import LiveView  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, template_file  # type: ignore[import-untyped]

from livestate.pyview import live_client, live_state

from .node import served_by
from .state import LOBBY, Lobby, room_name

TEMPLATE = template_file(str(Path(__file__).with_suffix(".html")))


class LobbyView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """Lists the rooms from the Lobby's presence: each room page is tracked there as its room.

    Live, so counts follow people in and out; a node that dies takes its pages
    out within its lease, with no heartbeat of the chat's own.
    """

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {"version": 0, **served_by()}
        await live_state(socket, Lobby, LOBBY)
        client = live_client(socket)
        socket.context["version"] = client.version if client else 0

    async def handle_event(self, event: str, payload: dict[str, Any], socket: Any) -> None:
        if event == "go":
            room = room_name(payload.get("room", [""])[0])
            # Live navigation: the room joins over this same WebSocket.
            await socket.push_navigate(f"/rooms/{room}")

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        client = live_client(socket)
        if client is not None:
            socket.context["version"] = client.version

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> LiveRender:
        # live_presence: room -> one meta per open page of that room, on any node.
        pages = assigns["live_presence"]
        rooms = [{"name": room, "count": len(pages[room])} for room in sorted(pages)]
        people = sum(room["count"] for room in rooms)
        return LiveRender(TEMPLATE, {**assigns, "rooms": rooms, "people": people}, meta)
