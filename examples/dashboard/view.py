"""The dashboard page: live, with a sparkline per metric, and read-only for whoever views it."""

from __future__ import annotations

import os
import socket as sockets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyview import LiveView  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, template_file  # type: ignore[import-untyped]

from livestate import PermissionDeniedError
from livestate.pyview import live_client, live_reset, live_state

from .state import HISTORY, MAIN, Dashboard

TEMPLATE = template_file(str(Path(__file__).with_name("view.html")))
WIDTH, HEIGHT = 240, 56


class DashboardView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """Shows a Dashboard live state; its template is view.html."""

    async def mount(self, socket: Any, session: dict[str, Any]) -> None:
        socket.context = {
            "key": MAIN,
            "error": "",
            "version": 0,
            "node": os.environ.get("LIVESTATE_DEMO_NODE") or sockets.gethostname(),
            "pid": os.getpid(),
        }

    async def handle_params(self, socket: Any, key: str = MAIN) -> None:
        socket.context["key"] = key[:64]
        await live_state(socket, Dashboard, socket.context["key"])
        self._note_version(socket)

    async def handle_event(self, event: str, payload: dict[str, Any], socket: Any) -> None:
        if event == "reset":
            try:
                await live_reset(socket)
            except PermissionDeniedError:
                # The ACL at work: a viewer is a group member, and the group may only read.
                socket.context["error"] = "Viewers cannot change the dashboard."

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        self._note_version(socket)

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> LiveRender:
        live = assigns["live_assigns"]
        metrics = [
            _metric("load", "Load average", live.load, "", _get(live, "load_history")),
            _metric("memory", "Memory in use", live.memory, "%", _get(live, "memory_history")),
        ]
        status = str(live.status)
        tone = {"green": "ok", "ok": "ok", "amber": "warn", "red": "bad", "down": "bad"}
        extra = {"metrics": metrics, "tone": tone.get(status.lower(), "neutral")}
        return LiveRender(TEMPLATE, {**assigns, **extra}, meta)

    def _note_version(self, socket: Any) -> None:
        client = live_client(socket)
        if client is not None:
            socket.context["version"] = client.version


def _get(live: Any, name: str) -> Sequence[float]:
    return live[name] if name in live else []


def _metric(
    name: str, label: str, value: Any, unit: str, history: Sequence[float]
) -> dict[str, Any]:
    """One metric card: its current value and an SVG polyline of its last HISTORY values."""
    return {
        "id": name,
        "label": label,
        "value": value if value is not None else 0,
        "unit": unit,
        "points": sparkline(history),
        "low": min(history) if history else 0,
        "high": max(history) if history else 0,
        "count": len(history),
    }


def sparkline(values: Sequence[float], width: int = WIDTH, height: int = HEIGHT) -> str:
    """The `points` of an SVG polyline drawing `values` left to right, scaled to fit.

    The newest value is at the right edge; a flat series is a line in the middle.
    """
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    step = width / max(HISTORY - 1, 1)
    start = width - step * (len(values) - 1)
    points = []
    for index, value in enumerate(values):
        y = height / 2 if span == 0 else height - 4 - (value - low) / span * (height - 8)
        points.append(f"{start + index * step:.1f},{y:.1f}")
    return " ".join(points)
