"""The lobby page: every room with people in it, and how many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyview import LiveView  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, template_file  # type: ignore[import-untyped]

from livestate.pyview import live_state

from .state import LOBBY, Lobby, room_name

TEMPLATE = template_file(str(Path(__file__).with_suffix(".html")))


class LobbyView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """Lists the rooms from the Lobby live state; live, so counts follow people in and out."""

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {}
        await live_state(socket, Lobby, LOBBY)

    async def handle_event(self, event: str, payload: dict[str, Any], socket: Any) -> None:
        if event == "go":
            room = room_name(payload.get("room", [""])[0])
            await socket.redirect(f"/rooms/{room}")

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> LiveRender:
        counts = assigns["live_assigns"].rooms
        rooms = [{"name": name, "count": counts[name]} for name in sorted(counts)]
        return LiveRender(TEMPLATE, {**assigns, "rooms": rooms}, meta)
