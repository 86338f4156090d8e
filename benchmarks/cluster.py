"""Cluster benchmark: livestate on Redis/Valkey against the bare redis-py floor.

    .venv/bin/python benchmarks/cluster.py
    .venv/bin/python benchmarks/cluster.py --cluster   # a 3-shard cluster beside standalone
    .venv/bin/python benchmarks/cluster.py --migration # writes while their slot migrates
    .venv/bin/python benchmarks/cluster.py --persist   # writes with on_persist beside without
    .venv/bin/python benchmarks/cluster.py --writes [--against DIR]  # the throughput ratios only

Starts a server (livestate.testing.ServerProcess) and two node processes, and
prints a table and one JSON line: cross-node write -> delivery latency at
1,000 writes/s for livestate and for the floor (a bare redis-py EVALSHA of an
HSET+INCR+SPUBLISH script into a bare redis-py subscriber), writes/s per node
with 1 and 16 writers beside redis-py's 16 tasks calling EVALSHA of the same
increment script (the peer), changes/s one node takes in beside a raw floor
(hiredis parsing the same message stream, no ordering, no state), and the bytes
published for one append to a 10,000-item list. `--writes` runs only the
throughput and ingress rows, in ROUNDS rounds, each measurement in a process of
its own; with `--against DIR` (a checkout of another release, say a `git
worktree` of main) it runs that tree's node beside this one's in every round and
prints the ratios between them. Everything it starts it stops by PID.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import hiredis
import redis
import redis.asyncio
from redis.crc import key_slot

import livestate
from livestate import Change, LiveState
from livestate.testing import ClusterProcess, ServerProcess, command

RATE = 1000
"""Writes per second in the latency runs."""

SAMPLES = 3000
WARMUP = 300
KEYS = 1000
"""Live states the cluster mode spreads its writes over."""

SECONDS = 2.0
"""How long each throughput run lasts."""

FLOOR_SCRIPT = """
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('SPUBLISH', ARGV[2], ARGV[1])
"""


class Bench(LiveState):
    """The benchmark's live state."""

    ttl = 5.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"t": 0, "n": 0}


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of latencies in ms."""
    ordered = sorted(samples)
    return {
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[int(len(ordered) * 0.99)], 3),
    }


# The node processes.


async def receive(url: str, kind: str) -> None:
    """Print 'ready', collect SAMPLES latencies, print them as JSON."""
    latencies: list[float] = []
    done = asyncio.Event()

    def record(sent: int) -> None:
        latencies.append((time.perf_counter_ns() - sent) / 1e6)
        if len(latencies) >= SAMPLES + WARMUP:
            done.set()

    if kind == "livestate":
        async with livestate.Node(url) as node:

            def on_change(change: Change) -> None:
                if change.prop == "t" and change.value:
                    record(change.value)

            await node.attach(Bench, "latency", on_change)
            print("ready", flush=True)
            await asyncio.wait_for(done.wait(), 60)
    else:
        client = redis.asyncio.Redis.from_url(url, protocol=2)
        pubsub = client.pubsub()
        await pubsub.ssubscribe("floor{bench}")
        print("ready", flush=True)

        async def listen() -> None:
            while not done.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message:
                    record(int(message["data"]))

        await asyncio.wait_for(listen(), 60)
        await pubsub.aclose()
        await client.aclose()
    print(json.dumps(latencies[WARMUP:]), flush=True)


async def write(url: str, kind: str) -> None:
    """Write SAMPLES + WARMUP timestamps at RATE per second."""
    count = SAMPLES + WARMUP
    if kind == "livestate":
        async with livestate.Node(url) as node:
            client = await node.attach(Bench, "latency")
            start = time.perf_counter()
            for i in range(count):
                await _pace(start, i)
                await client.put("t", time.perf_counter_ns())
    else:
        bare = redis.asyncio.Redis.from_url(url)
        sha = await bare.script_load(FLOOR_SCRIPT)
        start = time.perf_counter()
        for i in range(count):
            await _pace(start, i)
            await bare.evalsha(
                sha, 2, "h{bench}", "c{bench}", time.perf_counter_ns(), "floor{bench}"
            )
        await bare.aclose()


async def _pace(start: float, i: int) -> None:
    delay = start + i / RATE - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# The measurements made by the orchestrating process.


def latency(url: str, kind: str) -> list[float]:
    """Run a receiver and a writer process; return the receiver's latencies (ms)."""
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONPATH": str(Path(me).parent.parent / "src")}
    receiver = subprocess.Popen(
        [sys.executable, me, "receive", url, kind], stdout=subprocess.PIPE, text=True, env=env
    )
    writer: subprocess.Popen[bytes] | None = None
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("The receiver process did not start.")
        writer = subprocess.Popen([sys.executable, me, "write", url, kind], env=env)
        samples: list[float] = json.loads(receiver.stdout.readline())
        writer.wait(30)
        return samples
    finally:
        for process in (receiver, writer):
            if process and process.poll() is None:
                process.kill()
            if process:
                process.wait()
        if receiver.stdout:
            receiver.stdout.close()


async def throughput(url: str, writers: int) -> float:
    """Writes/s one node sustains with `writers` concurrent writers."""
    async with livestate.Node(url) as node:
        clients = [await node.attach(Bench, f"throughput-{writers}") for _ in range(writers)]
        count = 0
        deadline = time.perf_counter() + SECONDS

        async def loop(client: livestate.Client) -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await client.increment("n")
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop(client) for client in clients))
        return count / (time.perf_counter() - started)


async def spread_throughput(url: str, writers: int, keys: int = KEYS) -> tuple[float, float]:
    """Writes/s one node sustains with `writers` concurrent writers over `keys` live states,
    and the node's CPU time per write in µs (this process: the node is all it runs)."""
    async with livestate.Node(url, metrics=False) as node:
        # Fresh live states each run: `start` holds none, so earlier ones may be ending.
        run = next(_RUNS)
        names = [f"spread-{n}" if run == 0 else f"spread-{run}-{n}" for n in range(keys)]
        await asyncio.gather(*(node.start(Bench, name) for name in names))
        count = 0
        deadline = time.perf_counter() + SECONDS

        async def loop(offset: int) -> None:
            nonlocal count
            n = offset
            while time.perf_counter() < deadline:
                await node.increment(Bench, names[n % keys], "n")
                count += 1
                n += writers

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(loop(offset) for offset in range(writers)))
        rate = count / (time.perf_counter() - started)
        return rate, (time.process_time() - cpu) / count * 1e6


def evalsha_calls(port: int) -> int:
    """How many EVALSHA calls the server on `port` ran since its stats were reset."""
    return evalsha_stats(port)[0]


def evalsha_stats(port: int) -> tuple[int, int]:
    """EVALSHA calls the server on `port` ran since its stats were reset, and the µs it
    spent running them."""
    text = str(command(port, "INFO", "commandstats"))
    for line in text.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(item.split("=") for item in line.split(":", 1)[1].split(","))
            return int(fields["calls"]), int(fields["usec"])
    return 0, 0


async def server_cost(url: str) -> dict[str, float]:
    """`throughput` with 16 writers, and what it cost the server: the µs Valkey spent per
    script call and the writes each call carried (its commandstats, reset first; the few
    calls that start the live state count too)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    command(port, "CONFIG", "RESETSTAT")
    rate = await throughput(url, 16)
    calls, usec = evalsha_stats(port)
    return {
        "writers_16": rate,
        "server_us_per_call_16": usec / max(calls, 1),
        "writes_per_call_16": rate * SECONDS / max(calls, 1),
    }


_RUNS = itertools.count()

ROUNDS = 3
"""Rounds of the cluster mode: each runs standalone and cluster, in alternating order."""


def cluster_main() -> None:
    """`--cluster`: a 3-shard Valkey Cluster beside one standalone server, in one run:
    ROUNDS interleaved rounds of throughput (medians), then one latency run each."""
    result: dict[str, Any] = {"benchmark": "cluster-mode"}
    with ClusterProcess(primaries=3, replicas=0) as cluster, ServerProcess() as server:
        for port in cluster.primaries():
            command(port, "CONFIG", "RESETSTAT")
        urls = {"standalone": server.url, "cluster": cluster.url}
        runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for round_ in range(ROUNDS):
            names = ["standalone", "cluster"][:: 1 if round_ % 2 == 0 else -1]
            for name in names:
                for writers in (1, 16):
                    figures = asyncio.run(spread_throughput(urls[name], writers))
                    runs.setdefault((name, writers), []).append(figures)
        latencies = {name: percentiles(latency(url, "livestate")) for name, url in urls.items()}
        keys = Counter(
            cluster.owner(key_slot(f"ls:{{Bench:spread-{n}}}:m".encode())) for n in range(KEYS)
        )
        calls = {port: evalsha_calls(port) for port in cluster.primaries()}

    def median(name: str, writers: int, index: int) -> float:
        return statistics.median(run[index] for run in runs[(name, writers)])

    rows = []
    for writers in (1, 16):
        s_rate, c_rate = median("standalone", writers, 0), median("cluster", writers, 0)
        s_cpu, c_cpu = median("standalone", writers, 1), median("cluster", writers, 1)
        result[f"writers_{writers}"] = {
            "writes_per_s": {"standalone": round(s_rate), "cluster": round(c_rate)},
            "cpu_us_per_write": {"standalone": round(s_cpu, 1), "cluster": round(c_cpu, 1)},
            "time_ratio": round(s_rate / c_rate, 2),
            "cpu_ratio": round(c_cpu / s_cpu, 2),
        }
        rows += [
            (f"writes/s, {writers} writer(s): standalone / cluster",
             f"{s_rate:,.0f} / {c_rate:,.0f}", ""),
            (f"node CPU µs per write, {writers} writer(s): standalone / cluster",
             f"{s_cpu:.1f} / {c_cpu:.1f}", ""),
            (f"cost per write, cluster / standalone, {writers} writer(s): time / CPU",
             f"{s_rate / c_rate:.2f}x / {c_cpu / s_cpu:.2f}x", "≤ 1.5x"),
        ]  # fmt: skip
    slat, clat = latencies["standalone"], latencies["cluster"]
    result.update(
        latency_ms=latencies,
        keys_per_shard=sorted(keys.values()),
        evalsha_per_shard=sorted(calls.values()),
        rounds=ROUNDS,
    )
    rows += [
        ("cross-node p50 / p99 ms, standalone", f"{slat['p50']} / {slat['p99']}", ""),
        ("cross-node p50 / p99 ms, cluster", f"{clat['p50']} / {clat['p99']}", ""),
        (f"live states per shard ({KEYS:,} keys)", " / ".join(map(str, sorted(keys.values()))), ""),
        ("EVALSHA calls per shard", " / ".join(map(str, sorted(calls.values()))), ""),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>22}  {target}")
    print(json.dumps(result))


def tryagain_count(port: int) -> int:
    """How many TRYAGAIN errors the server on `port` answered since its stats were reset."""
    for line in str(command(port, "INFO", "errorstats")).splitlines():
        if line.startswith("errorstat_TRYAGAIN:"):
            return int(line.split("count=")[1].split(",")[0])
    return 0


async def migration_run(cluster: ClusterProcess, key: str, declare_all: bool) -> dict[str, Any]:
    """4 writers increment live state `key` while its slot moves to another primary, two
    keys at a time with 20 ms between moves, as tests/deploy does. With `declare_all`, the
    increment script declares every key of the live state, as before this round."""
    from livestate._backends.redis import scripts  # the benchmark's one look inside

    saved = dict(scripts.DECLARES)
    if declare_all:
        del scripts.DECLARES["increment"]
    try:
        async with livestate.Node(cluster.url, metrics=False) as node:
            await node.start(Bench, key)
            for _ in range(20):
                await node.increment(Bench, key, "n")
    finally:
        scripts.DECLARES.clear()
        scripts.DECLARES.update(saved)
    slot = key_slot(f"ls:{{Bench:{key}}}:m".encode())
    source = cluster.owner(slot)
    target = next(port for port in cluster.primaries() if port != source)
    for port in cluster.primaries():
        command(port, "CONFIG", "RESETSTAT")
    if declare_all:
        del scripts.DECLARES["increment"]
    try:
        async with livestate.Node(cluster.url, metrics=False) as node:
            await node.increment(Bench, key, "n")  # scripts loaded, map read
            stop = asyncio.Event()
            spans: list[tuple[float, float]] = []

            async def writer() -> None:
                while not stop.is_set():
                    started = time.perf_counter()
                    await node.increment(Bench, key, "n")
                    spans.append((started, time.perf_counter()))

            writers = [asyncio.create_task(writer()) for _ in range(4)]
            await asyncio.sleep(0.2)
            began = time.perf_counter()
            await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target)
            ended = time.perf_counter()
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*writers)
    finally:
        scripts.DECLARES.clear()
        scripts.DECLARES.update(saved)
    overlapping = [end - start for start, end in spans if start < ended and end > began]
    return {
        "migration_ms": round((ended - began) * 1000, 1),
        "writes_done_meanwhile": sum(began <= end <= ended for _, end in spans),
        "longest_write_ms": round(max(overlapping) * 1000, 1),
        "tryagain": sum(tryagain_count(port) for port in cluster.primaries()),
    }


def migration_main() -> None:
    """`--migration`: how long writes wait while their slot migrates, own keys against all."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with ClusterProcess(primaries=3, replicas=0) as cluster:
        for round_ in range(3):
            for declare_all in (round_ % 2 == 1, round_ % 2 == 0):
                name = "every key" if declare_all else "own keys"
                figures = asyncio.run(
                    migration_run(cluster, f"m{round_}{declare_all}", declare_all)
                )
                rows.setdefault(name, []).append(figures)
    for name, runs in rows.items():
        for figures in runs:
            print(f"{name:<10} {json.dumps(figures)}")
    print(json.dumps({"benchmark": "migration", **rows}))


INGRESS = 200_000
"""Messages each ingress run publishes."""

PUBLISHER = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SPUBLISH', KEYS[1], ARGV[1] .. string.format('%d', i) .. ARGV[4])
end
"""
"""Publishes the messages of versions ARGV[2] to ARGV[3] on the server itself: the stream
then comes as fast as the server writes it, and no publishing client shares the cores
or the measuring process's GIL with the node (as a redis-py pipeline in a thread did)."""


def _publish_all(url: str, channel: str, epoch: str, first: int) -> None:
    """Publish INGRESS increments of 'n' at versions first, first + 1, …, in chunks."""
    bare = redis.Redis.from_url(url)
    # A node that falls behind must not be dropped by the server's pub/sub buffer limit.
    bare.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    head = json.dumps(["increment", "n", None], separators=(",", ":"))
    publish = bare.register_script(PUBLISHER)
    for low in range(first, first + INGRESS, 5000):
        high = min(low + 4999, first + INGRESS - 1)
        publish(keys=[channel], args=[f"{epoch}\n", low, high, f"\n{head}\n0\n1"])
    bare.close()


async def ingress(url: str) -> float:
    """Changes/s one node applies and delivers, fed as fast as the server publishes them."""
    async with livestate.Node(url) as node:
        received = 0
        done = asyncio.Event()

        def on_change(change: Change) -> None:
            nonlocal received
            received += 1
            if received >= INGRESS:
                done.set()

        client = await node.attach(Bench, "ingress", on_change)
        bare = redis.Redis.from_url(url)
        tag = "ls:{Bench:ingress}"
        epoch = bare.hget(f"{tag}:m", "e").decode()  # type: ignore[union-attr]
        bare.close()
        started = time.perf_counter()
        publisher = asyncio.to_thread(_publish_all, url, f"{tag}:c", epoch, client.version + 1)
        await asyncio.gather(publisher, asyncio.wait_for(done.wait(), 60))
        return received / (time.perf_counter() - started)


class _RawSubscriber(asyncio.Protocol):
    """The ingress floor: hiredis parses the pub/sub stream and each message is counted;
    no ordering, no decoding, no state."""

    def __init__(self, total: int, done: asyncio.Future[None]) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.count = -1  # the subscription's confirmation comes first
        self.total = total
        self.done = done
        self.confirmed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            self.count += 1
            if self.count == 0:
                self.confirmed.set_result(reply)
            elif self.count >= self.total and not self.done.done():
                self.done.set_result(None)


async def ingress_floor(url: str) -> float:
    """Messages/s a bare hiredis subscriber parses, of the stream `ingress` measures."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    transport, protocol = await loop.create_connection(
        lambda: _RawSubscriber(INGRESS, done), "127.0.0.1", port
    )
    channel = "ls:{Bench:floor}:c"
    transport.write(hiredis.pack_command(("SSUBSCRIBE", channel)))  # type: ignore[arg-type]  # its stub: a 1-tuple
    await protocol.confirmed
    started = time.perf_counter()
    publisher = asyncio.to_thread(_publish_all, url, channel, "e", 1)
    await asyncio.gather(publisher, asyncio.wait_for(done, 60))
    elapsed = time.perf_counter() - started
    transport.close()
    return protocol.count / elapsed


async def evalsha_peer(url: str, tasks: int = 16) -> float:
    """The peer: writes/s of redis-py with `tasks` tasks calling EVALSHA of livestate's own
    increment script on one live state, with the same keys and arguments a node sends
    (its write id, message body and clock), one call per write, nothing else."""
    from livestate._backends.redis.scripts import declared, load_sources  # the script shape

    async with livestate.Node(url, metrics=False) as node:
        await node.start(Bench, "peer")
        bare = redis.asyncio.Redis.from_url(url, max_connections=tasks)
        sha = await bare.script_load(load_sources()["increment"])
        keys = declared("ls:{Bench:peer}", "increment")
        head = json.dumps(["increment", "n", None], separators=(",", ":"))
        count = 0
        deadline = time.perf_counter() + SECONDS
        ids = itertools.count()

        async def loop() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                body = f"{head}\n{time.time_ns() // 1000}\n1"
                args = ("ls:{Bench:peer}:c", "SPUBLISH", "g", 2, "", body, f"peer{next(ids):x}")
                reply = await bare.evalsha(sha, len(keys), *keys, *args, "n", 1, "1", "0")
                if not isinstance(reply, bytes):
                    raise RuntimeError(f"The peer's increment was refused: {reply!r}")
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(tasks)))
        rate = count / (time.perf_counter() - started)
        await bare.aclose()
        return rate


async def append_bytes(url: str) -> int:
    """Bytes published for one append to a 10,000-item list."""
    async with livestate.Node(url) as node:
        await node.start(Bench, "list")
        await node.put(Bench, "list", "items", [{"text": f"message {i}"} for i in range(10_000)])
        bare = redis.Redis.from_url(url, protocol=2)
        pubsub = bare.pubsub()
        pubsub.ssubscribe("ls:{Bench:list}:c")
        while pubsub.get_sharded_message(timeout=1.0) is None:
            pass  # the subscription confirmation
        await node.append(Bench, "list", "items", {"text": "message 10000"})
        message: Any = None
        while message is None:
            message = pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=1.0)
        pubsub.close()
        bare.close()
        return len(message["data"])


# --persist: what on_persist costs the write path (docs/persistence.md).

PERSIST_ROUNDS = 5
"""Rounds of each kind, in turns whose order alternates (off-on, on-off, ...), so that
drift and whatever a round leaves to the next hit both alike."""


class SavedBench(LiveState):
    """Bench with on_persist: a save, at most once a second, to a SQLite file (chat/store.py)."""

    ttl = 5.0
    persist_interval = 1.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"t": 0, "n": 0}

    async def on_persist(self, key: str, state: Any, version: int, final: bool) -> None:
        await _bench_store().save(self.name, key, version, state)


_stores: list[Any] = []


def _bench_store() -> Any:
    if not _stores:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
        from chat.store import SQLiteStore

        path = Path(tempfile.mkdtemp(prefix="livestate-bench-")) / "saved.sqlite3"
        _stores.append(SQLiteStore(str(path)))
    return _stores[0]


async def paced_writes(node: livestate.Node, spec: type[LiveState]) -> tuple[list[float], float]:
    """SAMPLES writes at RATE per second through one attached client: each write's latency
    (ms) and the process's CPU time per write (µs, every thread's, saves included)."""
    client = await node.attach(spec, "persist")
    for i in range(WARMUP):
        await client.put("n", i)
    took: list[float] = []
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(SAMPLES):
        await _pace(start, i)
        began = time.perf_counter()
        await client.put("t", i)
        took.append((time.perf_counter() - began) * 1000)
    cpu = (time.process_time() - cpu) / SAMPLES * 1e6
    await client.detach()
    return took, cpu


async def persist_runs(url: str) -> dict[str, Any]:
    """Rounds of paced writes, with and without on_persist, in turn, in one node."""
    runs: dict[str, list[tuple[list[float], float]]] = {"off": [], "on": []}
    async with livestate.Node(url, metrics=False) as node:
        for turn in range(PERSIST_ROUNDS):
            for kind in ("off", "on") if turn % 2 == 0 else ("on", "off"):
                spec = SavedBench if kind == "on" else Bench
                runs[kind].append(await paced_writes(node, spec))
    saved = await _bench_store().load(SavedBench.name, "persist")
    await _bench_store().aclose()
    result: dict[str, Any] = {"saved_version": saved[0] if saved else None}
    for kind, rounds in runs.items():
        samples = [ms for took, _ in rounds for ms in took]
        result[kind] = {
            **percentiles(samples),
            "cpu_us_per_write": round(statistics.median(cpu for _, cpu in rounds), 1),
        }
    off, on = result["off"], result["on"]
    result["ratio_p50"] = round(on["p50"] / off["p50"], 3)
    result["ratio_p99"] = round(on["p99"] / off["p99"], 3)
    result["ratio_cpu"] = round(on["cpu_us_per_write"] / off["cpu_us_per_write"], 3)
    return result


def persist_main() -> None:
    """Persistence on vs off at RATE writes/s, in one run: the table and the JSON line."""
    with ServerProcess() as server:
        result = asyncio.run(persist_runs(server.url))
    off, on = result["off"], result["on"]
    rows = [
        ("write latency p50 / p99, persistence off (ms)", f"{off['p50']} / {off['p99']}", ""),
        ("write latency p50 / p99, persistence on (ms)", f"{on['p50']} / {on['p99']}", ""),
        ("ratio on / off, p50 / p99", f"{result['ratio_p50']} / {result['ratio_p99']}", "≤ 1.05"),
        (
            "CPU per write off / on (µs)",
            f"{off['cpu_us_per_write']} / {on['cpu_us_per_write']}",
            "",
        ),
        ("ratio of CPU per write on / off", f"{result['ratio_cpu']}", "≤ 1.05"),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    print(json.dumps(result))


def main() -> None:
    """Run every measurement against a fresh server and print the table and the JSON line."""
    with ServerProcess() as server:
        url = server.url
        ours = latency(url, "livestate")
        floor = latency(url, "floor")
        one = asyncio.run(throughput(url, 1))
        sixteen = asyncio.run(throughput(url, 16))
        peer = asyncio.run(evalsha_peer(url))
        taken_in = asyncio.run(ingress(url))
        raw = asyncio.run(ingress_floor(url))
        nbytes = asyncio.run(append_bytes(url))
    result: dict[str, Any] = {
        "latency_ms": percentiles(ours),
        "floor_latency_ms": percentiles(floor),
        "ratio_p50": round(statistics.median(ours) / statistics.median(floor), 2),
        "ratio_p99": round(percentiles(ours)["p99"] / percentiles(floor)["p99"], 2),
        "writes_per_s_1_writer": round(one),
        "writes_per_s_16_writers": round(sixteen),
        "peer_evalsha_16_tasks": round(peer),
        "ratio_16_writers_to_peer": round(sixteen / peer, 2),
        "ingress_changes_per_s": round(taken_in),
        "ingress_floor_per_s": round(raw),
        "ratio_ingress_to_floor": round(taken_in / raw, 3),
        "append_bytes_published": nbytes,
    }
    rows = [
        (
            "cross-node latency p50 / p99 (ms)",
            f"{result['latency_ms']['p50']} / {result['latency_ms']['p99']}",
            "≤ 0.5 / ≤ 1.5",
        ),
        (
            "floor latency p50 / p99 (ms)",
            f"{result['floor_latency_ms']['p50']} / {result['floor_latency_ms']['p99']}",
            "",
        ),
        ("ratio to floor p50 / p99", f"{result['ratio_p50']} / {result['ratio_p99']}", "≤ 1.7"),
        ("writes/s per node, 1 writer", f"{one:,.0f}", ""),
        ("writes/s per node, 16 writers", f"{sixteen:,.0f}", ""),
        ("redis-py, 16 tasks calling EVALSHA (peer)", f"{peer:,.0f}", ""),
        ("16 writers / peer", f"{sixteen / peer:.2f}x", "≥ 2x"),
        ("changes/s one node takes in", f"{taken_in:,.0f}", ""),
        ("raw floor: hiredis parsing the stream", f"{raw:,.0f}", ""),
        ("changes taken in / floor", f"{taken_in / raw:.3f}", "≥ 0.25"),
        ("bytes published, append to 10,000 items", f"{nbytes}", "≈ one item"),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    print(json.dumps(result))


async def measure(url: str, peers: bool) -> dict[str, float]:
    """One process's share of a `--writes` round: this tree's node, and with `peers` the
    redis-py peer and the ingress floor."""
    figures = {
        "writers_1": await throughput(url, 1),
        **await server_cost(url),
        "ingress": await ingress(url),
    }
    if peers:
        figures["peer"] = await evalsha_peer(url)
        figures["floor"] = await ingress_floor(url)
    return figures


def _measured(url: str, tree: Path, peers: bool) -> dict[str, float]:
    """`measure` in a process of its own, importing livestate from `tree`/src."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    me = str(Path(__file__).resolve())
    args = [sys.executable, me, "measure", url, "peers" if peers else ""]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=True)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def writes_main() -> None:
    """`--writes [--against DIR]`: ROUNDS rounds of the throughput and ingress rows, each
    ratio taken within its round, and the medians."""
    here = Path(__file__).resolve().parent.parent
    against = Path(sys.argv[sys.argv.index("--against") + 1]) if "--against" in sys.argv else None
    rounds: list[dict[str, float]] = []
    with ServerProcess() as server:
        for round_ in range(ROUNDS):
            ours: dict[str, float] = {}
            theirs: dict[str, float] = {}
            order = ["ours", "theirs"][:: 1 if round_ % 2 == 0 else -1]
            for who in order:
                if who == "ours":
                    ours = _measured(server.url, here, peers=True)
                elif against is not None:
                    theirs = _measured(server.url, against, peers=False)
            row = {
                **ours,
                "ratio_16_to_peer": ours["writers_16"] / ours["peer"],
                "ratio_ingress_to_floor": ours["ingress"] / ours["floor"],
            }
            if theirs:
                row.update({f"against_{name}": value for name, value in theirs.items()})
                for name in ("writers_1", "writers_16", "ingress"):
                    row[f"ratio_{name}_to_against"] = ours[name] / theirs[name]
            print(json.dumps({name: round(value, 3) for name, value in row.items()}), flush=True)
            rounds.append(row)
    medians = {name: statistics.median(row[name] for row in rounds) for name in rounds[0]}
    rows = [
        ("writes/s, 1 writer", f"{medians['writers_1']:,.0f}", ""),
        ("writes/s, 16 writers", f"{medians['writers_16']:,.0f}", ""),
        ("  Valkey µs per script call, 16 writers", f"{medians['server_us_per_call_16']:.1f}", ""),
        ("  writes per script call, 16 writers", f"{medians['writes_per_call_16']:.1f}", ""),
        ("redis-py, 16 tasks calling EVALSHA (peer)", f"{medians['peer']:,.0f}", ""),
        ("16 writers / peer, median of the rounds' ratios",
         f"{medians['ratio_16_to_peer']:.2f}x", "≥ 2x"),
        ("changes/s one node takes in", f"{medians['ingress']:,.0f}", ""),
        ("raw floor: hiredis parsing the stream", f"{medians['floor']:,.0f}", ""),
        ("taken in / floor, median of the rounds' ratios",
         f"{medians['ratio_ingress_to_floor']:.3f}", "≥ 0.25"),
    ]  # fmt: skip
    if against is not None:
        rows += [
            (f"against {against}: writes/s, 1 writer", f"{medians['against_writers_1']:,.0f}", ""),
            ("  ratio, 1 writer", f"{medians['ratio_writers_1_to_against']:.2f}x", "≥ 1 (noise)"),
            ("  ratio, 16 writers", f"{medians['ratio_writers_16_to_against']:.2f}x", ""),
            (
                "  its Valkey µs per script call, 16 writers",
                f"{medians['against_server_us_per_call_16']:.1f}",
                "",
            ),
            ("  ratio, changes taken in", f"{medians['ratio_ingress_to_against']:.2f}x", ""),
        ]
    width = max(len(row[0]) for row in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    print(json.dumps({"benchmark": "writes", "rounds": ROUNDS, **medians}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "receive":
        asyncio.run(receive(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "write":
        asyncio.run(write(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "measure":
        print(json.dumps(asyncio.run(measure(sys.argv[2], sys.argv[3] == "peers"))))
    elif "--writes" in sys.argv:
        writes_main()
    elif "--cluster" in sys.argv:
        cluster_main()
    elif "--migration" in sys.argv:
        migration_main()
    elif "--persist" in sys.argv:
        persist_main()
    else:
        main()
