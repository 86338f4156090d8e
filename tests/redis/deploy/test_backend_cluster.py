"""The redis:// backend on a Valkey Cluster (3 primaries, 3 replicas): routing by slot,
sharded pub/sub per shard, a slot migration under writes, a primary killed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from livestate import Change, InvalidValueError, LiveState, LiveStateError, Node
from livestate._backends.redis.slots import key_slot
from livestate.testing import ClusterProcess

from ...support import Writers, eventually, in_order


class Sharded(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "log": []}


def slot_of(key: str) -> int:
    """The cluster slot of the live state Sharded `key` (its keys share one hash tag)."""
    return key_slot(f"ls:{{Sharded:{key}}}:m")


def other_primary(cluster: ClusterProcess, slot: int) -> int:
    owner = cluster.owner(slot)
    return next(port for port in cluster.primaries() if port != owner)


async def test_live_states_spread_over_the_shards_work_from_two_nodes(
    cluster: ClusterProcess,
) -> None:
    """Twelve keys over three shards: a node's writes reach clients on the other node, in
    order; the slots of the keys cover every primary; a survey lists them all."""
    keys = [f"spread-{n}" for n in range(12)]
    owners = {cluster.owner(slot_of(key)) for key in keys}
    assert len(owners) == 3  # the keys do reach every shard
    async with Node(f"{cluster.url}?lease=1") as a, Node(f"{cluster.url}?lease=1") as b:
        seen: dict[str, list[Change]] = {key: [] for key in keys}
        clients = [await a.attach(Sharded, key, on_change=seen[key].append) for key in keys]
        for round_ in range(5):
            await asyncio.gather(*(b.increment(Sharded, key, "n") for key in keys))
            await asyncio.gather(*(b.append(Sharded, key, "log", round_) for key in keys))
        # The last appends were acknowledged to b; they reach a's clients within the bound.
        await eventually(lambda: all(len(client.state["log"]) == 5 for client in clients), 2.0)
        assert all(client.state["n"] == 5 for client in clients)
        assert all(client.state["log"] == [0, 1, 2, 3, 4] for client in clients)
        assert all(in_order(changes) and len(changes) == 10 for changes in seen.values())
        survey = await a.survey()
        assert {state.key for state in survey.states} >= set(keys)


async def test_any_node_of_a_cluster_is_enough(cluster: ClusterProcess) -> None:
    """redis://host:port of one cluster node is found to be a cluster and routes by slot;
    a database number, which a cluster lacks, is refused with a clear message."""
    port = cluster.primaries()[0]
    async with Node(f"redis://127.0.0.1:{port}") as node:
        for n in range(6):
            await node.start(Sharded, f"one-seed-{n}")
            await node.put(Sharded, f"one-seed-{n}", "n", n)
        assert [await node.get(Sharded, f"one-seed-{n}", "n") for n in range(6)] == list(range(6))
    numbered = Node(f"redis://127.0.0.1:{port}/1")
    try:
        with pytest.raises(InvalidValueError, match=r"a cluster has only database 0"):
            await numbered.start(Sharded, "x")
    finally:
        await numbered.aclose()


async def test_a_slot_migration_under_writes_loses_nothing(cluster: ClusterProcess) -> None:
    """A live state's slot moves to another primary, its keys a few at a time, while a node
    writes: every failure is a LiveStateError, every acknowledged increment is there, none
    twice, and a client on another node converges within 2 s after."""
    key = "migrating"
    slot = slot_of(key)
    async with Node(cluster.url) as writer, Node(cluster.url) as reader:
        changes: list[Change] = []
        client = await reader.attach(Sharded, key, on_change=changes.append)
        writers = Writers(lambda: writer.increment(Sharded, key, "n"), count=3)
        await eventually(lambda: writers.acknowledged > 30)
        target = other_primary(cluster, slot)
        await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target)
        settled = writers.acknowledged
        await eventually(lambda: writers.acknowledged > settled + 30, within=15.0)
        await writers.stop()
        total = await writer.get(Sharded, key, "n")
        assert writers.acknowledged <= total <= writers.acknowledged + writers.unsure
        await eventually(lambda: client.state["n"] == total, within=2.0)
        assert in_order(changes)
        assert cluster.owner(slot) == target


async def test_a_killed_primary_is_followed(cluster: ClusterProcess) -> None:
    """The primary of a live state's slot is killed and its replica promoted: writes resume
    within 15 s, and a client on another node converges."""
    key = "orphaned"
    slot = slot_of(key)
    async with Node(cluster.url) as writer, Node(cluster.url) as reader:
        client = await reader.attach(Sharded, key)
        for _ in range(10):
            await writer.increment(Sharded, key, "n")
        primary = cluster.owner(slot)
        promoted = asyncio.create_task(asyncio.to_thread(cluster.fail_over, primary))
        started = time.monotonic()
        try:
            while True:
                try:
                    await writer.increment(Sharded, key, "n")
                except LiveStateError:
                    assert time.monotonic() - started < 15, "writes never resumed"
                    continue
                if promoted.done():
                    break
            await promoted
            total = await writer.get(Sharded, key, "n")
            await eventually(lambda: client.state["n"] == total, within=2.0)
        finally:
            await promoted
            await asyncio.to_thread(cluster.restart, primary)
