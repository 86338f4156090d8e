"""Writes coalesced per live state: one call in flight for each, and what was queued
meanwhile goes in the next one.

A write to a live state with no call in flight waits one event loop turn for
the writes made to the same live state in that turn (the writers a reply woke
up write again in the same turn): alone, it then goes by itself from its
caller's own task, as it always did, having waited for no timer and nobody;
with others, they go together, and 16 writers woken together share one call.
While a call is in flight, the writes made to the same live state queue up;
when it returns, everything queued goes in one call (lua/many.lua
runs each write as its own script would, checked and applied or refused on its
own), so 16 concurrent writers cost the server and the node about one call per
round trip instead of 16. The queue keeps submission order, and so does the
server: one call at a time per live state, each write in its place within its
call.

This module does the queueing only; what a call carries, and how its replies
become results, is the backend's (`Coalescer` takes it as two functions).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..._changes import StateId

Write = TypeVar("Write")
Result = TypeVar("Result")


@dataclass(slots=True, eq=False)
class Pending(Generic[Write, Result]):
    """A queued write and the future its caller awaits. `shared`: it may go in one call
    with others; if not, it runs alone (in its place in the order)."""

    write: Write
    shared: bool
    future: asyncio.Future[Result]


Alone = Callable[[StateId, Write], Awaitable[Result]]
"""Sends one write by itself; returns its result or raises its error."""

Together = Callable[[StateId, Sequence[Write]], Awaitable[list[Result | BaseException]]]
"""Sends several writes in one call; returns each one's result or error, in order, or
raises an error that stands for every one of them (the call itself failed)."""


class Coalescer(Generic[Write, Result]):
    """Sends the writes of each live state one call at a time, coalescing those made in
    one loop turn or while a call is in flight. `alone` sends one write, `together`
    several."""

    def __init__(self, alone: Alone[Write, Result], together: Together[Write, Result]) -> None:
        self._alone = alone
        self._together = together
        # Live states gathering writes or with a call in flight -> the writes to go next.
        self._queues: dict[StateId, list[Pending[Write, Result]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The event loop of the first write (as the backend's connections are bound to one):
        # asyncio.get_running_loop() makes a system call (getpid) on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, id: StateId, write: Write, shared: bool = True) -> Result:
        """Send `write` to live state `id`: after this loop turn if no call to it is in
        flight, else when that call returns, with the other writes made to it by then
        (in one call unless not `shared`).

        Raises whatever sending it raises.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        mine = Pending(write, shared, future)
        queue = self._queues.get(id)
        if queue is not None:
            queue.append(mine)
            return await future
        queue = self._queues[id] = [mine]
        try:
            await asyncio.sleep(0)  # the writes made in this loop turn join the queue
        except asyncio.CancelledError:
            queue.remove(mine)
            self._next(id)  # the others go without this one
            raise
        if len(queue) > 1:
            self._next(id)  # together, in a task: no caller's fate decides the others'
            return await future
        self._queues[id] = []  # in flight: later writes queue
        try:
            return await self._alone(id, write)  # alone, from the caller itself
        finally:
            self._next(id)

    def _next(self, id: StateId) -> None:
        """Send what queued for `id` (the writes of a loop turn, or those made while a
        call was in flight), or mark `id` idle."""
        queue = self._queues.get(id)
        if not queue:
            self._queues.pop(id, None)
            return
        self._queues[id] = []
        task = asyncio.get_running_loop().create_task(self._send(id, queue))
        self._tasks.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(self._tasks.discard)

    async def _send(self, id: StateId, queue: list[Pending[Write, Result]]) -> None:
        """Send `queue`, then what queued meanwhile, until nothing does."""
        try:
            while queue:
                await self._send_in_order(id, queue)
                # The writers this call woke up run in the next turn, and most write again
                # at once: their writes go from here, right after (no turn spent gathering
                # them, none starting a task).
                await asyncio.sleep(0)
                queue = self._queues[id]
                self._queues[id] = []
        finally:
            self._next(id)

    async def _send_in_order(self, id: StateId, queue: list[Pending[Write, Result]]) -> None:
        """Send `queue` in order: runs of shared writes in one call each, others alone."""
        # A caller cancelled while its write waited here does not want it sent.
        waiting = [pending for pending in queue if not pending.future.done()]
        start = 0
        while start < len(waiting):
            end = start + 1
            if waiting[start].shared:
                while end < len(waiting) and waiting[end].shared:
                    end += 1
            group = waiting[start:end]
            start = end
            if len(group) == 1:
                await self._send_alone(id, group[0])
            else:
                await self._send_together(id, group)

    async def _send_alone(self, id: StateId, pending: Pending[Write, Result]) -> None:
        try:
            result = await self._alone(id, pending.write)
        except Exception as error:
            _settle(pending.future, error)
        else:
            _settle(pending.future, result)

    async def _send_together(self, id: StateId, group: list[Pending[Write, Result]]) -> None:
        try:
            results = await self._together(id, [pending.write for pending in group])
        except Exception as error:
            for pending in group:
                _settle(pending.future, copy.copy(error))  # each caller raises its own
            return
        for pending, result in zip(group, results, strict=True):
            _settle(pending.future, result)


def _settle(future: asyncio.Future[Result], outcome: object) -> None:
    """Give `future` its result or error, unless its caller gave up on it."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
