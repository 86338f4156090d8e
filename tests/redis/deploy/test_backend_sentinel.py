"""The redis:// backend on Sentinel: livestate nodes follow a failover."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from livestate import BackendUnavailableError, Change, LiveState, Node
from livestate.testing import SentinelProcess

from ...support import eventually, in_order


class Guarded(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_nodes_follow_a_sentinel_failover(sentinel: SentinelProcess) -> None:
    """Writes go on through a failover: the ones acknowledged are all there, none twice;
    writes resume within 15 s, and a client on another node converges within 2 s after."""
    url = f"{sentinel.url}?lease=1"
    async with Node(url) as writer, Node(url) as reader:
        changes: list[Change] = []
        client = await reader.attach(Guarded, "votes", on_change=changes.append)
        acknowledged = 0
        for _ in range(20):
            await writer.increment(Guarded, "votes", "n")
            acknowledged += 1
        failed_over = asyncio.create_task(asyncio.to_thread(sentinel.fail_over))
        resumed = None
        unsure = 0  # failed in the failover: each may or may not have happened, once
        started = time.monotonic()
        while not failed_over.done() or resumed is None:
            try:
                await writer.increment(Guarded, "votes", "n")
            except BackendUnavailableError:
                unsure += 1
            else:
                acknowledged += 1
                if failed_over.done() and resumed is None:
                    resumed = time.monotonic()
            assert time.monotonic() - started < 30, "writes never resumed"
        new_primary = await failed_over
        assert resumed is not None and resumed - started < 15
        total = await writer.get(Guarded, "votes", "n")
        # Every acknowledged write is there; an unacknowledged one may be, but once.
        assert acknowledged <= total <= acknowledged + unsure
        await eventually(lambda: client.state["n"] == total, within=2.0)
        assert in_order(changes)
        assert sentinel.primary() == new_primary
