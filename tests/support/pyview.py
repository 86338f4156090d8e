"""What the PyView tests share: a recording stand-in for Starlette's WebSocket, and a
view that records what it is sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from pyview import LiveView  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.instrumentation import NoOpInstrumentation  # type: ignore[import-untyped]
from pyview.live_socket import ConnectedLiveViewSocket  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, LiveTemplate  # type: ignore[import-untyped]


class RecordingView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """A view that renders its class's `template` and records every InfoEvent it gets."""

    template: ClassVar[LiveTemplate]

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[InfoEvent] = []

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        self.infos.append(event)

    async def render(self, assigns: Any, meta: PyViewMeta) -> LiveRender:
        return LiveRender(self.template, assigns, meta)


class RecordingWebSocket:
    """Stands in for Starlette's WebSocket under PyView's socket: records what PyView
    sends, hands out queued input."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    def diffs(self) -> list[dict[str, Any]]:
        """The diffs sent, in order."""
        return [message[4] for message in self.sent if message[3] == "diff"]

    def diff_texts(self) -> list[str]:
        """The diffs sent, as JSON text (to look for a word in)."""
        return [json.dumps(diff) for diff in self.diffs()]


def connected_socket(
    view: LiveView[dict[str, Any]], websocket: RecordingWebSocket | None = None
) -> ConnectedLiveViewSocket[dict[str, Any]]:
    """A connected PyView socket for `view`, as PyView's join makes one, with an empty context."""
    socket: ConnectedLiveViewSocket[dict[str, Any]] = ConnectedLiveViewSocket(
        websocket or RecordingWebSocket(),
        f"lv:phx-{id(view)}",
        view,
        AsyncIOScheduler(),
        NoOpInstrumentation(),
    )
    socket.context = {}
    return socket
