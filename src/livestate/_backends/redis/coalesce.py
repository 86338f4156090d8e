"""Writes coalesced per live state: what queued goes in one call, and a busy live state
keeps two calls in flight, the second applied only after the first.

A write to a live state with nothing in flight waits one event loop turn for
the writes made to the same live state in that turn (the writers a reply woke
up write again in the same turn): alone, it then goes by itself from its
caller's own task, as it always did, having waited for no timer and nobody;
with others, they go together, and 16 writers woken together share one call
(lua/many.lua runs each write as its own script would, checked and applied or
refused on its own). While a call is in flight, the writes made to the same
live state queue up; when it returns, everything queued goes in the next call,
so concurrent writers cost the server and the node about one call per round
trip instead of one each.

Two calls in flight (`SPLIT`): a queue of many writes taken with nothing in
flight is sent as two calls, back to back, and each then sends its own writers'
next writes as it returns, so the node's work on one call's replies (its
writers woken, their next writes made) overlaps the server's on the other. The
queue keeps submission order, and so does the server: a call names the one
sent before it (by its `Flight.number`), and lua/many.lua applies nothing until
that one was applied whole; if it was not (it failed, or left writes to be sent again
alone), the call waits for it to return and goes again. A call that may not be
named so (a single write, an action, a mix) waits for every call before it.

This module does the queueing only; what a call carries, and how its replies
become results, is the backend's (`Coalescer` takes it as two functions).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..._changes import StateId

Write = TypeVar("Write")
Result = TypeVar("Result")

SPLIT = 16
"""A queue of at least this many shared writes, taken with nothing in flight, goes as two
calls: 16 writers reach 2.5x to 2.7x the redis-py peer so, 1.9x with one call in flight
(`benchmarks/cluster.py --writes`), while at 4 and 8 writers (a probe) two calls of half
as many were no faster than one."""


@dataclass(slots=True, eq=False)
class Pending(Generic[Write, Result]):
    """A queued write and the future its caller awaits. `shared`: it may go in one call
    with others; if not, it runs alone (in its place in the order)."""

    write: Write
    shared: bool
    future: asyncio.Future[Result]


@dataclass(slots=True, eq=False)
class Flight:
    """A call to one live state, from when it was taken from the queue until it returned
    (`done`). `number` names it on the server if it is `named` (one call of shared
    writes); a call sent after it, while it is in flight, is applied only after it."""

    number: int
    named: bool
    done: asyncio.Future[None]


Alone = Callable[[StateId, Write], Awaitable[Result]]
"""Sends one write by itself; returns its result or raises its error."""

Together = Callable[
    [StateId, Sequence[Write], int | None, int | None],
    Awaitable[list[Result | BaseException] | None],
]
"""Sends several writes in one call, `(id, writes, number, after)`: the call is named
`number` on the server once applied whole (None: not named), and applied only once call
`after` was (None: at once). Returns each write's result or error, in order, or None if
call `after` had not been applied (nothing of this one was), or raises an error that
stands for every one of them (the call itself failed)."""


class Coalescer(Generic[Write, Result]):
    """Sends the writes of each live state in calls, coalescing those made in one loop
    turn or while a call is in flight, and keeps up to two calls in flight. `alone` sends
    one write, `together` several."""

    def __init__(self, alone: Alone[Write, Result], together: Together[Write, Result]) -> None:
        self._alone = alone
        self._together = together
        # Live states gathering writes or with a call in flight -> the writes to go next.
        self._queues: dict[StateId, list[Pending[Write, Result]]] = {}
        # The calls in flight to each live state, in the order they were taken.
        self._flights: dict[StateId, list[Flight]] = {}
        self._lanes: dict[StateId, int] = {}  # tasks sending to each live state (up to 2)
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        # The event loop of the first write (as the backend's connections are bound to one):
        # asyncio.get_running_loop() makes a system call (getpid) on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, id: StateId, write: Write, shared: bool = True) -> Result:
        """Send `write` to live state `id`: after this loop turn if nothing is in flight to
        it, else when a call returns, with the other writes made to it by then (in one
        call unless not `shared`).

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
        if self._lanes.get(id):
            return  # a task sends to it still, and takes what queued at its next turn
        taken = self._take(id)
        if not taken:
            if not self._queues.get(id):
                self._queues.pop(id, None)
            return
        for queue in taken:
            self._lane(id, queue)

    def _take(self, id: StateId) -> list[list[Pending[Write, Result]]]:
        """What queued for `id`, to send now, as one call or (with nothing in flight, a
        long queue of shared writes) two, in order."""
        queue = self._queues.get(id)
        if not queue:
            return []
        self._queues[id] = []
        if (
            len(queue) >= SPLIT
            and self._lanes.get(id, 0) <= 1  # none, or the one taking this
            and not self._flights.get(id)
            and all(pending.shared for pending in queue)
        ):
            half = len(queue) // 2
            return [queue[:half], queue[half:]]
        return [queue]

    def _lane(self, id: StateId, queue: list[Pending[Write, Result]]) -> None:
        """Start a task that sends `queue` to `id`, then what queues meanwhile (tasks run
        in the order they were started, so their calls are taken in this order)."""
        self._lanes[id] = self._lanes.get(id, 0) + 1
        task = (self._loop or asyncio.get_running_loop()).create_task(self._send(id, queue))
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
                taken = self._take(id)
                queue = taken[0] if taken else []
                for later in taken[1:]:
                    self._lane(id, later)  # its call is taken after this task's, below
        finally:
            self._lanes[id] -= 1
            if not self._lanes[id]:
                del self._lanes[id]
                self._next(id)

    async def _send_in_order(self, id: StateId, queue: list[Pending[Write, Result]]) -> None:
        """Send `queue` in order, as one flight: runs of shared writes in one call each,
        others alone; named, after the flight before it, if it is one call of shared
        writes, else once every flight before it returned."""
        # A caller cancelled while its write waited here does not want it sent.
        waiting = [pending for pending in queue if not pending.future.done()]
        if not waiting:
            return
        flights = self._flights.setdefault(id, [])
        loop = self._loop or asyncio.get_running_loop()
        named = len(waiting) > 1 and all(pending.shared for pending in waiting)
        flight = Flight(next(self._numbers), named, loop.create_future())
        flights.append(flight)
        try:
            if named:
                await self._send_named(id, waiting, flight)
                return
            for earlier in flights[: flights.index(flight)]:
                await earlier.done
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
                    await self._send_together(id, group, None, None)
        finally:
            flights.remove(flight)
            if not flights:
                del self._flights[id]
            flight.done.set_result(None)

    async def _send_named(
        self, id: StateId, group: list[Pending[Write, Result]], flight: Flight
    ) -> None:
        """Send `group` as call `flight`, applied after the flight before it, if any is
        still in flight; if the server held it back, once that one returned, again."""
        while True:
            flights = self._flights[id]
            index = flights.index(flight)
            before = flights[index - 1] if index else None
            if before is not None and not before.named:
                await before.done  # it cannot be named on the server: wait for it
                continue
            after = None if before is None else before.number
            if await self._send_together(id, group, flight.number, after):
                return
            assert before is not None  # only a call sent after another is held back
            await before.done
            # A caller cancelled meanwhile does not want its write sent (none was applied).
            group = [pending for pending in group if not pending.future.done()]
            if not group:
                return

    async def _send_alone(self, id: StateId, pending: Pending[Write, Result]) -> None:
        try:
            result = await self._alone(id, pending.write)
        except Exception as error:
            _settle(pending.future, error)
        else:
            _settle(pending.future, result)

    async def _send_together(
        self,
        id: StateId,
        group: list[Pending[Write, Result]],
        number: int | None,
        after: int | None,
    ) -> bool:
        """Send `group` in one call and settle each write; False if the server held it
        back (call `after` not applied), with nothing settled."""
        try:
            results = await self._together(id, [pending.write for pending in group], number, after)
        except Exception as error:
            for pending in group:
                _settle(pending.future, copy.copy(error))  # each caller raises its own
            return True
        if results is None:
            return False
        for pending, result in zip(group, results, strict=True):
            _settle(pending.future, result)
        return True


def _settle(future: asyncio.Future[Result], outcome: object) -> None:
    """Give `future` its result or error, unless its caller gave up on it."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
