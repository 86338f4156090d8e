"""A livestate node in its own OS process, for tests that kill a node with SIGKILL.

Usage: python tests/support/node_process.py URL KEY [PROP VALUE | --track IDENTITY].
It attaches one client of `ProcessRoom` to KEY, optionally puts the JSON VALUE
into PROP or shows the client in the presence as IDENTITY, prints "ready" and
then waits until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import livestate
from livestate import LiveState


class ProcessRoom(LiveState):
    """A live state that ends one second after its last client (anywhere) leaves."""

    ttl = 1.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def main(url: str, key: str, writes: list[str]) -> None:
    """Attach, write, announce readiness, then hold the client until killed."""
    async with livestate.Node(url) as node:
        client = await node.attach(ProcessRoom, key)
        if writes[:1] == ["--track"]:
            await client.track(writes[1], {"pid": os.getpid()})
        elif writes:
            await client.put(writes[0], json.loads(writes[1]))
        print("ready", flush=True)
        await asyncio.Event().wait()


def start_process(url: str, key: str, *args: str) -> subprocess.Popen[str]:
    """Start this script as a node process and wait until its client is attached."""
    script = Path(__file__)
    process = subprocess.Popen(
        [sys.executable, str(script), url, key, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(script.parents[2] / "src")},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        process.wait()
        raise AssertionError(f"the node process did not start: {line!r}")
    return process


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process by its PID and reap it."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdout:
        process.stdout.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
