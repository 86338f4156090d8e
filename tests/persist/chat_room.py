"""The chat example's ChatRoom in a process of its own (its specs' names would clash with
other tests' specs in the test process): `python -m tests.persist.chat_room ROOM post|clear`,
from the repository root, with DATABASE_URL or CHAT_DATABASE set.

`post` attaches to ROOM as ann, posts two messages (the room's `post` action, as the
page's view does) and shuts its node down (a final save). `clear` attaches (a cold
start: on_mount reads the store), prints the messages it found as JSON, clears the
room as the page does (the `clear` action), prints them again, and shuts its node
down.
"""

from __future__ import annotations

import asyncio
import json
import sys

from chat.state import ChatRoom  # examples/ is on sys.path: tests/persist/__init__.py

import livestate
from livestate import Caller, MemoryBackend, Node


async def main(room: str, step: str) -> None:
    """Run one step against a node of its own on memory://."""
    async with Node(backend=MemoryBackend()) as node:
        with livestate.use(node):
            client = await ChatRoom.attach(room, caller=Caller("group", "ann"))
            if step == "post":
                for text in ("hello", "is anyone here?"):
                    await client.call("post", {"text": text})
                return
            print(json.dumps([m["text"] for m in client.state["messages"]]), flush=True)
            await client.call("clear")  # what "Clear the room for everyone" does
            print(json.dumps([m["text"] for m in client.state["messages"]]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
