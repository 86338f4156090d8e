"""A spec's write rule, `allow(key, caller, write)`: it sees who writes and what, on every
write op and both backends, and a rule that reads the state cannot be raced past."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livestate import Caller, LiveState, Node, PermissionDeniedError, Write
from tests.support import MakeNode, eventually

seen: list[tuple[str, Caller | None, str, str | None]] = []


class Cards(LiveState):
    """Cards that only their author may change; `locked` refuses everything but reads."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}

    def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str:
        answer = self.judge(caller, write)
        seen.append((key, caller, write.kind, write.prop))  # (a rule may run twice: see below)
        return answer

    def judge(self, caller: Caller | None, write: Write) -> bool | str:
        if caller is None:
            return True  # trusted server code
        if write.kind in ("reset", "stop"):
            return "only the server resets or stops a board"
        if write.prop is not None and write.prop.startswith("card:"):
            current = write.state.get(write.prop)
            if current is not None and current["by"] != caller.identity:
                return f"only {current['by']} may change this card"
            if write.kind == "put" and write.value.get("by") != caller.identity:
                return "a card's author is whoever writes it"
        return True


async def test_the_rule_sees_the_caller_and_the_write(node: Node) -> None:
    """A client attached for a caller passes that caller to the rule with each write; trusted
    code (no caller) passes None. (A rule that reads a state not yet loaded raises before it
    answers, is run again with it, and is recorded once.)"""
    seen.clear()
    ann = await node.attach(Cards, "k", caller=Caller("group", "ann"))
    await ann.put("card:1", {"text": "hi", "by": "ann"})
    await ann.increment("count")
    await Cards.put("k", "note", "from the server")
    assert seen == [
        ("k", Caller("group", "ann"), "put", "card:1"),
        ("k", Caller("group", "ann"), "increment", "count"),
        ("k", None, "put", "note"),
    ]


async def test_only_the_author_may_change_or_delete_a_card(make_node: MakeNode) -> None:
    """Across two nodes: another caller's put, delete and append on a card are refused with the
    rule's reason and change nothing; the author's go through; forging `by` is refused."""
    first, second = await make_node(), await make_node()
    ann = await first.attach(Cards, "k", caller=Caller("group", "ann"))
    bob = await second.attach(Cards, "k", caller=Caller("group", "bob"))
    await ann.put("card:1", {"text": "hi", "by": "ann"})
    await eventually(lambda: "card:1" in bob.state)
    version = ann.version
    for attempt in (
        bob.put("card:1", {"text": "mine now", "by": "bob"}),
        bob.delete("card:1"),
        bob.append("card:1", "x"),
    ):
        with pytest.raises(PermissionDeniedError, match="only ann may change this card"):
            await attempt
    with pytest.raises(PermissionDeniedError, match="a card's author is whoever writes it"):
        await bob.put("card:2", {"text": "forged", "by": "ann"})
    with pytest.raises(PermissionDeniedError, match=r"The caller 'bob' \(group\) may not reset"):
        await bob.reset()
    assert ann.version == version and bob.version == version
    await ann.put("card:1", {"text": "edited", "by": "ann"})
    await ann.delete("card:1")
    await eventually(lambda: bob.version == ann.version and "card:1" not in bob.state)


async def test_public_callers_and_stop_go_through_the_rule(node: Node) -> None:
    """The server API acting for a user passes its Caller; stop is a write the rule decides."""
    await Cards.start("k")
    await Cards.put("k", "card:1", {"text": "hi", "by": "ann"}, caller=Caller("public", "ann"))
    with pytest.raises(PermissionDeniedError, match="only ann may change"):
        await Cards.delete("k", "card:1", caller=Caller("public", "bob"))
    with pytest.raises(PermissionDeniedError, match="only the server resets or stops"):
        await Cards.stop("k", caller=Caller("public", "ann"))
    await Cards.stop("k")


async def test_a_caller_of_the_wrong_role_is_refused(node: Node) -> None:
    """A client acts for a group caller and the server API for a public one: mixing them up is
    a programming error, named as such."""
    from livestate import InvalidValueError

    with pytest.raises(InvalidValueError, match="pass Caller\\('group', identity\\)"):
        await node.attach(Cards, "k", caller=Caller("public", "ann"))
    await Cards.start("k")
    with pytest.raises(InvalidValueError, match="pass Caller\\('public', identity\\)"):
        await Cards.put("k", "x", 1, caller=Caller("group", "ann"))


events: dict[str, asyncio.Event] = {}
"""The test's `gate` and `judging` events (made in its own event loop)."""


class Raced(LiveState):
    """Cards whose rule, for a write marked `slow`, decides only once `gate` opens."""

    async def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str:
        if caller is None or write.prop is None:
            return True
        current = write.state.get(write.prop)
        if write.kind == "put" and write.value.get("slow") and not events["gate"].is_set():
            events["judging"].set()
            await events["gate"].wait()  # the card changes hands meanwhile, on another node
        if current is not None and current["by"] != caller.identity:
            return f"only {current['by']} may change this card"
        return True


async def test_a_rule_that_read_the_state_is_not_raced_past(make_node: MakeNode) -> None:
    """Bob's edit of his card, judged on a state where he is its author, must not land once
    the card has changed hands on another node: the write was conditional on the version the
    rule read, so the rule runs again on the newer state and refuses."""
    events.update(gate=asyncio.Event(), judging=asyncio.Event())
    first, second = await make_node(), await make_node()
    bob = await first.attach(Raced, "k", caller=Caller("group", "bob"))
    await bob.put("card:1", {"text": "bob's", "by": "bob"})
    edit = asyncio.ensure_future(bob.put("card:1", {"text": "mine?", "by": "bob", "slow": True}))
    await events["judging"].wait()
    await second.put(Raced, "k", "card:1", {"text": "ann's now", "by": "ann"})
    events["gate"].set()
    with pytest.raises(PermissionDeniedError, match="only ann may change this card"):
        await edit
    assert (await second.get(Raced, "k", "card:1"))["by"] == "ann"


class AsyncRuled(LiveState):
    async def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str:
        await asyncio.sleep(0)
        return write.value != "forbidden" or "no"


async def test_an_async_rule_is_awaited(node: Node) -> None:
    """`allow` may be a coroutine; False-y answers refuse, with the reason when one is given."""
    client = await node.attach(AsyncRuled, "k")
    await client.put("x", "fine")
    with pytest.raises(PermissionDeniedError, match=r"Trusted server code may not write 'x'.*: no"):
        await client.put("x", "forbidden")
    assert client.state["x"] == "fine"
