"""`livestate inspect` on a Valkey Cluster: live states on every shard, nodes from any."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from livestate import LiveState, Node
from livestate._backends.redis.slots import key_slot
from livestate.testing import ClusterProcess


class Inspected(LiveState):
    name = "ClusterInspected"  # tests/browser/test_inspector.py has an Inspected of its own
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": key}


async def test_inspect_lists_live_states_of_every_shard_and_both_nodes(
    cluster: ClusterProcess,
) -> None:
    """Six live states spread over the three primaries, held by two nodes: the CLI, given
    the cluster's URL, lists each with its holders' client counts, and both nodes."""
    keys = [f"seen-{n}" for n in range(6)]
    owners = {cluster.owner(key_slot(f"ls:{{ClusterInspected:{key}}}:m")) for key in keys}
    assert len(owners) == 3
    url = f"{cluster.url}?lease=0.5"
    async with Node(url) as a, Node(url) as b:
        for key in keys:
            await a.attach(Inspected, key)
        for key in keys[:2]:
            await b.attach(Inspected, key)
            await b.attach(Inspected, key)

        async def announced() -> bool:
            return len((await a.survey()).nodes) == 2

        deadline = asyncio.get_running_loop().time() + 3
        while not await announced():  # nodes announce themselves each heartbeat
            assert asyncio.get_running_loop().time() < deadline, "the nodes never announced"
            await asyncio.sleep(0.05)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "livestate", "inspect", cluster.url],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "6 live states, 2 nodes" in out, out
    rows = {
        line.split()[1]: line for line in out.splitlines() if line.startswith("ClusterInspected ")
    }
    assert set(rows) == {f"'{key}'" for key in keys}
    for key in keys[:2]:
        assert f"{a.id}: " in rows[f"'{key}'"] and f"{b.id}: " in rows[f"'{key}'"]
        assert "(2)" in rows[f"'{key}'"]
    for key in keys[2:]:
        assert f"{a.id}: " in rows[f"'{key}'"] and b.id not in rows[f"'{key}'"]
    nodes = {
        line.split()[0]: line.split()[2:] for line in out.splitlines() if line[:16] in (a.id, b.id)
    }
    assert nodes[a.id] == ["6", "6"] and nodes[b.id] == ["2", "4"]
