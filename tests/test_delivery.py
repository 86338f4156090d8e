"""Delivery: every client gets its changes in order, and a slow one slows nobody else."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState

from .support import eventually


class DeliveryFeed(LiveState):
    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_async_callbacks_get_changes_in_order(node: livestate.Node) -> None:
    """An async on_change receives every change once, in version order."""
    seen: list[int] = []

    async def on_change(change: Change) -> None:
        await asyncio.sleep(0)
        seen.append(change.version)

    async with await DeliveryFeed.attach("k", on_change=on_change):
        for n in range(100):
            await DeliveryFeed.put("k", "n", n)
        await eventually(lambda: len(seen) == 100)
    assert seen == list(range(2, 102))


async def test_a_blocked_callback_slows_neither_writer_nor_others(node: livestate.Node) -> None:
    """While one client's callback is stuck, writes return and other clients keep up."""
    release = asyncio.Event()
    fast: list[int] = []

    async def stuck(change: Change) -> None:
        await release.wait()

    slow_client = await DeliveryFeed.attach("k", on_change=stuck, max_pending=10)
    await DeliveryFeed.attach("k", on_change=lambda c: fast.append(c.version))
    for n in range(500):
        await asyncio.wait_for(DeliveryFeed.put("k", "n", n), timeout=1)
    assert fast == list(range(2, 502))
    assert len(slow_client._pending or ()) <= 10
    release.set()


async def test_a_slow_reader_gets_one_reset_instead_of_the_backlog(node: livestate.Node) -> None:
    """Past max_pending, the pending changes are replaced by one reset at the current version."""
    got: list[Change] = []
    gate = asyncio.Event()

    async def slow(change: Change) -> None:
        await gate.wait()
        got.append(change)

    async with await DeliveryFeed.attach("k", on_change=slow, max_pending=5):
        for n in range(100):
            await DeliveryFeed.put("k", "n", n)
        gate.set()
        await eventually(lambda: bool(got) and got[-1].version == 101)
        assert got[-1] == Change("k", "reset", None, {"n": 99}, 101)
        assert len(got) <= 2  # the change being handled when the backlog overflowed, then reset


async def test_changes_iterator_overflow_becomes_a_reset(node: livestate.Node) -> None:
    """An unread changes() iterator keeps at most max_pending changes, then one reset."""
    client = await DeliveryFeed.attach("k", max_pending=3)
    for n in range(10):
        await DeliveryFeed.put("k", "n", n)
    await DeliveryFeed.put("k", "after", True)
    stream = client.changes()
    first = await anext(stream)
    assert first.kind == "reset" and first.version == 12 and first.value == {"n": 9, "after": True}
    await DeliveryFeed.put("k", "n", 10)
    assert await anext(stream) == Change("k", "updated", "n", 10, 13)
    await client.detach()
    assert [c async for c in stream] == []


async def test_pending_changes_stay_bounded_per_client(node: livestate.Node) -> None:
    """A client that never reads holds at most max_pending changes."""
    client = await DeliveryFeed.attach("k", max_pending=50)
    for n in range(1000):
        await DeliveryFeed.put("k", "n", n)
    assert len(client._pending or ()) <= 50
    await client.detach()


async def test_a_raising_callback_is_logged_and_others_still_get_the_change(
    node: livestate.Node, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in one on_change is logged; delivery to the others goes on."""
    seen: list[int] = []

    def broken(change: Change) -> None:
        raise RuntimeError("boom")

    async def broken_async(change: Change) -> None:
        raise RuntimeError("async boom")

    await DeliveryFeed.attach("k", on_change=broken)
    await DeliveryFeed.attach("k", on_change=broken_async)
    await DeliveryFeed.attach("k", on_change=lambda c: seen.append(c.version))
    with caplog.at_level(logging.ERROR, logger="livestate"):
        await DeliveryFeed.put("k", "n", 1)
        await DeliveryFeed.put("k", "n", 2)
        await eventually(lambda: len(caplog.records) == 4)
    assert seen == [2, 3]
    assert all(
        "on_change of a client of DeliveryFeed 'k' raised" in r.message for r in caplog.records
    )


async def test_stopped_is_delivered_last_even_after_an_overflow(node: livestate.Node) -> None:
    """A client whose backlog overflowed still gets the final state, then `stopped`."""
    client = await DeliveryFeed.attach("k", max_pending=2)
    for n in range(10):
        await DeliveryFeed.put("k", "n", n)
    await DeliveryFeed.stop("k")
    kinds = [(c.kind, c.version) async for c in client.changes()]
    assert kinds == [("reset", 11), ("stopped", 11)]


async def test_changes_cannot_be_iterated_when_a_callback_receives_them(
    node: livestate.Node,
) -> None:
    """changes() on a client with on_change raises RuntimeError explaining why."""
    async with await DeliveryFeed.attach("k", on_change=lambda c: None) as client:
        with pytest.raises(RuntimeError, match="attach without on_change"):
            await anext(client.changes())


async def test_one_change_object_is_shared_by_all_clients(node: livestate.Node) -> None:
    """A write is encoded and turned into a Change once, not once per client."""
    seen: list[Change] = []
    for _ in range(5):
        await DeliveryFeed.attach("k", on_change=seen.append)
    await DeliveryFeed.put("k", "n", {"big": list(range(100))})
    assert len(seen) == 5 and len({id(c) for c in seen}) == 1
