"""Helpers for testing an app's state specs: a node of its own, a recording on_change, a poller.

from livestate.testing import Recorder, eventually, memory_node

async def test_a_post_reaches_every_client():
    async with memory_node():
        seen = Recorder()
        await ChatRoom.attach("lobby", on_change=seen)
        await ChatRoom.append("lobby", "messages", {"text": "hi"})
        await seen.wait_for(lambda change: change.prop == "messages")
        assert seen.in_order()
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .._changes import Change
from .._node import Node, use

POLL = 0.005
"""Seconds between two looks at a condition."""


async def eventually(condition: Callable[[], object], within: float = 3.0) -> None:
    """Return once `condition()` is true; raise AssertionError if it is not within `within`
    seconds. Tests wait for what they expect this way, not with sleeps."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Not true within {within} s: {condition}.")
        await asyncio.sleep(POLL)


def in_order(changes: list[Change]) -> bool:
    """Whether `changes` keep livestate's order: each version one above the last, but a
    `reset` (which may jump ahead) and a `stopped` (at the last version)."""
    return all(
        change.version == before.version + 1
        or (change.kind == "reset" and change.version > before.version)
        or (change.kind == "stopped" and change.version >= before.version)
        for before, change in itertools.pairwise(changes)
    )


class Recorder:
    """An `on_change` that records every change, for a test to look at or wait for.

    `changes` is every change so far, oldest first; `kinds` and `values` their
    kinds and values. Pass the recorder itself as `on_change`.
    """

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, change: Change) -> None:
        """Record `change` (called by livestate with each one)."""
        self.changes.append(change)

    def __len__(self) -> int:
        return len(self.changes)

    @property
    def kinds(self) -> list[str]:
        """The kinds of the changes so far, oldest first."""
        return [change.kind for change in self.changes]

    @property
    def values(self) -> list[object]:
        """The values of the changes so far, oldest first."""
        return [change.value for change in self.changes]

    def in_order(self) -> bool:
        """Whether the changes so far keep livestate's order (see `in_order`)."""
        return in_order(self.changes)

    async def wait_for(self, match: Callable[[Change], bool], within: float = 3.0) -> Change:
        """The first change (recorded already, or yet to come) that `match` accepts; raise
        AssertionError if none comes within `within` seconds."""
        found: list[Change] = []

        def matched() -> bool:
            found.extend(change for change in self.changes if match(change))
            return bool(found)

        await eventually(matched, within)
        return found[0]


@asynccontextmanager
async def memory_node() -> AsyncIterator[Node]:
    """A fresh node on its own memory:// backend, current inside the block (the LiveState
    class methods use it), closed on leaving: a test's live states are its own."""
    async with Node("memory://") as node:
        with use(node):
            yield node
