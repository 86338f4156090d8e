"""`?replicas=` on a Redis Cluster: a write is acknowledged once the replica of its shard
has it (WAIT, sent right behind the script on the same shard connection)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from livestate import BackendUnavailableError, LiveState, LiveStateError, Node
from livestate._backends.slots import key_slot
from livestate.testing import ClusterProcess

from ..support import eventually


class Replicated(LiveState):
    """One counter."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


def slot_of(key: str) -> int:
    return key_slot(f"ls:{{Replicated:{key}}}:m")


async def test_a_write_waits_for_the_replica_of_its_shard(cluster: ClusterProcess) -> None:
    """With the shard's replica frozen, a write is never acknowledged: it fails with
    BackendUnavailableError within the timeout, saying the replica did not confirm it, and
    it was applied once (its retries found it done); thawed, writes are acknowledged again."""
    key = "waited"
    async with Node(f"{cluster.url}?replicas=1&timeout=1") as node:
        await node.start(Replicated, key)
        assert await node.increment(Replicated, key, "n") == 1
        replica = cluster.replica_of(cluster.owner(slot_of(key)))
        cluster.pause(replica)
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=r"did not confirm that 1 replica"):
                await node.increment(Replicated, key, "n")
            assert time.monotonic() - started < 1.5
        finally:
            cluster.resume(replica)
        assert await node.get(Replicated, key, "n") == 2
        assert await node.increment(Replicated, key, "n") == 3


async def test_a_killed_primary_loses_no_acknowledged_write(cluster: ClusterProcess) -> None:
    """Writes with ?replicas=1 while their shard's primary is killed and its replica
    promoted: none is acknowledged while the promoted one has no replica; once the old
    primary is back as its replica, writes are acknowledged again within 15 s, and the
    counter holds every acknowledged increment (and at most the unsure ones besides)."""
    key = "durable"
    async with Node(f"{cluster.url}?replicas=1") as node:
        await node.start(Replicated, key)
        acknowledged = unsure = 0
        stop = asyncio.Event()

        async def write() -> None:
            nonlocal acknowledged, unsure
            while not stop.is_set():
                try:
                    await node.increment(Replicated, key, "n")
                except LiveStateError:
                    unsure += 1  # may or may not have happened; never twice
                else:
                    acknowledged += 1

        writer = asyncio.create_task(write())
        try:
            await eventually(lambda: acknowledged >= 20)
            primary = cluster.owner(slot_of(key))
            await asyncio.to_thread(cluster.fail_over, primary)
            await asyncio.to_thread(cluster.restart, primary)  # back, as the new one's replica
            settled = acknowledged
            await eventually(lambda: acknowledged >= settled + 20, within=15.0)
        finally:
            stop.set()
            await writer
        total = await node.get(Replicated, key, "n")
        assert acknowledged <= total <= acknowledged + unsure
