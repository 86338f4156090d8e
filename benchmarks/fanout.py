"""Core fan-out cost on one node (memory://): per-client delivery, write rate, memory.

    python benchmarks/fanout.py            # or: make bench

Prints a table and one JSON line. Figures are wall-clock on this machine; run it
on a quiet machine and compare runs, not single numbers. The write rate is also
given as a ratio to its floor, measured in the same run (an awaited dict set
handing a tuple to the same 10 callbacks: no versions, checks or ordering).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from typing import Any

from livestate import Change, LiveState, MemoryBackend, Node
from livestate._metrics import enabled as metrics_enabled


class Bench(LiveState):
    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def delivery_cost(node: Node, clients: int) -> float:
    """Nanoseconds per client delivery: a write until every client's callback has run, over N."""
    received = 0

    def on_change(change: Change) -> None:
        nonlocal received
        received += 1

    attached = [await node.attach(Bench, f"fan-{clients}", on_change) for _ in range(clients)]
    writes = max(20, 200_000 // clients)
    best = float("inf")
    for _ in range(5):
        received = 0
        start = time.perf_counter_ns()
        for n in range(writes):
            await node.put(Bench, f"fan-{clients}", "n", n)
        elapsed = time.perf_counter_ns() - start
        assert received == writes * clients, "every client gets every change"
        best = min(best, elapsed / (writes * clients))
    for client in attached:
        await client.detach()
    return best


async def write_rate(node: Node, clients: int = 10, seconds: float = 1.0) -> float:
    """Writes per second through one client on one key with `clients` attached."""
    attached = [await node.attach(Bench, "rate", lambda change: None) for _ in range(clients)]
    writer = attached[0]
    best = 0.0
    for _ in range(3):
        count = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for n in range(1000):
                await writer.put("n", n)
            count += 1000
        best = max(best, count / (time.perf_counter() - start))
    for client in attached:
        await client.detach()
    return best


async def floor_rate(clients: int = 10, seconds: float = 1.0) -> float:
    """The floor of `write_rate`: writes/s of an awaited dict set handing a tuple to
    `clients` callbacks, with no versions, checks, ACL or ordering."""
    state: dict[str, int] = {}
    callbacks = [_ignore] * clients

    async def put(prop: str, value: int) -> None:
        state[prop] = value
        change = (prop, value)
        for callback in callbacks:
            callback(change)  # type: ignore[arg-type]

    best = 0.0
    for _ in range(3):
        count = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for n in range(1000):
                await put("n", n)
            count += 1000
        best = max(best, count / (time.perf_counter() - start))
    return best


async def memory_per_state(node: Node, count: int = 90_000) -> float:
    """Bytes of memory per idle live state (started, no client); `count` stays below a
    node's default max_live_states (100,000) with the others this benchmark starts."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        await node.start(Bench, f"idle-{n}")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


async def memory_per_client(node: Node, count: int = 10_000) -> float:
    """Bytes of memory per attached client (one key, a sync callback)."""
    await node.start(Bench, "clients")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    clients = [await node.attach(Bench, "clients", _ignore) for _ in range(count)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del clients
    return (after - before) / count


def _ignore(change: Change) -> None:
    pass


async def metrics_cost(rounds: int = 3) -> dict[str, float]:
    """Per-write (N = 1) and per-delivery (N = 1,000) ns with metrics on and off, interleaved."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for on in (False, True):
            async with Node(backend=MemoryBackend(), metrics=on) as node:
                for n in (1, 1_000):
                    name = f"{'on' if on else 'off'}_{n}"
                    best[name] = min(best.get(name, float("inf")), await delivery_cost(node, n))
    return best


async def main() -> None:
    # The figures of the core, metrics off; their cost when on is measured apart, below.
    async with Node(backend=MemoryBackend(), metrics=False) as node:
        costs = {n: await delivery_cost(node, n) for n in (1, 100, 1_000, 10_000)}
        # Interleaved with its floor, so that both see the same machine.
        rate = floor = 0.0
        for _ in range(2):
            floor = max(floor, await floor_rate())
            rate = max(rate, await write_rate(node))
        per_state = await memory_per_state(node)
        per_client = await memory_per_client(node)
    metrics = await metrics_cost() if metrics_enabled() else {}
    print("livestate core fan-out (memory://, one node)")
    print(f"{'measure':<42}{'result':>14}{'target':>12}")
    for n, ns in costs.items():
        target = "≤ 1,000 ns" if n == 1_000 else ""
        print(f"{f'per-client delivery, N = {n:,}':<42}{f'{ns:,.0f} ns':>14}{target:>12}")
    print(f"{'writes/s, one key, 10 clients':<42}{f'{rate:,.0f}':>14}{'≥ 100,000':>12}")
    print(f"{'  its floor (a dict set, 10 callbacks)':<42}{f'{floor:,.0f}':>14}{'':>12}")
    print(f"{'  ratio to the floor':<42}{f'{rate / floor:.3f}':>14}{'≥ 0.15':>12}")
    print(f"{'memory per idle live state':<42}{f'{per_state:,.0f} B':>14}{'≤ 2,048 B':>12}")
    print(f"{'memory per attached client':<42}{f'{per_client:,.0f} B':>14}{'≤ 1,024 B':>12}")
    if metrics:
        write = metrics["on_1"] / metrics["off_1"]
        delivery = metrics["on_1000"] / metrics["off_1000"]
        print(f"{'metrics on / off, per write (N = 1)':<42}{f'{write:.3f}x':>14}{'':>12}")
        print(
            f"{'metrics on / off, per delivery (N = 1,000)':<42}{f'{delivery:.3f}x':>14}"
            f"{'≤ 1.05x':>12}"
        )
    print(
        json.dumps(
            {
                "benchmark": "fanout",
                "delivery_ns": {str(n): round(ns, 1) for n, ns in costs.items()},
                "writes_per_second_10_clients": round(rate),
                "floor_writes_per_second": round(floor),
                "ratio_to_floor": round(rate / floor, 3),
                "bytes_per_idle_state": round(per_state),
                "bytes_per_client": round(per_client),
                "metrics_ns": {name: round(ns, 1) for name, ns in metrics.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
