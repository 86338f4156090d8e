"""TTL: a live state ends `ttl` seconds after its last client detaches, unless one comes back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import livestate
from livestate import LiveState, Mount

from ..support import running

TTL = 0.4


class TTLShort(LiveState):
    ttl = TTL

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


class TTLForever(LiveState):
    ttl = None


async def ended(node: livestate.Node, spec: type[LiveState], key: str, since: float) -> float:
    """Wait until the live state has ended (within TTL + 1.5 s); return the seconds it took."""
    deadline = since + TTL + 1.5
    while await running(node, spec, key):
        assert time.monotonic() < deadline, f"{spec.name} {key!r} outlived its TTL"
        await asyncio.sleep(0.02)
    return time.monotonic() - since


async def test_ends_after_ttl_not_before(node: livestate.Node) -> None:
    """After the last detach the live state stays for ttl, then ends."""
    client = await TTLShort.attach("k")
    await client.put("n", 5)
    await asyncio.sleep(TTL * 1.5)  # attached all along: nothing may end it meanwhile
    assert await running(node, TTLShort, "k"), "it must not end while a client is attached"
    await client.detach()
    detached = time.monotonic()
    assert await TTLShort.get("k", "n") == 5
    assert await ended(node, TTLShort, "k", detached) >= TTL * 0.9


async def test_attaching_again_cancels_the_countdown(node: livestate.Node) -> None:
    """A client that attaches inside the TTL keeps the state, and a later TTL counts afresh."""
    client = await TTLShort.attach("k")
    await client.put("n", 1)
    await client.detach()
    client = await TTLShort.attach("k")
    await asyncio.sleep(TTL * 1.5)  # past the first countdown: it must have been cancelled
    assert client.state["n"] == 1 and await running(node, TTLShort, "k")
    await client.detach()
    detached = time.monotonic()
    assert await ended(node, TTLShort, "k", detached) >= TTL * 0.9


async def test_the_last_client_on_any_node_counts(make_node: Any) -> None:
    """The countdown starts only when the last client on every node has detached."""
    a, b = await make_node(), await make_node()
    first = await a.attach(TTLShort, "k")
    second = await b.attach(TTLShort, "k")
    await first.detach()
    await asyncio.sleep(TTL * 1.5)  # b still holds it: it must not end
    assert await running(a, TTLShort, "k")
    await second.detach()
    detached = time.monotonic()
    assert await ended(a, TTLShort, "k", detached) >= TTL * 0.9


async def test_start_without_clients_counts_down_at_once(node: livestate.Node) -> None:
    """start() with no client starts the TTL countdown at once."""
    started = time.monotonic()
    await TTLShort.start("k")
    assert await running(node, TTLShort, "k")
    assert await ended(node, TTLShort, "k", started) >= TTL * 0.9


async def test_none_keeps_the_live_state_until_stopped(node: livestate.Node) -> None:
    """ttl None keeps a live state with no clients until stop."""
    async with await TTLForever.attach("k"):
        pass
    await asyncio.sleep(TTL * 2)  # no countdown: it must still run
    assert await running(node, TTLForever, "k")
    await TTLForever.stop("k")
    assert not await running(node, TTLForever, "k")


async def test_mount_sets_the_ttl_per_key(node: livestate.Node) -> None:
    """A Mount's ttl overrides the spec's for that key."""

    class TTLPerKey(LiveState):
        ttl = None

        def on_mount(self, key: str) -> Mount:
            return Mount(state={}, ttl=TTL if key == "short" else None)

    started = time.monotonic()
    await TTLPerKey.start("short")
    await TTLPerKey.start("long")
    assert await ended(node, TTLPerKey, "short", started) >= TTL * 0.9
    assert await running(node, TTLPerKey, "long")


@pytest.mark.parametrize("ttl", [-1, float("inf"), "60", True])
def test_a_bad_ttl_is_rejected(ttl: Any) -> None:
    """A negative, infinite or non-number TTL fails when the spec is defined."""
    with pytest.raises(livestate.InvalidValueError, match="must be a number of seconds"):
        type("BadTTL", (LiveState,), {"ttl": ttl})
