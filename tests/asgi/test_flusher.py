"""The Flusher's order: SLICE outboxes per loop iteration, replies first.

Each Outbox here sends through a recording ASGI `send` that returns without
suspending, as uvicorn's does; the socket-level behaviour is in test_batching.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from livestate.asgi._outbox import SLICE, Flusher, Outbox

Log = list[tuple[int, Any]]  # (socket number, a message it was sent), in order


class Socket:
    """An outbox and what its `send` was handed, in order."""

    def __init__(self, flusher: Flusher, log: Log, number: int) -> None:
        self.sent: list[Any] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            text = json.loads(message["text"])
            self.sent.append(text)
            log.append((number, text))

        self.outbox = Outbox(send, flusher, batched=True)

    def change(self, frame: str) -> None:
        """Queue a change's frame as the endpoint's receiver does."""
        self.outbox.frames.append(frame)
        self.outbox.wake()


async def turn() -> None:
    """Let the loop run one iteration's callbacks."""
    await asyncio.sleep(0)


async def test_a_fan_out_is_flushed_a_slice_per_loop_iteration_in_order() -> None:
    flusher, log = Flusher(), Log()
    sockets = [Socket(flusher, log, n) for n in range(2 * SLICE + 5)]
    for socket in sockets:
        socket.change('{"n":1}')
    await turn()
    assert [number for number, _ in log] == list(range(SLICE))
    await turn()
    assert len(log) == 2 * SLICE
    await turn()
    assert [number for number, _ in log] == list(range(len(sockets)))
    assert all(socket.sent == [{"n": 1}] for socket in sockets)


async def test_a_reply_goes_before_the_rest_of_a_fan_out() -> None:
    flusher, log = Flusher(), Log()
    sockets = [Socket(flusher, log, n) for n in range(3 * SLICE)]
    writer = Socket(flusher, log, -1)
    for socket in sockets:
        socket.change('{"n":1}')
    await turn()
    writer.outbox.push('{"type":"ok"}')  # the writer's reply, made during the fan-out
    await turn()
    assert log[SLICE] == (-1, {"type": "ok"}), "the reply went before the next slice"
    assert len(log) == 2 * SLICE + 1
    await turn()
    assert len(log) == 3 * SLICE + 1


async def test_a_socket_whose_turn_comes_later_gets_what_queued_meanwhile_at_once() -> None:
    flusher, log = Flusher(), Log()
    sockets = [Socket(flusher, log, n) for n in range(2 * SLICE)]
    for socket in sockets:
        socket.change('{"n":1}')
    await turn()  # the first slice has change 1; the second slice waits
    for socket in sockets:
        socket.change('{"n":2}')
    for _ in range(4):
        await turn()
    first, second = sockets[:SLICE], sockets[SLICE:]
    assert all(socket.sent == [{"n": 1}, {"n": 2}] for socket in first)
    assert all(socket.sent == [[{"n": 1}, {"n": 2}]] for socket in second), "one batch"


async def test_a_socket_is_in_the_dirty_list_once_however_many_changes_it_queues() -> None:
    flusher, log = Flusher(), Log()
    socket = Socket(flusher, log, 0)
    for n in range(5):
        socket.change(json.dumps({"n": n}))
        socket.outbox.push(json.dumps({"reply": n}))
    assert len(flusher.dirty) == 1 and len(flusher.replies) == 1
    await turn()
    assert len(socket.sent) == 1 and len(socket.sent[0]) == 10, "all of it, as one batch"
    assert not flusher.dirty and not flusher.replies
