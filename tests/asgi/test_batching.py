"""Batched messages and the shared change frame, over a real uvicorn server.

A socket that connects with `?batch=1` gets the frames queued since its last
send as one JSON array (docs/protocol.md, "Batched messages"); every socket of
a live state gets the one frame its node encoded for the change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from livestate import Change, LiveState, MemoryBackend, Node
from livestate.asgi import EndpointLimits, LiveStateEndpoint
from livestate.asgi._frames import BATCH_FRAMES, change_body
from tests.support.asgi import RawSocket, serving


class Counter(LiveState):
    name = "BatchCounter"
    acl = {"group": "all", "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"count": 0, "log": []}


Message = dict[str, Any] | list[dict[str, Any]]


class Listener:
    """A websockets client that keeps every message as it came: a frame or a batch."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.messages: list[Message] = []
        self.version = 0  # the live state's version when attached

    @classmethod
    async def open(cls, base: str, query: str = "") -> Listener:
        """Connect, read the welcome, and attach to Counter 'room'."""
        listener = cls(await connect(f"{base}/ws{query}", max_size=1 << 24))
        welcome = await listener.next()
        assert isinstance(welcome, dict) and welcome["type"] == "welcome", welcome
        await listener.socket.send(
            json.dumps({"type": "attach", "ref": 1, "spec": "BatchCounter", "key": "room"})
        )
        (attached,) = await listener.frames_until(lambda frame: frame["type"] == "attached")
        listener.version = attached["version"]
        listener.messages.clear()
        return listener

    async def next(self) -> Message:
        """The next message."""
        message: Message = json.loads(await asyncio.wait_for(self.socket.recv(), 5))
        self.messages.append(message)
        return message

    async def frames_until(self, last: Any) -> list[dict[str, Any]]:
        """The frames of the messages up to the one holding a frame for which `last` is true."""
        frames: list[dict[str, Any]] = []
        while True:
            message = await self.next()
            frames += message if isinstance(message, list) else [message]
            if any(last(frame) for frame in frames):
                return frames


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A node on its own memory backend."""
    async with Node(backend=MemoryBackend()) as node:
        yield node


@pytest.fixture
async def base(node: Node) -> AsyncIterator[str]:
    """The endpoint, exposing Counter, on a real server."""
    async with serving(LiveStateEndpoint([Counter], node=node)) as base:
        yield base


async def burst(node: Node, first: int, count: int) -> None:
    """`count` writes started at once, so that their changes queue in the same loop turns."""
    await asyncio.gather(
        *(node.put(Counter, "room", "count", first + n, role="group") for n in range(count)),
        node.append(Counter, "room", "log", first, role="group"),
    )


async def test_welcome_says_a_socket_is_batched(base: str) -> None:
    """The welcome frame has batch: true on a socket that asked, and no batch field otherwise."""
    batched = await connect(f"{base}/ws?batch=1")
    plain = await connect(f"{base}/ws?batch=0")
    try:
        assert json.loads(await batched.recv())["batch"] is True
        assert "batch" not in json.loads(await plain.recv())
    finally:
        await batched.close()
        await plain.close()


async def test_a_batched_socket_gets_the_same_frames_in_the_same_order(
    base: str, node: Node
) -> None:
    """Bursts of writes reach a batched socket as arrays holding exactly the frames, in
    order, that an unbatched socket gets one message each."""
    plain = await Listener.open(base)
    batched = await Listener.open(base, "?batch=1")
    try:
        for first in range(0, 400, 100):
            await burst(node, first, 100)
        version = plain.version + 4 * 101  # each write raises the version by one

        def done(frame: dict[str, Any]) -> bool:
            return frame.get("version") == version

        plain_frames = await plain.frames_until(done)
        batched_frames = await batched.frames_until(done)
        assert batched_frames == plain_frames
        assert [frame["version"] for frame in plain_frames] == list(
            range(plain.version + 1, version + 1)
        )
        assert all(isinstance(message, dict) for message in plain.messages)
        sizes = [len(message) for message in batched.messages if isinstance(message, list)]
        assert sizes and max(sizes) > 1, "the bursts should have made batches"
        assert max(sizes) <= BATCH_FRAMES
    finally:
        await plain.socket.close()
        await batched.socket.close()


async def test_a_lone_frame_goes_at_once_as_itself(base: str, node: Node) -> None:
    """One change with nothing else queued reaches a batched socket as a plain frame."""
    batched = await Listener.open(base, "?batch=1")
    try:
        await node.put(Counter, "room", "count", 1, role="group")
        message = await batched.next()
        assert isinstance(message, dict)
        assert (message["type"], message["value"]) == ("change", 1)
    finally:
        await batched.socket.close()


async def test_a_batch_holds_at_most_its_limit_of_frames(base: str, node: Node) -> None:
    """A burst larger than a batch arrives as several arrays, none over BATCH_FRAMES frames."""
    batched = await Listener.open(base, "?batch=1")
    try:
        await burst(node, 0, 3 * BATCH_FRAMES)
        version = batched.version + 3 * BATCH_FRAMES + 1
        frames = await batched.frames_until(lambda frame: frame.get("version") == version)
        assert len(frames) == 3 * BATCH_FRAMES + 1
        sizes = [len(message) for message in batched.messages if isinstance(message, list)]
        assert len(sizes) >= 3 and max(sizes) <= BATCH_FRAMES
    finally:
        await batched.socket.close()


async def test_a_batched_socket_too_slow_to_read_is_closed_not_buffered(node: Node) -> None:
    """A batched socket that stops reading still gets too_slow and close 1013 once its queue
    is full, and the others go on."""
    limits = EndpointLimits(max_queued_frames=20)
    async with serving(LiveStateEndpoint([Counter], node=node, limits=limits)) as base:
        slow = await RawSocket.open(base, "/ws?batch=1")
        other = await Listener.open(base, "?batch=1")
        try:
            await slow.send({"type": "attach", "ref": 1, "spec": "BatchCounter", "key": "room"})
            frames: list[dict[str, Any]] = []
            while not any(frame.get("type") == "attached" for frame in frames):
                message = (await slow.frame())[1]
                frames += message if isinstance(message, list) else [message]
            padding = "x" * 100_000
            for number in range(300):  # 30 MB of changes: more than the socket's buffers hold
                await node.put(Counter, "room", "count", f"{number} {padding}", role="group")
                await asyncio.sleep(0)  # let the flusher run, as between real requests
            frames = []
            while (frame := await slow.frame())[0] != 8:  # what was sent, up to the close
                frames += frame[1] if isinstance(frame[1], list) else [frame[1]]
            changes = [each for each in frames if each["type"] == "change"]
            assert len(changes) < 300
            assert [int(change["value"].split()[0]) for change in changes] == list(
                range(len(changes))
            ), "what was sent came in order, with nothing skipped"
            assert frames[-1]["code"] == "too_slow"
            assert int.from_bytes(frame[2][:2], "big") == 1013
            last = await other.frames_until(lambda frame: str(frame.get("value")).startswith("299"))
            assert last[-1]["type"] == "change"
        finally:
            slow.writer.close()
            await slow.writer.wait_closed()
            await other.socket.close()


class SentTexts:
    """ASGI middleware that keeps each text the app hands the server, the object itself."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.texts: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the connection to the app, keeping what it sends."""

        async def keep(message: Any) -> None:
            if message["type"] == "websocket.send" and message.get("text") is not None:
                self.texts.append(message["text"])
            await send(message)

        await self.app(scope, receive, keep)


async def test_a_change_is_encoded_once_per_node_for_every_socket(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sockets of one live state: one put encodes its change once, and the sockets
    whose attachment has the same id are handed the very same string."""
    encoded: list[Change] = []

    def counting(change: Change) -> str:
        encoded.append(change)
        return change_body(change)

    monkeypatch.setattr("livestate.asgi._endpoint.change_body", counting)
    app = SentTexts(LiveStateEndpoint([Counter], node=node))
    async with serving(app) as base:
        listeners = [await Listener.open(base, query) for query in ("", "?batch=1", "")]
        try:
            app.texts.clear()
            encoded.clear()
            await node.put(Counter, "room", "count", 42, role="group")
            for listener in listeners:
                assert (await listener.next())["value"] == 42  # type: ignore[call-overload]
            assert len(encoded) == 1
            assert len(app.texts) == 3
            assert app.texts[0] is app.texts[1] is app.texts[2]
        finally:
            for listener in listeners:
                await listener.socket.close()


async def test_sockets_sent_the_same_frames_are_handed_the_same_batch(node: Node) -> None:
    """Two batched sockets of one live state, a burst of writes: the batches they are sent
    hold the same frames, and each is joined once, for both, not once per socket."""
    app = SentTexts(LiveStateEndpoint([Counter], node=node))
    async with serving(app) as base:
        listeners = [await Listener.open(base, "?batch=1") for _ in range(2)]
        try:
            app.texts.clear()
            await burst(node, 0, 100)
            version = listeners[0].version + 101
            got = [
                await listener.frames_until(lambda frame: frame.get("version") == version)
                for listener in listeners
            ]
            assert got[0] == got[1]
            batches = [text for text in app.texts if text.startswith("[")]
            assert batches, "the burst should have made batches"
            shared = len(batches) - len({id(text) for text in batches})
            assert shared >= 1, "no batch was handed to both sockets as one string"
        finally:
            for listener in listeners:
                await listener.socket.close()
