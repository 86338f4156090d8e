"""Where a Redis write's time goes: the writer's side and the receiver's Python, apart.

    .venv/bin/python benchmarks/redis_path.py

Starts one valkey-server on a free 127.0.0.1 port (stopped by its PID) and prints:

- for 3,000 `put`s of a ~200-byte update, one every millisecond as in the peers
  benchmark's fixed-rate phase: the time from the call to the moment its bytes
  are handed to the socket, and the whole round trip; the same for redis-py's
  bare PUBLISH of the same JSON (the floor of benchmarks/peers.py);
- the Python cost of one published message in a receiving node, from the
  pub/sub text to every client's `on_change`, for N = 1, 100 and 1,000 clients
  (fed straight to the backend's message handler, so no network is counted).

The peers benchmark measures the whole path between processes; this one splits
it, to show which side a change moved.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from asyncio import selector_events
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_common import encode, payload

import livestate
from livestate._backends.redis import RedisBackend
from livestate.testing import ServerProcess

WRITES = 3_000
MESSAGES = 20_000


class PathRoom(livestate.LiveState):
    """One room, as in benchmarks/peers.py."""

    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


async def timed_writes(send: Callable[[int], Awaitable[object]]) -> tuple[list[int], list[int]]:
    """Nanoseconds from each call to its first socket write, and to its return."""
    # Private, but the one place every asyncio socket write of both clients passes.
    transport: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
    original = transport.write
    first: list[int] = []

    def write(self: Any, data: Any) -> None:
        first.append(time.perf_counter_ns())
        original(self, data)

    before, total = [], []
    transport.write = write
    try:
        for number in range(WRITES):
            await asyncio.sleep(0.001)
            first.clear()
            started = time.perf_counter_ns()
            await send(number)
            total.append(time.perf_counter_ns() - started)
            before.append(first[0] - started)
    finally:
        transport.write = original
    return before, total


async def writer_side(url: str) -> dict[str, tuple[list[int], list[int]]]:
    async with livestate.Node(url) as node:
        await node.start(PathRoom, "lobby")

        async def put(number: int) -> None:
            await node.put(PathRoom, "lobby", "update", payload(2, number))

        ours = await timed_writes(put)
    connection = redis.asyncio.Redis.from_url(url)
    try:
        await connection.ping()

        async def publish(number: int) -> int:
            return await connection.publish("lobby", encode(payload(2, number)))

        floor = await timed_writes(publish)
    finally:
        await connection.aclose()
    return {"livestate put": ours, "redis-py PUBLISH": floor}


async def receiver_side(url: str, n: int) -> float:
    """Microseconds of Python per published message reaching `n` sync clients."""
    async with livestate.Node(url) as node:
        delivered = 0

        def on_change(change: livestate.Change) -> None:
            nonlocal delivered
            delivered += 1

        for _ in range(n):
            await node.attach(PathRoom, f"receive-{n}", on_change)
        backend = node.backend
        assert isinstance(backend, RedisBackend)
        prefix = f"ls:{{PathRoom:receive-{n}}}"
        with redis.Redis.from_url(url, decode_responses=True) as admin:
            epoch, version = admin.hmget(f"{prefix}:m", "e", "v")
        head = json.dumps(["put", "update", None], separators=(",", ":"))
        texts = [
            f"{epoch}\n{int(version) + number}\n{head}\n0\n{encode(payload(2, number))}"
            for number in range(1, MESSAGES + 1)
        ]
        received = backend._channels.received  # the benchmark's one look inside
        started = time.perf_counter()
        for text in texts:
            received(f"{prefix}:c", text)
        elapsed = time.perf_counter() - started
        if delivered != MESSAGES * n:
            raise RuntimeError(f"{delivered:,} deliveries, expected {MESSAGES * n:,}")
        return elapsed / MESSAGES * 1e6


def summary(samples: list[int]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99)]
    return f"{statistics.median(ordered) / 1e3:7.1f} / {p99 / 1e3:6.1f} µs"


async def main() -> None:
    with ServerProcess() as server:
        writes = await writer_side(server.url)
        receives = {n: await receiver_side(server.url, n) for n in (1, 100, 1_000)}
    print("Redis write path, one writer at 1,000 writes/s (median / p99)")
    print(f"{'':<20}{'call → bytes sent':>22}{'round trip':>22}")
    for name, (before, total) in writes.items():
        print(f"{name:<20}{summary(before):>22}{summary(total):>22}")
    print()
    print("receiving node, Python per published message (no network)")
    for n, micros in receives.items():
        print(f"  N = {n:>5,}: {micros:6.2f} µs per message, {micros / n * 1e3:6.0f} ns per client")
    print(
        json.dumps(
            {
                "benchmark": "redis_path",
                "writes": {
                    name: {
                        "to_socket_us_p50": statistics.median(before) / 1e3,
                        "round_trip_us_p50": statistics.median(total) / 1e3,
                    }
                    for name, (before, total) in writes.items()
                },
                "receive_us_per_message": receives,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
