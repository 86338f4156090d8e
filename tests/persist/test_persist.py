"""on_persist in one process: debounced saves, final saves, one saver, failures, slow stores.

Each test saves through the chat example's store (SQLite, or the real PostgreSQL
cluster where `store_url` is a parameter) and, where a test names Redis, runs
its nodes on a real Valkey server.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import livestate
from livestate import Change, InvalidValueError, LiveState, MemoryBackend, Node
from livestate.testing import ClusterProcess, ServerProcess

from ..support import MakeNode, eventually, node_maker
from .journal import Journal, Plain, Recorder, Relay


def fresh() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(params=[pytest.param("memory", id="memory"), pytest.param("redis", id="redis")])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[MakeNode]:
    """Makes nodes sharing one backend (one MemoryBackend, or one Valkey with 1 s leases)."""
    shared = MemoryBackend()
    url = None
    if request.param == "redis":
        server: ServerProcess = request.getfixturevalue("valkey")
        url = f"{server.url}?lease=1"

    async with node_maker(lambda: Node(url) if url else Node(backend=shared)) as make:
        yield make


@pytest.fixture
async def redis_node(valkey: ServerProcess) -> AsyncIterator[MakeNode]:
    """Makes nodes on the Valkey server, with 1 s leases."""
    async with node_maker(lambda: Node(f"{valkey.url}?lease=1")) as make:
        yield make


async def test_saves_are_debounced_and_carry_the_latest_version(sqlite_saves: Recorder) -> None:
    """A burst of writes is saved a few times, at most once per persist_interval, the last
    save at the last version; versions only grow."""
    key = fresh()
    async with Node(backend=MemoryBackend()) as node:
        client = await node.attach(Journal, key)
        started = time.monotonic()
        for i in range(60):
            await client.append("items", i)
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        await eventually(
            lambda: bool(sqlite_saves.saved(key)) and sqlite_saves.saved(key)[-1].items == 60
        )
        done = sqlite_saves.saved(key)
        assert done[-1].version == client.version
        assert len(done) <= elapsed / Journal.persist_interval + 2
        assert [s.version for s in done] == sorted({s.version for s in done})
        for before, after in itertools.pairwise(done):
            assert after.began - before.began >= Journal.persist_interval * 0.9
        assert not any(s.final for s in done)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_room_survives_its_ttl_and_comes_back_with_its_history(
    saves: Recorder, backend: str, request: pytest.FixtureRequest
) -> None:
    """After its TTL the live state ends with a final save; attached again (on another
    node), on_mount restores every item from the store."""
    key = fresh()
    if backend == "redis":
        url = f"{request.getfixturevalue('valkey').url}?lease=1"
        first, second = Node(url), Node(url)
    else:
        shared = MemoryBackend()
        first, second = Node(backend=shared), Node(backend=shared)
    async with first, second:
        client = await first.attach(Journal, key)
        for i in range(25):
            await client.append("items", {"n": i})
        version = client.version
        await client.detach()
        await eventually(lambda: any(s.final for s in saves.saved(key)), within=10)
        final = [s for s in saves.saved(key) if s.final]
        assert len(final) == 1
        assert (final[0].version, final[0].items) == (version, 25)
        with pytest.raises(livestate.NotFoundError):
            await first.get(Journal, key)  # it did end
        again = await second.attach(Journal, key)
        assert [item["n"] for item in again.state["items"]] == list(range(25))
        assert again.version > version


async def test_stop_saves_the_last_state_finally(
    sqlite_saves: Recorder, make_node: MakeNode
) -> None:
    """stop() ends the live state; the node that saves it saves its last state with final=True,
    even when another node called stop."""
    key = fresh()
    holder, other = await make_node(), await make_node()
    client = await holder.attach(Journal, key)
    await client.append("items", "a")
    await client.append("items", "b")
    await eventually(lambda: bool(sqlite_saves.saved(key)))
    await other.append(Journal, key, "items", "c")  # a public write from a node without clients
    await eventually(
        lambda: client.version == sqlite_saves.saved(key)[-1].version == client.version
    )
    version = client.version
    await other.stop(Journal, key)
    await eventually(lambda: any(s.final for s in sqlite_saves.saved(key)), within=5)
    last = sqlite_saves.saved(key)[-1]
    assert (last.final, last.version, last.items) == (True, version, 3)


async def test_graceful_shutdown_of_the_last_node_saves_finally(
    sqlite_saves: Recorder, make_node: MakeNode
) -> None:
    """A node that closes while another holds the live state hands the saving over; the last
    node holding it saves finally when it closes, with every write in."""
    key = fresh()
    first, second = await make_node(), await make_node()
    one = await first.attach(Journal, key)
    two = await second.attach(Journal, key)
    await one.append("items", 1)
    await eventually(lambda: bool(sqlite_saves.saved(key)))
    await first.aclose()
    await two.append("items", 2)
    await eventually(
        lambda: bool(sqlite_saves.saved(key)) and sqlite_saves.saved(key)[-1].items == 2, within=5
    )
    assert not any(s.final for s in sqlite_saves.saved(key))
    await two.append("items", 3)
    version = two.version
    await second.aclose()
    last = sqlite_saves.saved(key)[-1]
    assert (last.final, last.version, last.items) == (True, version, 3)


async def test_writes_while_nobody_holds_it_are_saved(sqlite_saves: Recorder) -> None:
    """A live state started without a client, and written by public callers during its TTL
    countdown, is saved by the node that watches it, and saved finally when it ends."""
    key = fresh()
    async with Node(backend=MemoryBackend()) as node:
        await node.start(Journal, key)
        await node.append(Journal, key, "items", "x")
        await eventually(
            lambda: bool(sqlite_saves.saved(key)) and sqlite_saves.saved(key)[-1].items == 1, 5
        )
        await eventually(lambda: any(s.final for s in sqlite_saves.saved(key)), within=5)
        assert sqlite_saves.saved(key)[-1].items == 1


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_two_nodes_never_save_the_same_live_state_at_once(
    saves: Recorder, backend: str, request: pytest.FixtureRequest
) -> None:
    """Three nodes hold one live state and write to it, with saves that take a while: the
    store never sees two saves at once, and the saving moves on when its node closes."""
    saves.delay = 0.05
    key = fresh()
    if backend == "redis":
        url = f"{request.getfixturevalue('valkey').url}?lease=1"
        nodes = [Node(url) for _ in range(3)]
    else:
        shared = MemoryBackend()
        nodes = [Node(backend=shared) for _ in range(3)]
    for node in nodes:
        await node.__aenter__()
    try:
        clients = [await node.attach(Journal, key) for node in nodes]

        async def write(client: livestate.Client, n: int) -> None:
            for i in range(n):
                await client.append("items", i)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(write(client, 30) for client in clients))
        await nodes[0].aclose()  # a saver may go; the others go on
        await asyncio.gather(*(write(client, 20) for client in clients[1:]))
        await eventually(lambda: saves.saved(key)[-1].items == 130, within=10)
        assert saves.overlaps == 0
        assert len(saves.saved(key)) >= 3
    finally:
        for node in nodes:
            await node.aclose()


async def test_a_store_that_fails_then_recovers_loses_nothing(
    saves: Recorder, make_node: MakeNode
) -> None:
    """Failing saves are retried with backoff; after max_persist_failures in a row every
    client, on the saving node and on another, gets one `persist_failed` change; once the
    store is back, the latest state is saved, with every write in."""
    key = fresh()
    node = await make_node()
    changes: list[Change] = []
    client = await node.attach(Journal, key, on_change=changes.append)
    elsewhere: list[Change] = []
    await (await make_node()).attach(Journal, key, on_change=elsewhere.append)
    await eventually(lambda: bool(saves.saved(key)))
    saves.fail = Journal.max_persist_failures + 2
    for i in range(10):
        await client.append("items", i)
    await eventually(lambda: any(c.kind == "persist_failed" for c in changes), within=10)
    told = [c for c in changes if c.kind == "persist_failed"]
    assert len(told) == 1
    assert told[0].value["failures"] == Journal.max_persist_failures
    assert "the store is down" in told[0].value["error"]
    assert told[0].key == key
    await eventually(lambda: [c for c in elsewhere if c.kind == "persist_failed"] == told)
    await client.append("items", 10)
    await eventually(lambda: saves.saved(key)[-1].version == client.version, within=10)
    assert saves.fail == 0
    loaded = await saves.store.load(Journal.name, key)
    assert loaded is not None
    assert loaded == (client.version, {"items": list(range(11))})


async def test_a_slow_store_does_not_slow_writes(saves: Recorder, redis_node: MakeNode) -> None:
    """With saves that take 1 s each, writes take as long as writes to a spec without
    persistence, measured side by side: no write waits for a save."""
    saves.delay = 1.0
    node = await redis_node()
    key = fresh()
    persisted = await node.attach(Journal, key)
    plain = await node.attach(Plain, key)
    await eventually(lambda: saves.calls >= 1)  # a save is running from now on

    async def latencies(client: livestate.Client) -> list[float]:
        took = []
        for i in range(50):
            began = time.perf_counter()
            await client.append("items", i)
            took.append(time.perf_counter() - began)
            await asyncio.sleep(0.01)  # about 100 writes/s, for 3 s in all
        return took

    with_saves: list[float] = []
    without: list[float] = []
    for _ in range(3):  # interleaved, so load on the machine hits both alike
        with_saves += await latencies(persisted)
        without += await latencies(plain)
    assert saves.calls >= 2  # saves ran meanwhile, each 1 s long
    assert max(with_saves) < 0.5  # no write waited for a 1 s save
    assert statistics.median(with_saves) < 2 * statistics.median(without) + 0.002


async def test_the_saving_is_handed_over_within_one_renewal(
    sqlite_saves: Recorder, valkey: ServerProcess
) -> None:
    """When the saving node's last client detaches while another node holds the live state,
    the other node begins to save within one renewal (a fifth of the claim lease) of the
    moment the saving node is free: at once if it was waiting out its debounce, else when
    its save under way ends (two nodes never save at once)."""
    saves = sqlite_saves
    async with node_maker(lambda: Node(f"{valkey.url}?lease=2")) as make:
        first, second = await make(), await make()
        renewal = first.backend.save_lease() / 5
        allowance = renewal / 2  # the release's and the claim's round trips, and scheduling
        assert Relay.persist_interval > renewal + allowance  # a debounce waited out shows
        key = fresh()
        saving = await first.attach(Relay, key)
        await eventually(lambda: bool(saves.saved(key)))  # `first` holds the claim: it saved
        other = await second.attach(Relay, key)
        # Both write; the saving node waits out its debounce (persist_interval from its save).
        await saving.append("items", 1)
        await other.append("items", 2)
        both = [1, 2]
        await eventually(lambda: list(saving.state["items"]) == list(other.state["items"]) == both)
        detached = time.time()
        await saving.detach()
        await eventually(lambda: any(s.began > detached for s in saves.saved(key)), within=5)
        handed = next(s for s in saves.saved(key) if s.began > detached)
        assert handed.items == 2
        assert handed.began - detached < renewal + allowance, (handed, detached, renewal)

        # `second` saves now; with saves of two renewals and a half, it lets go mid-save.
        again = await first.attach(Relay, key)
        saves.delay = 2.5 * renewal
        await other.append("items", 3)
        await eventually(lambda: saves.active == 1, within=2 * Relay.persist_interval)
        detached = time.time()
        await other.detach()
        await eventually(lambda: any(s.began > detached for s in saves.saved(key)), within=5)
        under_way = next(s for s in saves.saved(key) if s.began < detached < s.ended)
        handed = next(s for s in saves.saved(key) if s.began > detached)
        assert 0 <= handed.began - under_way.ended < renewal + allowance, (handed, under_way)
        assert handed.items == len(again.state["items"]) == 3
        assert saves.overlaps == 0


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("persist_interval", 0, "persist_interval must be a number of seconds > 0"),
        ("persist_interval", "1", "persist_interval must be a number of seconds > 0"),
        ("max_persist_failures", 0, "max_persist_failures must be an int ≥ 1"),
        ("max_persist_failures", 2.5, "max_persist_failures must be an int ≥ 1"),
    ],
)
def test_bad_settings_are_refused_with_the_spec_named(
    setting: str, value: Any, message: str
) -> None:
    """A spec with an unusable persistence setting is refused when it is defined."""
    with pytest.raises(InvalidValueError, match=message) as raised:
        type("Broken", (LiveState,), {setting: value, "__module__": __name__})
    assert "Broken." in str(raised.value)


async def test_specs_without_on_persist_are_never_saved(sqlite_saves: Recorder) -> None:
    """Only a spec that overrides on_persist is saved: Plain's writes reach no store."""
    key = fresh()
    async with Node(backend=MemoryBackend()) as node:
        client = await node.attach(Plain, key)
        await client.append("items", 1)
        await client.detach()
        journal = await node.attach(Journal, key)
        await journal.append("items", 1)
        await eventually(lambda: bool(sqlite_saves.saved(key)))
    assert await sqlite_saves.store.load(Plain.name, key) is None
    assert all(isinstance(s.version, int) for s in sqlite_saves.saved(key))


async def test_a_redis_restart_brings_the_room_back_from_the_store(saves: Recorder) -> None:
    """Valkey restarted empty under an attached client: the live state starts anew through
    on_mount, which loads the last save, so the client converges to the saved history."""
    key = fresh()
    with ServerProcess() as server:
        async with Node(f"{server.url}?lease=1") as node:
            client = await node.attach(Journal, key)
            for i in range(10):
                await client.append("items", i)
            await eventually(lambda: bool(saves.saved(key)) and saves.saved(key)[-1].items == 10)
            before = client.version
            server.kill()
            server.start()
            await eventually(lambda: client.version > before, within=10)
            assert list(client.state["items"]) == list(range(10))
            await client.append("items", 10)
            await eventually(lambda: saves.saved(key)[-1].items == 11, within=5)


async def test_on_a_redis_cluster_live_states_on_every_shard_are_saved(
    sqlite_saves: Recorder,
) -> None:
    """On a 3-primary Valkey cluster (claims under each live state's hash tag, `ls:saving`
    in its own slot), live states spread over the shards are saved, then saved finally."""
    keys = [fresh() for _ in range(6)]
    with ClusterProcess(primaries=3, replicas=0) as cluster:
        async with Node(f"{cluster.url}?lease=1") as node:
            for key in keys:
                client = await node.attach(Journal, key)
                await client.append("items", key)
                await client.detach()
            await eventually(
                lambda: all(any(s.final for s in sqlite_saves.saved(key)) for key in keys),
                within=10,
            )
            assert await node.backend.orphans(8) == []
    for key in keys:
        stored = await sqlite_saves.store.load(Journal.name, key)
        assert stored is not None
        assert stored[1] == {"items": [key]}


async def test_presence_changes_alone_are_not_saved(
    sqlite_saves: Recorder, make_node: MakeNode
) -> None:
    """Joins and meta updates raise the version but leave the state as it was: they cause no
    save; the next write is saved, at the version it made."""
    key = fresh()
    node = await make_node()
    client = await node.attach(Journal, key)
    await client.append("items", 1)
    await eventually(
        lambda: bool(sqlite_saves.saved(key)) and sqlite_saves.saved(key)[-1].items == 1
    )
    saved = len(sqlite_saves.saved(key))
    before = client.version
    for typing in (True, False, True, False):
        await client.track("ann", {"typing": typing})
    await eventually(lambda: client.version > before)
    await asyncio.sleep(Journal.persist_interval * 3)  # time for saves that must not come
    assert len(sqlite_saves.saved(key)) == saved
    await client.append("items", 2)
    await eventually(lambda: sqlite_saves.saved(key)[-1].items == 2)
    assert sqlite_saves.saved(key)[-1].version == client.version
