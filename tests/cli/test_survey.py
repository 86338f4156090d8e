"""`livestate inspect` and `Node.survey`: the right numbers for a known setup."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import pytest
import redis

from livestate import LiveState, MemoryBackend, Node
from livestate.testing import ServerProcess


class Seen(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": key}


@pytest.fixture
def empty(redis_server: ServerProcess) -> ServerProcess:
    """The shared server, emptied: only this test's live states are there."""
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.flushall()
    return redis_server


def inspect(*args: str) -> str:
    """Run `python -m livestate inspect ARGS` and return what it printed; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "livestate", "inspect", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_inspect_prints_two_nodes_and_three_keys(empty: ServerProcess) -> None:
    """Versions, sizes, presences, holders with their client counts, and nodes with their
    totals."""
    url = f"{empty.url}?lease=0.5"
    async with Node(url) as a, Node(url) as b:
        one = [await a.attach(Seen, "one") for _ in range(2)]
        await a.attach(Seen, "two")
        await b.attach(Seen, "two")
        three = [await b.attach(Seen, "three") for _ in range(3)]
        await three[1].track("ann")
        await three[2].track("bob")
        for n in range(3):
            await one[0].put("n", n)
        await three[0].put("x", "y" * 100)

        # Nodes announce themselves on attach and detach, and with each heartbeat.
        deadline = asyncio.get_running_loop().time() + 3
        while len((await a.survey()).nodes) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the nodes never announced"
            await asyncio.sleep(0.05)
        out = await asyncio.to_thread(inspect, empty.url)
    assert "3 live states, 2 nodes" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("Seen ")}
    assert set(rows) == {"'one'", "'two'", "'three'"}
    assert f" {one[0].version} " in rows["'one'"]
    assert f"{a.id}: " in rows["'one'"] and "(2)" in rows["'one'"] and b.id not in rows["'one'"]
    assert re.search(rf"{a.id}: [\d.]+s \(1\)", rows["'two'"])
    assert re.search(rf"{b.id}: [\d.]+s \(1\)", rows["'two'"])
    assert re.search(rf"{b.id}: [\d.]+s \(3\)", rows["'three'"])
    # "three" holds {"title": "three", "x": "y" * 100}: 5 + 7 + 1 + 102 bytes, 2 presences.
    assert " 115       2 " in rows["'three'"] and " 0 " in rows["'one'"]
    nodes = {
        line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:16] in (a.id, b.id)
    }
    assert nodes[a.id][1:] == ["2", "3"] and nodes[b.id][1:] == ["2", "4"]


async def test_inspect_one_key_prints_its_properties(empty: ServerProcess) -> None:
    """`inspect URL SPEC:KEY` shows that live state only, with its properties."""
    async with Node(empty.url) as node:
        await node.start(Seen, "solo")
        await node.put(Seen, "solo", "score", 42)
        out = await asyncio.to_thread(inspect, empty.url, "Seen:solo")
    assert "1 live states" in out and "Seen 'solo'" in out
    assert re.search(r"^score\s+42$", out, re.MULTILINE)


async def test_a_survey_on_memory_counts_clients_per_node() -> None:
    """Nodes sharing one MemoryBackend: the survey knows every node's clients."""
    shared = MemoryBackend()
    async with Node(backend=shared) as a, Node(backend=shared) as b:
        await a.attach(Seen, "m")
        await b.attach(Seen, "m")
        await (await b.attach(Seen, "m")).track("ann")
        survey = await a.survey()
    (state,) = survey.states
    assert (state.spec, state.key, state.clients) == ("Seen", "m", {a.id: 1, b.id: 2})
    assert set(state.holders) == {a.id, b.id} and state.expires_in is None
    assert state.present == 1
    assert {(n.id, n.states, n.clients) for n in survey.nodes} == {(a.id, 1, 1), (b.id, 1, 2)}


async def test_a_survey_shows_an_attach_and_a_detach_well_before_the_next_heartbeat(
    empty: ServerProcess,
) -> None:
    """A node announces within a moment of a client attaching or detaching, not only on its
    heartbeat (here every 6 s, past the 2 s this test waits): no holder shows 0 clients."""
    url = f"{empty.url}?lease=30"
    async with Node(url) as node, Node(url) as watcher:

        async def clients() -> int | None:
            nodes = {report.id: report for report in (await watcher.survey()).nodes}
            return nodes[node.id].clients if node.id in nodes else None

        first = await node.attach(Seen, "prompt")
        await eventually_async(clients, 1)
        second = await node.attach(Seen, "prompt")
        await eventually_async(clients, 2)
        await first.detach()
        await eventually_async(clients, 1)
        await second.detach()
        await eventually_async(clients, None)  # holds nothing: unlisted again


async def eventually_async(read: Any, expected: object, within: float = 2.0) -> None:
    """Wait until `await read()` gives `expected`, for at most `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (seen := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {seen}, not {expected}"
        await asyncio.sleep(0.02)
