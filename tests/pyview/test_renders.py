"""Renders after changes: one task per loop turn runs them, and none waits for another."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pyview.template import LiveTemplate, Template  # type: ignore[import-untyped]

from livestate import LiveState, Node
from livestate.pyview import live_state

from ..support import eventually
from ..support.pyview import RecordingView, RecordingWebSocket, connected_socket

TEMPLATE = LiveTemplate(
    Template(
        "<ul>{% for m in live_assigns.messages %}<li>{{ m }}</li>{% endfor %}</ul>",
        template_id="test_renders",
    )
)


class RenderedFeed(LiveState):
    """A list of messages."""

    ttl = 0.05

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": []}


class FeedView(RecordingView):
    """A view of a feed that records its InfoEvents."""

    template = TEMPLATE


class StuckWebSocket(RecordingWebSocket):
    """A browser that stops reading: sending waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = False

    async def send_text(self, text: str) -> None:
        self.waiting = True
        await self.release.wait()
        self.waiting = False
        await super().send_text(text)


async def view_of(key: str, websocket: RecordingWebSocket, view: FeedView | None = None) -> Any:
    """Mount a view of `key` on a connected socket and render it as PyView's join does.
    The socket is returned: the test must hold it (livestate holds sockets weakly)."""
    socket = connected_socket(view or FeedView(), websocket)
    await live_state(socket, RenderedFeed, key)
    socket.prev_rendered = await socket.render_with_components()
    return socket


def shows(websocket: RecordingWebSocket, text: str) -> bool:
    return any(text in json.dumps(diff) for diff in websocket.diffs())


async def test_a_view_whose_browser_stops_reading_holds_up_no_other(memory_node: Node) -> None:
    """Views are rendered in one task per loop turn; a render that waits on its socket
    hands the rest to a new task, so every other view gets its diff meanwhile, and the
    stuck one gets its own once its browser reads again."""
    stuck = StuckWebSocket()
    before = [RecordingWebSocket() for _ in range(3)]
    after = [RecordingWebSocket() for _ in range(3)]
    sockets = [await view_of("f", websocket) for websocket in (*before, stuck, *after)]
    await RenderedFeed.append("f", "messages", "first")
    await eventually(lambda: all(shows(ws, "first") for ws in (*before, *after)))
    assert stuck.waiting and not stuck.diffs()
    await RenderedFeed.append("f", "messages", "second")
    await eventually(lambda: all(shows(ws, "second") for ws in (*before, *after)))
    stuck.release.set()
    await eventually(lambda: shows(stuck, "second"))
    # Its next render covered "second" alone: the one it was stuck in had "first".
    await eventually(lambda: len(stuck.diffs()) == 2)
    events = sockets[len(before)].liveview.infos
    assert [[change.value[-1] for change in event.payload] for event in events] == [
        ["first"],
        ["second"],
    ]


async def test_changes_of_one_loop_turn_make_one_render_per_view(memory_node: Node) -> None:
    """Writes that land before the render task runs (memory:// applies them without
    yielding) are covered by one render per view, each handed every change in order."""
    websockets = [RecordingWebSocket() for _ in range(4)]
    sockets = [await view_of("g", websocket) for websocket in websockets]
    for n in range(3):
        await RenderedFeed.append("g", "messages", f"m{n}")
    await eventually(lambda: all(len(websocket.diffs()) == 1 for websocket in websockets))
    for socket in sockets:
        [event] = socket.liveview.infos
        assert [change.value[-1] for change in event.payload] == ["m0", "m1", "m2"]


async def test_a_render_that_raises_leaves_the_others_rendering(memory_node: Node) -> None:
    """A view whose render raises is logged; the views after it in the same turn render."""

    class Broken(FeedView):
        async def handle_info(self, event: Any, socket: Any) -> None:
            raise RuntimeError("broken view")

    broken = await view_of("h", RecordingWebSocket(), Broken())
    healthy = RecordingWebSocket()
    kept = await view_of("h", healthy)
    await RenderedFeed.append("h", "messages", "still here")
    await eventually(lambda: shows(healthy, "still here"))
    assert broken.liveview is not kept.liveview
