"""Caller-chosen write ids: a write repeated with the same id (an app's retry after
BackendUnavailableError) applies once and answers the first result, on both backends and
every write path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from livestate import ActionContext, InvalidValueError, LiveState, Node, action
from tests.support import MakeNode, eventually


class Ledger(LiveState):
    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "log": []}

    @action
    def bump(self, ctx: ActionContext, by: int) -> None:
        ctx.increment("n", by)
        ctx.append("log", by)


async def test_a_repeated_increment_applies_once_and_answers_the_first_sum(
    make_node: MakeNode,
) -> None:
    """The same id twice, from two nodes: one increment, one version, the first sum twice;
    another id is another write."""
    first, second = await make_node(), await make_node()
    client = await first.attach(Ledger, "t")
    assert await client.increment("n", 5, write_id="order-1") == 5
    version = client.version
    assert await second.increment(Ledger, "t", "n", 5, write_id="order-1") == 5
    assert await client.increment("n", 5, write_id="order-1") == 5
    assert client.version == version and await first.get(Ledger, "t", "n") == 5
    assert await client.increment("n", 5, write_id="order-2") == 10


@pytest.mark.parametrize("kind", ["put", "append", "delete", "reset", "update", "call"])
async def test_every_write_repeated_with_its_id_applies_once(node: Node, kind: str) -> None:
    """Each kind of write, repeated with its id, moves the version once."""
    client = await node.attach(Ledger, "t")
    await client.put("x", 1)
    writes: dict[str, Callable[[], Awaitable[Any]]] = {
        "put": lambda: client.put("n", 7, write_id="w"),
        "append": lambda: client.append("log", "a", write_id="w"),
        "delete": lambda: client.delete("x", write_id="w"),
        "reset": lambda: client.reset(write_id="w"),
        "update": lambda: client.update("n", lambda n: n + 3, write_id="w"),
        "call": lambda: client.call("bump", {"by": 2}, write_id="w"),
    }
    first = await writes[kind]()
    version, state = client.version, dict(client.state)
    again = await writes[kind]()
    assert (client.version, dict(client.state)) == (version, state)
    assert again == first


async def test_an_action_repeated_with_its_id_applies_its_batch_once(make_node: MakeNode) -> None:
    """An action's writes go as one batch under its id: a repeat adds nothing on any node."""
    first, second = await make_node(), await make_node()
    watcher = await second.attach(Ledger, "t")
    await first.call(Ledger, "t", "bump", {"by": 4}, write_id="bump-1")
    await first.call(Ledger, "t", "bump", {"by": 4}, write_id="bump-1")
    await eventually(lambda: watcher.state["n"] == 4)
    assert list(await first.get(Ledger, "t", "log")) == [4]


async def test_a_write_id_is_checked(node: Node) -> None:
    """An id is a str of 1 to 128 characters."""
    client = await node.attach(Ledger, "t")
    for bad in ("", "x" * 129, 7):
        with pytest.raises(InvalidValueError, match="A write id for Ledger 't'"):
            await client.put("n", 1, write_id=bad)  # type: ignore[arg-type]
