"""The backend contract: what every backend must do, as checks any backend can be run through.

    from livestate.testing import check_backend

    async def test_my_backend_keeps_the_contract():
        shared = MyBackend()
        await check_backend(lambda: Node(backend=shared))

`check_backend` runs each check in `CONTRACT` with nodes from `make_node` (each
call one more node on the same deployment, as several processes would be) and
raises AssertionError naming every check that failed. livestate's own suite runs
the same checks against memory:// and Redis (tests/core/test_contract.py).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from .._acl import ACL
from .._backends.base import ConflictError
from .._changes import Op, StateId
from .._client import Client
from .._declare import Mount
from .._exceptions import (
    NotFoundError,
    PermissionDeniedError,
    PropertyNotFoundError,
    StartedAnewError,
    StateTooLargeError,
)
from .._node import Node
from .._spec import LiveState
from .._values import Limits
from ._helpers import Recorder, eventually

MakeNode = Callable[[], Node | Awaitable[Node]]
"""What `check_backend` is given: called for each node a check needs, all on one deployment."""

Make = Callable[[], Awaitable[Node]]
"""What a check is given: call it for one more started node (closed after the check)."""

Check = Callable[[Make], Awaitable[None]]
"""One check of the contract: an async function given a node maker."""


class Room(LiveState):
    """A room with messages and a title."""

    name = "livestate.testing.Room"
    ttl = 30.0
    limits = Limits(max_state_bytes=50_000)

    async def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": [], "title": f"Room {key}"}


class Counter(LiveState):
    """Counts its on_mount runs."""

    name = "livestate.testing.Counter"
    mounts = 0

    def on_mount(self, key: str) -> dict[str, Any]:
        Counter.mounts += 1
        return {"count": 0}


class Broken(LiveState):
    """An on_mount that fails."""

    name = "livestate.testing.Broken"

    def on_mount(self, key: str) -> dict[str, Any]:
        raise ConnectionError("database down")


class PerKey(LiveState):
    """A per-key ACL and TTL from on_mount."""

    name = "livestate.testing.PerKey"

    def on_mount(self, key: str) -> Mount:
        acl = {"group": "all", "public": ["read"]} if key == "locked" else None
        return Mount(state={"key": key}, acl=acl, ttl=None)


class Ordered(LiveState):
    """Starts with three properties in a known order."""

    name = "livestate.testing.Ordered"

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"zeta": 0, "alpha": 1, "mid": 2}


@contextmanager
def raises(error: type[BaseException], match: str = "") -> Iterator[None]:
    """Fail unless the block raises `error` with a message that `match` (a regex) finds."""
    try:
        yield
    except error as raised:
        if not re.search(match, str(raised)):
            raise AssertionError(f"{error.__name__} said {str(raised)!r}, not {match!r}.") from None
    else:
        raise AssertionError(f"{error.__name__} was not raised.")


async def attach_starts_the_live_state_with_on_mount(make: Make) -> None:
    """The first attach runs on_mount; the first version is the clock, in microseconds."""
    node = await make()
    before = time.time_ns() // 1000
    async with await node.attach(Room, "a") as client:
        assert dict(client.state) == {"messages": [], "title": "Room a"}, dict(client.state)
        assert before - 1_000_000 <= client.version <= time.time_ns() // 1000 + 1_000_000
        assert client.key == "a" and client.spec is Room and client.attached


async def writes_raise_the_version_by_one_each(make: Make) -> None:
    """put, append, increment, update and delete each raise the version by exactly one."""
    node = await make()
    async with await node.attach(Room, "v") as client:
        first = client.version
        await client.put("topic", "cats")
        await client.append("messages", "hi")
        assert await client.increment("visits", 2) == 2
        assert await client.update("visits", lambda v: v * 10) == 20
        await client.delete("topic")
        assert client.version == first + 5
        assert dict(client.state) == {"messages": ["hi"], "title": "Room v", "visits": 20}


async def read_your_writes(make: Make) -> None:
    """When a write returns, the writer's own client already shows it."""
    node = await make()
    async with await node.attach(Room, "ryw") as client:
        for n in range(20):
            await client.put("n", n)
            assert client.state["n"] == n
        await node.put(Room, "ryw", "from_server", True)
        assert client.state["from_server"] is True


async def changes_carry_kind_prop_value_and_version(make: Make) -> None:
    """Clients receive new, updated and deleted changes with the property's new value."""
    node = await make()
    seen = Recorder()
    async with await node.attach(Room, "k", on_change=seen) as client:
        v = client.version
        await node.put(Room, "k", "topic", "a")
        await node.put(Room, "k", "topic", "b")
        await node.delete(Room, "k", "topic")
        await eventually(lambda: len(seen) == 3)
    assert [tuple(c) for c in seen.changes] == [
        ("k", "new", "topic", "a", v + 1),
        ("k", "updated", "topic", "b", v + 2),
        ("k", "deleted", "topic", None, v + 3),
    ]


async def server_api_reads_and_writes(make: Make) -> None:
    """get, put, append, increment, update and delete work for public callers."""
    node = await make()
    await node.start(Room, "s")
    await node.put(Room, "s", "users", {"ann": 1})
    await node.append(Room, "s", "messages", {"text": "hi"})
    assert await node.increment(Room, "s", "visits") == 1
    assert await node.increment(Room, "s", "visits", 0.5) == 1.5
    assert await node.update(Room, "s", "users", lambda u: {**u, "bob": 2}) == {"ann": 1, "bob": 2}
    await node.delete(Room, "s", "title")
    assert await node.get(Room, "s") == {
        "messages": [{"text": "hi"}],
        "users": {"ann": 1, "bob": 2},
        "visits": 1.5,
    }
    assert await node.get(Room, "s", "visits") == 1.5


async def a_missing_property_is_reported(make: Make) -> None:
    """Reading, deleting or updating a missing property raises PropertyNotFoundError."""
    node = await make()
    await node.start(Room, "p")
    with raises(PropertyNotFoundError, "'nope'"):
        await node.get(Room, "p", "nope")
    with raises(PropertyNotFoundError, "Cannot delete 'nope' from livestate.testing.Room 'p'"):
        await node.delete(Room, "p", "nope")
    with raises(PropertyNotFoundError, "default="):
        await node.update(Room, "p", "nope", lambda v: v)
    assert await node.update(Room, "p", "nope", lambda v: v + 1, default=41) == 42


async def calls_on_a_live_state_not_running_say_so(make: Make) -> None:
    """Every server call but start raises NotFoundError, naming the key and what to do."""
    node = await make()
    calls = [
        node.get(Room, "ghost"),
        node.put(Room, "ghost", "x", 1),
        node.delete(Room, "ghost", "x"),
        node.reset(Room, "ghost"),
        node.append(Room, "ghost", "messages", 1),
        node.increment(Room, "ghost", "x"),
        node.update(Room, "ghost", "x", lambda v: v, default=0),
        node.stop(Room, "ghost"),
    ]
    for call in calls:
        with raises(NotFoundError, r"'ghost' is not running; start it with"):
            await call


async def append_keeps_the_newest_max_len_items(make: Make) -> None:
    """append with max_len drops the oldest items beyond it; a missing list starts empty."""
    node = await make()
    await node.start(Room, "m")
    for n in range(7):
        await node.append(Room, "m", "log", n, max_len=3)
    assert await node.get(Room, "m", "log") == [4, 5, 6]
    await node.append(Room, "m", "log", 7, max_len=1)
    assert await node.get(Room, "m", "log") == [7]


async def reset_reruns_on_mount(make: Make) -> None:
    """reset replaces the whole state with a fresh on_mount, delivered as one reset change."""
    node = await make()
    seen = Recorder()
    async with await node.attach(Room, "r", on_change=seen) as client:
        v = client.version
        await client.append("messages", "hi")
        await client.put("extra", 1)
        await client.reset()
        assert dict(client.state) == {"messages": [], "title": "Room r"}
        last = await seen.wait_for(lambda change: change.kind == "reset")
        assert tuple(last) == ("r", "reset", None, {"messages": [], "title": "Room r"}, v + 3)


async def stop_tells_attached_clients_and_detaches_them(
    make: Make,
) -> None:
    """stop ends the live state; each client gets `stopped` last and is detached."""
    node = await make()
    seen = Recorder()
    client = await node.attach(Room, "st", on_change=seen)
    other = await node.attach(Room, "st")
    await node.put(Room, "st", "x", 1)
    await node.stop(Room, "st")
    await eventually(lambda: not client.attached and not other.attached)
    assert seen.kinds == ["new", "stopped"], seen.kinds
    assert [c.kind async for c in other.changes()] == ["new", "stopped"]
    with raises(RuntimeError, "detached; attach a new one"):
        await client.put("x", 2)
    with raises(NotFoundError):
        await node.get(Room, "st")


async def a_stopped_live_state_starts_anew(make: Make) -> None:
    """After stop, the next attach runs on_mount again and starts from fresh state."""
    node = await make()
    async with await node.attach(Room, "again") as client:
        await client.put("x", 1)
    await node.stop(Room, "again")
    async with await node.attach(Room, "again") as client:
        assert "x" not in client.state


async def a_failing_on_mount_leaves_nothing(make: Make) -> None:
    """When on_mount raises, attach raises it and no live state remains."""
    node = await make()
    with raises(ConnectionError, "database down"):
        await node.attach(Broken, "x")
    with raises(NotFoundError):
        await node.get(Broken, "x")


async def on_mount_runs_once_when_attaches_race(make: Make) -> None:
    """Twenty concurrent attaches on two nodes run on_mount exactly once."""
    a, b = await make(), await make()
    Counter.mounts = 0
    clients = await asyncio.gather(*(n.attach(Counter, "race") for n in (a, b) for _ in range(10)))
    assert Counter.mounts == 1, Counter.mounts
    assert len({c.version for c in clients}) == 1


async def mount_sets_acl_and_ttl_per_key(make: Make) -> None:
    """on_mount may return a Mount with a per-key state, ACL and TTL."""
    node = await make()
    await node.start(PerKey, "open")
    await node.start(PerKey, "locked")
    await node.put(PerKey, "open", "x", 1)
    with raises(PermissionDeniedError):
        await node.put(PerKey, "locked", "x", 1)
    assert await node.get(PerKey, "locked") == {"key": "locked"}


async def writes_reach_another_node_in_order(make: Make) -> None:
    """Clients on node B see node A's writes in version order, each once."""
    a, b = await make(), await make()
    seen = Recorder()
    await b.attach(Room, "x", on_change=seen)
    writer = await a.attach(Room, "x")
    v = writer.version
    for n in range(50):
        await writer.put("n", n)
    await eventually(lambda: len(seen) == 50)
    assert [c.version for c in seen.changes] == list(range(v + 1, v + 51))
    assert seen.values == list(range(50))


async def concurrent_appends_and_increments_lose_nothing(
    make: Make,
) -> None:
    """50 clients x 40 appends and increments at once leave exactly 2,000 of each."""
    node = await make()
    clients = [await node.attach(Room, "busy") for _ in range(50)]
    first = clients[0].version

    async def work(n: int, client: Client) -> None:
        for i in range(40):
            await client.append("messages", [n, i])
            await client.increment("count")

    await asyncio.gather(*(work(n, c) for n, c in enumerate(clients)))
    state = await node.get(Room, "busy")
    assert len(state["messages"]) == 2000 and state["count"] == 2000
    assert len({tuple(m) for m in state["messages"]}) == 2000
    assert clients[0].version == first + 4000


async def concurrent_updates_lose_nothing(make: Make) -> None:
    """update is an atomic read-modify-write, even from two nodes at once."""
    a, b = await make(), await make()
    await a.start(Room, "u")

    async def bump(node: Node) -> None:
        for _ in range(25):
            await node.update(Room, "u", "n", lambda v: v + 1, default=0)

    await asyncio.gather(*(bump(n) for n in (a, b, a, b)))
    assert await a.get(Room, "u", "n") == 100


async def changes_iterate_in_order_and_end_on_detach(make: Make) -> None:
    """changes() yields every change in version order and ends when the client detaches."""
    node = await make()
    client = await node.attach(Room, "it")
    v = client.version
    for n in range(10):
        await node.put(Room, "it", "n", n)
    versions: list[int] = []
    async for change in client.changes():
        versions.append(change.version)
        if len(versions) == 10:
            await client.detach()
    assert versions == list(range(v + 1, v + 11))


async def values_handed_out_are_read_only(make: Make) -> None:
    """No client can change what another sees by mutating a value it was handed."""
    node = await make()
    original: dict[str, Any] = {"tags": ["a"], "meta": {"n": 1}}
    seen = Recorder()
    async with await node.attach(Room, "ro", on_change=seen) as client:
        await client.put("doc", original)
        original["tags"].append("changed-after-put")
        doc = client.state["doc"]
        with raises(TypeError, "read-only"):
            doc["tags"].append("b")
        with raises(TypeError, "read-only"):
            doc["meta"]["n"] = 2
        await eventually(lambda: bool(seen))
        with raises(TypeError, "read-only"):
            seen.values[0]["tags"].clear()  # type: ignore[index]
        fetched = await node.get(Room, "ro")
        with raises(TypeError, "read-only"):
            fetched["doc"] = None
        assert client.state["doc"] == {"tags": ["a"], "meta": {"n": 1}}


async def properties_keep_the_order_they_were_added_in(
    make: Make,
) -> None:
    """Every view of a state lists its properties in the order they were added, as a dict
    does: a replica loaded later, a read and a replica that applied each write agree."""
    a, b = await make(), await make()
    early = await a.attach(Ordered, "order")
    names = [f"p{n:03}" for n in range(200, 0, -1)]  # not in sorted order
    for name in names:
        await a.put(Ordered, "order", name, "x" * 80)
    await a.delete(Ordered, "order", "alpha")
    await a.increment(Ordered, "order", "alpha")  # back, now last
    await a.append(Ordered, "order", "log", "hi")
    await a.put(Ordered, "order", "zeta", [1, 2])  # replaced in place
    expected = ["zeta", "mid", *names, "alpha", "log"]
    late = await b.attach(Ordered, "order")
    assert list(early.state) == expected
    assert list(late.state) == expected
    assert list(await b.get(Ordered, "order")) == expected
    await b.reset(Ordered, "order")
    await eventually(lambda: list(early.state) == ["zeta", "alpha", "mid"])


async def the_backend_fences_and_conditions_writes(make: Make) -> None:
    """The backend refuses a write fenced to another lifetime (StartedAnewError) and one
    expecting another version (ConflictError), writing nothing; a write id seen before
    answers its first result and writes nothing."""
    node = await make()
    await node.start(Room, "fenced")
    id = StateId(Room.name, "fenced")
    snapshot = await node.backend.read(id)
    assert snapshot is not None
    put = Op("put", "title", "late", '"late"', 6)
    with raises(StartedAnewError, "started anew"):
        await node.backend.apply(id, put._replace(epoch="a-lifetime-that-ended"), "group")
    with raises(ConflictError):
        await node.backend.apply(id, put._replace(expect=snapshot.version - 1), "group")
    assert await node.get(Room, "fenced", "title") == "Room fenced"
    first = await node.backend.apply(id, put._replace(write_id="once"), "group")
    again = await node.backend.apply(id, put._replace(write_id="once"), "group")
    assert (again.epoch, again.version, again.repeated) == (first.epoch, first.version, True)


async def a_batch_applies_all_or_none(make: Make) -> None:
    """apply_many writes an action's ops in order at consecutive versions, or none of them
    (a later op over the size limit, or another version than expected)."""
    node = await make()
    seen = Recorder()
    client = await node.attach(Room, "batch", on_change=seen)
    id = StateId(Room.name, "batch")
    ops = [
        Op("put", "a", 1, "1", 1, trusted=True),
        Op("append", "messages", "m", '"m"', 3, trusted=True),
    ]
    v = client.version
    applied = await node.backend.apply_many(id, ops, v, client.state)
    assert applied.version == v + 2
    await eventually(lambda: client.version == v + 2)
    assert client.state["a"] == 1 and list(client.state["messages"]) == ["m"]
    big = "x" * 60_000
    too_big = [
        Op("put", "b", 2, "2", 1, trusted=True),
        Op("put", "c", big, f'"{big}"', len(big) + 2, trusted=True),
    ]
    with raises(StateTooLargeError):
        await node.backend.apply_many(id, too_big, v + 2, client.state)
    with raises(ConflictError):
        await node.backend.apply_many(id, ops, v, client.state)
    assert "b" not in await node.get(Room, "batch") and client.version == v + 2


async def the_acl_is_checked_by_the_backend(make: Make) -> None:
    """A write the stored ACL does not grant the role is refused by the backend itself."""
    node = await make()
    await node.start(PerKey, "locked")
    id = StateId(PerKey.name, "locked")
    with raises(PermissionDeniedError):
        await node.backend.apply(id, Op("put", "x", 1, "1", 1), "public")
    assert ACL.parse({"group": "all", "public": ["read"]}, "x").allows("group", 2)


CONTRACT: Mapping[str, Check] = MappingProxyType(
    {
        check.__name__: check
        for check in (
            attach_starts_the_live_state_with_on_mount,
            writes_raise_the_version_by_one_each,
            read_your_writes,
            changes_carry_kind_prop_value_and_version,
            server_api_reads_and_writes,
            a_missing_property_is_reported,
            calls_on_a_live_state_not_running_say_so,
            append_keeps_the_newest_max_len_items,
            reset_reruns_on_mount,
            stop_tells_attached_clients_and_detaches_them,
            a_stopped_live_state_starts_anew,
            a_failing_on_mount_leaves_nothing,
            on_mount_runs_once_when_attaches_race,
            mount_sets_acl_and_ttl_per_key,
            writes_reach_another_node_in_order,
            concurrent_appends_and_increments_lose_nothing,
            concurrent_updates_lose_nothing,
            changes_iterate_in_order_and_end_on_detach,
            values_handed_out_are_read_only,
            properties_keep_the_order_they_were_added_in,
            the_backend_fences_and_conditions_writes,
            a_batch_applies_all_or_none,
            the_acl_is_checked_by_the_backend,
        )
    }
)
"""Each check of the backend contract by name: an async function given a node maker."""


async def run_check(check: Check, make_node: MakeNode) -> None:
    """Run one check with nodes from `make_node`, closing every node it made."""
    nodes: list[Node] = []

    async def make() -> Node:
        made = make_node()
        node = await made if inspect.isawaitable(made) else made
        nodes.append(node)
        return await node.__aenter__()

    try:
        await check(make)
    finally:
        for node in nodes:
            await node.aclose()


async def check_backend(make_node: MakeNode) -> None:
    """Run every check of `CONTRACT` against nodes from `make_node` (each call one more node
    on the same deployment). Raises AssertionError naming each check that failed, with
    what it checks and how it failed."""
    failed = []
    for name, check in CONTRACT.items():
        try:
            await run_check(check, make_node)
        except Exception as error:
            failed.append(f"- {name}: {inspect.getdoc(check)}\n  {type(error).__name__}: {error}")
    if failed:
        raise AssertionError(
            f"The backend broke {len(failed)} of {len(CONTRACT)} checks of the contract:\n"
            + "\n".join(failed)
        )
