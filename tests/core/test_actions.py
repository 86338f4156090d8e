"""Actions: server-side mutations called by name, with checked arguments, a trusted caller,
and writes applied all or none; on both backends."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from livestate import (
    ActionContext,
    Caller,
    Change,
    InvalidValueError,
    LiveState,
    Node,
    PermissionDeniedError,
    PropertyNotFoundError,
    StateTooLargeError,
    action,
)
from livestate import Limits as LimitsType
from tests.support import MakeNode, eventually, in_order


class Poll(LiveState):
    """A poll browsers may only read; everything they change goes through its actions."""

    acl = {"group": ["read"], "public": ["read"]}
    limits = LimitsType(max_state_bytes=2_000)

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"options": ["tea", "coffee"], "log": []}

    @action
    def vote(self, ctx: ActionContext, option: str) -> int:
        if option not in ctx.state["options"]:
            raise InvalidValueError(f"{option!r} is not an option of this poll.")
        ctx.increment(f"votes:{option}")
        return int(ctx.state[f"votes:{option}"])

    @action
    def blind_vote(self, ctx: ActionContext, option: str) -> None:
        ctx.increment(f"votes:{option}")  # reads nothing: one atomic op, never retried

    @action
    async def rename(self, ctx: ActionContext, old: str, new: str, by: str = "?") -> dict[str, Any]:
        await asyncio.sleep(0)
        options = [new if option == old else option for option in ctx.state["options"]]
        votes = ctx.state.get(f"votes:{old}", 0)
        ctx.put("options", options)
        ctx.delete(f"votes:{old}")
        ctx.put(f"votes:{new}", votes)
        ctx.append("log", f"{ctx.caller.identity if ctx.caller else 'server'} renamed {old}")
        return {"options": options, "by": by}

    @action
    def half_done(self, ctx: ActionContext, fail: Literal["raise", "missing", "big"]) -> None:
        ctx.put("note", "written first")
        if fail == "raise":
            raise RuntimeError("the action failed after its first write")
        if fail == "missing":
            ctx.delete("no such property")
        ctx.put("big", "x" * 3_000)

    @action
    def whoami(self, ctx: ActionContext) -> str | None:
        return None if ctx.caller is None else ctx.caller.identity


async def test_an_action_runs_with_checked_arguments_and_returns_its_result(
    make_node: MakeNode,
) -> None:
    """A client calls an action by name; its writes reach every node; the result is JSON."""
    first, second = await make_node(), await make_node()
    ann = await first.attach(Poll, "p", caller=Caller("group", "ann"))
    watcher = await second.attach(Poll, "p")
    assert await ann.call("vote", {"option": "tea"}) == 1
    assert await second.call(Poll, "p", "vote", {"option": "tea"}) == 2
    assert await ann.call("whoami") == "ann"
    assert await second.call(Poll, "p", "whoami", caller=Caller("public", "bob")) == "bob"
    assert await second.call(Poll, "p", "whoami") is None
    await eventually(lambda: watcher.state.get("votes:tea") == 2)
    with pytest.raises(PermissionDeniedError):
        await ann.increment("votes:tea")  # the ACL gives browsers read only: raw writes fail


@pytest.mark.parametrize(
    ("action", "args", "message"),
    [
        ("vote", {"option": 1}, r"Expected `str`, got `int` - at `\$\.option`"),
        ("vote", {}, "missing required field `option`"),
        ("vote", {"option": "tea", "extra": 1}, "unknown field `extra`"),
        ("vote", ["tea"], "a mapping of argument names"),
        ("nope", {}, "has no action 'nope'.*blind_vote, half_done, rename, vote, whoami"),
        ("vote", {"option": "milk"}, "'milk' is not an option"),
    ],
)
async def test_bad_calls_are_refused_and_write_nothing(
    node: Node, action: str, args: Any, message: str
) -> None:
    """Arguments that do not fit the signature, unknown actions and an action's own refusal
    raise InvalidValueError naming what is wrong; nothing is written."""
    client = await node.attach(Poll, "p")
    version = client.version
    with pytest.raises(InvalidValueError, match=message):
        await client.call(action, args)
    assert client.version == version


@pytest.mark.parametrize(
    ("fail", "error"),
    [("raise", RuntimeError), ("missing", PropertyNotFoundError), ("big", StateTooLargeError)],
)
async def test_an_action_that_fails_writes_nothing(
    make_node: MakeNode, fail: str, error: type[Exception]
) -> None:
    """An action that raises, or whose later write cannot apply, leaves none of its earlier
    writes behind, on any node."""
    first, second = await make_node(), await make_node()
    client = await first.attach(Poll, "p")
    watcher = await second.attach(Poll, "p")
    before = dict(client.state), client.version
    with pytest.raises(error):
        await client.call("half_done", {"fail": fail})
    assert "note" not in await first.get(Poll, "p")
    assert (dict(client.state), client.version) == before
    assert (dict(watcher.state), watcher.version) == before


async def test_a_multi_write_action_is_all_or_nothing_and_in_order_everywhere(
    make_node: MakeNode,
) -> None:
    """An action's writes arrive on another node as consecutive versions, in order, each as
    itself (an append as its item), and the action saw its own writes."""
    first, second = await make_node(), await make_node()
    ann = await first.attach(Poll, "p", caller=Caller("group", "ann"))
    changes: list[Change] = []
    await second.attach(Poll, "p", on_change=changes.append)
    await ann.call("vote", {"option": "tea"})
    start = ann.version
    result = await ann.call("rename", {"old": "tea", "new": "green tea", "by": "ann"})
    assert result == {"options": ["green tea", "coffee"], "by": "ann"}
    assert ann.version == start + 4
    await eventually(lambda: bool(changes) and changes[-1].version == start + 4)
    tail = [c for c in changes if c.version > start]
    assert in_order(changes)
    assert [(c.kind, c.prop) for c in tail] == [
        ("updated", "options"),
        ("deleted", "votes:tea"),
        ("new", "votes:green tea"),
        ("updated", "log"),
    ]
    assert tail[-1].value == ["ann renamed tea"]
    assert dict(ann.state) == dict(await second.get(Poll, "p"))


async def test_concurrent_actions_on_two_nodes_lose_no_vote(make_node: MakeNode) -> None:
    """N clients on two nodes each vote M times, through an action that reads the state
    (optimistic, retried) and one that does not (one atomic op): the totals are exact."""
    nodes = [await make_node(), await make_node()]
    clients = [await nodes[i % 2].attach(Poll, "p") for i in range(6)]

    async def votes(client: Any, action: str, option: str) -> None:
        for _ in range(8):
            await client.call(action, {"option": option})

    await asyncio.gather(
        *(votes(client, "vote", "tea") for client in clients),
        *(votes(client, "blind_vote", "coffee") for client in clients),
    )
    state = await nodes[1].get(Poll, "p")
    assert (state["votes:tea"], state["votes:coffee"]) == (48, 48)


async def test_calling_needs_read(node: Node) -> None:
    """A caller whose role may not read the live state may not call its actions."""

    class ReadOnlyPoll(LiveState):
        acl = {"group": ["read"], "public": []}

        @action
        def touch(self, ctx: ActionContext) -> None:
            ctx.put("touched", True)

    await ReadOnlyPoll.start("k")
    with pytest.raises(PermissionDeniedError, match="may not call the action 'touch'"):
        await ReadOnlyPoll.call("k", "touch")


def test_a_bad_action_signature_fails_at_class_creation() -> None:
    """An action takes (self, ctx, named arguments): *args or positional-only ones are refused
    when the spec is defined."""

    def star(self: Any, ctx: Any, *options: str) -> None: ...

    with pytest.raises(InvalidValueError, match=r"must take \(self, ctx, \.\.\.\)"):
        type("BadAction", (LiveState,), {"star": action(star), "__module__": __name__})
