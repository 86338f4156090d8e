"""Fences: a write made for a lifetime that ended never lands in the next one, with node
processes paused for real (SIGSTOP) on a real server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from livestate import Change, Node

from ..conftest import SHORT_LEASE
from ..support import running
from ..support.node_process import ProcessRoom, kill, start_process


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0] in ("T", "t")


async def test_a_paused_nodes_write_does_not_land_in_the_next_lifetime(lease_url: str) -> None:
    """A node stops with a put of its client queued; its lease lapses, the live state ends
    (TTL) and another node starts it anew; when the node continues, its put, made for the
    lifetime that ended, is refused with StartedAnewError instead of landing in the new
    one, and its client gets the new lifetime as a reset."""
    process = start_process(lease_url, "fenced", "--paused-put", "n", "99")
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 5
        while not stopped(process.pid):
            assert time.monotonic() < deadline, "the node process did not stop itself"
            await asyncio.sleep(0.02)
        async with Node(lease_url) as node:
            # Its lease lapses unrenewed, then the TTL runs out: the lifetime ends.
            deadline = time.monotonic() + 3 * (SHORT_LEASE + ProcessRoom.ttl)
            while await running(node, ProcessRoom, "fenced"):
                assert time.monotonic() < deadline, "the paused node's live state did not end"
                await asyncio.sleep(0.1)
            changes: list[Change] = []
            client = await node.attach(ProcessRoom, "fenced", on_change=changes.append)
            fresh = client.version
            os.kill(process.pid, signal.SIGCONT)
            # The put's outcome and the client's reset, in either order: the node reads
            # the new lifetime while the put's refusal comes back.
            lines = [json.loads(await asyncio.to_thread(process.stdout.readline)) for _ in "ab"]
            (outcome,) = [line for line in lines if "change" not in line]
            assert outcome["error"] == "StartedAnewError", outcome
            assert "started anew" in outcome["message"]
            (line,) = [line for line in lines if "change" in line]
            assert line["change"] == "reset" and line["version"] >= fresh, line
            assert await node.get(ProcessRoom, "fenced", "n") == 0
            assert client.state["n"] == 0 and client.version == fresh and changes == []
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        kill(process)
