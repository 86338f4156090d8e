"""Faults against a real server: dropped pub/sub, restarts, pauses, hostile keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from livestate import BackendUnavailableError, Change, LiveState, Node
from livestate.testing import ServerProcess

from ..support import eventually, in_order


class Feed(LiveState):
    """Counts its on_mount runs, so a restart from on_mount is visible."""

    ttl = 5.0
    mounts = 0

    def on_mount(self, key: str) -> dict[str, Any]:
        Feed.mounts += 1
        return {"n": 0, "mount": Feed.mounts}


async def test_killed_pubsub_connections_resync_without_gaps(server: ServerProcess) -> None:
    """After CLIENT KILL TYPE pubsub mid-stream, clients converge in 2 s and skip no version."""
    async with Node(server.url) as writer_node, Node(server.url) as reader_node:
        changes: list[Change] = []
        reader = await reader_node.attach(Feed, "stream", on_change=changes.append)
        writer = await writer_node.attach(Feed, "stream")
        with redis.Redis.from_url(server.url) as admin:
            for n in range(1, 301):
                await writer.put("n", n)
                if n in (100, 200):
                    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        started = time.monotonic()
        await eventually(lambda: reader.version == writer.version, within=2.0)
        assert time.monotonic() - started < 2.0
        assert reader.state["n"] == 300
        assert in_order(changes)


async def test_a_server_restarted_empty_restarts_the_live_state_from_on_mount(
    server: ServerProcess,
) -> None:
    """Redis restarted empty: clients get a reset from a fresh on_mount, at an unused version."""
    async with Node(f"{server.url}?timeout=0.5") as node:
        changes: list[Change] = []
        client = await node.attach(Feed, "lost", on_change=changes.append)
        for n in range(5):
            await client.put("n", n)
        before = client.version
        mounts = Feed.mounts
        server.kill()
        server.start()
        await eventually(lambda: any(c.kind == "reset" for c in changes), within=10.0)
        reset = next(c for c in changes if c.kind == "reset")
        assert reset.value == {"n": 0, "mount": mounts + 1}
        assert reset.version > before
        await client.put("n", 99)
        assert client.state["n"] == 99
        assert (await node.get(Feed, "lost"))["n"] == 99


async def test_a_paused_server_fails_writes_in_time_then_everything_converges(
    server: ServerProcess,
) -> None:
    """Paused 3 s, writes fail in time with BackendUnavailableError; after SIGCONT all converge."""
    url = f"{server.url}?timeout=0.5"
    async with Node(url) as a, Node(url) as b:
        writer = await a.attach(Feed, "paused")
        reader = await b.attach(Feed, "paused")
        await writer.put("n", 1)
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="did not answer within"):
                await writer.put("n", 2)
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(3.0 - (time.monotonic() - started))
        finally:
            server.resume()
        for attempt in range(50):
            try:
                await writer.put("n", 3)
                break
            except BackendUnavailableError:
                await asyncio.sleep(0.1 * attempt)
        await eventually(lambda: reader.state.get("n") == 3 == writer.state.get("n"), within=2.0)
        assert reader.version == writer.version


HOSTILE = [
    "a:b",
    "a",
    "b",
    "{x}y",
    "x",
    "*",
    "?",
    "\x00",
    "\x00\x00",
    "k" * 10_000,
    "') redis.call('FLUSHALL') --",
    "]] .. redis.call('FLUSHALL') .. [[",
    "%7Bx%7D",
    "ünï{}código",
]


async def test_hostile_keys_stay_separate_and_safe(server: ServerProcess) -> None:
    """Keys with `:`, braces, globs, NUL, 10 KB or Lua code each keep a live state of their own."""
    async with Node(server.url) as node:
        clients = [await node.attach(Feed, key) for key in HOSTILE]
        for index, client in enumerate(clients):
            await client.put("n", index)
            await client.append("log", client.key)
        for index, key in enumerate(HOSTILE):
            state = await node.get(Feed, key)
            assert state["n"] == index
            assert state["log"] == [key]
        with redis.Redis.from_url(server.url) as admin:
            every = [key.decode() for key in admin.keys("*")]
        # Beside the live states, only the server's layout and the nodes' announcements.
        keys = [key for key in every if key.startswith("ls:{")]
        assert all(
            key == "ls:layout" or key.startswith("ls:node:") for key in set(every) - set(keys)
        )
        # One hash tag per key, so each live state stays in one slot.
        assert all(key.count("{") == 1 and key.count("}") == 1 for key in keys)
        assert len({key[key.index("{") : key.index("}")] for key in keys}) == len(HOSTILE)
        for client in clients:
            await client.detach()


def test_a_missing_hiredis_package_says_what_to_install() -> None:
    """Without hiredis, a redis:// URL raises ImportError naming the extra to install."""
    code = (
        "import sys; sys.modules['hiredis'] = None\n"
        "from livestate._backends import from_url\n"
        "try:\n"
        "    from_url('redis://127.0.0.1:1/0')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'livestate[redis]'" in result.stdout


async def test_an_unreachable_server_fails_writes_in_time() -> None:
    """A node whose server is gone raises BackendUnavailableError within its timeout, not a hang."""
    server = ServerProcess().start()
    try:
        url = f"{server.url}?timeout=0.5"
        async with Node(url) as node:
            await node.start(Feed, "gone")
            server.kill()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                await node.put(Feed, "gone", "n", 1)
            assert time.monotonic() - started < 1.0
    finally:
        server.stop()


async def test_maxmemory_policy_that_may_evict_is_warned_about(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """At start, a maxmemory-policy that may evict live state keys logs a warning."""
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("maxmemory-policy", "allkeys-lru")
    async with Node(server.url) as node:
        await node.start(Feed, "warned")
    assert any("maxmemory-policy allkeys-lru" in record.getMessage() for record in caplog.records)


async def test_a_policy_changed_to_evict_later_is_warned_about(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A maxmemory-policy set to evict while nodes run is warned about within a few beats."""
    async with Node(f"{server.url}?lease=0.25") as node:
        await node.start(Feed, "later")
        assert not any("maxmemory-policy" in r.getMessage() for r in caplog.records)
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("maxmemory-policy", "volatile-lru")
        await eventually(
            lambda: any("policy volatile-lru" in r.getMessage() for r in caplog.records),
            within=2.0,
        )
