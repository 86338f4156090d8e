"""Convergence on both backends: no read strands a client, versions never go back,
a revoked reader is detached, a node that could not start tries again."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import livestate
from livestate import BackendUnavailableError, Change, LiveState, Mount, Node
from livestate.testing import ServerProcess, free_port

from ..support import MakeNode, eventually, in_order


class Counted(LiveState):
    ttl = 5.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


class Revocable(LiveState):
    """Its reset takes `read` from the group when `closed` is set."""

    ttl = 5.0
    closed: ClassVar[bool] = False

    def on_mount(self, key: str) -> Mount:
        group = ["write"] if Revocable.closed else "all"
        return Mount(state={"open": not Revocable.closed}, acl={"group": group, "public": "all"})


async def test_reads_elsewhere_never_leave_a_client_behind(make_node: MakeNode) -> None:
    """On eight keys at once, 300 rounds of a write on B racing three reads on A: A's clients
    end equal to the server.

    On Redis, a read once moved the ordering past versions A's replica never
    applied, and the client stayed a write behind for good.
    """
    a, b = await make_node(), await make_node()

    async def race(key: str) -> None:
        changes: list[Change] = []
        client = await a.attach(Counted, key, on_change=changes.append)
        for _ in range(300):
            await asyncio.gather(
                b.increment(Counted, key, "n"),
                a.get(Counted, key),
                a.get(Counted, key),
                a.get(Counted, key),
            )
        assert await b.get(Counted, key, "n") == 300
        await eventually(lambda: client.state["n"] == 300, within=2.0)
        assert in_order(changes)

    await asyncio.gather(*(race(f"race-{n}") for n in range(8)))


async def test_versions_never_go_back_when_a_live_state_starts_again(make_node: MakeNode) -> None:
    """Stopped, then started again by a node with no clients: the new lifetime is above."""
    a, b = await make_node(), await make_node()
    client = await a.attach(Counted, "again")
    for _ in range(5):
        await client.increment("n")
    last = client.version
    await b.stop(Counted, "again")
    await b.start(Counted, "again")
    fresh = await a.attach(Counted, "again")
    assert fresh.version > last


async def test_a_group_that_loses_read_is_detached(make_node: MakeNode) -> None:
    """A reset whose ACL no longer lets the group read ends with `stopped`, within 1 s."""
    a, b = await make_node(), await make_node()
    Revocable.closed = False
    changes: list[Change] = []
    reader = await b.attach(Revocable, "room", on_change=changes.append)
    try:
        Revocable.closed = True
        await a.reset(Revocable, "room")
        await eventually(lambda: not reader.attached, within=1.0)
        assert changes[-1].kind == "stopped"
        assert all(change.value != {"open": False} for change in changes)  # never read it
    finally:
        Revocable.closed = False


async def test_a_revoked_client_never_shows_the_state_that_revoked_it(make_node: MakeNode) -> None:
    """When its last `stopped` arrives, a revoked client's `state` and `version` are still the
    ones it could read: on the resetting node and on another, as the writer's own client
    and as a bystander (a PyView view keeps showing `client.state` after `stopped`)."""
    a, b = await make_node(), await make_node()
    Revocable.closed = False
    seen: dict[str, tuple[dict[str, Any], int]] = {}

    def watch(name: str, client_of: dict[str, Any]) -> Any:
        def on_change(change: Change) -> None:
            if change.kind == "stopped":
                client = client_of[name]
                seen[name] = (dict(client.state), client.version)

        return on_change

    clients: dict[str, Any] = {}
    for name, node in (("writer's node", a), ("other node", b)):
        clients[name] = await node.attach(Revocable, "room", on_change=watch(name, clients))
    before = {name: (dict(c.state), c.version) for name, c in clients.items()}
    try:
        Revocable.closed = True
        await clients["writer's node"].reset()
        await eventually(lambda: len(seen) == 2, within=1.0)
    finally:
        Revocable.closed = False
    assert seen == before
    assert all(state == {"open": True} for state, _ in seen.values())


async def test_a_node_whose_first_start_failed_starts_later() -> None:
    """A node used before its server was up recovers once the server is there."""
    server = ServerProcess(port=free_port())
    node = Node(f"{server.url}?timeout=0.3")
    try:
        with pytest.raises(BackendUnavailableError):
            await node.start(Counted, "later")
        server.start()
        await node.start(Counted, "later")
        assert await node.get(Counted, "later") == {"n": 0}
    finally:
        await node.aclose()
        server.stop()


@pytest.mark.parametrize(
    "value",
    [10**4999, livestate.FrozenDict({"n": 2**60}), livestate.FrozenList([{1: 2}])],
    ids=["huge-int", "frozen-dict-big-int", "frozen-list-int-key"],
)
async def test_values_out_of_json_are_refused_even_when_frozen(
    node: livestate.Node, value: Any
) -> None:
    """A huge int (whose str() itself fails) and bad contents of Frozen containers are refused."""
    await Counted.start("v")
    with pytest.raises(livestate.InvalidValueError, match=r"Cannot write 'x' of Counted 'v'"):
        await Counted.put("v", "x", value)


async def test_update_gives_up_on_a_property_that_never_stays_still(node: livestate.Node) -> None:
    """update retries a conflict with backoff, a bounded number of times, then says why."""
    await Counted.start("hot")

    async def meddle(value: int) -> int:
        await Counted.increment("hot", "n")  # someone else always writes first
        return value + 1

    with pytest.raises(BackendUnavailableError, match=r"use increment or append"):
        await Counted.update("hot", "n", meddle)
