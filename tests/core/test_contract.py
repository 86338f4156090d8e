"""The public API's contract, run unchanged against every backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState, Mount, NotFoundError, PropertyNotFoundError
from livestate._changes import Op, StateId

from ..support import MakeNode, eventually


class ContractRoom(LiveState):
    ttl = 30.0

    async def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": [], "title": f"ContractRoom {key}"}


class ContractCounter(LiveState):
    mounts = 0

    def on_mount(self, key: str) -> dict[str, Any]:
        ContractCounter.mounts += 1
        return {"count": 0}


async def test_attach_starts_the_live_state_with_on_mount(node: livestate.Node) -> None:
    """The first attach runs on_mount; the first version is the clock, in microseconds."""
    before = time.time_ns() // 1000
    async with await ContractRoom.attach("a") as client:
        assert dict(client.state) == {"messages": [], "title": "ContractRoom a"}
        assert before - 1_000_000 <= client.version <= time.time_ns() // 1000 + 1_000_000
        assert client.key == "a" and client.spec is ContractRoom and client.attached


async def test_writes_through_a_client_raise_the_version_by_one_each(node: livestate.Node) -> None:
    """put, append, increment, update and delete each raise the version by exactly one."""
    async with await ContractRoom.attach("v") as client:
        first = client.version
        await client.put("topic", "cats")
        await client.append("messages", "hi")
        assert await client.increment("visits", 2) == 2
        assert await client.update("visits", lambda v: v * 10) == 20
        await client.delete("topic")
        assert client.version == first + 5
        assert dict(client.state) == {"messages": ["hi"], "title": "ContractRoom v", "visits": 20}


async def test_read_your_writes(node: livestate.Node) -> None:
    """When a write returns, the writer's own client already shows it."""
    async with await ContractRoom.attach("ryw") as client:
        for n in range(20):
            await client.put("n", n)
            assert client.state["n"] == n
        await ContractRoom.put("ryw", "from_server", True)
        assert client.state["from_server"] is True


async def test_changes_carry_kind_prop_value_and_version(node: livestate.Node) -> None:
    """Clients receive new, updated and deleted changes with the property's new value."""
    seen: list[Change] = []
    async with await ContractRoom.attach("k", on_change=seen.append) as client:
        v = client.version
        await ContractRoom.put("k", "topic", "a")
        await ContractRoom.put("k", "topic", "b")
        await ContractRoom.delete("k", "topic")
        await eventually(lambda: len(seen) == 3)
    assert seen == [
        Change("k", "new", "topic", "a", v + 1),
        Change("k", "updated", "topic", "b", v + 2),
        Change("k", "deleted", "topic", None, v + 3),
    ]


async def test_server_api_reads_and_writes(node: livestate.Node) -> None:
    """get, put, append, increment, update and delete work for public callers."""
    await ContractRoom.start("s")
    await ContractRoom.put("s", "users", {"ann": 1})
    await ContractRoom.append("s", "messages", {"text": "hi"})
    assert await ContractRoom.increment("s", "visits") == 1
    assert await ContractRoom.increment("s", "visits", 0.5) == 1.5
    assert await ContractRoom.update("s", "users", lambda u: {**u, "bob": 2}) == {
        "ann": 1,
        "bob": 2,
    }
    await ContractRoom.delete("s", "title")
    assert await ContractRoom.get("s") == {
        "messages": [{"text": "hi"}],
        "users": {"ann": 1, "bob": 2},
        "visits": 1.5,
    }
    assert await ContractRoom.get("s", "visits") == 1.5


async def test_missing_property(node: livestate.Node) -> None:
    """Reading, deleting or updating a missing property raises PropertyNotFoundError, a KeyError."""
    await ContractRoom.start("p")
    with pytest.raises(PropertyNotFoundError, match="'nope'") as caught:
        await ContractRoom.get("p", "nope")
    assert isinstance(caught.value, KeyError)
    with pytest.raises(PropertyNotFoundError, match="Cannot delete 'nope' from ContractRoom 'p'"):
        await ContractRoom.delete("p", "nope")
    with pytest.raises(PropertyNotFoundError, match="default="):
        await ContractRoom.update("p", "nope", lambda v: v)
    assert await ContractRoom.update("p", "nope", lambda v: v + 1, default=41) == 42


async def test_server_api_on_a_live_state_that_is_not_running(node: livestate.Node) -> None:
    """Every server call but start raises NotFoundError, naming the key and what to do."""
    calls = [
        ContractRoom.get("ghost"),
        ContractRoom.get("ghost", "messages"),
        ContractRoom.put("ghost", "x", 1),
        ContractRoom.delete("ghost", "x"),
        ContractRoom.reset("ghost"),
        ContractRoom.append("ghost", "messages", 1),
        ContractRoom.increment("ghost", "x"),
        ContractRoom.update("ghost", "x", lambda v: v, default=0),
        ContractRoom.stop("ghost"),
    ]
    for call in calls:
        with pytest.raises(
            NotFoundError, match=r"ContractRoom 'ghost' is not running; start it with"
        ):
            await call


async def test_append_keeps_the_newest_max_len_items(node: livestate.Node) -> None:
    """append with max_len drops the oldest items beyond it; a missing list starts empty."""
    await ContractRoom.start("m")
    for n in range(7):
        await ContractRoom.append("m", "log", n, max_len=3)
    assert await ContractRoom.get("m", "log") == [4, 5, 6]
    await ContractRoom.append("m", "log", 7, max_len=1)
    assert await ContractRoom.get("m", "log") == [7]


async def test_reset_reruns_on_mount(node: livestate.Node) -> None:
    """reset replaces the whole state with a fresh on_mount, delivered as one reset change."""
    seen: list[Change] = []
    async with await ContractRoom.attach("r", on_change=seen.append) as client:
        v = client.version
        await client.append("messages", "hi")
        await client.put("extra", 1)
        await client.reset()
        assert dict(client.state) == {"messages": [], "title": "ContractRoom r"}
        await eventually(lambda: len(seen) == 3)
        assert seen[-1] == Change(
            "r", "reset", None, {"messages": [], "title": "ContractRoom r"}, v + 3
        )


async def test_stop_tells_attached_clients_and_detaches_them(node: livestate.Node) -> None:
    """stop ends the live state; each client gets `stopped` last and is detached."""
    seen: list[Change] = []
    client = await ContractRoom.attach("st", on_change=seen.append)
    other = await ContractRoom.attach("st")
    await ContractRoom.put("st", "x", 1)
    await ContractRoom.stop("st")
    await eventually(lambda: not client.attached and not other.attached)
    assert [c.kind for c in seen] == ["new", "stopped"]
    assert [c.kind async for c in other.changes()] == ["new", "stopped"]
    with pytest.raises(RuntimeError, match="detached; attach a new one"):
        await client.put("x", 2)
    with pytest.raises(NotFoundError):
        await ContractRoom.get("st")


async def test_a_stopped_live_state_starts_anew(node: livestate.Node) -> None:
    """After stop, the next attach runs on_mount again and starts from fresh state."""
    async with await ContractRoom.attach("again") as client:
        await client.put("x", 1)
    await ContractRoom.stop("again")
    async with await ContractRoom.attach("again") as client:
        assert "x" not in client.state


async def test_on_mount_failure_leaves_nothing_running(node: livestate.Node) -> None:
    """When on_mount raises, attach raises it and no live state, replica or hold remains."""

    class ContractBroken(LiveState):
        def on_mount(self, key: str) -> dict[str, Any]:
            raise ConnectionError("database down")

    with pytest.raises(ConnectionError, match="database down"):
        await ContractBroken.attach("x")
    with pytest.raises(NotFoundError):
        await ContractBroken.get("x")
    assert node._replicas == {}


async def test_on_mount_runs_once_per_start_when_attaches_race(make_node: MakeNode) -> None:
    """Twenty concurrent attaches on two nodes run on_mount exactly once."""
    a, b = await make_node(), await make_node()
    ContractCounter.mounts = 0
    clients = await asyncio.gather(
        *(n.attach(ContractCounter, "race") for n in (a, b) for _ in range(10))
    )
    assert ContractCounter.mounts == 1
    assert len({c.version for c in clients}) == 1


async def test_mount_overrides_acl_and_ttl_per_key(node: livestate.Node) -> None:
    """on_mount may return a Mount with a per-key state, ACL and TTL."""

    class ContractPerKey(LiveState):
        def on_mount(self, key: str) -> Mount:
            acl = {"group": "all", "public": ["read"]} if key == "locked" else None
            return Mount(state={"key": key}, acl=acl, ttl=None)

    await ContractPerKey.start("open")
    await ContractPerKey.start("locked")
    await ContractPerKey.put("open", "x", 1)
    with pytest.raises(livestate.PermissionDeniedError):
        await ContractPerKey.put("locked", "x", 1)
    assert await ContractPerKey.get("locked") == {"key": "locked"}


async def test_writes_on_one_node_reach_clients_on_another_in_order(make_node: MakeNode) -> None:
    """Clients on node B see node A's writes in version order, each once."""
    a, b = await make_node(), await make_node()
    seen: list[Change] = []
    await b.attach(ContractRoom, "x", on_change=seen.append)
    writer = await a.attach(ContractRoom, "x")
    v = writer.version
    for n in range(50):
        await writer.put("n", n)
    await eventually(lambda: len(seen) == 50)
    assert [c.version for c in seen] == list(range(v + 1, v + 51))
    assert [c.value for c in seen] == list(range(50))


async def test_concurrent_appends_and_increments_lose_nothing(node: livestate.Node) -> None:
    """50 clients x 40 appends and increments at once leave exactly 2,000 of each."""
    clients = [await ContractRoom.attach("busy") for _ in range(50)]
    first = clients[0].version

    async def work(n: int, client: livestate.Client) -> None:
        for i in range(40):
            await client.append("messages", [n, i])
            await client.increment("count")

    await asyncio.gather(*(work(n, c) for n, c in enumerate(clients)))
    state = await ContractRoom.get("busy")
    assert len(state["messages"]) == 2000 and state["count"] == 2000
    assert len({tuple(m) for m in state["messages"]}) == 2000
    assert clients[0].version == first + 4000


async def test_concurrent_updates_lose_nothing(make_node: MakeNode) -> None:
    """update is an atomic read-modify-write, even from two nodes at once."""
    a, b = await make_node(), await make_node()
    await a.start(ContractRoom, "u")

    async def bump(node: livestate.Node) -> None:
        for _ in range(25):
            await node.update(ContractRoom, "u", "n", lambda v: v + 1, default=0)

    await asyncio.gather(*(bump(n) for n in (a, b, a, b)))
    assert await a.get(ContractRoom, "u", "n") == 100


async def test_changes_iterator_yields_in_order_and_ends_on_detach(node: livestate.Node) -> None:
    """changes() yields every change in version order and ends when the client detaches."""
    client = await ContractRoom.attach("it")
    v = client.version
    for n in range(10):
        await ContractRoom.put("it", "n", n)
    versions: list[int] = []
    async for change in client.changes():
        versions.append(change.version)
        if len(versions) == 10:
            await client.detach()
    assert versions == list(range(v + 1, v + 11))


async def test_detach_is_idempotent_and_async_with_detaches(node: livestate.Node) -> None:
    """Leaving an `async with` detaches; detaching again does nothing."""
    async with await ContractRoom.attach("d") as client:
        pass
    assert not client.attached
    await client.detach()


async def test_values_handed_out_are_read_only(node: livestate.Node) -> None:
    """No client can change what another sees by mutating a value it was handed."""
    original = {"tags": ["a"], "meta": {"n": 1}}
    seen: list[Change] = []
    async with await ContractRoom.attach("ro", on_change=seen.append) as client:
        await client.put("doc", original)
        original["tags"].append("changed-after-put")  # type: ignore[attr-defined]
        doc = client.state["doc"]
        with pytest.raises(TypeError, match="read-only"):
            doc["tags"].append("b")
        with pytest.raises(TypeError, match="read-only"):
            doc["meta"]["n"] = 2
        with pytest.raises(TypeError):
            client.state["doc"] = 1  # type: ignore[index]
        await eventually(lambda: bool(seen))
        with pytest.raises(TypeError, match="read-only"):
            seen[0].value["tags"].clear()
        fetched = await ContractRoom.get("ro")
        with pytest.raises(TypeError, match="read-only"):
            fetched["doc"] = None
        assert client.state["doc"] == {"tags": ["a"], "meta": {"n": 1}}
        assert dict(doc) == {"tags": ["a"], "meta": {"n": 1}}


async def test_a_tuple_is_stored_as_a_list(node: livestate.Node) -> None:
    """Tuples are accepted and come back as lists."""
    await ContractRoom.start("t")
    await ContractRoom.put("t", "pair", (1, (2, 3)))
    assert await ContractRoom.get("t", "pair") == [1, [2, 3]]


async def lose(node: livestate.Node, spec: type[LiveState], key: str) -> None:
    """Make the backend forget a live state without telling anyone, as a Redis restart would."""
    if isinstance(node.backend, livestate.MemoryBackend):
        del node.backend._entries[StateId(spec.name, key)]
    else:
        import redis.asyncio

        async with redis.asyncio.Redis.from_url(node.url) as connection:
            await connection.flushall()


async def test_a_live_state_lost_under_attached_clients_starts_anew(node: livestate.Node) -> None:
    """A client's write to a live state the backend lost runs on_mount, resets, then succeeds."""
    seen: list[Change] = []
    async with await ContractRoom.attach("lost", on_change=seen.append) as client:
        await client.put("x", 1)
        await lose(node, ContractRoom, "lost")
        await client.put("y", 2)
        assert "x" not in client.state and client.state["y"] == 2
        assert client.state["title"] == "ContractRoom lost"
        await eventually(lambda: seen[-1].prop == "y")
    kinds = [change.kind for change in seen]
    assert kinds[0] == "new" and "reset" in kinds and kinds[-1] == "new"


class ContractOrdered(LiveState):
    """Starts with three properties in a known order."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"zeta": 0, "alpha": 1, "mid": 2}


async def test_properties_keep_the_order_they_were_added_in(make_node: MakeNode) -> None:
    """Every view of a state lists its properties in the order they were added, as a dict does.

    Past 128 properties and with values over 64 bytes a Redis hash keeps no order of its
    own; a replica loaded later, a read and a replica that applied each write still agree.
    """
    a, b = await make_node(), await make_node()
    early = await a.attach(ContractOrdered, "order")
    names = [f"p{n:03}" for n in range(200, 0, -1)]  # not in sorted order
    for name in names:
        await a.put(ContractOrdered, "order", name, "x" * 80)
    await a.delete(ContractOrdered, "order", "alpha")
    await a.increment(ContractOrdered, "order", "alpha")  # back, now last
    await a.append(ContractOrdered, "order", "log", "hi")
    await a.put(ContractOrdered, "order", "zeta", [1, 2])  # replaced in place
    expected = ["zeta", "mid", *names, "alpha", "log"]
    late = await b.attach(ContractOrdered, "order")
    assert list(early.state) == expected
    assert list(late.state) == expected
    assert list(await b.get(ContractOrdered, "order")) == expected
    await b.reset(ContractOrdered, "order")
    await eventually(lambda: list(early.state) == ["zeta", "alpha", "mid"])
    assert list(await a.get(ContractOrdered, "order")) == ["zeta", "alpha", "mid"]


async def test_a_write_made_for_another_lifetime_is_refused(node: livestate.Node) -> None:
    """The backend refuses a write fenced to a lifetime that is not the current one (a
    client's write that waited while its live state ended and started anew), writing
    nothing; one fenced to the current lifetime goes through."""
    client = await node.attach(ContractRoom, "fenced")
    id = StateId(ContractRoom.name, "fenced")
    stale = Op("put", "title", "late", '"late"', 6, epoch="a-lifetime-that-ended")
    with pytest.raises(livestate.StartedAnewError, match="started anew"):
        await node.backend.apply(id, stale, "group")
    assert await node.get(ContractRoom, "fenced", "title") == "ContractRoom fenced"
    assert client.state["title"] == "ContractRoom fenced"
    current = (await node.backend.read(id)).epoch  # type: ignore[union-attr]
    await node.backend.apply(id, stale._replace(epoch=current), "group")
    assert await node.get(ContractRoom, "fenced", "title") == "late"
