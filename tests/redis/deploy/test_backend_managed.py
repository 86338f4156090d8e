"""A managed endpoint (ElastiCache, MemoryDB, Memorystore, Azure Cache): one name that the
service points at the new primary on failover. A TCP proxy plays that name here."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from livestate import BackendUnavailableError, LiveState, Node
from livestate.testing import SentinelProcess

from ...support import eventually
from ...support.proxy import Proxy


class Managed(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_a_role_change_behind_one_endpoint_is_followed(sentinel: SentinelProcess) -> None:
    """The endpoint's primary is demoted (READONLY) and the name moves to the new one: the
    node drops its connections, connects again through the name, and writes resume;
    with ?replicas=1 no acknowledged write is lost."""
    async with Proxy(sentinel.primary()) as endpoint:
        url = f"redis://127.0.0.1:{endpoint.port}/0?replicas=1&lease=1"
        async with Node(url) as node:
            client = await node.attach(Managed, "k")
            acknowledged = 0
            for _ in range(10):
                await client.increment("n")
                acknowledged += 1
            new = await asyncio.to_thread(sentinel.fail_over)
            endpoint.retarget(new)  # the service moves its name to the new primary
            unsure = 0
            started = time.monotonic()
            while True:
                try:
                    await client.increment("n")
                except BackendUnavailableError:
                    unsure += 1
                    assert time.monotonic() - started < 15, "writes never resumed"
                    continue
                acknowledged += 1
                break
            total = await node.get(Managed, "k", "n")
            assert acknowledged <= total <= acknowledged + unsure
            await eventually(lambda: client.state["n"] == total, within=2.0)
