"""The PyView integration, driven through PyView's own socket classes."""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import json
import sys
import weakref
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from pyview.instrumentation import NoOpInstrumentation  # type: ignore[import-untyped]
from pyview.live_socket import ConnectedLiveViewSocket, UnconnectedSocket  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, LiveTemplate, Template  # type: ignore[import-untyped]

from livestate import InvalidValueError, LiveState, Node, NotFoundError, PermissionDeniedError
from livestate.pyview import (
    LIVE_STATE_EVENT,
    LiveAssigns,
    OriginCheckMiddleware,
    live_append,
    live_assign,
    live_client,
    live_delete,
    live_increment,
    live_reset,
    live_state,
    live_update,
)

from ..support import eventually
from ..support.pyview import RecordingView, RecordingWebSocket, connected_socket

TTL = 0.05

TEMPLATE = LiveTemplate(
    Template(
        "<h1>{{ live_assigns.title }}</h1>"
        "<ul>{% for m in live_assigns.messages %}<li>{{ m.text }}</li>{% endfor %}</ul>"
        "<p>{{ live_assigns.items }}</p>",
        template_id="test_pyview",
    )
)


class Room(LiveState):
    """A room whose state ends soon after its last client leaves."""

    ttl = TTL

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": f"room {key}", "messages": [], "items": "no clash"}


class ReadOnlyRoom(LiveState):
    """Attached clients may only read; public callers may do anything."""

    ttl = TTL
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": "read only", "messages": []}


class RoomView(RecordingView):
    """A view of a room that records every InfoEvent it gets."""

    template = TEMPLATE


async def connect(
    key: str = "a", spec: type[LiveState] = Room, websocket: RecordingWebSocket | None = None
) -> tuple[ConnectedLiveViewSocket[dict[str, Any]], RoomView, RecordingWebSocket]:
    """Mount a view on a connected socket and render it as PyView's join does."""
    websocket = websocket or RecordingWebSocket()
    view = RoomView()
    socket = connected_socket(view, websocket)
    await live_state(socket, spec, key)
    socket.prev_rendered = await socket.render_with_components()
    return socket, view, websocket


def render_text(socket: Any, view: RoomView) -> str:
    """The HTML of the view's current render, as PyView's HTTP response has it."""
    html: str = LiveRender(TEMPLATE, socket.context, PyViewMeta()).text()
    return html


async def quiet(seconds: float = 0.02) -> None:
    """Let a moment pass, where a test checks that nothing happens (or counts after a burst)."""
    await asyncio.sleep(seconds)


async def test_unconnected_render_starts_state_without_attaching(memory_node: Node) -> None:
    """The HTTP render starts the live state and shows it, but holds no client, so the TTL runs."""
    socket: UnconnectedSocket[dict[str, Any]] = UnconnectedSocket()
    socket.context = {}
    await live_state(socket, Room, "a")
    assert "<h1>room a</h1>" in render_text(socket, RoomView())
    assert live_client(socket) is None
    assert (await Room.get("a", "title")) == "room a"
    await asyncio.sleep(TTL * 6)
    with pytest.raises(NotFoundError):
        await Room.get("a")


async def test_template_reads_properties_as_attributes(memory_node: Node) -> None:
    """`live_assigns.messages` iterates, and a property named like a dict method still reads."""
    await Room.start("a")
    await Room.append("a", "messages", {"text": "hello"})
    socket, view, _ = await connect("a")
    html = render_text(socket, view)
    assert "<li>hello</li>" in html
    assert "<p>no clash</p>" in html
    assert socket.context["live_assigns"].messages[0]["text"] == "hello"


@dataclass
class DataclassContext:
    """A dataclass context with the live_assigns field the integration asks for."""

    nickname: str = ""
    live_assigns: LiveAssigns = field(default_factory=LiveAssigns)


class PlainContext:
    """An ordinary object as context."""

    live_assigns: LiveAssigns


async def test_dataclass_context_renders_over_http_and_websocket(memory_node: Node) -> None:
    """A dataclass context shows live_assigns in both PyView render paths (asdict and serialize)."""
    await Room.start("a")
    await Room.append("a", "messages", {"text": "dc"})
    socket: UnconnectedSocket[DataclassContext] = UnconnectedSocket()
    socket.context = DataclassContext()
    await live_state(socket, Room, "a")
    assert "<li>dc</li>" in TEMPLATE.render(socket.context, PyViewMeta())
    tree = TEMPLATE.tree(socket.context, PyViewMeta())
    assert "dc" in json.dumps(tree)


async def test_dataclass_context_without_field_is_refused(memory_node: Node) -> None:
    """A dataclass context lacking a live_assigns field raises TypeError naming the fix."""

    @dataclass
    class Bare:
        nickname: str = ""

    socket: UnconnectedSocket[Bare] = UnconnectedSocket()
    socket.context = Bare()
    with pytest.raises(TypeError, match="live_assigns field"):
        await live_state(socket, Room, "a")


async def test_object_context_gets_attribute(memory_node: Node) -> None:
    """A plain object context gets a live_assigns attribute."""
    socket: UnconnectedSocket[PlainContext] = UnconnectedSocket()
    socket.context = PlainContext()
    await live_state(socket, Room, "a")
    assert socket.context.live_assigns.title == "room a"


async def test_change_rerenders_and_reaches_handle_info(memory_node: Node) -> None:
    """A write by someone else sends the view a diff and hands the change to handle_info."""
    _, view, websocket = await connect("a")
    await Room.append("a", "messages", {"text": "from elsewhere"})
    await eventually(lambda: any("from elsewhere" in json.dumps(d) for d in websocket.diffs()))
    assert view.infos and view.infos[-1].name == LIVE_STATE_EVENT
    changes = view.infos[-1].payload
    assert [(c.kind, c.prop) for c in changes] == [("updated", "messages")]


async def test_burst_of_changes_makes_few_renders(memory_node: Node) -> None:
    """200 writes in a burst lead to a handful of renders, and the last shows all of them."""
    socket, view, websocket = await connect("a")
    await asyncio.gather(*(Room.append("a", "messages", {"text": f"m{i}"}) for i in range(200)))
    await eventually(lambda: sum(len(event.payload) for event in view.infos) == 200)
    assert 1 <= len(websocket.diffs()) <= 10
    assert sum(len(event.payload) for event in view.infos) == 200
    assert render_text(socket, view).count("<li>") == 200


async def test_writes_show_in_writers_render_on_return(memory_node: Node) -> None:
    """After each live_* write returns, the writer's own live_assigns already shows it."""
    socket, view, _ = await connect("a")
    await live_append(socket, "messages", {"text": "mine"}, max_len=2)
    assert "<li>mine</li>" in render_text(socket, view)
    await live_assign(socket, "title", "renamed")
    assert socket.context["live_assigns"].title == "renamed"
    assert await live_increment(socket, "visits", 2) == 2
    assert await live_update(socket, "visits", lambda v: v * 10) == 20
    await live_delete(socket, "visits")
    assert "visits" not in socket.context["live_assigns"]
    await live_reset(socket)
    assert socket.context["live_assigns"].title == "room a"


async def test_writes_are_group_writes(memory_node: Node) -> None:
    """A view writes as a group member: where the group may only read, live_assign is denied."""
    socket, _, _ = await connect("a", ReadOnlyRoom)
    with pytest.raises(PermissionDeniedError):
        await live_assign(socket, "title", "nope")
    assert socket.context["live_assigns"].title == "read only"


async def test_unconnected_write_goes_through(memory_node: Node) -> None:
    """A write on the HTTP render's socket lands and shows in its own live_assigns."""
    socket: UnconnectedSocket[dict[str, Any]] = UnconnectedSocket()
    socket.context = {}
    await live_state(socket, Room, "a")
    await live_assign(socket, "title", "set over HTTP")
    assert socket.context["live_assigns"].title == "set over HTTP"
    assert await Room.get("a", "title") == "set over HTTP"


async def test_write_before_live_state_says_what_to_do(memory_node: Node) -> None:
    """Writing on a socket that is bound to nothing raises RuntimeError naming live_state."""
    socket: UnconnectedSocket[dict[str, Any]] = UnconnectedSocket()
    socket.context = {}
    with pytest.raises(RuntimeError, match="live_state"):
        await live_assign(socket, "title", "x")


async def test_navigation_detaches_from_old_key(memory_node: Node) -> None:
    """live_state with another key detaches from the old one: its TTL runs, its writes stay out."""
    socket, _, websocket = await connect("a")
    old = live_client(socket)
    await live_state(socket, Room, "b")
    assert old is not None and not old.attached
    assert socket.context["live_assigns"].title == "room b"
    sent = len(websocket.sent)
    await asyncio.sleep(TTL * 6)
    with pytest.raises(NotFoundError):
        await Room.get("a")
    await Room.append("b", "messages", {"text": "in b"})
    await eventually(lambda: len(websocket.sent) == sent + 1)


async def test_same_key_again_keeps_client(memory_node: Node) -> None:
    """Calling live_state again with the same key (a patch) keeps the same client."""
    socket, _, _ = await connect("a")
    client = live_client(socket)
    await live_state(socket, Room, "a")
    assert live_client(socket) is client


async def test_disconnect_detaches_and_forgets_socket(memory_node: Node) -> None:
    """Closing the socket detaches its client, ends the state after its TTL and frees the socket."""
    socket, _, websocket = await connect("a")
    client = live_client(socket)
    await socket.close()
    assert client is not None and not client.attached
    sent = len(websocket.sent)
    await asyncio.sleep(TTL * 6)
    with pytest.raises(NotFoundError):
        await Room.get("a")
    assert len(websocket.sent) == sent
    reference = weakref.ref(socket)
    del socket, client
    gc.collect()
    assert reference() is None


async def test_websocket_end_closes_socket_pyview_forgot(memory_node: Node) -> None:
    """A socket PyView never closes (after live navigation) is detached when its WebSocket ends."""
    websocket = RecordingWebSocket()
    first, _, _ = await connect("a", websocket=websocket)
    await first.close()  # phx_leave
    second, _, _ = await connect("b", websocket=websocket)  # navigation join, never closed
    client = live_client(second)
    await websocket.incoming.put({"type": "websocket.disconnect", "code": 1001})
    await websocket.receive()  # PyView's loop reads the disconnect, then closes `first` only
    await eventually(lambda: client is not None and not client.attached)
    assert not second.connected


async def test_stop_reaches_view_and_keeps_last_state(memory_node: Node) -> None:
    """Stopping the live state tells handle_info, keeps the last state shown and refuses writes."""
    socket, view, _ = await connect("a")
    await Room.append("a", "messages", {"text": "last"})
    await Room.stop("a")
    await eventually(lambda: bool(view.infos) and view.infos[-1].payload[-1].kind == "stopped")
    assert "<li>last</li>" in render_text(socket, view)
    with pytest.raises(RuntimeError, match="stopped"):
        await live_assign(socket, "title", "x")
    await live_state(socket, Room, "a")  # attaches anew
    assert socket.context["live_assigns"].messages == []


async def test_live_assigns_are_read_only(memory_node: Node) -> None:
    """Setting an attribute on live_assigns raises, pointing at live_assign."""
    socket, _, _ = await connect("a")
    with pytest.raises(AttributeError, match="live_assign"):
        socket.context["live_assigns"].title = "x"
    with pytest.raises(AttributeError, match="no property"):
        _ = socket.context["live_assigns"].missing


def test_missing_pyview_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing livestate.pyview without PyView raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "pyview", None)
    monkeypatch.delitem(sys.modules, "livestate.pyview")
    with pytest.raises(ImportError, match=r"pip install 'livestate\[pyview\]'"):
        importlib.import_module("livestate.pyview")


async def origin_check(headers: list[tuple[bytes, bytes]], allowed: tuple[str, ...] = ()) -> bool:
    """Run one WebSocket handshake through OriginCheckMiddleware; True if the app got it."""
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "websocket.connect"}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    middleware = OriginCheckMiddleware(app, allowed_origins=allowed)
    await middleware({"type": "websocket", "headers": headers}, receive, send)
    if not reached:
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Bad origin"}]
    return bool(reached)


async def test_origin_check() -> None:
    """Handshakes from the app's own host or an allowed origin pass; other sites are refused."""
    host = (b"host", b"127.0.0.1:8000")
    assert await origin_check([host, (b"origin", b"http://127.0.0.1:8000")])
    assert await origin_check([host])
    assert not await origin_check([host, (b"origin", b"http://evil.example")])
    assert not await origin_check([host, (b"origin", b"http://127.0.0.1:8001")])
    assert await origin_check(
        [host, (b"origin", b"https://app.example")], allowed=("https://app.example/",)
    )


async def test_origin_star_allows_any_origin_as_the_endpoint_does() -> None:
    """`"*"` allows every origin, here as in livestate.asgi (it was once compared as a
    literal origin here), and a malformed entry is refused when the middleware is made."""
    host = (b"host", b"127.0.0.1:8000")
    assert await origin_check([host, (b"origin", b"http://evil.example")], allowed=("*",))
    assert not await origin_check([host, (b"origin", b"http://evil.example")], allowed=())
    with pytest.raises(InvalidValueError, match="scheme://host"):
        OriginCheckMiddleware(object(), allowed_origins=["app.example/path"])  # type: ignore[arg-type]


class Lobby(LiveState):
    """A second spec, bound beside Room under a name."""

    ttl = TTL

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"rooms": {"a": 1}, "messages": ["lobby's own"]}


async def test_named_live_states_bind_side_by_side(memory_node: Node) -> None:
    """`as_=` binds a second live state beside the default one; each is read and written alone."""
    socket, view, websocket = await connect("a")
    assigns = await live_state(socket, Lobby, "main", as_="lobby")
    assert assigns == socket.context["live_assigns"]
    live = socket.context["live_assigns"]
    assert live.title == "room a" and live.messages == []
    assert live.lobby.rooms == {"a": 1} and live.lobby.messages == ["lobby's own"]
    assert "lobby" in live and live["lobby"].rooms == {"a": 1}
    await live_append(socket, "messages", "to lobby", as_="lobby")
    await live_append(socket, "messages", {"text": "to room"})
    assert await Lobby.get("main", "messages") == ["lobby's own", "to lobby"]
    assert await Room.get("a", "messages") == [{"text": "to room"}]
    default_client, lobby_client = live_client(socket), live_client(socket, as_="lobby")
    assert default_client is not None and lobby_client is not None
    assert default_client is not lobby_client
    await quiet()  # the renders of the writes above, before counting from here
    renders = len(websocket.diffs())
    await Lobby.put("main", "rooms", {"b": 2})
    await eventually(lambda: len(websocket.diffs()) == renders + 1)
    assert view.infos[-1].payload[-1].key == "main" and live.lobby.rooms == {"b": 2}
    await socket.close()
    assert not default_client.attached and not lobby_client.attached


async def test_named_binding_again_replaces_only_that_name(memory_node: Node) -> None:
    """Rebinding a name to another key detaches that name's client and leaves the default one."""
    socket, _, _ = await connect("a")
    await live_state(socket, Room, "x", as_="other")
    first_other, default = live_client(socket, as_="other"), live_client(socket)
    await live_state(socket, Room, "y", as_="other")
    assert first_other is not None and not first_other.attached
    assert live_client(socket) is default and default is not None and default.attached
    assert socket.context["live_assigns"].other.title == "room y"


async def test_named_write_before_binding_names_the_fix(memory_node: Node) -> None:
    """A write to a name that is not bound raises RuntimeError showing the as_= call to make."""
    socket, _, _ = await connect("a")
    with pytest.raises(RuntimeError, match=r"as_='lobby'"):
        await live_assign(socket, "rooms", {}, as_="lobby")


async def test_bad_name_is_refused(memory_node: Node) -> None:
    """`as_` must be an identifier a template can follow after live_assigns."""
    socket, _, _ = await connect("a")
    with pytest.raises(InvalidValueError, match="as_ for Lobby 'main'"):
        await live_state(socket, Lobby, "main", as_="no way")


async def test_change_during_join_waits_for_the_join_reply(memory_node: Node) -> None:
    """A change that lands between mount and the join reply is rendered only after PyView,
    having sent the reply, reads the WebSocket again (the join event), not before."""
    websocket = RecordingWebSocket()
    view = RoomView()
    socket: ConnectedLiveViewSocket[dict[str, Any]] = ConnectedLiveViewSocket(
        websocket, "lv:phx-join", view, AsyncIOScheduler(), NoOpInstrumentation()
    )
    socket.context = {}
    await live_state(socket, Room, "j")  # mount
    await Room.append("j", "messages", {"text": "early"})
    await quiet(0.1)
    assert websocket.diffs() == []  # nothing before the reply
    socket.prev_rendered = await socket.render_with_components()
    await websocket.send_text(json.dumps([None, "1", socket.topic, "phx_reply", {}]))
    reader = asyncio.get_running_loop().create_task(websocket.receive())  # PyView's loop
    await eventually(lambda: [message[3] for message in websocket.sent] == ["phx_reply", "diff"])
    assert [(c.kind, c.prop) for c in view.infos[-1].payload] == [("updated", "messages")]
    reader.cancel()


def test_compat_gate_follows_the_pyview_version() -> None:
    """The navigation workaround is on for the installed pyview 0.9.x, and versions parse."""
    from livestate.pyview import _compat as compat

    assert compat.parse_version("0.9.0") == (0, 9, 0)
    assert compat.parse_version("1.0rc1") == (1, 0)
    assert compat.parse_version("dev") == ()
    assert compat.PYVIEW_VERSION[:2] == (0, 9)
    assert compat.NAVIGATION_CLOSE_BUG


def test_public_names_are_sorted_and_documented() -> None:
    """livestate.pyview's __all__ is sorted, and each name and its public methods have docs."""
    import livestate.pyview as module

    assert module.__all__ == sorted(module.__all__)
    missing = []
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, str):
            continue  # LIVE_STATE_EVENT: documented by the string after it
        if not inspect.getdoc(value):
            missing.append(name)
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if not attribute.startswith("_") and callable(member):
                    if not inspect.getdoc(member):
                        missing.append(f"{name}.{attribute}")
    assert missing == []


class SlowFirstRenderView(RoomView):
    """A view whose renders take the times in `delays`, in order (then none)."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    async def render(self, assigns: Any, meta: PyViewMeta) -> LiveRender:
        live = assigns["live_assigns"]
        # Read the state first, then await (as a view that also queries a database).
        seen = {"messages": list(live.messages), "lobby": {"rooms": dict(live.lobby.rooms)}}
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        return LiveRender(TWO_STATES, {"live_assigns": seen}, meta)


TWO_STATES = LiveTemplate(
    Template(
        "<p>{% for m in live_assigns.messages %}{{ m.text }}{% endfor %}</p>"
        "<p>{{ live_assigns.lobby.rooms }}</p>",
        template_id="test_pyview_two",
    )
)


async def test_renders_of_two_bindings_never_leave_the_page_behind(memory_node: Node) -> None:
    """Changes of two live states bound to one socket render one at a time: a slow render
    started first cannot be sent last and leave the page showing an older state."""
    websocket = RecordingWebSocket()
    view = SlowFirstRenderView()
    socket: ConnectedLiveViewSocket[dict[str, Any]] = ConnectedLiveViewSocket(
        websocket, "lv:phx-two", view, AsyncIOScheduler(), NoOpInstrumentation()
    )
    socket.context = {}
    await live_state(socket, Room, "a")
    await live_state(socket, Lobby, "main", as_="lobby")
    socket.prev_rendered = await socket.render_with_components()
    view.delays = [0.1, 0.0]
    await Room.append("a", "messages", {"text": "first"})
    await quiet(0.01)  # the room's render has started, and sleeps
    await Lobby.put("main", "rooms", {"b": 2})
    await quiet(0.3)
    assert socket.prev_rendered == await socket.render_with_components()
