"""A livestate node in its own OS process, for tests that kill a node with SIGKILL.

Usage: python tests/support/node_process.py URL KEY [PROP VALUE | --track IDENTITY |
--paused-put PROP VALUE].
It attaches one client of `ProcessRoom` to KEY, optionally puts the JSON VALUE
into PROP or shows the client in the presence as IDENTITY, prints "ready" and
then waits until it is killed. With --paused-put it starts a put of VALUE into PROP,
stops itself (SIGSTOP) before the put has run a step, and once continued (SIGCONT)
prints the put's outcome as a JSON line (`{"ok": ...}` or `{"error": type, "message":
...}`), then each change its client gets (`{"change": kind, "version": n}`).
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


def report(line: dict[str, Any]) -> None:
    """Print one JSON line for the test that runs this process."""
    print(json.dumps(line), flush=True)


async def main(url: str, key: str, writes: list[str]) -> None:
    """Attach, write, announce readiness, then hold the client until killed."""
    async with livestate.Node(url) as node:
        paused = writes[:1] == ["--paused-put"]
        client = await node.attach(
            ProcessRoom,
            key,
            (lambda c: report({"change": c.kind, "version": c.version})) if paused else None,
        )
        if paused:
            print("ready", flush=True)
            # The put is a task that has not run a step when the process stops: when it is
            # continued, the put is made (for the lifetime it knew) before anything the node
            # heard meanwhile is handled.
            put = asyncio.ensure_future(client.put(writes[1], json.loads(writes[2])))
            os.kill(os.getpid(), signal.SIGSTOP)
            try:
                await put
                report({"ok": None})
            except livestate.LiveStateError as error:
                report({"error": type(error).__name__, "message": str(error)})
            await asyncio.Event().wait()
        elif writes[:1] == ["--track"]:
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
