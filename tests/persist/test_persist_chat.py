"""The chat example saves its rooms' history (examples/chat/store.py) and brings it back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from chat import store as chat_store
from chat.state import ChatRoom

import livestate
from livestate import MemoryBackend, Node


@pytest.fixture
async def chat_env(store_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """ChatRoom saves to `store_url`, configured through the environment as the example is:
    DATABASE_URL for PostgreSQL, else CHAT_DATABASE."""
    if store_url.startswith("postgresql://"):
        monkeypatch.setenv("DATABASE_URL", store_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("CHAT_DATABASE", store_url)
    yield
    await chat_store.store().aclose()


async def test_a_room_comes_back_with_its_history_and_clearing_it_clears_it(
    chat_env: None,
) -> None:
    """Messages posted, then the only node shut down (a final save): on a new node (a cold
    start) the room's history is back, from the store. "Clear the room" (a reset) empties it,
    and the empty room is what is saved."""
    room = uuid.uuid4().hex[:8]
    async with Node(backend=MemoryBackend()) as node:
        with livestate.use(node):
            client = await ChatRoom.attach(room)
            for text in ("hello", "is anyone here?"):
                await client.append("messages", {"nick": "ann", "text": text}, max_len=200)
    store = chat_store.store()
    saved = await store.load(ChatRoom.name, room)
    assert saved is not None
    assert [m["text"] for m in saved[1]["messages"]] == ["hello", "is anyone here?"]
    async with Node(backend=MemoryBackend()) as node:
        with livestate.use(node):
            again = await ChatRoom.attach(room)
            assert [m["text"] for m in again.state["messages"]] == ["hello", "is anyone here?"]
            await again.reset()  # what "Clear the room for everyone" does
            assert again.state["messages"] == []
    saved = await store.load(ChatRoom.name, room)
    assert saved is not None
    assert saved[1] == {"messages": []}
