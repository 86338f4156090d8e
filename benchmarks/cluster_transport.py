"""Two ways to talk to Redis Cluster, measured on one workload in one run.

    .venv/bin/python benchmarks/cluster_transport.py            # about 1 minute
    .venv/bin/python benchmarks/cluster_transport.py --quick    # fewer calls, 1 round

Starts a 3-primary + 3-replica Valkey cluster (`livestate.testing.ClusterProcess`,
free 127.0.0.1 ports, stopped by PID) and compares livestate's own slot map
(`livestate._backends.redis.topology.Router`, on the hand-written RESP connection)
with redis-py's `redis.asyncio.RedisCluster`:

- cost per EVALSHA of a one-key script shaped like a livestate write (HSET a
  field, bump a version), on 1,000 keys spread over the 3 shards: the client's
  CPU per call (process time of this process over the calls) and the round
  trip (median and p99), with 1 writer and with 16 concurrent writers; the
  same for resp.Pipe on one standalone server, the floor a cluster write is
  held to (the issue asks for within 1.5x);
- correctness while a slot migrates under 4 writers (errors seen by callers,
  acknowledged increments against the final counters) and when a primary is
  killed under a writer (seconds until writes resume; errors; increments a
  replica acknowledged with WAIT against the final counter).

Each round runs both clients in turn, the order swapped from round to round;
the table gives the median over rounds and the ratio Router / redis-py, the
fault lines one per client and round, and the last line is the same as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from livestate._backends.redis.resp import Pipe
from livestate._backends.redis.slots import key_slot
from livestate._backends.redis.topology import Router
from livestate._backends.redis.urls import parse_cluster_url, parse_url
from livestate.testing import ClusterProcess, ServerProcess, command

WRITE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HINCRBY', KEYS[1], '_version', 1)
"""
INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
KEYS = [f"{{room:{i}}}" for i in range(1000)]
VALUE = "x" * 200

Call = Callable[[str, str, tuple[Any, ...]], Awaitable[Any]]
"""Run EVALSHA(sha, key, *args) on one client."""


class Client:
    """One cluster client under test: how it loads a script and runs it."""

    def __init__(self, name: str, load: Callable[[str], Awaitable[str]], call: Call) -> None:
        self.name = name
        self.load = load
        self.call = call


async def open_router(url: str) -> tuple[Client, Callable[[], Awaitable[None]]]:
    seeds, _ = parse_cluster_url(url, {})
    router = Router(seeds, 5.0)
    await router.start()

    async def call(sha: str, key: str, args: tuple[Any, ...]) -> Any:
        return await router.call(key, "EVALSHA", sha, 1, key, *args)

    return Client("Router", router.load_script, call), router.aclose


async def open_redis_py(url: str) -> tuple[Client, Callable[[], Awaitable[None]]]:
    first = url.removeprefix("redis+cluster://").split(",")[0]
    cluster: Any = RedisCluster.from_url(f"redis://{first}")
    await cluster.initialize()

    sources: dict[str, str] = {}

    async def load(source: str) -> str:
        sha = await cluster.script_load(source)
        sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        sources[sha] = source
        return sha

    async def call(sha: str, key: str, args: tuple[Any, ...]) -> Any:
        try:
            return await cluster.evalsha(sha, 1, key, *args)
        except NoScriptError:  # a promoted replica has no scripts: load, as redis-py's Script does
            await cluster.script_load(sources[sha])
            return await cluster.evalsha(sha, 1, key, *args)

    return Client("redis-py", load, call), cluster.aclose


async def open_standalone(url: str) -> tuple[Client, Callable[[], Awaitable[None]]]:
    """The floor: resp.Pipe, the backend's standalone connection, on one server."""
    endpoint, _ = parse_url(url, {})
    pipe = Pipe(endpoint, 5.0)

    async def load(source: str) -> str:
        sha: str = await pipe.call("SCRIPT", "LOAD", source)
        return sha

    async def call(sha: str, key: str, args: tuple[Any, ...]) -> Any:
        return await pipe.call("EVALSHA", sha, 1, key, *args)

    return Client("standalone", load, call), pipe.aclose


OPENERS = {"Router": open_router, "redis-py": open_redis_py}


async def cost(client: Client, writers: int, calls: int) -> dict[str, float]:
    """CPU µs per call and round-trip median / p99 (µs) for `writers` concurrent writers."""
    sha = await client.load(WRITE)
    for key in KEYS[:200]:  # warm up: every connection open, every map read
        await client.call(sha, key, ("f", VALUE))
    per_writer = calls // writers
    latencies: list[int] = []

    async def writer(offset: int) -> None:
        for n in range(per_writer):
            key = KEYS[(offset * 61 + n * 7) % len(KEYS)]
            started = time.perf_counter_ns()
            await client.call(sha, key, ("f", VALUE))
            latencies.append(time.perf_counter_ns() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_writer * writers
    latencies.sort()
    return {
        "cpu_us": cpu / done * 1e6,
        "p50_us": latencies[len(latencies) // 2] / 1e3,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1e3,
        "calls_per_s": done / wall,
    }


def other_primary(cluster: ClusterProcess, slot: int) -> int:
    owner = cluster.owner(slot)
    return next(port for port in cluster.primaries() if port != owner)


async def migration(client: Client, cluster: ClusterProcess, tag: str) -> dict[str, Any]:
    """4 writers on 12 keys of one slot while its keys migrate 2 at a time."""
    keys = [f"{{{tag}}}:{i}" for i in range(12)]
    kinds: set[str] = set()
    slot = key_slot(keys[0])
    for key in keys:
        command(cluster.owner(slot), "SET", key, 0)
    sha = await client.load(INCR)
    acknowledged = errors = 0
    stop = asyncio.Event()

    async def writer(offset: int) -> None:
        nonlocal acknowledged, errors
        for n in itertools.count(offset):
            if stop.is_set():
                return
            try:
                await client.call(sha, keys[n % len(keys)], (1,))
                acknowledged += 1
            except Exception as error:
                errors += 1
                kinds.add(type(error).__name__)

    tasks = [asyncio.create_task(writer(i)) for i in range(4)]
    await asyncio.sleep(0.2)
    target = other_primary(cluster, slot)
    await asyncio.to_thread(cluster.migrate_slot_slowly, slot, target)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    total = sum(int(command(target, "GET", key)) for key in keys)
    return {
        "errors": errors,
        "error_kinds": ",".join(sorted(kinds)),
        "acknowledged": acknowledged,
        "lost_or_extra": total - acknowledged,
    }


async def primary_kill(client: Client, cluster: ClusterProcess, tag: str) -> dict[str, Any]:
    """One writer (INCR, then WAIT 1) while the primary of its key is killed."""
    key = f"{{{tag}}}:count"
    kinds: set[str] = set()
    slot = key_slot(key)
    primary = cluster.owner(slot)
    command(primary, "SET", key, 0)
    sha = await client.load(INCR)
    acknowledged = attempted = errors = 0
    killed_at = last_success = float("inf")
    stop, resumed = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        nonlocal acknowledged, attempted, errors, last_success
        while not stop.is_set():
            attempted += 1
            try:
                await client.call(sha, key, (1,))
                last_success = time.monotonic()
                acknowledged += 1
                if last_success > killed_at + 0.05:
                    resumed.set()
            except Exception as error:
                errors += 1
                kinds.add(type(error).__name__)
                await asyncio.sleep(0.01)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.3)
    command(primary, "WAIT", 1, 1000)  # what was acknowledged so far is on the replica
    killed_at = time.monotonic()
    replica = await asyncio.to_thread(cluster.fail_over, primary)
    try:
        await asyncio.wait_for(resumed.wait(), 20)
        resume_s = last_success - killed_at
    except TimeoutError:
        resume_s = float("nan")
    await asyncio.sleep(0.2)
    stop.set()
    await task
    total = int(command(replica, "GET", key))
    await asyncio.to_thread(cluster.restart, primary)
    # Writes acknowledged in the instant before the kill may not have reached the replica.
    return {
        "resume_s": resume_s,
        "errors": errors,
        "error_kinds": ",".join(sorted(kinds)),
        "acknowledged": acknowledged,
        "final_minus_acknowledged": total - acknowledged,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, one round")
    options = parser.parse_args()
    rounds, calls = (1, 2_000) if options.quick else (3, 6_000)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in [*OPENERS, "standalone"]}
    faults: dict[str, list[dict[str, Any]]] = {name: [] for name in OPENERS}
    tags = (f"bench{i}" for i in itertools.count())
    with ClusterProcess() as cluster, ServerProcess() as server:
        for round_number in range(rounds):
            floor, close = await open_standalone(server.url)
            try:
                for writers in (1, 16):
                    figures = await cost(floor, writers, calls)
                    for figure, value in figures.items():
                        results["standalone"].setdefault(f"{figure}@{writers}", []).append(value)
            finally:
                await close()
            order = list(OPENERS) if round_number % 2 == 0 else list(reversed(OPENERS))
            for name in order:
                client, close = await OPENERS[name](cluster.url)
                try:
                    for writers in (1, 16):
                        figures = await cost(client, writers, calls)
                        for figure, value in figures.items():
                            results[name].setdefault(f"{figure}@{writers}", []).append(value)
                    faults[name].append(await migration(client, cluster, next(tags)))
                    faults[name].append(await primary_kill(client, cluster, next(tags)))
                finally:
                    await close()
    medians = {
        name: {figure: statistics.median(values) for figure, values in figures.items()}
        for name, figures in results.items()
    }
    print(f"EVALSHA on a 3-shard cluster, {calls:,} calls, median of {rounds} round(s)")
    print(
        f"{'':<18}{'Router':>10}{'redis-py':>10}{'standalone':>12}"
        f"{'Router/redis-py':>17}{'Router/standalone':>19}"
    )
    for figure in medians["Router"]:
        ours, theirs = medians["Router"][figure], medians["redis-py"][figure]
        alone = medians["standalone"][figure]
        print(
            f"{figure:<18}{ours:>10,.1f}{theirs:>10,.1f}{alone:>12,.1f}"
            f"{ours / theirs:>17.2f}{ours / alone:>19.2f}"
        )
    print()
    print("faults, one line per round")
    for name, (move, kill) in (
        (n, f[i : i + 2]) for n, f in faults.items() for i in range(0, len(f), 2)
    ):
        print(
            f"  {name:<9} migration: {move['errors']} errors {move['error_kinds']}, "
            f"{move['acknowledged']} acknowledged, final - acknowledged = "
            f"{move['lost_or_extra']}\n            primary kill: resumed after "
            f"{kill['resume_s']:.2f} s, {kill['errors']} errors {kill['error_kinds']}, "
            f"final - acknowledged = {kill['final_minus_acknowledged']}"
        )
    print(json.dumps({"cost": medians, "faults": faults}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
