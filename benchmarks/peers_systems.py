"""The five systems of benchmarks/peers.py: for each, N in-process subscribers and a writer.

Each receiver hands every delivery to `Recorder.deliver` from where the library
gives it to application code: livestate's `on_change`, the Socket.IO transport's
send, a Channels consumer's `receive()`, a broadcaster subscription, a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from peers_common import ROOM, Recorder, encode, text_key

Close = Callable[[], Awaitable[None]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# livestate


def _livestate_spec() -> Any:
    import livestate

    class PeersRoom(livestate.LiveState):
        name = "PeersRoom"
        ttl = None

        def on_mount(self, key: str) -> dict[str, Any]:
            return {}

    return PeersRoom


async def livestate_receiver(url: str, n: int, recorder: Recorder) -> Close:
    import livestate

    spec = _livestate_spec()
    node = livestate.Node(url)
    deliver = recorder.deliver

    def on_change(change: livestate.Change) -> None:
        if change.prop == "update":
            deliver(change.value["m"])
        elif change.kind == "reset":
            recorder.resets += 1

    clients = [await node.attach(spec, ROOM, on_change) for _ in range(n)]

    async def close() -> None:
        for client in clients:
            await client.detach()
        await node.aclose()

    return close


async def livestate_writer(url: str) -> tuple[Send, Close]:
    import livestate

    spec = _livestate_spec()
    node = livestate.Node(url)
    await node.start(spec, ROOM)

    async def send(update: dict[str, Any]) -> None:
        await node.put(spec, ROOM, "update", update)

    return send, node.aclose


# python-socketio


async def socketio_receiver(url: str, n: int, recorder: Recorder) -> Close:
    import engineio  # type: ignore[import-untyped]
    import socketio  # type: ignore[import-untyped]

    deliver = recorder.deliver

    class RecordingEngineIO(engineio.AsyncServer):  # type: ignore[misc]
        """A transport that records each packet it is given instead of sending it."""

        async def send_packet(self, sid: str, pkt: Any) -> None:
            deliver(text_key(pkt.data))

    class RecordingServer(socketio.AsyncServer):  # type: ignore[misc]
        def _engineio_server_class(self) -> type[Any]:
            return RecordingEngineIO

    manager = socketio.AsyncRedisManager(url)
    server = RecordingServer(client_manager=manager)
    server.manager_initialized = True
    manager.initialize()  # what the first real connection would do
    for number in range(n):
        sid = await manager.connect(f"eio-{number}", "/")
        await server.enter_room(sid, ROOM)
    await asyncio.sleep(0.3)  # the listener task subscribes to its channel

    async def close() -> None:
        await server.shutdown()

    return close


async def socketio_writer(url: str) -> tuple[Send, Close]:
    import socketio

    manager = socketio.AsyncRedisManager(url, write_only=True)

    async def send(update: dict[str, Any]) -> None:
        await manager.emit("update", update, room=ROOM, namespace="/")

    async def close() -> None:
        if manager.redis is not None:
            await manager.redis.aclose()

    return send, close


# Django Channels


def _channel_layer(url: str) -> Any:
    from channels.layers import get_channel_layer  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure(
            CHANNEL_LAYERS={
                "default": {
                    "BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [url]},  # default capacity (100) and expiry
                }
            }
        )
    return get_channel_layer()


async def channels_receiver(url: str, n: int, recorder: Recorder) -> Close:
    layer = _channel_layer(url)
    deliver = recorder.deliver

    async def consume(channel: str) -> None:
        # What AsyncConsumer's dispatch loop does: receive, then hand to a handler.
        while True:
            message = await layer.receive(channel)
            deliver(message["m"])

    names = [await layer.new_channel() for _ in range(n)]
    for name in names:
        await layer.group_add(ROOM, name)
    tasks = [asyncio.create_task(consume(name)) for name in names]
    await asyncio.sleep(0.1)

    async def close() -> None:
        await _cancel(tasks)
        with contextlib.suppress(Exception):
            await layer.flush()
            await layer.close_pools()

    return close


async def channels_writer(url: str) -> tuple[Send, Close]:
    layer = _channel_layer(url)

    async def send(update: dict[str, Any]) -> None:
        await layer.group_send(ROOM, {"type": "room.update", **update})

    async def close() -> None:
        await layer.close_pools()

    return send, close


# encode/broadcaster


async def broadcaster_receiver(url: str, n: int, recorder: Recorder) -> Close:
    from broadcaster import Broadcast

    broadcast = Broadcast(url)
    await broadcast.connect()
    deliver = recorder.deliver
    subscribed = 0

    async def subscriber() -> None:
        nonlocal subscribed
        async with broadcast.subscribe(ROOM) as subscription:
            subscribed += 1
            while True:  # ends by cancellation
                event = await subscription.get()
                deliver(text_key(event.message))

    # One at a time, as WebSocket connections come in: broadcaster 0.3.1 loses
    # subscribers that enter the same channel concurrently (each sees no set yet).
    tasks: list[asyncio.Task[None]] = []
    for number in range(n):
        tasks.append(asyncio.create_task(subscriber()))
        while subscribed <= number:  # noqa: ASYNC110 - one more subscriber, no event to wait on
            await asyncio.sleep(0)
    # broadcaster 0.3.1 wakes its listener before SUBSCRIBE is sent, and redis-py 8
    # counts the channel as subscribed only once SUBSCRIBE returns: the listener
    # finds no channel, stops and waits for a wake-up that never comes, so nothing
    # is ever delivered. Waking it again once subscribed is the workaround.
    await asyncio.sleep(0.05)
    getattr(broadcast._backend, "_ready").set()  # noqa: B009 - a private attribute
    await asyncio.sleep(0.05)

    async def close() -> None:
        await _cancel(tasks)
        await broadcast.disconnect()

    return close


async def broadcaster_writer(url: str) -> tuple[Send, Close]:
    from broadcaster import Broadcast

    broadcast = Broadcast(url)
    await broadcast.connect()

    async def send(update: dict[str, Any]) -> None:
        await broadcast.publish(ROOM, encode(update))

    return send, broadcast.disconnect


# bare redis-py pub/sub: the floor


async def redis_receiver(url: str, n: int, recorder: Recorder) -> Close:
    import redis.asyncio

    connection = redis.asyncio.Redis.from_url(url)
    pubsub = connection.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(ROOM)
    deliver = recorder.deliver

    def make_callback() -> Callable[[dict[str, Any]], None]:
        def callback(update: dict[str, Any]) -> None:
            deliver(update["m"])

        return callback

    callbacks = [make_callback() for _ in range(n)]

    async def listen() -> None:
        # Decode once, then hand the same dict to every callback, as livestate does.
        async for message in pubsub.listen():
            if message["type"] == "message":
                update = json.loads(message["data"])
                for callback in callbacks:
                    callback(update)

    task = asyncio.create_task(listen())

    async def close() -> None:
        await _cancel([task])
        await pubsub.aclose()
        await connection.aclose()

    return close


async def redis_writer(url: str) -> tuple[Send, Close]:
    import redis.asyncio

    connection = redis.asyncio.Redis.from_url(url)

    async def send(update: dict[str, Any]) -> None:
        await connection.publish(ROOM, encode(update))

    async def close() -> None:
        await connection.aclose()

    return send, close


RECEIVERS: dict[str, Callable[[str, int, Recorder], Awaitable[Close]]] = {
    "livestate": livestate_receiver,
    "python-socketio": socketio_receiver,
    "channels": channels_receiver,
    "broadcaster": broadcaster_receiver,
    "redis-py": redis_receiver,
}
WRITERS: dict[str, Callable[[str], Awaitable[tuple[Send, Close]]]] = {
    "livestate": livestate_writer,
    "python-socketio": socketio_writer,
    "channels": channels_writer,
    "broadcaster": broadcaster_writer,
    "redis-py": redis_writer,
}
