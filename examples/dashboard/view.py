"""The dashboard page: live, and read-only for whoever views it."""

from __future__ import annotations

from typing import Any

from pyview import LiveView  # type: ignore[import-untyped]

from livestate import PermissionDeniedError
from livestate.pyview import live_reset, live_state

from .state import MAIN, Dashboard


class DashboardView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """Shows a Dashboard live state; its template is view.html."""

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {"key": MAIN, "error": ""}

    async def handle_params(self, socket: Any, key: str = MAIN) -> None:
        socket.context["key"] = key[:64]
        await live_state(socket, Dashboard, socket.context["key"])

    async def handle_event(self, event: str, payload: dict[str, Any], socket: Any) -> None:
        if event == "reset":
            try:
                await live_reset(socket)
            except PermissionDeniedError:
                # The ACL at work: a viewer is a group member, and the group may only read.
                socket.context["error"] = "Viewers cannot change the dashboard."
