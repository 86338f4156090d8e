"""Writes on a Redis Cluster: with `?replicas=`, acknowledged once the replica of their
shard has them (WAIT, right behind the script on the same shard connection); and every
kind of write through a slot migration, each declaring only its own keys."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from livestate import BackendUnavailableError, LiveState, LiveStateError, Node
from livestate._backends.redis.slots import key_slot
from livestate.testing import ClusterProcess, command

from ...support import Writers, eventually


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


def waits(port: int) -> int:
    """WAIT commands the server on `port` has run."""
    stats: str = command(port, "INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_writes_that_wait_for_replicas_are_not_coalesced(cluster: ClusterProcess) -> None:
    """With ?replicas=1, writes made at once still go one call each, each followed by its own
    WAIT on the same connection (a WAIT confirms what its connection wrote before it):
    eight concurrent increments are eight WAITs on their shard's primary, all applied."""
    key = "apart"
    async with Node(f"{cluster.url}?replicas=1") as node:
        await node.start(Replicated, key)
        primary = cluster.owner(slot_of(key))
        before = waits(primary)
        await asyncio.gather(*(node.increment(Replicated, key, "n") for _ in range(8)))
        assert waits(primary) - before == 8
        assert await node.get(Replicated, key, "n") == 8


async def test_a_killed_primary_loses_no_acknowledged_write(cluster: ClusterProcess) -> None:
    """Writes with ?replicas=1 while their shard's primary is killed and its replica
    promoted: once the old primary is back as its replica, writes are acknowledged again
    within 15 s, and the counter holds every acknowledged increment (and at most the
    unsure ones besides)."""
    key = "durable"
    async with Node(f"{cluster.url}?replicas=1") as node:
        await node.start(Replicated, key)
        writers = Writers(lambda: node.increment(Replicated, key, "n"))
        try:
            await eventually(lambda: writers.acknowledged >= 20)
            primary = cluster.owner(slot_of(key))
            await asyncio.to_thread(cluster.fail_over, primary)
            await asyncio.to_thread(cluster.restart, primary)  # back, as the new one's replica
            settled = writers.acknowledged
            await eventually(lambda: writers.acknowledged >= settled + 20, within=15.0)
        finally:
            await writers.stop()
        total = await node.get(Replicated, key, "n")
        assert writers.acknowledged <= total <= writers.acknowledged + writers.unsure


class Mixed(LiveState):
    """A counter, a list and a text, for every kind of write at once."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "items": [], "text": ""}


async def test_every_kind_of_write_through_a_slot_migration(cluster: ClusterProcess) -> None:
    """Each write declares only its own keys: while the live state's slot moves two keys at a
    time, increments, appends (which declare the list keys) and puts run on; every failure
    is a LiveStateError, and each acknowledged write is there once (at most the unsure ones
    besides)."""
    key = "mixed"
    slot = key_slot(f"ls:{{Mixed:{key}}}:m")
    async with Node(cluster.url) as node:
        await node.start(Mixed, key)
        await node.append(Mixed, key, "items", 0)
        counts = {"increment": [0, 0], "append": [1, 0], "put": [0, 0]}
        items = itertools.count(1)  # each append's own item, so a double shows
        stop = asyncio.Event()

        async def write(kind: str) -> None:
            while not stop.is_set():
                try:
                    if kind == "increment":
                        await node.increment(Mixed, key, "n")
                    elif kind == "append":
                        await node.append(Mixed, key, "items", next(items))
                    else:
                        await node.put(Mixed, key, "text", f"t{counts['put'][0]}")
                except LiveStateError:
                    counts[kind][1] += 1  # may or may not have happened; never twice
                else:
                    counts[kind][0] += 1

        writers = [asyncio.create_task(write(kind)) for kind in counts]
        try:
            await eventually(lambda: all(done > 10 for done, _ in counts.values()))
            source = cluster.owner(slot)
            target = next(port for port in cluster.primaries() if port != source)
            await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target)
            settled = {kind: done for kind, (done, _) in counts.items()}
            await eventually(lambda: all(counts[kind][0] > settled[kind] + 10 for kind in counts))
        finally:
            stop.set()
            await asyncio.gather(*writers)
        state = await node.get(Mixed, key)
        done, unsure = counts["increment"]
        assert done <= state["n"] <= done + unsure
        done, unsure = counts["append"]
        assert done <= len(state["items"]) <= done + unsure
        assert len(set(state["items"])) == len(state["items"])  # none twice
        assert cluster.owner(slot) == target
