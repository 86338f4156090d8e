"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence

from livestate import Change, LiveState, Node, NotFoundError


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Wait until `condition()` is true; fail the test if it is not within `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {condition}")
        await asyncio.sleep(0.005)


def in_order(changes: Sequence[Change]) -> bool:
    """Whether versions strictly increase, by exactly one but where a change is a reset."""
    return all(
        change.version == before.version + 1
        or (
            (change.kind in ("reset", "stopped") and change.version >= before.version)
            and (change.kind == "stopped" or change.version > before.version)
        )
        for before, change in itertools.pairwise(changes)
    )


async def running(node: Node, spec: type[LiveState], key: str) -> bool:
    """Whether the live state of `spec` for `key` is running, as `node` sees it."""
    try:
        await node.get(spec, key)
    except NotFoundError:
        return False
    return True
