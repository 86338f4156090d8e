"""The chat example saves its rooms' history (examples/chat/store.py) and brings it back.

ChatRoom runs in processes of its own (tests/persist/chat_room.py): the chat's
specs would share names with other tests' specs in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from chat.store import open_store

ROOT = Path(__file__).resolve().parents[2]


async def run(room: str, step: str, store_url: str) -> list[str]:
    """Run one step of chat_room.py with the example configured for `store_url`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHAT_DATABASE")}
    if store_url.startswith("postgresql://"):
        env["DATABASE_URL"] = store_url
    else:
        env["CHAT_DATABASE"] = store_url
    command = [sys.executable, "-m", "tests.persist.chat_room", room, step]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


async def test_a_room_comes_back_with_its_history_and_clearing_it_clears_it(
    store_url: str,
) -> None:
    """Messages posted, then the only node shut down (a final save): in a new process (a
    cold start) the room's history is back, from the store. "Clear the room" (an action)
    empties it, and the empty room is what is saved."""
    room = uuid.uuid4().hex[:8]
    store = open_store(store_url)
    try:
        assert await run(room, "post", store_url) == []
        saved = await store.load("ChatRoom", room)
        assert saved is not None
        assert [m["text"] for m in saved[1]["messages"]] == ["hello", "is anyone here?"]
        found, cleared = await run(room, "clear", store_url)
        assert json.loads(found) == ["hello", "is anyone here?"]
        assert json.loads(cleared) == []
        saved = await store.load("ChatRoom", room)
        assert saved is not None
        assert saved[1] == {"messages": []}
    finally:
        await store.aclose()
