"""A node in its own OS process, for the tests that SIGKILL nodes: `python -m tests.persist.node
URL KEY hold|write [SPEC]`, from the repository root, with JOURNAL_STORE (and JOURNAL_SAVES) set.

It attaches one client of SPEC (Journal, or Diary) to KEY and prints "ready". `hold` then
waits until it is killed; `write` appends 0, 1, 2, ... every 20 ms, printing "ack N T"
(T: the wall clock) once each append has returned, until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
import time

import livestate

from .journal import Diary, Journal


async def main(url: str, key: str, mode: str, spec: str = "Journal") -> None:
    """Attach, announce readiness, then hold or write until killed."""
    async with livestate.Node(url) as node:
        client = await node.attach(Diary if spec == "Diary" else Journal, key)
        print("ready", flush=True)
        if mode == "hold":
            await asyncio.Event().wait()
        for n in range(100_000):
            await client.append("items", n)
            print(f"ack {n} {time.time()}", flush=True)
            await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
