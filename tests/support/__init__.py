"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from livestate import LiveState, LiveStateError, Node, NotFoundError
from livestate.testing import eventually, in_order

__all__ = ["MakeNode", "Writers", "eventually", "in_order", "node_maker", "running"]

MakeNode = Callable[[], Awaitable[Node]]
"""What the node-making fixtures give a test: call it for one more started node."""


@asynccontextmanager
async def node_maker(new: Callable[[], Node]) -> AsyncIterator[MakeNode]:
    """Makes started nodes with `new()`; closes every one of them on leaving."""
    nodes: list[Node] = []

    async def make() -> Node:
        node = new()
        nodes.append(node)
        return await node.__aenter__()

    try:
        yield make
    finally:
        for node in nodes:
            await node.aclose()


async def running(node: Node, spec: type[LiveState], key: str) -> bool:
    """Whether the live state of `spec` for `key` is running, as `node` sees it."""
    try:
        await node.get(spec, key)
    except NotFoundError:
        return False
    return True


class Writers:
    """Tasks that repeat one write until stopped, counting what was acknowledged and what
    failed (a failed write may or may not have happened, but never twice)."""

    def __init__(self, write: Callable[[], Awaitable[object]], count: int = 1) -> None:
        self.acknowledged = 0
        self.unsure = 0
        self._write = write
        self._stop = asyncio.Event()
        self._tasks = [asyncio.get_running_loop().create_task(self._run()) for _ in range(count)]

    async def stop(self) -> None:
        """Stop after the writes under way, and wait for them."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._write()
            except LiveStateError:
                self.unsure += 1
            else:
                self.acknowledged += 1
