"""Renders due after changes, run by one task per loop turn instead of one task per view.

A write to a live state that a thousand views show makes a thousand renders. A
task each would cost more than many renders' own work (a task is made, scheduled,
registered and collected); here the first change of a loop turn starts one task,
which runs every due render in turn. A render that has to wait (its socket is
slow to take the diff, or still joining, or another render of the same socket
holds its lock) must not hold up the others: the moment it first waits, the
renders still due go on in a new task, and the waiting one finishes in its own.
That is what Python 3.12's eager tasks give; livestate also runs on 3.11.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

__all__ = ["Renderable", "schedule"]

logger = logging.getLogger("livestate")


class Renderable(Protocol):
    """What is rendered: a socket's binding, whose `render` covers all its pending changes."""

    def render(self) -> Coroutine[Any, Any, None]:
        """Render until nothing is pending."""


def schedule(item: Renderable) -> None:
    """Render `item` soon: in this loop turn's render task, started if there is none."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = _Queue()
    queue.add(item)


class _Queue:
    """One event loop's due renders and the task that runs them (None: none is running)."""

    __slots__ = ("due", "runner")

    def __init__(self) -> None:
        self.due: dict[Renderable, None] = {}
        self.runner: asyncio.Task[None] | None = None

    def add(self, item: Renderable) -> None:
        self.due[item] = None
        if self.runner is None:
            self._start()

    def _start(self) -> None:
        self.runner = runner = asyncio.get_running_loop().create_task(self._run())
        _tasks.add(runner)
        runner.add_done_callback(_tasks.discard)

    async def _run(self) -> None:
        me = asyncio.current_task()
        try:
            while self.due and self.runner is me:
                item = next(iter(self.due))
                del self.due[item]
                try:
                    await _Inline(item.render(), self._hand_over)
                except Exception:
                    logger.exception("A livestate render raised")
        finally:
            if self.runner is me:
                self.runner = None

    def _hand_over(self) -> None:
        """The render under way waits: the renders still due go on in a new task."""
        self.runner = None
        if self.due:
            self._start()


class _Inline:
    """Await a coroutine in the awaiting task, calling `waits` the first time it waits.

    It forwards what the coroutine yields to the task and what the task sends or
    throws back, as `await` does: the coroutine runs as part of the task (its
    `current_task`, its cancellation), only with a hook on its first wait.
    """

    __slots__ = ("coro", "waits")

    def __init__(self, coro: Coroutine[Any, Any, None], waits: Callable[[], None]) -> None:
        self.coro = coro
        self.waits = waits

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        try:
            signal = coro.send(None)
        except StopIteration:
            return
        self.waits()
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # a cancellation, or the awaited future's error
                try:
                    signal = coro.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    signal = coro.send(sent)
                except StopIteration:
                    return


# Per event loop: a queue must never wait for a task of a loop that has ended.
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
# Render tasks, referenced so that they are not collected mid-way.
_tasks: set[asyncio.Task[None]] = set()
