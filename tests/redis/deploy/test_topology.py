"""The cluster Router against a real 3-primary + 3-replica Valkey cluster.

Each test puts its keys under its own hash tag, so the tests share the session's
cluster without seeing each other's data. A test that kills a node restarts it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from livestate import BackendUnavailableError, LiveStateError
from livestate._backends.redis.resp import Endpoint, ReplyError, connect
from livestate._backends.redis.slots import SlotMap, key_slot
from livestate._backends.redis.topology import Router, cluster_enabled
from livestate._backends.redis.urls import parse_cluster_url
from livestate.testing import ClusterProcess, ServerProcess, command

from ...support import eventually

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
INCR_TWO = "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[2])"
_tags = itertools.count()


class Recorder:
    """What the Router told its callbacks."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.resyncs: list[str] = []

    def on_message(self, channel: str, data: str) -> None:
        self.messages.append((channel, data))

    def on_resync(self, channel: str) -> None:
        self.resyncs.append(channel)


@pytest.fixture
def recorder() -> Recorder:
    """Records messages and resyncs."""
    return Recorder()


@pytest.fixture
async def router(cluster: ClusterProcess, recorder: Recorder) -> AsyncIterator[Router]:
    """A started Router on the cluster, seeded with every node."""
    seeds, _ = parse_cluster_url(cluster.url, {})
    started = Router(seeds, 5.0, on_message=recorder.on_message, on_resync=recorder.on_resync)
    await started.start()
    yield started
    await started.aclose()


def tag(cluster: ClusterProcess, avoid: int | None = None) -> str:
    """A hash tag of this test's own, whose slot is not owned by the primary `avoid`."""
    while True:
        name = f"t{next(_tags)}-{time.monotonic_ns()}"
        if avoid is None or cluster.owner(key_slot(name)) != avoid:
            return name


def other_primary(cluster: ClusterProcess, slot: int) -> int:
    """A primary that does not own `slot`."""
    owner = cluster.owner(slot)
    return next(port for port in cluster.primaries() if port != owner)


async def test_slot_is_the_servers(cluster: ClusterProcess) -> None:
    """key_slot agrees with CLUSTER KEYSLOT, hash tags included."""
    port = cluster.primaries()[0]
    keys = [f"key:{i}" for i in range(100)] + [f"{{room:{i}}}:log" for i in range(100)]
    assert [key_slot(key) for key in keys] == [
        command(port, "CLUSTER", "KEYSLOT", key) for key in keys
    ]


async def test_keys_spread_over_three_shards(cluster: ClusterProcess, router: Router) -> None:
    """600 keys written through the Router land, each, on the primary of its slot; every
    shard gets some, and every value reads back."""
    base = tag(cluster)
    keys = [f"{base}:{i}" for i in range(600)]
    await asyncio.gather(*(router.call(key, "SET", key, key) for key in keys))
    by_owner: dict[int, int] = {}
    for key in keys[::20]:
        owner = cluster.owner(key_slot(key))
        assert command(owner, "GET", key) == key
        by_owner[owner] = by_owner.get(owner, 0) + 1
    assert len(by_owner) == 3
    assert await asyncio.gather(*(router.call(key, "GET", key) for key in keys)) == keys


async def test_moved_refreshes_the_map(cluster: ClusterProcess, router: Router) -> None:
    """After a slot moves behind the Router's back, a call is answered MOVED, follows it,
    and the Router's map names the new owner."""
    key = f"{{{tag(cluster)}}}:moved"
    slot = key_slot(key)
    await router.call(key, "SET", key, "before")
    target = other_primary(cluster, slot)
    await asyncio.to_thread(cluster.migrate_slot, slot, target)
    assert router.owner(slot) != f"127.0.0.1:{target}"
    assert await router.call(key, "GET", key) == "before"
    assert router.owner(slot) == f"127.0.0.1:{target}"
    await router.call(key, "SET", key, "after")
    assert command(target, "GET", key) == "after"


async def test_writes_during_a_slot_migration_all_land_once(
    cluster: ClusterProcess, router: Router
) -> None:
    """A writer runs EVALSHA scripts (one key, and two keys of one slot) while the slot's
    keys migrate a few at a time: every call succeeds, through ASK and TRYAGAIN, and the
    counters add up to exactly the acknowledged increments."""
    base = tag(cluster)
    keys = [f"{{{base}}}:{i}" for i in range(12)]
    slot = key_slot(keys[0])
    for key in keys:
        await router.call(key, "SET", key, 0)
    one = await router.load_script(INCR)
    two = await router.load_script(INCR_TWO)
    acknowledged = 0
    during = 0
    migrating = False
    stop = asyncio.Event()

    async def writer(offset: int, both: bool) -> None:
        # Single-key writers meet ASK; two-key writers meet TRYAGAIN while their keys
        # are split between the nodes, and wait it out.
        nonlocal acknowledged, during
        for n in itertools.count(offset):
            if stop.is_set():
                return
            first, second = keys[n % len(keys)], keys[(n + 5) % len(keys)]
            if both:
                await router.call(first, "EVALSHA", two, 2, first, second)
                acknowledged += 2
            else:
                await router.call(first, "EVALSHA", one, 1, first, 1)
                acknowledged += 1
            during += migrating

    writers = [asyncio.create_task(writer(i, both=i >= 3)) for i in range(5)]
    await eventually(lambda: acknowledged > 50)
    target = other_primary(cluster, slot)
    migrating = True
    await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target)
    migrating = False
    settled = acknowledged
    await eventually(lambda: acknowledged > settled + 50)
    stop.set()
    await asyncio.gather(*writers)  # any failure of any call fails the test here
    total = sum(int(command(target, "GET", key)) for key in keys)
    assert during > 0
    assert router.answers["ASK"] > 0, router.answers
    assert total == acknowledged
    assert router.owner(slot) == f"127.0.0.1:{target}"


async def test_sharded_subscriber_moves_with_its_slot(
    cluster: ClusterProcess, router: Router, recorder: Recorder
) -> None:
    """A subscribed channel whose slot migrates is re-subscribed at the new owner, told to
    resync, and gets that owner's messages; a subscribe whose first answer is MOVED works."""
    channel = f"{{{tag(cluster)}}}:changes"
    slot = key_slot(channel)
    await router.subscribe(channel)
    command(cluster.owner(slot), "SPUBLISH", channel, "one")
    await eventually(lambda: (channel, "one") in recorder.messages)
    target = other_primary(cluster, slot)
    await asyncio.to_thread(cluster.migrate_slot, slot, target)
    await eventually(lambda: channel in recorder.resyncs, within=2.0)
    assert await router.call(channel, "SPUBLISH", channel, "two") == 1  # routed by its slot
    await eventually(lambda: (channel, "two") in recorder.messages, within=2.0)

    late = f"{{{tag(cluster)}}}:late"
    await asyncio.to_thread(
        cluster.migrate_slot, key_slot(late), other_primary(cluster, key_slot(late))
    )
    await router.subscribe(late)  # the Router's map is stale: SSUBSCRIBE gets MOVED first
    command(cluster.owner(key_slot(late)), "SPUBLISH", late, "three")
    await eventually(lambda: (late, "three") in recorder.messages)

    await router.unsubscribe(channel)
    command(target, "SPUBLISH", channel, "four")
    command(cluster.owner(key_slot(late)), "SPUBLISH", late, "five")
    await eventually(lambda: (late, "five") in recorder.messages)
    assert (channel, "four") not in recorder.messages


async def test_killed_primary_is_followed_to_its_replica(
    cluster: ClusterProcess, router: Router, recorder: Recorder
) -> None:
    """A primary is killed under a writer: calls resume on the promoted replica within 15 s
    (scripts reloaded there), no write that was acknowledged and replicated (WAIT) is lost,
    none is applied twice, and a channel of its slots is re-subscribed and resynced."""
    key = f"{{{tag(cluster)}}}:count"
    channel = key + ":changes"
    slot = key_slot(key)
    await router.call(key, "SET", key, 0)
    sha = await router.load_script(INCR)
    await router.subscribe(channel)
    acknowledged = attempted = 0
    errors: list[Exception] = []
    last_success = 0.0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal acknowledged, attempted, last_success
        while not stop.is_set():
            attempted += 1
            try:
                await router.call(key, "EVALSHA", sha, 1, key, 1)
                # Replication is asynchronous: count the write once a replica has it.
                if await router.call(key, "WAIT", 1, 1000) >= 1:
                    acknowledged += 1
                last_success = time.monotonic()
            except LiveStateError as error:
                errors.append(error)

    task = asyncio.create_task(writer())
    await eventually(lambda: acknowledged > 20)
    primary = cluster.owner(slot)
    killed_at = time.monotonic()
    try:
        replica = await asyncio.to_thread(cluster.fail_over, primary)
        await eventually(lambda: last_success > killed_at + 0.1, within=15.0)
        resumed = last_success - killed_at
        await eventually(lambda: channel in recorder.resyncs, within=5.0)
        stop.set()
        await task
        total = int(command(replica, "GET", key))
        assert acknowledged <= total <= attempted
        assert resumed < 15.0
        assert all(isinstance(error, BackendUnavailableError) for error in errors)
        command(replica, "SPUBLISH", channel, "after")
        await eventually(lambda: (channel, "after") in recorder.messages)
    finally:
        stop.set()
        await task
        await asyncio.to_thread(cluster.restart, primary)


async def test_unreachable_seeds_fail_clearly() -> None:
    """A Router whose seeds do not answer raises BackendUnavailableError naming them."""
    router = Router([Endpoint("127.0.0.1", 1)], 1.0)
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1"):
        await router.start()
    await router.aclose()


async def test_cluster_mode_is_detected(
    cluster: ClusterProcess, redis_server: ServerProcess
) -> None:
    """A cluster node says it is one; a standalone server says it is not (without INFO)."""
    assert await cluster_enabled(Endpoint("127.0.0.1", cluster.primaries()[0]), 2.0)
    assert not await cluster_enabled(Endpoint("127.0.0.1", redis_server.port), 2.0)


async def test_tryagain_waits_for_a_split_slot(cluster: ClusterProcess, router: Router) -> None:
    """A two-key script whose keys are split between the migrating nodes gets TRYAGAIN;
    the call waits and succeeds once the migration ends, within the timeout, once."""
    base = tag(cluster)
    first, second = f"{{{base}}}:a", f"{{{base}}}:b"
    slot = key_slot(first)
    await router.call(first, "SET", first, 0)
    await router.call(second, "SET", second, 0)
    sha = await router.load_script(INCR_TWO)
    target = other_primary(cluster, slot)
    source = await asyncio.to_thread(cluster.begin_migration, slot, target)
    command(source, "MIGRATE", "127.0.0.1", target, first, 0, 5000)  # only one of the two
    call = asyncio.create_task(router.call(first, "EVALSHA", sha, 2, first, second))
    await eventually(lambda: router.answers["TRYAGAIN"] > 0)
    assert not call.done()
    await asyncio.to_thread(cluster.migrate_slot_rest, slot, source, target)
    assert await call == 1
    assert (command(target, "GET", first), command(target, "GET", second)) == ("1", "1")


async def test_noscript_reloads_and_retries(cluster: ClusterProcess, router: Router) -> None:
    """A primary that lost its scripts (SCRIPT FLUSH) answers NOSCRIPT; the Router loads
    the script there and the call succeeds, once."""
    key = f"{{{tag(cluster)}}}:n"
    sha = await router.load_script(INCR)
    command(cluster.owner(key_slot(key)), "SCRIPT", "FLUSH")
    assert await router.call(key, "EVALSHA", sha, 1, key, 5) == 5
    assert router.answers["NOSCRIPT"] == 1
    assert command(cluster.owner(key_slot(key)), "GET", key) == "5"


async def test_cluster_slots_reads_as_cluster_shards(cluster: ClusterProcess) -> None:
    """The CLUSTER SLOTS reading (for servers before Redis 7) gives the same owners as
    the CLUSTER SHARDS reading, on the real cluster."""
    seeds, _ = parse_cluster_url(cluster.url, {})
    port = cluster.primaries()[0]
    connection = await connect(Endpoint("127.0.0.1", port))
    try:
        shards = SlotMap.from_shards(await connection.send(("CLUSTER", "SHARDS")), tls=False)
        slots = SlotMap.from_slots(await connection.send(("CLUSTER", "SLOTS")))
    finally:
        connection.abort("closed the connection")
    assert shards.owners == slots.owners
    assert None not in shards.owners
    assert shards.primaries == {f"127.0.0.1:{p}" for p in cluster.primaries()}
    assert len(seeds) == 6


async def test_a_frozen_shard_resyncs_its_channels(cluster: ClusterProcess) -> None:
    """A primary frozen for longer than the timeout (not long enough for a failover): its
    sharded subscription misses PINGs, is dropped, re-subscribed and resynced, and
    messages flow again."""
    recorder = Recorder()
    seeds, _ = parse_cluster_url(cluster.url, {})
    router = Router(seeds, 0.3, on_message=recorder.on_message, on_resync=recorder.on_resync)
    await router.start()
    channel = f"{{{tag(cluster)}}}:frozen"
    owner = cluster.owner(key_slot(channel))
    try:
        await router.subscribe(channel)
        before = router.refreshes
        cluster.pause(owner)
        try:  # the unanswered PING drops the connection, which makes the Router re-read the map
            await eventually(lambda: router.refreshes > before, within=2.0)
        finally:
            cluster.resume(owner)
        await eventually(lambda: channel in recorder.resyncs, within=2.0)
        command(cluster.owner(key_slot(channel)), "SPUBLISH", channel, "thawed")
        await eventually(lambda: (channel, "thawed") in recorder.messages)
    finally:
        await router.aclose()


@pytest.mark.parametrize("role", ["primary", "replica"])
async def test_one_seed_finds_the_whole_cluster(cluster: ClusterProcess, role: str) -> None:
    """redis://host:port of any one node, primary or replica, is enough: the Router learns
    every primary from it and routes to each."""
    primary = cluster.primaries()[0]
    port = primary if role == "primary" else cluster.replica_of(primary)
    router = Router([Endpoint("127.0.0.1", port)], 2.0)
    try:
        await router.start()
        assert router.primaries == {f"127.0.0.1:{p}" for p in cluster.primaries()}
        base = tag(cluster)
        keys = [f"{base}:{i}" for i in range(30)]
        await asyncio.gather(*(router.call(key, "SET", key, role) for key in keys))
        assert {cluster.owner(key_slot(key)) for key in keys} == set(cluster.primaries())
        assert all(command(cluster.owner(key_slot(k)), "GET", k) == role for k in keys)
    finally:
        await router.aclose()


async def test_a_closed_router_refuses_calls(cluster: ClusterProcess) -> None:
    """After aclose, a call raises RuntimeError saying the router is closed."""
    seeds, _ = parse_cluster_url(cluster.url, {})
    router = Router(seeds, 2.0)
    await router.start()
    await router.call("k", "PING")
    await router.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await router.call("k", "PING")


async def test_a_shard_down_fails_within_the_timeout_and_recovers(
    cluster: ClusterProcess,
) -> None:
    """A shard loses its primary and its replica: the cluster answers CLUSTERDOWN, which
    the Router retries until its timeout and then reports as BackendUnavailableError;
    once the two nodes are back, calls work again."""
    seeds, _ = parse_cluster_url(cluster.url, {})
    router = Router(seeds, 1.0)
    await router.start()
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    healthy = next(p for p in cluster.primaries() if p != primary)
    base = tag(cluster)
    key = next(
        k for i in itertools.count() if cluster.owner(key_slot(k := f"{base}:{i}")) == healthy
    )
    try:
        await router.call(key, "SET", key, "before")
        cluster.kill(replica)
        cluster.kill(primary)
        await eventually(
            lambda: "cluster_state:fail" in str(command(healthy, "CLUSTER", "INFO")), within=10.0
        )
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="CLUSTERDOWN"):
            await router.call(key, "GET", key)
        assert time.monotonic() - started < 1.0 + 1.5  # the timeout, and slack for a loaded machine
        assert router.answers["CLUSTERDOWN"] > 0
    finally:
        await asyncio.to_thread(cluster.nodes[primary].start)
        await asyncio.to_thread(cluster.restart, replica)
    assert await router.call(key, "GET", key) == "before"
    await router.aclose()


ROUTER_COMMANDS = (
    "+cluster|shards", "+cluster|slots", "+cluster|myid", "+asking", "+script|load", "+evalsha",
    "+ssubscribe", "+sunsubscribe", "+ping",
)  # fmt: skip
"""What the Router itself sends; a backend adds its own scripts' needs (key and channel
patterns) on top."""


async def test_router_needs_only_its_listed_commands(
    cluster: ClusterProcess, recorder: Recorder
) -> None:
    """A user allowed only ROUTER_COMMANDS (no INFO, CONFIG or COMMAND) can read the map,
    load and run scripts on every shard, follow an ASK, and subscribe; a command outside
    the list is refused, so the list is what is in force."""
    # The script this test runs calls INCRBY: a backend grants its scripts' commands too.
    grants = ("reset", "on", ">pw", "~*", "&*", "-@all", *ROUTER_COMMANDS, "+incrby")
    for port in cluster.running():
        command(port, "ACL", "SETUSER", "router", *grants)
    seeds, _ = parse_cluster_url(cluster.url.replace("://", "://router:pw@"), {})
    router = Router(seeds, 5.0, on_message=recorder.on_message)
    try:
        await router.start()
        sha = await router.load_script(INCR)
        base = tag(cluster)
        keys = [f"{base}:{i}" for i in range(30)]
        assert await asyncio.gather(*(router.call(k, "EVALSHA", sha, 1, k, 2) for k in keys)) == [
            2
        ] * len(keys)
        moving = f"{{{tag(cluster)}}}:ask"
        slot = key_slot(moving)
        await router.call(moving, "EVALSHA", sha, 1, moving, 1)
        target = other_primary(cluster, slot)
        source = await asyncio.to_thread(cluster.begin_migration, slot, target)
        await asyncio.to_thread(cluster.move_keys, slot, source, target)
        assert await router.call(moving, "EVALSHA", sha, 1, moving, 1) == 2  # via ASK
        await asyncio.to_thread(cluster.end_migration, slot, source, target)
        await router.subscribe(moving)
        command(target, "SPUBLISH", moving, "hi")
        await eventually(lambda: (moving, "hi") in recorder.messages)
        with pytest.raises(ReplyError, match="NOPERM"):
            await router.call(moving, "GET", moving)
    finally:
        await router.aclose()
        for port in cluster.running():
            command(port, "ACL", "DELUSER", "router")


async def test_a_frozen_primary_fails_the_call_within_the_timeout(
    cluster: ClusterProcess,
) -> None:
    """A primary frozen (SIGSTOP, shorter than a failover) mid-call: the call fails with
    BackendUnavailableError saying it may have run, within the timeout; once thawed,
    calls to it work again."""
    seeds, _ = parse_cluster_url(cluster.url, {})
    router = Router(seeds, 0.3)
    await router.start()
    key = f"{tag(cluster)}:frozen"
    owner = cluster.owner(key_slot(key))
    try:
        await router.call(key, "SET", key, "1")
        cluster.pause(owner)
        started = time.monotonic()
        try:
            with pytest.raises(BackendUnavailableError, match="may have run"):
                await router.call(key, "SET", key, "2")
            assert (
                time.monotonic() - started < 0.3 + 1.5
            )  # the timeout, and slack for a loaded machine
        finally:
            cluster.resume(owner)
        assert await router.call(key, "GET", key) in ("1", "2")
    finally:
        await router.aclose()


async def test_a_planned_failover_loses_nothing_and_fails_nothing(
    cluster: ClusterProcess, router: Router
) -> None:
    """A replica takes over with CLUSTER FAILOVER (a managed service's maintenance) under
    4 writers: no call fails, the Router follows MOVED to the new primary, and the
    counters add up to exactly the acknowledged increments."""
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    base = tag(cluster)
    keys = [k for i in range(400) if cluster.owner(key_slot(k := f"{base}:{i}")) == primary][:20]
    for key in keys:
        await router.call(key, "SET", key, 0)
    sha = await router.load_script(INCR)
    acknowledged = 0
    stop = asyncio.Event()

    async def writer(offset: int) -> None:
        nonlocal acknowledged
        for n in itertools.count(offset):
            if stop.is_set():
                return
            key = keys[n % len(keys)]
            await router.call(key, "EVALSHA", sha, 1, key, 1)
            acknowledged += 1

    writers = [asyncio.create_task(writer(i)) for i in range(4)]
    await eventually(lambda: acknowledged > 50)
    await asyncio.to_thread(cluster.promote, replica)
    settled = acknowledged
    await eventually(lambda: acknowledged > settled + 50, within=10.0)
    stop.set()
    await asyncio.gather(*writers)  # any failed call fails the test here
    assert sum(int(command(replica, "GET", key)) for key in keys) == acknowledged
    assert router.answers["MOVED"] > 0
    assert router.owner(keys[0]) == f"127.0.0.1:{replica}"
