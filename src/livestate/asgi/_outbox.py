"""Sending frames on many WebSockets in order, without an event-loop step per frame.

A change fans out to every socket of a live state. With a sender task per
socket, each delivery costs a task wake-up: a third of the CPU per delivered
change. Instead, pushes only mark the socket's Outbox dirty, and a callback (the
Flusher) drives each dirty socket's ASGI `send` coroutines itself. A server's
`send` normally finishes without suspending (uvicorn writes to its transport and
returns), so no task is needed. When one does suspend (its transport is full: a
slow reader), that send alone is finished in a task, and the socket's later
frames wait behind it: order is kept, nobody else waits. This is what Python
3.12's eager tasks do, done by hand for 3.11.

The Flusher hands frames to SLICE sockets per loop iteration, in the order they
became dirty, and then lets the loop run: a fan-out to thousands of sockets
does not hold up reading requests (a write, a heartbeat) for its whole length.
A socket with a frame of its own (a reply, which its sender waits for) goes
before the rest of a fan-out.

A socket that asked for batches (`?batch=1`, docs/protocol.md) gets everything
queued since its last send as one message, a JSON array: one `send` and one
system call for all the frames that queued before its turn (or during a slow
reader's wait). So when writes come faster than a fan-out goes out, a socket
gets several changes per system call. A lone frame still goes out at its turn,
as itself: batching never waits.

Sockets of a key sent the same changes queue the same frames: their batch is
joined once. Under uvicorn, a frame goes past `send` where that is sound
(`_uvicorn`): the bytes of a frame are built once and written to each socket's
transport, and `send` is used whenever the writer declines.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from types import CoroutineType
from typing import Any

from ._frames import BATCH_CHARS, BATCH_FRAMES, batch
from ._uvicorn import Frames, FrameWriter, frame_writer

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


SLICE = 16
"""How many dirty outboxes the Flusher hands frames to per event-loop iteration (the
benchmark's fewest system calls per delivery, measured against 32 and 64)."""


class Flusher:
    """Flushes the dirty Outboxes, SLICE of them per event-loop iteration, in the order they
    became dirty; an outbox with a reply (to its own socket's request) goes first."""

    def __init__(self) -> None:
        self.dirty: deque[Outbox] = deque()
        self.replies: list[Outbox] = []
        self.frames = Frames()  # a change's frame, built once for every socket of the flush
        self.last_frames: list[str] = []  # the frames of the last batch made, and its text
        self.last_batch = ""
        self.scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def schedule(self, outbox: Outbox, reply: bool = False) -> None:
        """Flush `outbox` soon: after the ones that became dirty before it, or, for a
        `reply`, before them."""
        if reply:
            self.replies.append(outbox)
        else:
            self.dirty.append(outbox)
        loop = asyncio.get_running_loop()
        # An endpoint may outlive a loop (tests run one per test): a run scheduled on a
        # loop that closed before running it must not keep the flusher waiting for ever.
        if not self.scheduled or self.loop is not loop:
            self.scheduled = True
            self.loop = loop
            loop.call_soon(self.run)

    def batch_of(self, frames: list[str]) -> str:
        """`frames` as one batch: the last one made again when they are the same frames,
        as they are for every socket of a key that was sent the same changes."""
        if frames != self.last_frames:
            self.last_frames = frames
            self.last_batch = batch(frames)
        return self.last_batch

    def run(self) -> None:
        """Flush the outboxes with replies, then the next SLICE dirty ones; come back in the
        next loop iteration for the rest."""
        self.scheduled = False
        replies, self.replies = self.replies, []
        for outbox in replies:
            outbox.replying = False
            outbox.flush()
        dirty = self.dirty
        for _ in range(min(SLICE, len(dirty))):
            outbox = dirty.popleft()
            outbox.queued = False
            outbox.flush()
        if (dirty or self.replies) and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.run)


class Outbox:
    """The frames waiting to go out on one WebSocket, then maybe a close, in order."""

    __slots__ = (
        "batched",
        "close_code",
        "closing",
        "flusher",
        "frames",
        "lost",
        "open",
        "queued",
        "replying",
        "send",
        "stopped",
        "task",
        "writer",
    )

    def __init__(self, send: Send, flusher: Flusher, batched: bool = False) -> None:
        self.send = send
        self.flusher = flusher
        self.batched = batched  # several queued frames go as one JSON array
        self.frames: deque[str] = deque()
        self.close_code: int | None = None
        self.closing = False  # the close message has been handed to the server
        self.queued = False  # waiting in the flusher's list of dirty outboxes
        self.replying = False  # waiting in its list of outboxes with replies
        self.task: asyncio.Task[None] | None = None  # finishing a send that had to wait
        self.lost = False  # a send failed: the peer is gone
        self.stopped = False
        self.open = True  # neither closing nor stopped: frames may be queued
        self.writer: FrameWriter | None = None  # writes frames past `send` where sound

    def accepted(self) -> None:
        """The socket was accepted: use a FrameWriter from now on if the server allows one."""
        self.writer = frame_writer(self.send, self.flusher.frames)

    def push(self, frame: str) -> None:
        """Queue one text frame of this socket's own (a reply, an error), to go out ahead
        of other sockets' changes."""
        if self.stopped or self.close_code is not None:
            return
        self.frames.append(frame)
        if not self.replying and self.task is None:
            self.replying = True
            self.flusher.schedule(self, reply=True)

    def wake(self) -> None:
        """Flush soon: frames were appended to `frames` (or a close was asked for)."""
        if not self.queued and self.task is None:
            self.queued = True
            self.flusher.schedule(self)

    def close(self, code: int, last: str | None = None) -> None:
        """Drop what is queued, send `last` (if given), then close the socket with `code`."""
        if self.stopped or self.close_code is not None:
            return
        self.frames.clear()
        if last is not None:
            self.frames.append(last)
        self.close_code = code
        self.open = False
        self.wake()

    def stop(self) -> None:
        """Forget everything queued; the socket is over."""
        self.stopped = True
        self.open = False
        self.frames.clear()
        if self.task is not None:
            self.task.cancel()

    def flush(self) -> None:
        """Hand queued frames to the server until one of its sends has to wait."""
        frames = self.frames
        send = self.send
        writer = self.writer
        while self.task is None and not self.lost and not self.stopped:
            if frames:
                if len(frames) > 1 and self.batched:
                    text = self.flusher.batch_of(self._take())
                else:
                    text = frames.popleft()
                if writer is not None and writer.write(text):
                    continue
                message: Message = {"type": "websocket.send", "text": text}
            elif self.close_code is not None and not self.closing:
                self.closing = True
                message = {"type": "websocket.close", "code": self.close_code}
            else:
                return
            self._start(send(message))  # type: ignore[arg-type]
            if not frames and self.close_code is None:
                return  # the usual end: all sent

    def _take(self) -> list[str]:
        """The frames of the next batch: the oldest, then more up to the batch's limits."""
        frames = self.frames
        if len(frames) <= BATCH_FRAMES and sum(map(len, frames)) <= BATCH_CHARS:
            taken = list(frames)  # the usual case: everything
            frames.clear()
            return taken
        taken = [frames.popleft()]
        size = len(taken[0])
        while frames and size < BATCH_CHARS and len(taken) < BATCH_FRAMES:
            frame = frames.popleft()
            taken.append(frame)
            size += len(frame)
        return taken

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if type(coroutine) is not CoroutineType:  # an awaitable of another kind: await it
            self.task = asyncio.get_running_loop().create_task(self._await(coroutine))
            return
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            return
        except Exception:  # the peer went away: receive() reports the disconnect
            self.lost = True
            return
        self.task = asyncio.get_running_loop().create_task(self._finish(coroutine, waiting))

    async def _await(self, awaitable: Awaitable[None]) -> None:
        try:
            await awaitable
        except Exception:
            self.lost = True
        finally:
            self.task = None
        self.flush()

    async def _finish(self, coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Drive a suspended send to its end as a task would, then go on flushing."""
        try:
            while True:
                try:
                    if waiting is None:
                        await asyncio.sleep(0)  # a bare `yield`: just let the loop run
                    else:
                        # The coroutine yielded this future to its driver, which (as a Task
                        # does) takes the blocking mark off before waiting for it.
                        waiting._asyncio_future_blocking = False
                        await waiting
                except asyncio.CancelledError:
                    coroutine.close()
                    raise
                except Exception as error:
                    waiting = coroutine.throw(error)
                else:
                    waiting = coroutine.send(None)
        except StopIteration:
            pass
        except Exception:
            self.lost = True
        finally:
            self.task = None
        self.flush()
