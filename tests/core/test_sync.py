"""livestate.sync: the blocking server API, from threads and from a plain script."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState, MemoryBackend, Node, sync
from livestate.testing import ServerProcess
from tests.support import eventually


class Tally(LiveState):
    name = "SyncTally"
    acl = {"group": "all", "public": ["read", "write"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"count": 0, "log": []}


class Slow(LiveState):
    name = "SyncSlow"

    async def on_mount(self, key: str) -> dict[str, Any]:
        await asyncio.sleep(2)  # the live state's own start is slow, not the test
        return {}


@pytest.fixture
def redis_url(redis_server: ServerProcess) -> str:
    """The session's real server, emptied."""
    import redis

    with redis.Redis.from_url(redis_server.url) as connection:
        connection.flushall()
    return redis_server.url


@pytest.fixture
def threaded(redis_url: str) -> Iterator[sync.SyncNode]:
    """A SyncNode with its own thread and node, on the real server."""
    with sync.SyncNode(redis_url) as node:
        yield node


@pytest.fixture
async def watcher(redis_url: str) -> AsyncIterator[Node]:
    """An async node of the test's own loop, on the same server."""
    async with Node(redis_url) as node:
        yield node


async def test_writes_from_a_thread_reach_attached_clients(
    threaded: sync.SyncNode, watcher: Node
) -> None:
    """A write through a SyncNode's own thread and node reaches a client on another node."""
    seen: list[Change] = []
    client = await watcher.attach(Tally, "t1", seen.append)
    base = client.version
    await asyncio.to_thread(threaded.put, Tally, "t1", "count", 5)
    assert await asyncio.to_thread(threaded.increment, Tally, "t1", "count", 2) == 7
    await asyncio.to_thread(threaded.append, Tally, "t1", "log", "x", max_len=3)
    await eventually(lambda: len(seen) == 3)
    assert [change.version for change in seen] == [base + 1, base + 2, base + 3]
    assert dict(client.state) == {"count": 7, "log": ["x"]}
    assert await asyncio.to_thread(threaded.get, Tally, "t1", "count") == 7
    assert dict(await asyncio.to_thread(threaded.get, Tally, "t1")) == dict(client.state)


async def test_presence_is_listed_from_a_thread(threaded: sync.SyncNode, watcher: Node) -> None:
    """A thread sees who a client on another node shows in the presence."""
    client = await watcher.attach(Tally, "seen")
    await client.track("ann", {"typing": True})
    listed = await asyncio.to_thread(threaded.presence, Tally, "seen")
    assert listed == {"ann": [{"typing": True}]}


async def test_the_same_errors_as_the_async_api(threaded: sync.SyncNode, watcher: Node) -> None:
    """Each error comes through with the type and message the async API raises."""
    with pytest.raises(livestate.NotFoundError) as blocking:
        await asyncio.to_thread(threaded.put, Tally, "absent", "count", 1)
    with pytest.raises(livestate.NotFoundError) as direct:
        await watcher.put(Tally, "absent", "count", 1)
    assert str(blocking.value) == str(direct.value)
    await watcher.start(Tally, "t2")
    with pytest.raises(livestate.PropertyNotFoundError, match="'nope'"):
        await asyncio.to_thread(threaded.get, Tally, "t2", "nope")
    with pytest.raises(livestate.PermissionDeniedError, match="public"):
        await asyncio.to_thread(threaded.delete, Tally, "t2", "count")
    with pytest.raises(livestate.InvalidValueError, match="'count'"):
        await asyncio.to_thread(threaded.put, Tally, "t2", "count", {1, 2})


def test_threads_share_one_sync_node_without_losing_writes(threaded: sync.SyncNode) -> None:
    """8 threads x 50 increments through one SyncNode leave exactly 400."""
    threaded.start(Tally, "t3")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                threaded.increment(Tally, "t3", "count")
        except BaseException as error:  # surfaced below, not lost in the thread
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert errors == []
    assert threaded.get(Tally, "t3", "count") == 400
    assert threaded.update(Tally, "t3", "count", lambda value: value * 2) == 800


async def test_on_a_given_loop_a_thread_reaches_the_apps_memory_states() -> None:
    """SyncNode(loop=...) runs a worker thread's calls on the app's loop and memory node."""
    async with Node(backend=MemoryBackend()) as node:
        seen: list[Change] = []
        client = await node.attach(Tally, "m", seen.append)
        blocking = sync.SyncNode(loop=asyncio.get_running_loop(), node=node)
        await asyncio.to_thread(blocking.append, Tally, "m", "log", "from a thread")
        assert seen[-1].value == ["from a thread"]
        assert client.state["log"] == ["from a thread"]
        with pytest.raises(RuntimeError, match="running event loop"):
            blocking.get(Tally, "m")  # in the loop's own thread it would deadlock
        blocking.close()
        assert not node.closed  # the app's node is the app's to close


def test_a_call_past_the_timeout_raises_backend_unavailable(redis_url: str) -> None:
    """A call that does not finish within the timeout raises BackendUnavailableError."""
    with sync.SyncNode(redis_url, timeout=0.2) as node:
        with pytest.raises(livestate.BackendUnavailableError, match=r"0\.2 s"):
            node.start(Slow, "s")


def test_close_stops_the_thread_and_refuses_later_calls(redis_url: str) -> None:
    """close() stops the background thread; a closed SyncNode says so; closing twice is fine."""
    before = {thread.ident for thread in threading.enumerate()}
    node = sync.SyncNode(redis_url)
    node.start(Tally, "c")
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert [thread.name for thread in started] == ["livestate-sync"]
    node.close()
    assert not started[0].is_alive()
    node.close()
    with pytest.raises(RuntimeError, match="closed"):
        node.get(Tally, "c")


def test_the_module_functions_use_a_replaceable_default(redis_url: str) -> None:
    """set_default picks the SyncNode the functions use; close() closes it; 10 s by default."""
    assert sync.SyncNode().timeout == 10.0
    node = sync.SyncNode(redis_url)
    sync.set_default(node)
    try:
        sync.start(Tally, "d")
        assert sync.increment(Tally, "d", "count", 5) == 5
        assert sync.default() is node
        sync.close()
        assert node.closed
        assert sync.default() is not node  # a new default from LIVESTATE_URL
    finally:
        sync.close()
        sync.set_default(None)


def test_bad_arguments_are_refused() -> None:
    """A bad timeout, or a url with a loop, raises InvalidValueError."""
    with pytest.raises(livestate.InvalidValueError, match="timeout"):
        sync.SyncNode(timeout=0)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(livestate.InvalidValueError, match="not both"):
            sync.SyncNode("memory://", loop=loop)
    finally:
        loop.close()


def test_a_script_writes_with_the_module_functions_and_exits_cleanly(redis_url: str) -> None:
    """A plain script (a Celery task's shape) writes via LIVESTATE_URL and exits at once."""
    script = textwrap.dedent(
        """
        from livestate import LiveState, sync

        class Tally(LiveState):
            name = "SyncTally"
            acl = {"group": "all", "public": ["read", "write"]}

            def on_mount(self, key):
                return {"count": 0, "log": []}

        sync.start(Tally, "script")
        sync.append(Tally, "script", "log", "from a script")
        print(sync.increment(Tally, "script", "count", 41), sync.get(Tally, "script", "log"))
        """
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"LIVESTATE_URL": redis_url, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["41", "['from", "a", "script']"]
    with sync.SyncNode(redis_url) as node:
        assert node.get(Tally, "script", "count") == 41
