"""Metrics move as a scripted workload says they must, on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

import livestate
from livestate import Change, LiveState, Node
from livestate.testing import ServerProcess

from ..support import MakeNode, eventually


class Metered(LiveState):
    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


def sample(name: str, node: Node, **labels: str) -> float:
    """The value of one series of `node` (0 when it was never touched)."""
    return REGISTRY.get_sample_value(name, {"node": node.id, **labels}) or 0.0


async def test_a_scripted_workload_is_counted(make_node: MakeNode) -> None:
    """Two clients, five puts and three increments: counts, gauges and the histogram agree."""
    node = await make_node()
    assert node.metrics is not None
    first = await node.attach(Metered, "k")
    second = await node.attach(Metered, "k")
    assert sample("livestate_live_states", node) == 1
    assert sample("livestate_clients", node) == 2
    for n in range(5):
        await first.put("n", n)
    for _ in range(3):
        await second.increment("n")
    assert sample("livestate_writes_total", node, kind="put") == 5
    assert sample("livestate_writes_total", node, kind="increment") == 3
    assert sample("livestate_write_seconds_count", node) == 8
    assert sample("livestate_write_seconds_sum", node) > 0
    await eventually(lambda: sample("livestate_deliveries_total", node, kind="updated") == 16)
    await first.detach()
    await second.detach()
    assert sample("livestate_clients", node) == 0
    assert sample("livestate_live_states", node) == 0


async def test_a_reader_past_max_lag_is_counted_as_a_lag_reset(node: livestate.Node) -> None:
    """A changes() reader that is late gets a reset, counted with its cause."""
    client = await Metered.attach("late", max_lag=0.05)
    await Metered.put("late", "n", 1)
    await asyncio.sleep(0.1)  # late on purpose: the condition under test
    assert (await anext(client.changes())).kind == "reset"
    assert sample("livestate_resets_total", node, cause="lag") == 1
    await client.detach()


async def test_metrics_off_cost_nothing_and_count_nothing() -> None:
    """A node with metrics off has none, and writes through it leave no series."""
    async with Node("memory://", metrics=False) as node:
        assert node.metrics is None
        await node.start(Metered, "off")
        await node.put(Metered, "off", "n", 1)
        series = {"node": node.id, "kind": "put"}
        assert REGISTRY.get_sample_value("livestate_writes_total", series) is None


async def test_redis_counts_resyncs_reconnects_latency_errors_and_leases(
    server: ServerProcess,
) -> None:
    """On Redis: a killed pub/sub connection is a reconnect and a resync by that cause;
    another node's writes fill the delivery latency; OOM is a backend error by its code;
    the heartbeat renews leases."""
    url = f"{server.url}?lease=0.25&timeout=0.5"
    async with Node(url) as writer, Node(url) as reader:
        changes: list[Change] = []
        client = await reader.attach(Metered, "r", on_change=changes.append)
        for n in range(10):
            await writer.put(Metered, "r", "n", n)
        await eventually(lambda: client.state["n"] == 9)
        # Each change that came by message is timed; a resync on a loaded machine (a reset)
        # is not, and may stand for several writes.
        messages = [change for change in changes if change.kind != "reset"]
        assert messages
        await eventually(
            lambda: sample("livestate_delivery_seconds_count", reader) == len(messages)
        )
        assert sample("livestate_delivery_seconds_sum", reader) < 10  # seconds, not µs
        await eventually(lambda: sample("livestate_lease_renewals_total", reader) >= 2)
        with redis.Redis.from_url(server.url) as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await eventually(lambda: sample("livestate_reconnects_total", reader) >= 1)
            await eventually(
                lambda: sample("livestate_resyncs_total", reader, cause="reconnect") >= 1
            )
            admin.config_set("maxmemory", 1)
            try:
                with pytest.raises(livestate.BackendError):
                    await writer.put(Metered, "r", "n", "x" * 100)
            finally:
                admin.config_set("maxmemory", 0)
        assert sample("livestate_backend_errors_total", writer, error="OOM") == 1
