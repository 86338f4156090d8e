"""Presence over two nodes on one Valkey, beside python-socketio done as its users do it.

    python benchmarks/presence.py            # or: make bench (about a minute)
    python benchmarks/presence.py --quick    # N = 10 and 100, fewer joins

One valkey-server (`livestate.testing.ServerProcess`) on a free 127.0.0.1 port.
For each N in 10, 100, 1,000: N clients in one room, half on each of two nodes
(two `Node` objects, each with its own Redis connections, in this process), each
tracked with its own identity. Then JOINS joins, alternating between the nodes:
a new client attaches and tracks (livestate), or connects, enters the room and
announces itself (python-socketio). The same run measures both systems.

- **python-socketio, as its users do it**: two `AsyncServer`s, each with an
  `AsyncRedisManager` on the same Valkey; a join is `enter_room`, `SADD` of the
  identity to a Redis set per room, `SMEMBERS` sent to the joiner (the full
  list), and an `emit` of the join to the room through the manager's Redis
  pub/sub. As in benchmarks/peers.py, the Engine.IO transport records each
  packet instead of writing it to a socket.
- **Time until every client sees a join**: from the join's start until the
  last of the N clients has been handed it (livestate: its `on_change` got the
  presence change; python-socketio: its packet reached the transport). p50
  and p99 over the joins.
- **Messages and bytes per join**, counted at the Valkey server from `INFO
  stats` before and after each join: `total_commands_processed` (every request
  any connection sent) and `total_net_input_bytes + total_net_output_bytes`
  (requests, replies and pub/sub pushes, on every connection). No MONITOR. The
  INFO calls' own share is measured on the idle server first and subtracted,
  and so is each system's idle traffic (livestate's lease heartbeats) at its
  rate over the join's duration. Pub/sub pushes are in the bytes, not in the
  message count (the server counts no pushes); both systems push each join
  once to each node.
- **Memory per presence**: Python heap growth (tracemalloc, both nodes) while
  the N clients track, over N, and the Valkey server's `used_memory` growth
  over N. For python-socketio the presence lives only in the Redis set.

Prints a table and one JSON line. Figures are wall-clock on this machine; the
ratios (python-socketio over livestate) are what to compare between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from livestate import Change, Client, LiveState, Node
from livestate.testing import ServerProcess, command

ROOM = "room"


class Room(LiveState):
    """The room everyone is in."""

    ttl = None
    name = "BenchPresenceRoom"

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


# Measuring at the server.


class Counter:
    """Commands and bytes at the Valkey server between two reads, without the reads' own share."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.overhead = (0.0, 0.0)
        self.idle_rate = (0.0, 0.0)
        self.overhead = self.measure(lambda: None, runs=20)[:2]

    def read(self) -> tuple[int, int]:
        text = str(command(self.port, "INFO", "stats"))
        stats = dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line and "#" not in line
        )
        net = int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])
        return int(stats["total_commands_processed"]), net

    def measure(self, action: Callable[[], None], runs: int = 1) -> tuple[float, float, float]:
        """Mean (commands, bytes, seconds) over `runs` calls of a blocking `action`."""
        commands = nbytes = seconds = 0.0
        for _ in range(runs):
            before, started = self.read(), time.perf_counter()
            action()
            elapsed = time.perf_counter() - started
            after = self.read()
            commands += after[0] - before[0]
            nbytes += after[1] - before[1]
            seconds += elapsed
        return commands / runs, nbytes / runs, seconds / runs

    def start(self) -> tuple[tuple[int, int], float]:
        """A mark before a measured interval."""
        return self.read(), time.perf_counter()

    def since(self, mark: tuple[tuple[int, int], float]) -> tuple[float, float]:
        """(commands, bytes) since `mark`, less the reads' share and the idle traffic."""
        (commands, nbytes), started = mark
        elapsed = time.perf_counter() - started
        now = self.read()
        return (
            now[0] - commands - self.overhead[0] - self.idle_rate[0] * elapsed,
            now[1] - nbytes - self.overhead[1] - self.idle_rate[1] * elapsed,
        )

    async def idle(self, seconds: float = 2.0) -> None:
        """Note the traffic per second while nothing happens (background heartbeats)."""
        before = self.read()
        await asyncio.sleep(seconds)
        after = self.read()
        self.idle_rate = (
            max(0.0, (after[0] - before[0] - self.overhead[0]) / seconds),
            max(0.0, (after[1] - before[1] - self.overhead[1]) / seconds),
        )


def used_memory(port: int) -> int:
    """The server's used_memory, in bytes."""
    text = str(command(port, "INFO", "memory"))
    for line in text.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("INFO memory has no used_memory")


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of `samples` (seconds), in ms."""
    ordered = sorted(samples)
    return {
        "p50": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def wait_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Wait until `condition()`, or fail the run saying what did not happen."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out waiting for {what}.")
        await asyncio.sleep(0.001)


class Seen:
    """When each of the N clients was handed the join it is waiting for."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.times: dict[int, float] = {}

    def note(self, who: int) -> None:
        if who not in self.times:
            self.times[who] = time.perf_counter()


# livestate.


async def livestate_run(url: str, port: int, n: int, joins: int) -> dict[str, Any]:
    """N tracked clients over two nodes, then `joins` joins; the figures of one system."""
    seen = Seen()
    counter = Counter(port)  # calibrated before the nodes' background traffic starts
    async with Node(url) as first, Node(url) as second:
        nodes = (first, second)
        clients: list[Client] = []
        for number in range(n):

            def on_change(change: Change, who: int = number) -> None:
                if change.kind == "presence" and seen.target in change.value:
                    seen.note(who)

            clients.append(await nodes[number % 2].attach(Room, ROOM, on_change))
        await counter.idle()
        gc.collect()
        redis_before = used_memory(port)
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]
        for number, client in enumerate(clients):
            await client.track(f"user-{number}", {"typing": False})
        await wait_for(lambda: all(len(c.presence) == n for c in clients), "every presence")
        gc.collect()
        heap = (tracemalloc.get_traced_memory()[0] - heap_before) / n
        tracemalloc.stop()
        in_redis = (used_memory(port) - redis_before) / n

        latencies: list[float] = []
        commands: list[float] = []
        nbytes: list[float] = []
        for join in range(joins):
            identity = f"joiner-{join}"
            seen.target, seen.times = identity, {}
            mark = counter.start()
            started = time.perf_counter()
            joiner = await nodes[join % 2].attach(Room, ROOM)
            await joiner.track(identity, {"typing": False})
            await wait_for(lambda: len(seen.times) == n, f"every client to see {identity}")
            latencies.append(max(seen.times.values()) - started)
            got = counter.since(mark)
            commands.append(got[0])
            nbytes.append(got[1])
            seen.target = None
            await joiner.detach()
            await wait_for(lambda: all(len(c.presence) == n for c in clients), "the leave")
        for client in clients:
            await client.detach()
    return summary(latencies, commands, nbytes, heap, in_redis)


# python-socketio, as its users do it.


async def socketio_run(url: str, port: int, n: int, joins: int) -> dict[str, Any]:
    """The same workload: a Redis set per room, and a broadcast through the Redis manager."""
    import engineio  # type: ignore[import-untyped, import-not-found, unused-ignore]
    import redis.asyncio
    import socketio  # type: ignore[import-untyped, import-not-found, unused-ignore]

    seen = Seen()
    sessions: dict[str, int] = {}  # Engine.IO sid -> which of the N clients

    class RecordingEngineIO(engineio.AsyncServer):  # type: ignore[misc]
        """A transport that records each packet it is given instead of sending it."""

        async def send_packet(self, sid: str, pkt: Any) -> None:
            who = sessions.get(sid)
            if who is not None and seen.target is not None and seen.target in str(pkt.data):
                seen.note(who)

    class RecordingServer(socketio.AsyncServer):  # type: ignore[misc]
        def _engineio_server_class(self) -> type[Any]:
            return RecordingEngineIO

    servers = []
    for _ in range(2):
        manager = socketio.AsyncRedisManager(url)
        server = RecordingServer(client_manager=manager)
        server.manager_initialized = True
        manager.initialize()  # what the first real connection would do
        servers.append(server)
    store = redis.asyncio.Redis.from_url(url)
    key = f"presence:{ROOM}"

    async def join(server: Any, eio_sid: str, identity: str) -> None:
        """What a `join` handler does: the room, the set, the list to the joiner, the news."""
        sid = await server.manager.connect(eio_sid, "/")
        await server.enter_room(sid, ROOM)
        await store.sadd(key, identity)
        members = await store.smembers(key)
        names = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        await server.emit("presence_state", names, to=sid)
        await server.emit("presence_diff", {"joins": [identity]}, room=ROOM, skip_sid=sid)

    counter = Counter(port)
    try:
        await store.delete(key)
        for number in range(n):
            sessions[f"eio-{number}"] = number
            sid = await servers[number % 2].manager.connect(f"eio-{number}", "/")
            await servers[number % 2].enter_room(sid, ROOM)
        await asyncio.sleep(0.3)  # the managers' listener tasks subscribe to their channel
        await counter.idle()
        gc.collect()
        redis_before = used_memory(port)
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]
        for number in range(n):
            await store.sadd(key, f"user-{number}")
        gc.collect()
        heap = (tracemalloc.get_traced_memory()[0] - heap_before) / n
        tracemalloc.stop()
        in_redis = (used_memory(port) - redis_before) / n

        latencies: list[float] = []
        commands: list[float] = []
        nbytes: list[float] = []
        for number in range(joins):
            identity = f"joiner-{number}"
            seen.target, seen.times = identity, {}
            mark = counter.start()
            started = time.perf_counter()
            await join(servers[number % 2], f"joiner-eio-{number}", identity)
            await wait_for(lambda: len(seen.times) == n, f"every session to see {identity}")
            latencies.append(max(seen.times.values()) - started)
            got = counter.since(mark)
            commands.append(got[0])
            nbytes.append(got[1])
            seen.target = None
            await store.srem(key, identity)
    finally:
        await store.delete(key)
        await store.aclose()
        for server in servers:
            await server.shutdown()
    return summary(latencies, commands, nbytes, heap, in_redis)


def summary(
    latencies: list[float], commands: list[float], nbytes: list[float], heap: float, redis: float
) -> dict[str, Any]:
    """One system's figures at one N."""
    return {
        "all_seen_ms": percentiles(latencies),
        "messages_per_join": round(sorted(commands)[len(commands) // 2], 1),
        "bytes_per_join": round(sorted(nbytes)[len(nbytes) // 2]),
        "python_bytes_per_presence": round(heap),
        "redis_bytes_per_presence": round(redis),
    }


SYSTEMS: dict[str, Callable[[str, int, int, int], Coroutine[Any, Any, dict[str, Any]]]] = {
    "livestate": livestate_run,
    "python-socketio": socketio_run,
}


def main() -> None:
    """Run both systems at each N on one server, print the table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10 and 100, 10 joins each")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    args = parser.parse_args()
    systems = {name: SYSTEMS[name] for name in args.systems.split(",")}
    sizes = (10, 100) if args.quick else (10, 100, 1000)
    joins = 10 if args.quick else 30
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in systems}
    with ServerProcess() as server:
        assert server.port is not None
        for n in sizes:
            for name, run in systems.items():
                command(server.port, "FLUSHALL")
                results[name][n] = asyncio.run(run(server.url, server.port, n, joins))
    if len(systems) == len(SYSTEMS):
        print_table(results, sizes)
    print(json.dumps({"benchmark": "presence", "joins": joins, "results": results}))


def print_table(results: dict[str, dict[int, dict[str, Any]]], sizes: tuple[int, ...]) -> None:
    """One row per figure and N: livestate, python-socketio, and their ratio."""
    rows: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        ("all seen p50 ms", lambda r: r["all_seen_ms"]["p50"]),
        ("all seen p99 ms", lambda r: r["all_seen_ms"]["p99"]),
        ("messages/join", lambda r: r["messages_per_join"]),
        ("bytes/join", lambda r: r["bytes_per_join"]),
        ("Python B/presence", lambda r: r["python_bytes_per_presence"]),
        ("Redis B/presence", lambda r: r["redis_bytes_per_presence"]),
    ]
    print(f"{'N':>5}  {'figure':<18} {'livestate':>10} {'socketio':>10} {'sio/ls':>7}")
    for n in sizes:
        ours, theirs = results["livestate"][n], results["python-socketio"][n]
        for label, pick in rows:
            a, b = pick(ours), pick(theirs)
            ratio = f"{b / a:.2f}x" if a else "-"
            print(f"{n:>5}  {label:<18} {a:>10} {b:>10} {ratio:>7}")
    for n in sizes:
        results["livestate"][n]["vs_socketio"] = {
            label: (round(pick(results["python-socketio"][n]) / pick(results["livestate"][n]), 2))
            if pick(results["livestate"][n])
            else None
            for label, pick in rows
        }


if __name__ == "__main__":
    main()
