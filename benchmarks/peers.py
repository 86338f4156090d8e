"""livestate against the room broadcasts Python developers wire up today, on one Valkey.

    make setup                                      # the peers are in uv.lock's `peers` group
    .venv/bin/python benchmarks/peers.py            # 3 rounds, medians: about 8 minutes on 2 cores
    .venv/bin/python benchmarks/peers.py --quick    # 1 short round: about 1 minute

For each system and N (1, 100, 1,000 in-process subscribers to one room) a
writer process sends ~200-byte updates to a receiver process: at a fixed rate
(1,000/s; 100/s for N = 1,000), then as fast as it can with a bounded number
in flight. Figures: write-to-last-delivery latency (p50, p99), receiver CPU
per delivery, deliveries/s at saturation, messages lost; then each peer's ratio
to livestate. A second table runs the chat pattern (read the list, append,
write it back) from 2 processes x 10 tasks and counts lost messages. Prints
both tables and one JSON line. Starts one valkey-server on a free 127.0.0.1
port and stops it, and every process it starts, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers_common import Recorder, SharedCounter, payload

HERE = Path(__file__).resolve().parent
SYSTEMS = ("livestate", "python-socketio", "channels", "broadcaster", "redis-py")
STATEFUL = ("redis-py", "livestate")  # the rest have no shared state to read and write back


@dataclass(frozen=True)
class Plan:
    """How long each phase runs."""

    rate_seconds: float
    saturation_seconds: float
    chat_posts: int  # per task; 2 processes x 10 tasks each
    ns: tuple[int, ...] = (1, 100, 1_000)

    @staticmethod
    def rate(n: int) -> int:
        return 100 if n >= 1_000 else 1_000

    @staticmethod
    def window(n: int) -> int:
        """Messages in flight at saturation: 64, or about 50,000 deliveries if fewer.

        64 stays below Channels' default per-channel capacity (100), past which
        group_send drops messages.
        """
        return max(8, min(64, 50_000 // n))


FULL = Plan(rate_seconds=4.0, saturation_seconds=3.0, chat_posts=50)
QUICK = Plan(rate_seconds=1.0, saturation_seconds=0.8, chat_posts=20)


# The receiver and writer processes.


def _stdin_line() -> asyncio.Future[str]:
    """A future for the next line on stdin (read in a thread: a pipe may not be pollable)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        line = sys.stdin.readline()

        def resolve() -> None:
            if not future.done():
                future.set_result(line)

        loop.call_soon_threadsafe(resolve)

    threading.Thread(target=read, daemon=True).start()
    return future


async def run_receiver(system: str, url: str, n: int, counter_path: str) -> None:
    from peers_systems import RECEIVERS

    counter = SharedCounter(counter_path)
    recorder = Recorder(n, counter)
    close = await RECEIVERS[system](url, n, recorder)
    print(json.dumps({"ready": True}), flush=True)
    line = await _stdin_line()
    sent = {int(phase): count for phase, count in json.loads(line)["sent"].items()}
    expected = sum(sent.values())
    # Drain: until every message is in, or nothing came for 2 s (20 s at most).
    deadline = time.monotonic() + 20.0
    last, idle_since = -1, time.monotonic()
    while recorder.total < expected and time.monotonic() < deadline:
        if recorder.total != last:
            last, idle_since = recorder.total, time.monotonic()
        elif time.monotonic() - idle_since > 2.0:
            break
        await asyncio.sleep(0.05)
    report = recorder.report(sent)
    print(json.dumps(report), flush=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close(), 5.0)
    counter.close()


async def run_writer(
    system: str, url: str, rate: int, rate_seconds: float, saturation: float, window: int,
    counter_path: str,
) -> None:  # fmt: skip
    from peers_systems import WRITERS

    counter = SharedCounter(counter_path)
    send, close = await WRITERS[system](url)
    sent = {0: 0, 1: 0, 2: 0}

    async def at_rate(phase: int, count: int) -> None:
        interval = 1.0 / rate
        next_at = time.monotonic()
        for seq in range(count):
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await send(payload(phase, seq))
            sent[phase] += 1
            next_at += interval

    async def caught_up(seconds: float) -> None:
        """Wait until the receiver has every message sent so far (a lost one: `seconds`)."""
        deadline = time.monotonic() + seconds
        while counter.get() < sum(sent.values()) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls another process's counter
            await asyncio.sleep(0.01)

    try:
        await at_rate(0, min(50, rate))  # warm-up: connections, caches, first-time paths
        await caught_up(5.0)
        await at_rate(1, max(1, round(rate * rate_seconds)))
        await caught_up(10.0)
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + saturation
        seq = 0
        while time.monotonic() < deadline:
            if sum(sent.values()) - counter.get() >= window:
                await asyncio.sleep(0.0005)
                continue
            await send(payload(2, seq))
            sent[2] += 1
            seq += 1
        print(json.dumps({"sent": sent}), flush=True)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 5.0)
        counter.close()


# The chat pattern, for the correctness column.


def _chat_spec() -> Any:
    import livestate

    class PeersChat(livestate.LiveState):
        name = "PeersChat"
        ttl = None

        def on_mount(self, key: str) -> dict[str, Any]:
            return {"messages": []}

    return PeersChat


async def run_chat(variant: str, url: str, key: str, posts: int, start_at: float, tag: str) -> None:
    """10 tasks post `posts` messages each to one chat, the way `variant` does it."""
    if variant == "redis-py":
        import redis.asyncio

        connection = redis.asyncio.Redis.from_url(url)

        async def post(message: str) -> None:
            # The hand-rolled version: GET the JSON list, append, SET it back.
            raw = await connection.get(key)
            messages = json.loads(raw) if raw else []
            messages.append(message)
            await connection.set(key, json.dumps(messages))

        async def close() -> None:
            await connection.aclose()

    else:
        import livestate

        spec = _chat_spec()
        node = livestate.Node(url)
        await node.start(spec, key)

        if variant == "livestate-naive":

            async def post(message: str) -> None:
                messages = await node.get(spec, key, "messages")
                await node.put(spec, key, "messages", [*messages, message])

        else:

            async def post(message: str) -> None:
                await node.append(spec, key, "messages", message)

        close = node.aclose

    async def poster(number: int) -> None:
        for seq in range(posts):
            await post(f"{tag}-{number}-{seq}")

    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(poster(number) for number in range(10)))
    finally:
        await close()


async def chat_count(variant: str, url: str, key: str) -> int:
    """How many messages the chat holds now."""
    if variant == "redis-py":
        import redis.asyncio

        connection = redis.asyncio.Redis.from_url(url)
        try:
            raw = await connection.get(key)
        finally:
            await connection.aclose()
        return len(json.loads(raw)) if raw else 0
    import livestate

    async with livestate.Node(url) as node:
        return len(await node.get(_chat_spec(), key, "messages"))


# The coordinator.


class Child:
    """A Python process running one role of this script, stopped by PID in `stop()`."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._stderr = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=HERE,
        )
        self._buffer = b""

    def line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the child prints; raises RuntimeError after `timeout`."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"no answer in {timeout:.0f}s; {self.tail()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"exited with {self.process.wait()}; {self.tail()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def tail(self) -> str:
        self._stderr.flush()
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "stderr: " + (" | ".join(text[-3:]) if text else "(empty)")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s, by PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()


def flush(url: str) -> None:
    import redis

    connection = redis.Redis.from_url(url)
    try:
        connection.flushall()
    finally:
        connection.close()


def run_case(system: str, n: int, url: str, plan: Plan, work: Path) -> dict[str, Any]:
    """One system at one N: start receiver, then writer; collect the receiver's report."""
    counter_path = str(work / f"counter-{system}-{n}")
    SharedCounter(counter_path, create=True).close()
    rate = plan.rate(n)
    receiver = writer = None
    try:
        receiver = Child(
            ["_receiver", system, url, str(n), counter_path], work / f"{system}-{n}-receiver.log"
        )
        receiver.line(60.0)  # ready: N subscribers in place
        writer = Child(
            [
                "_writer", system, url, str(rate), str(plan.rate_seconds),
                str(plan.saturation_seconds), str(plan.window(n)), counter_path,
            ],
            work / f"{system}-{n}-writer.log",
        )  # fmt: skip
        budget = 30.0 + plan.rate_seconds * 3 + plan.saturation_seconds
        sent = writer.line(budget)
        writer.wait(10.0)
        receiver.send(json.dumps(sent))
        report = receiver.line(40.0)
        return {"system": system, "n": n, "rate": rate, **report}
    except Exception as error:
        return {"system": system, "n": n, "rate": rate, "error": str(error)}
    finally:
        for child in (writer, receiver):
            if child is not None:
                child.stop()
        flush(url)


def run_chat_case(variant: str, url: str, plan: Plan, work: Path) -> dict[str, Any]:
    """2 processes x 10 tasks post to one chat; how many of their messages are left."""
    key = f"chat-{variant}"
    children: list[Child] = []
    expected = 2 * 10 * plan.chat_posts
    try:
        start_at = time.time() + 2.0  # both processes begin together, after their imports
        for number in range(2):
            children.append(
                Child(
                    ["_chat", variant, url, key, str(plan.chat_posts), str(start_at), f"p{number}"],
                    work / f"chat-{variant}-{number}.log",
                )
            )
        for child in children:
            if child.wait(120.0) != 0:
                raise RuntimeError(f"a chat writer failed; {child.tail()}")
        count = asyncio.run(chat_count(variant, url, key))
        return {"variant": variant, "posted": expected, "kept": count, "lost": expected - count}
    except Exception as error:
        return {"variant": variant, "posted": expected, "error": str(error)}
    finally:
        for child in children:
            child.stop()
        flush(url)


def livestate_check(url: str) -> str | None:
    """None if livestate's redis backend delivers across two nodes, else what went wrong."""

    async def check() -> None:
        from peers_systems import _livestate_spec

        import livestate

        spec = _livestate_spec()
        got: list[Any] = []
        async with livestate.Node(url) as reader, livestate.Node(url) as writer:
            client = await reader.attach(spec, "check", got.append)
            await writer.put(spec, "check", "update", {"m": "<0:0:0>"})
            deadline = time.monotonic() + 3.0
            while not got and time.monotonic() < deadline:  # noqa: ASYNC110 - a plain callback fills it
                await asyncio.sleep(0.01)
            await client.detach()
        if not got:
            raise RuntimeError("a write on one node did not reach a client on another in 3 s")

    try:
        asyncio.run(asyncio.wait_for(check(), 20.0))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        flush(url)
    return None


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def ratio(peer: float | None, ours: float | None) -> str:
    if not peer or not ours or math.isnan(peer) or math.isnan(ours):
        return "-"
    return f"{peer / ours:.1f}x"


def summarize(case: dict[str, Any]) -> dict[str, Any]:
    """The figures of one case: rate-phase latency and CPU, saturation rate, total lost."""
    if "error" in case:
        return {"system": case["system"], "n": case["n"], "rate": case["rate"],
                "error": case["error"]}  # fmt: skip
    phases = case["phases"]
    return {
        "system": case["system"],
        "n": case["n"],
        "rate": case["rate"],
        "p50_ms": phases["1"]["p50_ms"],
        "p99_ms": phases["1"]["p99_ms"],
        "cpu_us_per_delivery": phases["1"]["cpu_us_per_delivery"],
        "saturation_cpu_us_per_delivery": phases["2"]["cpu_us_per_delivery"],
        "saturation_deliveries_per_s": phases["2"]["deliveries_per_s"],
        "sent": sum(phase["sent"] for phase in phases.values()),
        "lost": sum(phase["lost"] for phase in phases.values()),
        "resets": case.get("resets", 0),
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of a case: the median of each figure, the sum of losses."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return runs[-1]
    row = dict(good[0])
    for name in ("p50_ms", "p99_ms", "cpu_us_per_delivery", "saturation_cpu_us_per_delivery",
                 "saturation_deliveries_per_s"):  # fmt: skip
        values = [run[name] for run in good if run[name] is not None]
        row[name] = statistics.median(values) if values else None
    for name in ("sent", "lost", "resets"):
        row[name] = sum(run[name] for run in good)
    row["runs"] = len(good)
    row["failed_runs"] = len(runs) - len(good)
    return row


def print_tables(rows: list[dict[str, Any]], chats: list[dict[str, Any]]) -> None:
    ours = {row["n"]: row for row in rows if row["system"] == "livestate" and "error" not in row}
    header = (
        f"{'system':<16}{'N':>6}{'writes/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/dlv':>11}"
        f"{'dlv/s sat':>12}{'lost':>6}{'CPU vs ls':>10}{'p99 vs ls':>10}{'sat vs ls':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['system']:<16}{row['n']:>6,}  {row['error'][:160]}")
            continue
        base = ours.get(row["n"], {})
        saturation = row["saturation_deliveries_per_s"]
        print(
            f"{row['system']:<16}{row['n']:>6,}{row['rate']:>9,}{fmt(row['p50_ms']):>9}"
            f"{fmt(row['p99_ms']):>9}{fmt(row['cpu_us_per_delivery']):>11}"
            f"{fmt(row['saturation_deliveries_per_s'], 0):>12}{row['lost']:>6}"
            f"{ratio(row['cpu_us_per_delivery'], base.get('cpu_us_per_delivery')):>10}"
            f"{ratio(row['p99_ms'], base.get('p99_ms')):>10}"
            f"{ratio(saturation, base.get('saturation_deliveries_per_s')):>10}"
        )
    print()
    print("chat pattern, 2 processes x 10 tasks (messages lost of those posted)")
    for chat in chats:
        outcome = (
            chat["error"][:160] if "error" in chat
            else f"{chat['lost']:,} lost of {chat['posted']:,}"
        )  # fmt: skip
        print(f"  {chat['variant']:<34}{outcome}")
    for system in SYSTEMS:
        if system not in STATEFUL:
            print(f"  {system:<34}n/a (no shared state: a broadcast only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a ~1-minute run (shorter phases)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--n", default="", help="comma-separated N values (default 1,100,1000)")
    parser.add_argument("--no-chat", action="store_true", help="skip the correctness column")
    parser.add_argument(
        "--repeat", type=int, default=0, help="rounds, reported as medians (default 3; 1 if quick)"
    )
    options = parser.parse_args()
    repeat = options.repeat or (1 if options.quick else 3)
    plan = QUICK if options.quick else FULL
    ns = tuple(int(n) for n in options.n.split(",")) if options.n else plan.ns
    systems = [system for system in options.systems.split(",") if system]

    from livestate.testing import ServerProcess

    started = time.monotonic()
    server = ServerProcess()
    rows: list[dict[str, Any]] = []
    chats: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="livestate-peers-") as directory:
        work = Path(directory)
        try:
            server.start()
            unavailable = livestate_check(server.url) if "livestate" in systems else None
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for round_number in range(repeat):
                # Every system in each round, in a rotated order: a slow spell of this
                # shared machine falls on different systems in different rounds.
                turn = round_number % len(systems)
                for n in ns:
                    for system in systems[turn:] + systems[:turn]:
                        if system == "livestate" and unavailable:
                            error = f"livestate redis backend unavailable: {unavailable}"
                            case = {"system": system, "n": n, "rate": plan.rate(n), "error": error}
                        else:
                            case = summarize(run_case(system, n, server.url, plan, work))
                        runs.setdefault((system, n), []).append(case)
                        done = f"round {round_number + 1}/{repeat} {system} N={n}"
                        seconds = time.monotonic() - started
                        print(f"  done: {done} ({seconds:.0f}s)", file=sys.stderr, flush=True)
            rows = [combine(runs[(system, n)]) for system in systems for n in ns]
            if not options.no_chat:
                variants = ["redis-py"] if unavailable or "livestate" not in systems else [
                    "redis-py", "livestate-naive", "livestate-append"]  # fmt: skip
                chats = [run_chat_case(variant, server.url, plan, work) for variant in variants]
        finally:
            server.stop()
    elapsed = time.monotonic() - started
    cpus = os.cpu_count()
    print()
    print(
        f"livestate vs peers: one valkey-server, writer + receiver processes, "
        f"{platform.python_implementation()} {platform.python_version()}, {cpus} CPUs, "
        f"{'quick' if options.quick else 'full'} run in {elapsed:.0f}s, "
        f"medians of {repeat} round{'s' if repeat > 1 else ''}"
    )
    print_tables(rows, chats)
    print(
        json.dumps(
            {
                "benchmark": "peers",
                "quick": options.quick,
                "cpus": cpus,
                "python": platform.python_version(),
                "seconds": round(elapsed),
                "rounds": repeat,
                "rows": rows,
                "chat": chats,
            }
        )
    )


def role() -> None:
    """Run one child role: `_receiver`, `_writer` or `_chat`."""
    name, *args = sys.argv[1:]
    if name == "_receiver":
        system, url, n, counter = args
        asyncio.run(run_receiver(system, url, int(n), counter))
    elif name == "_writer":
        system, url, rate, seconds, saturation, window, counter = args
        asyncio.run(
            run_writer(system, url, int(rate), float(seconds), float(saturation), int(window),
                       counter)
        )  # fmt: skip
    elif name == "_chat":
        variant, url, key, posts, start_at, tag = args
        asyncio.run(run_chat(variant, url, key, int(posts), float(start_at), tag))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        role()
    else:
        main()
