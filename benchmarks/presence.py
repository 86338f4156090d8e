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
- **Messages and bytes per join**, counted at the Valkey server before and
  after each join, without MONITOR: `CLIENT LIST` gives each connection's
  requests (`tot-cmds`: a script, EVALSHA, is one) and bytes (`tot-net-in` +
  `tot-net-out`: requests, replies and pub/sub pushes), summed over the
  connections open at both readings (so not the reading's own); `INFO stats`
  `total_commands_processed` gives the commands the server ran, those inside
  scripts too, less the readings' own. Each system's idle traffic (livestate's
  lease heartbeats) is measured first and subtracted at its rate over the
  join's duration. Pub/sub pushes are in the bytes, not in the request count
  (the server counts no pushes); in both systems each publish here reaches the
  two nodes.
- **Memory per presence**: Python heap growth (tracemalloc, both nodes) while
  the N clients track, over N, and the growth of the server's keys (`MEMORY
  USAGE` summed over every key) over N. livestate keeps each node's roster in
  the node (two here) so that reading presence costs no round trip; for
  python-socketio the presence lives only in the Redis set.

Prints a table and one JSON line. Figures are wall-clock on this machine; the
ratios (python-socketio over livestate) are what to compare between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
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


def frame_end(buffer: bytes | bytearray, start: int) -> int | None:
    """Where the RESP frame at `start` ends (the index after it), or None if it is incomplete."""
    line = buffer.find(b"\r\n", start)
    if line < 0:
        return None
    kind = buffer[start : start + 1]
    if kind in (b"$", b"!", b"="):
        length = int(buffer[start + 1 : line])
        if length < 0:
            return line + 2
        end = line + 2 + length + 2
        return end if end <= len(buffer) else None
    if kind in (b"*", b">", b"~", b"%", b"|"):
        count = int(buffer[start + 1 : line])
        position = line + 2
        for _ in range(max(0, count) * (2 if kind in (b"%", b"|") else 1)):
            after = frame_end(buffer, position)
            if after is None:
                return None
            position = after
        return position
    return line + 2  # a simple type: +, -, :, _, #, ,, (


class Wire:
    """Frames and bytes one way through the proxy: requests, or replies and pushes."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.pending = bytearray()

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self.pending += data
        position = 0
        while position < len(self.pending):
            end = frame_end(self.pending, position)
            if end is None:
                break
            self.frames += 1
            position = end
        del self.pending[:position]


class CountingProxy:
    """A TCP proxy to the server that counts RESP frames and bytes each way, in its own thread.

    Each connection gets its own pair of Wires (frames never span connections);
    `totals()` adds them up. Its own thread and loop, so that forwarding does not
    wait behind the measured event loop (both systems pay the same extra hop).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.wires: list[tuple[Wire, Wire]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def close(self) -> None:
        """Stop forwarding: end every connection's task, then the thread's loop."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def totals(self) -> tuple[int, int, int]:
        """(requests, replies and pushes, bytes both ways) so far, over every connection."""
        wires = list(self.wires)
        return (
            sum(up.frames for up, _ in wires),
            sum(down.frames for _, down in wires),
            sum(up.bytes + down.bytes for up, down in wires),
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up, down = Wire(), Wire()
        self.wires.append((up, down))

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, wire: Wire
        ) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    wire.feed(data)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        with contextlib.suppress(asyncio.CancelledError):  # close() ends it
            await asyncio.gather(pump(reader, up_writer, up), pump(up_reader, writer, down))


Figures = tuple[float, float, float, float]
"""Per join: requests, replies and pushes, bytes, commands the server ran."""


class Counter:
    """What a join costs at the server: frames and bytes through the proxy, and commands run.

    Requests and replies/pushes are RESP frames counted by the proxy that every
    connection of the system goes through (a script, EVALSHA, is one request);
    the readings of `INFO stats` go straight to the server, so they are not in
    them. Server commands (`total_commands_processed`) count every command run,
    those inside scripts too, less the readings' own.
    """

    def __init__(self, proxy: CountingProxy, port: int) -> None:
        self.proxy = proxy
        self.port = port
        self.idle_rate: Figures = (0.0, 0.0, 0.0, 0.0)
        runs = 20
        overhead = 0
        for _ in range(runs):
            first = self.commands()
            overhead += self.commands() - first
        self.overhead = overhead / runs

    def commands(self) -> int:
        text = str(command(self.port, "INFO", "stats"))
        for line in text.splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
        raise RuntimeError("INFO stats has no total_commands_processed")

    def read(self) -> tuple[int, int, int, int]:
        return (*self.proxy.totals(), self.commands())

    def start(self) -> tuple[tuple[int, int, int, int], float]:
        """A mark before a measured interval."""
        return self.read(), time.perf_counter()

    def since(self, mark: tuple[tuple[int, int, int, int], float]) -> Figures:
        """The figures since `mark`, less the idle traffic over that time."""
        before, started = mark
        elapsed = time.perf_counter() - started
        after = self.read()
        got = [float(a - b) for a, b in zip(after, before, strict=True)]
        got[3] -= self.overhead
        rates = self.idle_rate
        return (
            got[0] - rates[0] * elapsed,
            got[1] - rates[1] * elapsed,
            got[2] - rates[2] * elapsed,
            got[3] - rates[3] * elapsed,
        )

    async def idle(self, seconds: float = 2.0) -> None:
        """Note the traffic per second while nothing happens (background heartbeats)."""
        mark = self.start()
        await asyncio.sleep(seconds)
        got = self.since(mark)
        self.idle_rate = (
            max(0.0, got[0] / seconds),
            max(0.0, got[1] / seconds),
            max(0.0, got[2] / seconds),
            max(0.0, got[3] / seconds),
        )


def used_memory(port: int) -> int:
    """The bytes every key of the server takes (`MEMORY USAGE`, summed over a SCAN).

    Not `used_memory`, which moves with client buffers; each run starts on an
    empty server, so these are the system's own keys.
    """
    total, cursor = 0, "0"
    while True:
        cursor, keys = command(port, "SCAN", cursor, "COUNT", 1000)
        cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else str(key)
            total += int(command(port, "MEMORY", "USAGE", name, "SAMPLES", 0) or 0)
        if cursor == "0":
            return total


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of `samples` (seconds), in ms."""
    ordered = sorted(samples)
    return {
        "p50": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def memory_per(n: int, port: int, add: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Bytes of this process's heap and of Redis memory per presence that `add()` adds."""
    gc.collect()
    redis_before = used_memory(port)
    tracemalloc.start()
    heap_before = tracemalloc.get_traced_memory()[0]
    await add()
    gc.collect()
    heap = (tracemalloc.get_traced_memory()[0] - heap_before) / n
    tracemalloc.stop()
    return heap, (used_memory(port) - redis_before) / n


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


async def livestate_run(proxy: CountingProxy, port: int, n: int, joins: int) -> dict[str, Any]:
    """N tracked clients over two nodes, then `joins` joins; the figures of one system."""
    seen = Seen()
    counter = Counter(proxy, port)  # calibrated before the nodes' background traffic starts
    url = proxy.url
    async with Node(url) as first, Node(url) as second:
        nodes = (first, second)
        clients: list[Client] = []
        for number in range(n):

            def on_change(change: Change, who: int = number) -> None:
                if change.kind == "presence" and seen.target in change.value:
                    seen.note(who)

            clients.append(await nodes[number % 2].attach(Room, ROOM, on_change))
        await counter.idle()

        async def track_all() -> None:
            for number, client in enumerate(clients):
                await client.track(f"user-{number}", {"typing": False})
            await wait_for(lambda: all(len(c.presence) == n for c in clients), "every presence")

        heap, in_redis = await memory_per(n, port, track_all)

        latencies: list[float] = []
        counts: list[Figures] = []
        for join in range(joins):
            identity = f"joiner-{join}"
            seen.target, seen.times = identity, {}
            mark = counter.start()
            started = time.perf_counter()
            joiner = await nodes[join % 2].attach(Room, ROOM)
            await joiner.track(identity, {"typing": False})
            await wait_for(lambda: len(seen.times) == n, f"every client to see {identity}")
            latencies.append(max(seen.times.values()) - started)
            counts.append(counter.since(mark))
            seen.target = None
            await joiner.detach()
            await wait_for(lambda: all(len(c.presence) == n for c in clients), "the leave")
        for client in clients:
            await client.detach()
    return summary(latencies, counts, heap, in_redis)


# python-socketio, as its users do it.


async def socketio_run(proxy: CountingProxy, port: int, n: int, joins: int) -> dict[str, Any]:
    """The same workload: a Redis set per room, and a broadcast through the Redis manager."""
    import engineio  # type: ignore[import-untyped]
    import redis.asyncio
    import socketio  # type: ignore[import-untyped]

    seen = Seen()
    url = proxy.url
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

    counter = Counter(proxy, port)
    try:
        await store.delete(key)
        for number in range(n):
            sessions[f"eio-{number}"] = number
            sid = await servers[number % 2].manager.connect(f"eio-{number}", "/")
            await servers[number % 2].enter_room(sid, ROOM)
        await asyncio.sleep(0.3)  # the managers' listener tasks subscribe to their channel
        await counter.idle()

        async def add_all() -> None:
            for number in range(n):
                await store.sadd(key, f"user-{number}")

        heap, in_redis = await memory_per(n, port, add_all)

        latencies: list[float] = []
        counts: list[Figures] = []
        for number in range(joins):
            identity = f"joiner-{number}"
            seen.target, seen.times = identity, {}
            mark = counter.start()
            started = time.perf_counter()
            await join(servers[number % 2], f"joiner-eio-{number}", identity)
            await wait_for(lambda: len(seen.times) == n, f"every session to see {identity}")
            latencies.append(max(seen.times.values()) - started)
            counts.append(counter.since(mark))
            seen.target = None
            await store.srem(key, identity)
    finally:
        await store.delete(key)
        await store.aclose()
        for server in servers:
            await server.shutdown()
    return summary(latencies, counts, heap, in_redis)


def summary(
    latencies: list[float], counts: list[Figures], heap: float, redis: float
) -> dict[str, Any]:
    """One system's figures at one N (counts: the median join's)."""

    def median(index: int) -> float:
        return sorted(count[index] for count in counts)[len(counts) // 2]

    return {
        "all_seen_ms": percentiles(latencies),
        "requests_per_join": round(median(0), 1),
        "replies_and_pushes_per_join": round(median(1), 1),
        "bytes_per_join": round(median(2)),
        "server_commands_per_join": round(median(3), 1),
        "python_bytes_per_presence": round(heap),
        "redis_bytes_per_presence": round(redis),
    }


SYSTEMS: dict[
    str, Callable[[CountingProxy, int, int, int], Coroutine[Any, Any, dict[str, Any]]]
] = {
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
        proxy = CountingProxy(server.port)
        try:
            for n in sizes:
                for name, run in systems.items():
                    command(server.port, "FLUSHALL")
                    results[name][n] = asyncio.run(run(proxy, server.port, n, joins))
        finally:
            proxy.close()
    if len(systems) == len(SYSTEMS):
        print_table(results, sizes)
    print(json.dumps({"benchmark": "presence", "joins": joins, "results": results}))


def print_table(results: dict[str, dict[int, dict[str, Any]]], sizes: tuple[int, ...]) -> None:
    """One row per figure and N: livestate, python-socketio, and their ratio."""
    rows: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        ("all seen p50 ms", lambda r: r["all_seen_ms"]["p50"]),
        ("all seen p99 ms", lambda r: r["all_seen_ms"]["p99"]),
        ("requests/join", lambda r: r["requests_per_join"]),
        ("replies+pushes/join", lambda r: r["replies_and_pushes_per_join"]),
        ("bytes/join", lambda r: r["bytes_per_join"]),
        ("server cmds/join", lambda r: r["server_commands_per_join"]),
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
