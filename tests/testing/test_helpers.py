"""livestate.testing's helpers for an app's own tests: memory_node, Recorder, eventually."""

from __future__ import annotations

from typing import Any

import pytest

from livestate import LiveState, current_node
from livestate.testing import Recorder, eventually, memory_node


class Chat(LiveState):
    name = "TestingHelpersChat"

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": []}


async def test_a_test_of_an_apps_spec_reads_as_the_docstring_shows() -> None:
    """memory_node makes a node of the test's own, current inside the block (the class
    methods use it) and closed after; Recorder records and waits for changes in order."""
    async with memory_node() as node:
        assert current_node() is node
        seen = Recorder()
        client = await Chat.attach("lobby", on_change=seen)
        await Chat.append("lobby", "messages", {"text": "hi"})
        await Chat.put("lobby", "topic", "news")
        change = await seen.wait_for(lambda change: change.prop == "topic")
        assert change.value == "news" and seen.kinds == ["updated", "new"]
        assert seen.values[0] == [{"text": "hi"}] and seen.in_order() and len(seen) == 2
        await client.detach()
    assert node.closed and current_node() is not node


async def test_waiting_for_what_never_comes_fails_in_time() -> None:
    """eventually and wait_for raise AssertionError once their time is up."""
    with pytest.raises(AssertionError, match=r"Not true within 0\.05 s"):
        await eventually(lambda: False, within=0.05)
    with pytest.raises(AssertionError):
        await Recorder().wait_for(lambda change: True, within=0.05)
