"""Delivery: every client gets its changes in order, and a slow one slows nobody else."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState

from ..support import eventually


class DeliveryFeed(LiveState):
    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_async_callbacks_get_changes_in_order(node: livestate.Node) -> None:
    """An async on_change receives every change once, in version order."""
    seen: list[int] = []

    async def on_change(change: Change) -> None:
        await asyncio.sleep(0)
        seen.append(change.version)

    async with await DeliveryFeed.attach("k", on_change=on_change) as client:
        first = client.version
        for n in range(100):
            await DeliveryFeed.put("k", "n", n)
        await eventually(lambda: len(seen) == 100)
    assert seen == list(range(first + 1, first + 101))


async def test_a_blocked_callback_slows_neither_writer_nor_others(node: livestate.Node) -> None:
    """While one client's callback is stuck, writes return and other clients keep up."""
    release = asyncio.Event()
    fast: list[int] = []
    slow: list[Change] = []

    async def stuck(change: Change) -> None:
        await release.wait()
        slow.append(change)

    client = await DeliveryFeed.attach("k", on_change=stuck, max_pending=10)
    first = client.version
    await DeliveryFeed.attach("k", on_change=lambda c: fast.append(c.version))
    for n in range(500):
        await asyncio.wait_for(DeliveryFeed.put("k", "n", n), timeout=1)
    assert fast == list(range(first + 1, first + 501))
    release.set()
    # The change it was stuck on, then one reset to the present: never the backlog.
    await eventually(lambda: bool(slow) and slow[-1].version == first + 500)
    assert len(slow) == 2 and slow[-1] == Change("k", "reset", None, {"n": 499}, first + 500)


async def test_a_slow_reader_gets_one_reset_instead_of_the_backlog(node: livestate.Node) -> None:
    """Past max_pending, the pending changes are replaced by one reset at the current version."""
    got: list[Change] = []
    gate = asyncio.Event()

    async def slow(change: Change) -> None:
        await gate.wait()
        got.append(change)

    async with await DeliveryFeed.attach("k", on_change=slow, max_pending=5) as client:
        first = client.version
        for n in range(100):
            await DeliveryFeed.put("k", "n", n)
        gate.set()
        await eventually(lambda: bool(got) and got[-1].version == first + 100)
        # At most the change being handled when the backlog overflowed, then the reset.
        assert len(got) <= 2
        assert got[-1] == Change("k", "reset", None, {"n": 99}, first + 100)


async def test_changes_iterator_overflow_becomes_a_reset(node: livestate.Node) -> None:
    """An unread changes() iterator keeps at most max_pending changes, then one reset."""
    client = await DeliveryFeed.attach("k", max_pending=3)
    start = client.version
    for n in range(10):
        await DeliveryFeed.put("k", "n", n)
    await DeliveryFeed.put("k", "after", True)
    stream = client.changes()
    first = await anext(stream)
    assert first == Change("k", "reset", None, {"n": 9, "after": True}, start + 11)
    await DeliveryFeed.put("k", "n", 10)
    assert await anext(stream) == Change("k", "updated", "n", 10, start + 12)
    await client.detach()
    assert [c async for c in stream] == []


async def test_pending_changes_stay_bounded_per_client(node: livestate.Node) -> None:
    """A client that never reads holds at most max_pending changes: then one reset."""
    client = await DeliveryFeed.attach("k", max_pending=50)
    start = client.version
    for n in range(1000):
        await DeliveryFeed.put("k", "n", n)
    stream = client.changes()
    assert await anext(stream) == Change("k", "reset", None, {"n": 999}, start + 1000)
    await DeliveryFeed.put("k", "n", -1)
    assert await anext(stream) == Change("k", "updated", "n", -1, start + 1001)
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
    first = (await DeliveryFeed.attach("k", on_change=lambda c: seen.append(c.version))).version
    with caplog.at_level(logging.ERROR, logger="livestate"):
        await DeliveryFeed.put("k", "n", 1)
        await DeliveryFeed.put("k", "n", 2)
        await eventually(lambda: len(caplog.records) == 4)
    assert seen == [first + 1, first + 2]
    assert all(
        "DeliveryFeed 'k': an on_change of a client raised" in r.message for r in caplog.records
    )


async def test_stopped_is_delivered_last_even_after_an_overflow(node: livestate.Node) -> None:
    """A client whose backlog overflowed still gets the final state, then `stopped`."""
    client = await DeliveryFeed.attach("k", max_pending=2)
    first = client.version
    for n in range(10):
        await DeliveryFeed.put("k", "n", n)
    await DeliveryFeed.stop("k")
    kinds = [(c.kind, c.version) async for c in client.changes()]
    assert kinds == [("reset", first + 10), ("stopped", first + 10)]


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


async def test_a_reader_that_lags_gets_one_reset_within_max_lag(node: livestate.Node) -> None:
    """An on_change of 50 ms under 300 writes shows the present within about max_lag, not 15 s.

    The backlog stays under max_pending all along, so only the lag bound can act.
    """
    got: list[Change] = []

    async def slow(change: Change) -> None:
        await asyncio.sleep(0.05)
        got.append(change)

    async with await DeliveryFeed.attach("k", on_change=slow, max_lag=0.3) as client:
        for n in range(300):
            await DeliveryFeed.put("k", "n", n)
            await asyncio.sleep(0.002)  # 300 writes in about 0.6 s
        last = client.version
        # Without the bound, 300 x 50 ms of backlog would take 15 s to play out.
        await eventually(lambda: bool(got) and got[-1].version == last, within=1.5)
    assert any(change.kind == "reset" for change in got)
    versions = [change.version for change in got]
    assert versions == sorted(set(versions))  # strictly increasing, resets included


async def test_changes_iterator_that_lags_gets_a_reset(node: livestate.Node) -> None:
    """A changes() reader whose oldest pending change is older than max_lag reads a reset."""
    client = await DeliveryFeed.attach("k", max_lag=0.05)
    start = client.version
    await DeliveryFeed.put("k", "n", 1)
    await DeliveryFeed.put("k", "n", 2)
    await asyncio.sleep(0.1)  # the reader is late on purpose: that is the condition under test
    stream = client.changes()
    assert await anext(stream) == Change("k", "reset", None, {"n": 2}, start + 2)
    await client.detach()


async def test_a_plain_function_returning_a_coroutine_is_awaited_in_order(
    node: livestate.Node,
) -> None:
    """on_change=lambda c: handle(c) with an async handle: each coroutine is awaited, in order."""
    seen: list[int] = []

    async def handle(change: Change) -> None:
        await asyncio.sleep(0)
        seen.append(change.version)

    async with await DeliveryFeed.attach("k", on_change=lambda c: handle(c)) as client:
        first = client.version
        for n in range(20):
            await DeliveryFeed.put("k", "n", n)
        await eventually(lambda: len(seen) == 20)
    assert seen == list(range(first + 1, first + 21))
