"""Quotas: a node runs at most `max_live_states` live states (and a spec's own limit), so a
loop of start or attach on fresh keys is refused instead of filling memory and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livestate import InvalidValueError, LiveState, MemoryBackend, Node, QuotaExceededError
from tests.support import MakeNode


class Brief(LiveState):
    """Ends 0.1 s after its last client leaves."""

    ttl = 0.1


class Few(LiveState):
    """At most two of these per node."""

    ttl = 0.1
    max_live_states = 2


@pytest.fixture
async def small(backend_name: str, request: pytest.FixtureRequest) -> Any:
    """A node that may run three live states, on the backend under test."""
    if backend_name == "memory":
        node = Node(backend=MemoryBackend(), max_live_states=3, metrics=True)
    else:
        import redis

        server = request.getfixturevalue("redis_server")
        with redis.Redis.from_url(server.url) as connection:
            connection.flushall()
        node = Node(server.url, max_live_states=3, metrics=True)
    async with node:
        yield node


async def test_a_loop_over_fresh_keys_is_refused_at_the_limit(small: Node) -> None:
    """Attaches and starts count alike; the fourth live state is refused, naming the limit,
    and nothing of it is started; one already counted is always admitted again."""
    await small.attach(Brief, "a")
    await small.start(Brief, "b")
    await small.attach(Brief, "c")
    for attempt in (small.attach(Brief, "d"), small.start(Brief, "d")):
        with pytest.raises(
            QuotaExceededError, match=r"already runs 3 live states.*max_live_states"
        ):
            await attempt
    with pytest.raises(Exception, match="not running"):
        await small.get(Brief, "d")
    await small.attach(Brief, "a")  # counted already: admitted
    await small.start(Brief, "b")
    assert small.metrics is not None
    assert small.metrics.counts["quota_refusals"]["live_states"] == 2


async def test_a_live_state_let_go_counts_until_its_ttl(small: Node) -> None:
    """Detaching does not make room at once (the live state lives on for its TTL, so attach
    and detach in a loop still fill the node); once the TTL has passed it does."""
    clients = [await small.attach(Brief, key) for key in "abc"]
    await clients[0].detach()
    with pytest.raises(QuotaExceededError):
        await small.attach(Brief, "d")

    async def admitted() -> bool:
        try:
            await small.attach(Brief, "d")
        except QuotaExceededError:
            return False
        return True

    deadline = asyncio.get_running_loop().time() + 2
    while not await admitted():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def test_a_spec_limit_holds_per_node(make_node: MakeNode) -> None:
    """A spec's max_live_states bounds its live states on each node, whatever the node's
    own limit; other specs are not affected."""
    first, second = await make_node(), await make_node()
    await first.attach(Few, "a")
    await first.attach(Few, "b")
    with pytest.raises(QuotaExceededError, match=r"2 live states of Few.*Few.max_live_states"):
        await first.attach(Few, "c")
    await first.attach(Brief, "c")
    await second.attach(Few, "c")  # another node has its own count


def test_limits_are_checked() -> None:
    """A limit is an int ≥ 1 or None."""
    with pytest.raises(InvalidValueError, match="max_live_states must be an int"):
        Node("memory://", max_live_states=0)
    with pytest.raises(InvalidValueError, match="max_live_states must be an int"):
        type("BadQuota", (LiveState,), {"max_live_states": "10", "__module__": __name__})
