"""Presence in PyView: `live_track`, `live_untrack` and `live_presence`, with PyView's own sockets.

The core's presence is tested in tests/test_presence.py; these tests check the
integration: what templates see, re-renders on joins, meta updates and leaves,
named bindings, the HTTP render, and two nodes over a real Valkey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from pyview.instrumentation import NoOpInstrumentation  # type: ignore[import-untyped]
from pyview.live_socket import ConnectedLiveViewSocket, UnconnectedSocket  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, LiveTemplate, Template  # type: ignore[import-untyped]

import livestate
from livestate import InvalidValueError, LiveState, Node
from livestate.pyview import (
    LIVE_STATE_EVENT,
    LiveAssigns,
    LivePresence,
    live_state,
    live_track,
    live_untrack,
)
from livestate.testing import ServerProcess

from ..support import eventually
from ..support.pyview import RecordingView, RecordingWebSocket

TEMPLATE = LiveTemplate(
    Template(
        "<ul>{% for who, metas in live_presence.items() %}"
        "<li>{{ who }}:{{ metas|len }}:{% for m in metas %}{{ m.status }};{% endfor %}</li>"
        "{% endfor %}</ul><p>{{ live_presence|len }} here</p>",
        template_id="test_pyview_presence",
    )
)


class Room(LiveState):
    """A room: presence needs only an attached client (group read)."""

    ttl = 0.05
    name = "PresenceRoom"

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": []}


class View(RecordingView):
    """Renders who is here, and records every InfoEvent."""

    template = TEMPLATE


Socket = Any  # ConnectedLiveViewSocket[dict[str, Any]]: PyView ships no types


async def connect(key: str = "a") -> tuple[Socket, View, RecordingWebSocket]:
    """Mount a view on a connected socket bound to `key`, rendered as PyView's join does."""
    websocket = RecordingWebSocket()
    view = View()
    socket = ConnectedLiveViewSocket(
        websocket, f"lv:phx-{id(view)}", view, AsyncIOScheduler(), NoOpInstrumentation()
    )
    socket.context = {}
    await live_state(socket, Room, key)
    socket.prev_rendered = await socket.render_with_components()
    return socket, view, websocket


def html(socket: Any) -> str:
    """The view's HTML as its next render would send it."""
    text: str = LiveRender(TEMPLATE, socket.context, PyViewMeta()).text()
    return text


async def test_track_shows_in_own_presence_when_it_returns(memory_node: Node) -> None:
    """After live_track returns, the tracker's own live_presence (and render) shows it."""
    socket, _, _ = await connect()
    await live_track(socket, "ann", {"status": "away"})
    presence = socket.context["live_presence"]
    assert isinstance(presence, LivePresence)
    assert dict(presence) == {"ann": [{"status": "away"}]}
    assert "<li>ann:1:away;</li>" in html(socket)
    assert "<p>1 here</p>" in html(socket)


async def test_join_meta_update_and_leave_rerender_other_views(memory_node: Node) -> None:
    """Another view's join, meta update and close each re-render this view through PyView."""
    watcher, view, websocket = await connect()
    other, _, _ = await connect()
    await live_track(other, "bob", {"status": "here"})
    await eventually(lambda: any("bob" in d and "here" in d for d in websocket.diff_texts()))
    await live_track(other, "bob", {"status": "busy"})
    await eventually(lambda: any("busy" in d for d in websocket.diff_texts()))
    assert "<li>bob:1:busy;</li>" in html(watcher)
    kinds = [change.kind for info in view.infos for change in info.payload]
    assert view.infos[-1].name == LIVE_STATE_EVENT and set(kinds) == {"presence"}
    await other.close()  # what PyView does when the tab goes away
    await eventually(lambda: "bob" not in watcher.context["live_presence"])
    await eventually(lambda: '"0"' in websocket.diff_texts()[-1])
    assert "<p>0 here</p>" in html(watcher)


async def test_tabs_of_one_identity_group_under_it(memory_node: Node) -> None:
    """Two views tracked as one identity show as that identity with two metas, in join order."""
    first, _, _ = await connect()
    second, _, _ = await connect()
    await live_track(first, "ann", {"status": "tab1"})
    await live_track(second, "ann", {"status": "tab2"})
    await eventually(lambda: len(first.context["live_presence"].get("ann", ())) == 2)
    assert "<li>ann:2:tab1;tab2;</li>" in html(first)
    await live_untrack(first)
    await eventually(lambda: first.context["live_presence"]["ann"] == [{"status": "tab2"}])


async def test_untrack_and_identity_change(memory_node: Node) -> None:
    """live_untrack leaves; tracking again as another identity leaves the old one first."""
    socket, _, _ = await connect()
    await live_track(socket, "ann", {"status": "x"})
    await live_track(socket, "anne", {"status": "x"})
    assert list(socket.context["live_presence"]) == ["anne"]
    await live_untrack(socket)
    assert dict(socket.context["live_presence"]) == {}
    await live_untrack(socket)  # not tracked: nothing to do


async def test_http_render_reads_presence_and_track_waits_for_the_websocket(
    memory_node: Node,
) -> None:
    """The first HTTP render shows who is there (server API) and tracks nothing itself."""
    tracked, _, _ = await connect()
    await live_track(tracked, "ann", {"status": "on"})
    socket: UnconnectedSocket[dict[str, Any]] = UnconnectedSocket()
    socket.context = {}
    await live_state(socket, Room, "a")
    await live_track(socket, "ghost", {"status": "never"})
    assert "<li>ann:1:on;</li>" in html(socket)
    assert dict(await Room.presence("a")) == {"ann": [{"status": "on"}]}


async def test_named_bindings_have_their_own_presence(memory_node: Node) -> None:
    """`live_presence.lobby` is the presence of the live state bound as `lobby`."""
    socket, _, _ = await connect("a")
    await live_state(socket, Room, "lobby", as_="lobby")
    await live_track(socket, "a", {"status": "in a"}, as_="lobby")
    await live_track(socket, "ann", {"status": "default"})
    presence = socket.context["live_presence"]
    assert dict(presence.lobby) == {"a": [{"status": "in a"}]}
    assert dict(presence) == {"ann": [{"status": "default"}]}
    assert presence.ann == [{"status": "default"}], "an identity reads as an attribute too"
    template = Template("{{ live_presence.lobby|len }}/{{ live_presence.ann|len }}")
    assert template.render(socket.context) == "1/1"


async def test_binding_another_key_leaves_the_old_presence(memory_node: Node) -> None:
    """live_state with another key detaches, so the old key's presence drops the view."""
    socket, _, _ = await connect("a")
    await live_track(socket, "ann", {"status": "a"})
    await live_state(socket, Room, "b")
    assert dict(await Room.presence("a")) == {}
    assert dict(socket.context["live_presence"]) == {}


async def test_misuse_raises_clear_errors(memory_node: Node) -> None:
    """Tracking before live_state names the call to make; a bad identity is InvalidValueError."""
    socket, _, _ = await connect()
    bare: UnconnectedSocket[dict[str, Any]] = UnconnectedSocket()
    bare.context = {}
    with pytest.raises(RuntimeError, match="live_state"):
        await live_track(bare, "ann", {})
    with pytest.raises(InvalidValueError):
        await live_track(socket, "", {})
    with pytest.raises(InvalidValueError):
        await live_track(socket, "ann", {"blob": "x" * 3000})
    with pytest.raises(AttributeError, match="read-only"):
        socket.context["live_presence"].ann = ()


@dataclass
class Context:
    """A dataclass context declaring both fields."""

    live_assigns: LiveAssigns = field(default_factory=LiveAssigns)
    live_presence: LivePresence = field(default_factory=LivePresence)


async def test_dataclass_context_gets_live_presence(memory_node: Node) -> None:
    """A dataclass context with a live_presence field renders it (PyView renders fields only)."""
    tracked, _, _ = await connect()
    await live_track(tracked, "ann", {"status": "dc"})
    socket: UnconnectedSocket[Context] = UnconnectedSocket()
    socket.context = Context()
    await live_state(socket, Room, "a")
    assert "<li>ann:1:dc;</li>" in TEMPLATE.render(socket.context, PyViewMeta())
    assert dict(LivePresence()) == {}


async def test_presence_crosses_nodes_over_redis(redis_server: ServerProcess) -> None:
    """A view tracked on one node re-renders a view on another, and leaves it on close."""
    async with Node(redis_server.url) as first, Node(redis_server.url) as second:
        key = f"x-{id(first)}"
        with livestate.use(first):
            watcher, _, websocket = await connect(key)
        with livestate.use(second):
            other, _, _ = await connect(key)
            await live_track(other, "zoe", {"status": "far"})
        await eventually(lambda: any("zoe" in d and "far" in d for d in websocket.diff_texts()), 2)
        assert "<li>zoe:1:far;</li>" in html(watcher)
        with livestate.use(second):
            await other.close()
        await eventually(lambda: "zoe" not in watcher.context["live_presence"], within=2)
        with livestate.use(first):
            await watcher.close()
