"""The WebSocket endpoint over real sockets: a uvicorn server and a websockets client.

Every test runs the endpoint in a real uvicorn server on a free 127.0.0.1 port,
in the test's own event loop, and speaks the protocol of docs/protocol.md to it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import livestate
from livestate import LiveState, MemoryBackend, Node
from livestate.asgi import (
    CLIENT_JS,
    PROTOCOL,
    Connection,
    EndpointLimits,
    LiveStateEndpoint,
)
from livestate.testing import ServerProcess, free_port
from tests.support.asgi import Open, RawSocket, peer_opener, serving


class Board(LiveState):
    name = "AsgiBoard"
    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": f"board {key}", "cards": [], "votes": 0}


class Secret(LiveState):
    """Listed nowhere: no endpoint may reach it."""

    name = "AsgiSecret"


class Notes(LiveState):
    name = "AsgiNotes"
    acl = {"group": ["read"], "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"text": ""}


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A node on its own memory backend."""
    async with Node(backend=MemoryBackend()) as node:
        yield node


@pytest.fixture
async def peers() -> AsyncIterator[Open]:
    """Opens protocol clients (closed at the end); reads each one's welcome frame."""
    async with peer_opener() as open_peer:
        yield open_peer


@pytest.fixture
async def url(node: Node) -> AsyncIterator[str]:
    """The endpoint, exposing Board and Notes, on a real server."""
    async with serving(LiveStateEndpoint([Board, Notes], node=node)) as base:
        yield base


async def test_welcome_names_the_protocol_and_limits(url: str, peers: Open) -> None:
    """The first frame is `welcome`, with the protocol version, specs, heartbeat and limits."""
    peer = await peers(url)
    assert peer.welcome["type"] == "welcome"
    assert peer.welcome["protocol"] == PROTOCOL == 1
    assert peer.welcome["specs"] == ["AsgiBoard", "AsgiNotes"]
    assert peer.welcome["heartbeat"] == 25.0
    assert peer.welcome["limits"]["max_states"] == 64
    assert await peer.request("ping") == {"type": "pong", "ref": 1}


async def test_attach_gives_the_whole_state_then_ordered_changes(url: str, peers: Open) -> None:
    """Attach returns the state and version; each write reaches every socket in version order."""
    ann, bob = await peers(url), await peers(url)
    first = await ann.attach("AsgiBoard", "b1")
    assert first["state"] == {"title": "board b1", "cards": [], "votes": 0}
    base = first["version"]
    second = await bob.attach("AsgiBoard", "b1")
    assert second["version"] == base
    for number in range(5):
        reply = await ann.request("append", id=first["id"], prop="cards", value=f"card {number}")
        assert reply == {"type": "ok", "ref": reply["ref"], "result": None}
    changes = [await bob.change() for _ in range(5)]
    assert [change["version"] for change in changes] == [base + n for n in range(1, 6)]
    assert all(change["id"] == second["id"] for change in changes)
    assert changes[-1]["kind"] == "updated" and changes[-1]["prop"] == "cards"
    assert changes[-1]["value"] == [f"card {n}" for n in range(5)]
    # The writer's own socket got each change before the write's ok (read your writes).
    own = [frame for frame in ann.frames if frame["type"] == "change"]
    assert [change["version"] for change in own] == [base + n for n in range(1, 6)]


async def test_every_write_is_acknowledged_with_its_result(
    url: str, peers: Open, node: Node
) -> None:
    """put, delete, append (max_len), increment and reset each answer ok, and apply."""
    peer = await peers(url)
    id = (await peer.attach("AsgiBoard", "w"))["id"]
    assert (await peer.request("put", id=id, prop="title", value="Plans"))["type"] == "ok"
    assert (await peer.request("increment", id=id, prop="votes", by=3))["result"] == 3
    assert (await peer.request("increment", id=id, prop="votes"))["result"] == 4
    for item in "abc":
        await peer.request("append", id=id, prop="cards", value=item, max_len=2)
    assert (await peer.request("delete", id=id, prop="title"))["type"] == "ok"
    assert dict(await node.get(Board, "w")) == {"cards": ["b", "c"], "votes": 4}
    assert (await peer.request("get", id=id, prop="votes"))["result"] == 4
    assert (await peer.request("reset", id=id))["type"] == "ok"
    assert dict(await node.get(Board, "w")) == {"title": "board w", "cards": [], "votes": 0}
    kinds = [frame["kind"] for frame in peer.frames if frame["type"] == "change"]
    assert kinds == ["updated"] * 6 + ["deleted", "reset"]


async def test_refused_writes_carry_the_error_type_and_message(url: str, peers: Open) -> None:
    """A write the core refuses gets an error frame with its code, type and full message."""
    peer = await peers(url)
    id = (await peer.attach("AsgiBoard", "e"))["id"]
    missing = await peer.request("delete", id=id, prop="nope")
    assert missing["code"] == "property_not_found"
    assert missing["error"] == "PropertyNotFoundError"
    assert "'nope'" in missing["message"] and "AsgiBoard 'e'" in missing["message"]
    bad = await peer.request("increment", id=id, prop="title", by=1)
    assert (bad["code"], bad["error"]) == ("invalid_value", "InvalidValueError")
    assert "not a number" in bad["message"]
    huge = await peer.request("put", id=id, prop="n", value=2**60)
    assert huge["code"] == "invalid_value"
    notes = (await peer.attach("AsgiNotes", "n"))["id"]  # group may only read
    denied = await peer.request("put", id=notes, prop="text", value="x")
    assert (denied["code"], denied["error"]) == ("permission_denied", "PermissionDeniedError")
    assert (await peer.request("ping"))["type"] == "pong"


async def test_several_live_states_share_one_socket(url: str, peers: Open, node: Node) -> None:
    """Changes of two live states on one socket each carry their own attachment id."""
    peer = await peers(url)
    one = (await peer.attach("AsgiBoard", "m1"))["id"]
    two = (await peer.attach("AsgiBoard", "m2"))["id"]
    assert one != two
    await node.put(Board, "m2", "title", "second", role="group")
    await node.put(Board, "m1", "title", "first", role="group")
    first, second = await peer.change(), await peer.change()
    assert (first["id"], first["value"]) == (two, "second")
    assert (second["id"], second["value"]) == (one, "first")
    assert (await peer.request("detach", id=one))["type"] == "ok"
    await node.put(Board, "m1", "title", "unseen", role="group")
    await node.put(Board, "m2", "title", "seen", role="group")
    assert (await peer.change())["value"] == "seen"
    gone = await peer.request("put", id=one, prop="title", value="x")
    assert gone["code"] == "not_attached"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"type": "fly"}', "unknown_type"),
        ('{"ref": 1}', "unknown_type"),
        ('{"type": "attach", "ref": 1, "spec": "AsgiBoard"}', "bad_frame"),
        ('{"type": "put", "ref": 1, "id": "1", "prop": "x", "value": 1}', "bad_frame"),
        ('{"type": "put", "ref": {"a": 1}}', "bad_frame"),
        ('{"type": "put", "ref": 1, "spec": "AsgiBoard", "key": "k", "prop": "x"}', "bad_frame"),
        (b"\xff\xfe", "bad_frame"),
    ],
)
async def test_malformed_frames_get_bad_frame_and_the_socket_lives(
    url: str, peers: Open, message: str | bytes, code: str
) -> None:
    """Each malformed frame gets its documented error; the socket keeps working."""
    peer = await peers(url)
    await peer.attach("AsgiBoard", "bad")
    error = await peer.raw(message)
    assert error["code"] == code
    assert error["message"].endswith(".")
    assert (await peer.request("ping"))["type"] == "pong"
    assert (await peer.request("get", spec="AsgiBoard", key="bad", prop="votes"))["result"] == 0


async def test_unknown_and_unlisted_specs_are_refused(url: str, peers: Open) -> None:
    """A spec that exists but is not listed is as unknown as one that does not exist."""
    peer = await peers(url)
    for name in ("AsgiSecret", "Nope"):
        error = await peer.request("attach", spec=name, key="k")
        assert error["code"] == "unknown_spec"
        assert name in error["message"]
    assert (await peer.request("get", spec="AsgiSecret", key="k"))["code"] == "unknown_spec"


async def test_oversized_frames_are_refused_and_the_socket_lives(node: Node, peers: Open) -> None:
    """A frame over max_frame_bytes gets frame_too_large and changes nothing."""
    endpoint = LiveStateEndpoint([Board], node=node, limits=EndpointLimits(max_frame_bytes=1000))
    async with serving(endpoint) as base:
        peer = await peers(base)
        id = (await peer.attach("AsgiBoard", "big"))["id"]
        frame = json.dumps(
            {"type": "put", "ref": 9, "id": id, "prop": "title", "value": "x" * 2000}
        )
        error = await peer.raw(frame)
        assert error["code"] == "frame_too_large"
        assert "1000" in error["message"]
        assert (await peer.raw("é" * 600))["code"] == "frame_too_large"  # 1,200 UTF-8 bytes
        assert (await node.get(Board, "big", "title")) == "board big"
        assert (await peer.request("put", id=id, prop="title", value="ok"))["type"] == "ok"


async def test_a_write_flood_is_rate_limited_and_nothing_refused_is_applied(
    node: Node, peers: Open
) -> None:
    """Past the write burst, writes get rate_limited; exactly the acknowledged ones apply."""
    limits = EndpointLimits(writes_per_second=1, write_burst=20)
    async with serving(LiveStateEndpoint([Board], node=node, limits=limits)) as base:
        peer = await peers(base)
        id = (await peer.attach("AsgiBoard", "flood"))["id"]
        for ref in range(1000, 1200):
            await peer.socket.send(
                json.dumps({"type": "increment", "ref": ref, "id": id, "prop": "votes"})
            )
        replies = [await peer.reply(ref) for ref in range(1000, 1200)]
        acknowledged = [reply for reply in replies if reply["type"] == "ok"]
        limited = [reply for reply in replies if reply.get("code") == "rate_limited"]
        assert 20 <= len(acknowledged) <= 25
        assert len(acknowledged) + len(limited) == 200
        assert "per second" in limited[0]["message"]
        assert await node.get(Board, "flood", "votes") == len(acknowledged)
        assert (await peer.request("ping"))["type"] == "pong"
        other = await peers(base)  # the server serves others meanwhile
        assert (await other.attach("AsgiBoard", "flood"))["state"]["votes"] == len(acknowledged)


async def test_a_write_id_makes_a_resent_frame_apply_once(url: str, peers: Open) -> None:
    """A page that resends a write after a drop (same write_id) gets the first result, and
    the write applies once; a write_id that is not a string is a bad frame."""
    peer = await peers(url)
    id = (await peer.attach("AsgiBoard", "ids"))["id"]
    for _ in range(2):
        reply = await peer.request("increment", id=id, prop="votes", by=3, write_id="vote-1")
        assert reply["result"] == 3
    assert (await peer.request("get", id=id, prop="votes"))["result"] == 3
    bad = await peer.request("put", id=id, prop="title", value="x", write_id=7)
    assert bad["code"] == "bad_frame" and "write_id" in bad["message"]


async def test_attaching_to_fresh_keys_in_a_loop_is_rate_limited(peers: Open) -> None:
    """Past the attach burst, a socket cycling attach and detach over fresh keys gets
    rate_limited and nothing more is started; the node's own quota, reached through a
    socket, is quota_exceeded."""
    limits = EndpointLimits(attaches_per_second=0.001, attach_burst=5)
    async with Node("memory://", max_live_states=8) as node:
        async with serving(LiveStateEndpoint([Board], node=node, limits=limits)) as base:
            peer = await peers(base)
            for n in range(5):
                attached = await peer.attach("AsgiBoard", f"fresh-{n}")
                await peer.request("detach", id=attached["id"])
            refused = await peer.request("attach", spec="AsgiBoard", key="fresh-5")
            assert refused["code"] == "rate_limited" and "attaches" in refused["message"]
            with pytest.raises(livestate.NotFoundError):
                await node.get(Board, "fresh-5")
            assert node.metrics is None or node.metrics.counts["quota_refusals"]["attaches"] == 1
            for n in range(5, 8):  # each socket has its own bucket; the node's quota is 8
                assert (await (await peers(base)).attach("AsgiBoard", f"fresh-{n}"))["id"]
            over = await (await peers(base)).request("attach", spec="AsgiBoard", key="fresh-8")
            assert over["code"] == "quota_exceeded", over
            assert over["error"] == "QuotaExceededError"


async def test_a_foreign_origin_is_refused_with_a_frame_then_closed(url: str, peers: Open) -> None:
    """A handshake from another site's page gets forbidden_origin and close code 1008."""
    socket = await connect(url + "/ws", origin="https://evil.example")  # type: ignore[arg-type]
    frame = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert frame["code"] == "forbidden_origin"
    assert "evil.example" in frame["message"]
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    host = url.removeprefix("ws://")
    own = await peers(url, origin=f"http://{host}")
    assert (await own.attach("AsgiBoard", "o"))["state"]["votes"] == 0


async def test_listed_origins_are_allowed(node: Node, peers: Open) -> None:
    """An origin in allowed_origins passes; the same page's other origins do not."""
    endpoint = LiveStateEndpoint([Board], node=node, allowed_origins=["https://app.example"])
    async with serving(endpoint) as base:
        peer = await peers(base, origin="https://app.example")
        assert peer.welcome["type"] == "welcome"
        other = await peers(base, origin="https://app.example:8443")
        assert other.welcome["code"] == "forbidden_origin"


async def test_a_star_allows_every_origin(node: Node, peers: Open) -> None:
    """allowed_origins=["*"] turns the Origin check off, for an API meant for any site."""
    endpoint = LiveStateEndpoint([Board], node=node, allowed_origins=["*"])
    async with serving(endpoint) as base:
        peer = await peers(base, origin="https://anywhere.example")
        assert (await peer.attach("AsgiBoard", "star"))["state"]["votes"] == 0


async def test_authorize_maps_the_connection_to_a_role_or_refuses(node: Node, peers: Open) -> None:
    """authorize sees cookies, headers and the query; refusal and public-attach are forbidden."""
    seen: list[Connection] = []

    async def authorize(connection: Connection, spec: type[LiveState], key: str) -> str | None:
        seen.append(connection)
        if connection.query.get("token") == "admin" and connection.cookies.get("user") == "ann":
            return "group"
        if key.startswith("open"):
            return "public"
        return None

    endpoint = LiveStateEndpoint([Board], node=node, authorize=authorize)
    async with serving(endpoint) as base:
        admin = await peers(base, "?token=admin", additional_headers={"Cookie": "user=ann; x=1"})
        assert (await admin.attach("AsgiBoard", "private"))["state"]["votes"] == 0
        assert seen[0].headers["cookie"] == "user=ann; x=1" and seen[0].path == "/ws"

        guest = await peers(base)
        refused = await guest.request("attach", spec="AsgiBoard", key="private")
        assert refused["code"] == "forbidden" and "authorize refused" in refused["message"]
        assert (await guest.request("get", spec="AsgiBoard", key="private"))["code"] == "forbidden"
        public = await guest.request("attach", spec="AsgiBoard", key="open1")
        assert public["code"] == "forbidden" and "public" in public["message"]
        # A public role reads and writes as the server API's public caller: here, read only.
        await node.start(Board, "open1")
        assert (await guest.request("get", spec="AsgiBoard", key="open1", prop="votes"))[
            "result"
        ] == 0
        denied = await guest.request("put", spec="AsgiBoard", key="open1", prop="votes", value=9)
        assert denied["code"] == "permission_denied"
        assert await node.get(Board, "open1", "votes") == 0
        assert (await guest.request("ping"))["type"] == "pong"


async def test_authorize_may_refuse_with_its_own_message(node: Node, peers: Open) -> None:
    """A PermissionDeniedError raised by authorize becomes a forbidden frame with its text."""

    def authorize(connection: Connection, spec: type[LiveState], key: str) -> str:
        raise livestate.PermissionDeniedError("Sign in to see this board.")

    endpoint = LiveStateEndpoint([Board], node=node, authorize=authorize)
    async with serving(endpoint) as base:
        peer = await peers(base)
        error = await peer.request("attach", spec="AsgiBoard", key="k")
        assert (error["code"], error["message"]) == ("forbidden", "Sign in to see this board.")


async def test_public_writes_by_spec_and_key_follow_the_public_acl(
    url: str, peers: Open, node: Node
) -> None:
    """Without an attachment, writes are public calls: Notes lets the public write."""
    peer = await peers(url)
    missing = await peer.request("put", spec="AsgiNotes", key="p", prop="text", value="hi")
    assert missing["code"] == "not_found" and missing["error"] == "NotFoundError"
    await node.start(Notes, "p")
    assert (await peer.request("put", spec="AsgiNotes", key="p", prop="text", value="hi"))[
        "type"
    ] == "ok"
    assert await node.get(Notes, "p", "text") == "hi"


async def test_the_number_of_live_states_per_socket_is_limited(node: Node, peers: Open) -> None:
    """Past max_states, attach gets too_many_states; detaching one makes room."""
    endpoint = LiveStateEndpoint([Board], node=node, limits=EndpointLimits(max_states=2))
    async with serving(endpoint) as base:
        peer = await peers(base)
        first = await peer.attach("AsgiBoard", "s1")
        await peer.attach("AsgiBoard", "s2")
        error = await peer.request("attach", spec="AsgiBoard", key="s3")
        assert error["code"] == "too_many_states" and "2" in error["message"]
        await peer.request("detach", id=first["id"])
        await peer.attach("AsgiBoard", "s3")


async def test_a_socket_that_never_attaches_is_closed(node: Node, peers: Open) -> None:
    """A socket with no attachment that stays silent past idle_timeout gets idle, then 4000."""
    limits = EndpointLimits(idle_timeout=0.3)
    async with serving(LiveStateEndpoint([Board], node=node, limits=limits)) as base:
        idle = await peers(base)
        busy = await peers(base)
        await busy.attach("AsgiBoard", "i")
        frame = await idle.receive()
        assert frame["code"] == "idle"
        with pytest.raises(ConnectionClosed) as closed:
            await idle.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        assert (await busy.request("ping"))["type"] == "pong"  # an attached one stays


async def test_a_stopped_live_state_ends_its_attachments(url: str, peers: Open, node: Node) -> None:
    """stop() sends a stopped change; later writes on that id get not_attached."""
    peer = await peers(url)
    id = (await peer.attach("AsgiBoard", "st"))["id"]
    await node.stop(Board, "st", role="group")
    change = await peer.change()
    assert (change["id"], change["kind"]) == (id, "stopped")
    assert (await peer.request("put", id=id, prop="x", value=1))["code"] == "not_attached"


async def test_a_dropped_socket_resumes_with_the_whole_state(url: str, peers: Open) -> None:
    """Writes made while a socket is gone are in the state it gets when it attaches again."""
    ann, bob = await peers(url), await peers(url)
    reply = await ann.attach("AsgiBoard", "r")
    id, base = reply["id"], reply["version"]
    await bob.attach("AsgiBoard", "r")
    await bob.socket.close()
    for _ in range(3):
        await ann.request("increment", id=id, prop="votes")
    again = await peers(url)
    reply = await again.attach("AsgiBoard", "r")
    assert (reply["state"]["votes"], reply["version"]) == (3, base + 3)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_two_nodes_share_live_states_through_their_endpoints(
    backend: str, peers: Open, request: pytest.FixtureRequest
) -> None:
    """A write on one node's socket reaches a socket on the other node, in order."""
    if backend == "redis":
        server: ServerProcess = request.getfixturevalue("redis_server")
        nodes = [Node(server.url), Node(server.url)]
    else:
        shared = MemoryBackend()
        nodes = [Node(backend=shared), Node(backend=shared)]
    key = f"two-{backend}-{free_port()}"
    try:
        async with (
            serving(LiveStateEndpoint([Board], node=nodes[0])) as one,
            serving(LiveStateEndpoint([Board], node=nodes[1])) as two,
        ):
            ann, bob = await peers(one), await peers(two)
            reply = await ann.attach("AsgiBoard", key)
            id, base = reply["id"], reply["version"]
            assert (await bob.attach("AsgiBoard", key))["version"] == base
            for number in range(10):
                await ann.request("append", id=id, prop="cards", value=number)
            changes = [await bob.change() for _ in range(10)]
            assert [change["version"] for change in changes] == [base + n for n in range(1, 11)]
            assert changes[-1]["value"] == list(range(10))
    finally:
        for each in nodes:
            await each.aclose()


async def test_the_client_file_is_served_over_http(url: str) -> None:
    """GET …/livestate.js returns the built client; other paths are 404."""
    base = url.replace("ws://", "http://")

    def fetch(path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status, response.headers["content-type"], response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"], error.read()

    status, kind, body = await asyncio.to_thread(fetch, "/static/livestate.js")
    assert (status, kind) == (200, "text/javascript; charset=utf-8")
    assert body == CLIENT_JS.read_bytes() and b"export" in body
    assert (await asyncio.to_thread(fetch, "/other"))[0] == 404


async def test_mounts_in_fastapi_with_the_lifespan(peers: Open) -> None:
    """Mounted in FastAPI with livestate.lifespan, the endpoint uses the app's node."""
    from fastapi import FastAPI

    app = FastAPI()
    app.mount("/live", LiveStateEndpoint([Board]))
    async with livestate.lifespan(app), serving(app) as base:
        peer = await peers(base + "/live")
        id = (await peer.attach("AsgiBoard", "fast"))["id"]
        assert (await peer.request("increment", id=id, prop="votes"))["result"] == 1
        assert await Board.get("fast", "votes") == 1


def test_bad_arguments_are_refused() -> None:
    """Listing something that is not a spec, or a bad limit, raises InvalidValueError."""
    with pytest.raises(livestate.InvalidValueError, match="LiveState subclasses"):
        LiveStateEndpoint([dict])  # type: ignore[list-item]
    with pytest.raises(livestate.InvalidValueError, match="max_states"):
        EndpointLimits(max_states=0)
    with pytest.raises(livestate.InvalidValueError, match="heartbeat"):
        LiveStateEndpoint([Board], heartbeat=0)


async def test_binary_frames_string_refs_and_whole_state_reads(url: str, peers: Open) -> None:
    """A binary frame of UTF-8 JSON is read; string refs come back; get by id gives the state."""
    peer = await peers(url)
    attached = await peer.attach("AsgiBoard", "bin")
    await peer.socket.send(json.dumps({"type": "get", "ref": "r-1", "id": attached["id"]}).encode())
    reply = await peer.reply("r-1")
    assert reply == {"type": "ok", "ref": "r-1", "result": attached["state"]}


async def test_a_group_socket_acts_as_a_public_caller_by_spec_and_key(
    url: str, peers: Open
) -> None:
    """Writes by spec and key are public calls even from a socket that may attach."""
    peer = await peers(url)
    id = (await peer.attach("AsgiBoard", "pub"))["id"]
    denied = await peer.request("put", spec="AsgiBoard", key="pub", prop="votes", value=1)
    assert denied["code"] == "permission_denied" and "public" in denied["message"]
    assert (await peer.request("put", id=id, prop="votes", value=1))["type"] == "ok"


async def test_a_failing_authorize_is_internal_and_the_socket_lives(
    node: Node, peers: Open
) -> None:
    """An authorize that raises anything but PermissionDeniedError gets internal, logged."""

    def authorize(connection: Connection, spec: type[LiveState], key: str) -> str:
        raise RuntimeError("the session store is down")

    endpoint = LiveStateEndpoint([Board], node=node, authorize=authorize)
    async with serving(endpoint) as base:
        peer = await peers(base)
        error = await peer.request("attach", spec="AsgiBoard", key="k")
        assert (error["code"], error["error"]) == ("internal", "RuntimeError")
        assert "the session store is down" not in error["message"]  # no server detail leaks
        assert (await peer.request("ping"))["type"] == "pong"


def test_every_livestate_error_has_its_documented_code() -> None:
    """The error codes of docs/protocol.md, one per livestate error type."""
    from livestate.asgi._frames import livestate_error_frame

    expected = {
        livestate.NotFoundError: "not_found",
        livestate.PropertyNotFoundError: "property_not_found",
        livestate.PermissionDeniedError: "permission_denied",
        livestate.InvalidValueError: "invalid_value",
        livestate.StateTooLargeError: "state_too_large",
        livestate.BackendUnavailableError: "backend_unavailable",
        livestate.LiveStateError: "error",
    }
    for kind, code in expected.items():
        frame = json.loads(livestate_error_frame(kind("It failed."), 7))
        assert frame == {
            "type": "error",
            "ref": 7,
            "code": code,
            "message": "It failed.",
            "error": kind.__name__,
        }
    documented = Path(__file__).resolve().parents[2].joinpath("docs", "protocol.md").read_text()
    for code in expected.values():
        assert f"| `{code}` |" in documented


async def test_a_silent_attached_socket_is_closed_and_a_pinging_one_stays(
    node: Node, peers: Open
) -> None:
    """Past silence_timeout without a frame, even an attached socket gets idle and 4000."""
    limits = EndpointLimits(silence_timeout=0.4)
    async with serving(LiveStateEndpoint([Board], node=node, limits=limits)) as base:
        silent, pinging = await peers(base), await peers(base)
        await silent.attach("AsgiBoard", "quiet")
        await pinging.attach("AsgiBoard", "quiet")
        for _ in range(8):  # 0.8 s of pings every 0.1 s: the heartbeat, not a wait
            assert (await pinging.request("ping"))["type"] == "pong"
            await asyncio.sleep(0.1)
        frame = await silent.receive()
        assert frame["code"] == "idle" and "ping" in frame["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await silent.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_a_socket_too_slow_to_read_is_closed_not_buffered(node: Node, peers: Open) -> None:
    """A socket that stops reading gets too_slow and close 1013 once its queue is full."""
    limits = EndpointLimits(max_queued_frames=20)
    async with serving(LiveStateEndpoint([Board], node=node, limits=limits)) as base:
        slow = await RawSocket.open(base)
        try:
            await slow.send({"type": "attach", "ref": 1, "spec": "AsgiBoard", "key": "slow"})
            assert (await slow.frame())[1]["type"] == "welcome"
            assert (await slow.frame())[1]["type"] == "attached"
            padding = "x" * 100_000
            for number in range(300):  # 30 MB of changes: more than the socket's buffers hold
                await node.put(Board, "slow", "title", f"{number} {padding}", role="group")
                await asyncio.sleep(0)  # let the sender tasks run, as between real requests
            other = await peers(base)
            assert (await other.attach("AsgiBoard", "slow"))["state"]["title"].startswith("299 ")
            frames = []
            while (frame := await slow.frame())[0] != 8:  # what was sent, up to the close
                frames.append(frame[1])
            assert len(frames) < 300
            assert frames[-1]["code"] == "too_slow"
            assert int.from_bytes(frame[2][:2], "big") == 1013
            assert (await other.request("ping"))["type"] == "pong"
        finally:
            slow.writer.close()
            await slow.writer.wait_closed()


def test_the_default_limits_are_the_documented_ones() -> None:
    """EndpointLimits() holds the defaults that the README and docs/protocol.md state."""
    assert EndpointLimits() == EndpointLimits(
        max_frame_bytes=1024 * 1024 + 4096,
        max_states=64,
        writes_per_second=50.0,
        write_burst=100,
        idle_timeout=15.0,
        silence_timeout=75.0,
        max_queued_frames=10_000,
    )
