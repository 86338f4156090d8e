"""Two deployments on one server: on two databases, or under two `?prefix=` namespaces of
one database (or of one cluster), each sees its own live states and changes, never the
other's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from livestate import Change, InvalidValueError, LiveState, Node
from livestate.testing import ClusterProcess, ServerProcess

from ...support import eventually

WRITES = 40


class Shared(LiveState):
    """The same spec and key in both deployments, so that their names would collide."""

    ttl = 5.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def run_side_by_side(first: str, second: str) -> dict[str, list[Change]]:
    """Two nodes of each deployment, a watcher on the second node of each, and both
    deployments writing the same key at once; the changes each watcher saw."""
    seen: dict[str, list[Change]] = {first: [], second: []}
    async with Node(first) as a1, Node(first) as a2, Node(second) as b1, Node(second) as b2:
        watchers = [
            await a2.attach(Shared, "room", seen[first].append),
            await b2.attach(Shared, "room", seen[second].append),
        ]
        writers = [await a1.attach(Shared, "room"), await b1.attach(Shared, "room")]

        async def write(client: Any, offset: int) -> None:
            for n in range(WRITES):
                await client.put("n", offset + n)

        await asyncio.gather(write(writers[0], 1000), write(writers[1], 2000))
        await eventually(
            lambda: all(w.version == c.version for w, c in zip(watchers, writers, strict=True))
        )
        assert watchers[0].state["n"] == 1000 + WRITES - 1
        assert watchers[1].state["n"] == 2000 + WRITES - 1
        for node, own in ((a1, {a1.id, a2.id}), (b1, {b1.id, b2.id})):
            # Its nodes announce within a moment; none of the other deployment ever shows.
            deadline = asyncio.get_running_loop().time() + 2
            survey = await node.survey()
            while {report.id for report in survey.nodes} != own:
                assert asyncio.get_running_loop().time() < deadline, survey.nodes
                await asyncio.sleep(0.02)
                survey = await node.survey()
            assert [(s.spec, s.key) for s in survey.states] == [("Shared", "room")]
            assert set(survey.states[0].holders) == own
    return seen


def server_of(process: ServerProcess) -> str:
    """The server's URL without its database; the databases this module uses, emptied (the
    session's server holds other tests' live states on database 0)."""
    server = process.url.rsplit("/", 1)[0]
    for db in (2, 3, 4):
        with redis.Redis.from_url(f"{server}/{db}") as admin:
            admin.flushdb()
    return server


def assert_only_own_changes(changes: list[Change], offset: int) -> None:
    """Every write of its own deployment, in order, as a change: no reset, nothing foreign."""
    assert [change.kind for change in changes] == ["updated"] * WRITES
    assert [change.value for change in changes] == [offset + n for n in range(WRITES)]


async def test_two_databases_of_one_server_do_not_hear_each_other(
    redis_server: ServerProcess,
) -> None:
    """Pub/sub reaches every database of a server; the channels name their database, so a
    deployment on /4 gets the changes of its writes, not a reset for each of /3's."""
    first, second = f"{server_of(redis_server)}/3", f"{server_of(redis_server)}/4"
    seen = await run_side_by_side(first, second)
    assert_only_own_changes(seen[first], 1000)
    assert_only_own_changes(seen[second], 2000)


async def test_two_prefixes_share_one_database_apart(redis_server: ServerProcess) -> None:
    """`?prefix=` namespaces every key and channel: two apps on one database keep apart."""
    server = server_of(redis_server)
    first, second = f"{server}/2?prefix=app-a", f"{server}/2?prefix=app.b"
    seen = await run_side_by_side(first, second)
    assert_only_own_changes(seen[first], 1000)
    assert_only_own_changes(seen[second], 2000)


async def test_two_prefixes_share_one_cluster_apart(cluster: ClusterProcess) -> None:
    """On a cluster the prefix sits before the hash tag: each live state keeps its keys and
    channel in one slot, and two apps on one cluster keep apart."""
    first, second = f"{cluster.url}?prefix=app-a", f"{cluster.url}?prefix=app-b"
    seen = await run_side_by_side(first, second)
    assert_only_own_changes(seen[first], 1000)
    assert_only_own_changes(seen[second], 2000)


@pytest.mark.parametrize("prefix", ["", "a:b", "{x}", "*", "x" * 65])
def test_a_prefix_that_names_no_namespace_is_refused(prefix: str) -> None:
    """A prefix must be 1 to 64 of [A-Za-z0-9_.-]: nothing that a hash tag or pattern reads."""
    with pytest.raises(InvalidValueError, match="prefix in LIVESTATE_URL"):
        Node(f"redis://127.0.0.1:6379/0?prefix={prefix}")
