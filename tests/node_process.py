"""A livestate node in its own OS process, for tests that kill a node with SIGKILL.

Usage: python tests/node_process.py URL KEY [PROP VALUE]. It attaches one
client of `ProcessRoom` to KEY, optionally puts the JSON VALUE into PROP,
prints "ready" and then waits until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
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
        if writes:
            await client.put(writes[0], json.loads(writes[1]))
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
