"""A spec's schema: every write is checked against it before the backend sees it, on both
backends, and a refused write changes nothing."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from livestate import (
    ActionContext,
    InvalidValueError,
    LiveState,
    Node,
    PermissionDeniedError,
    action,
)
from tests.support import MakeNode, eventually


class Card(msgspec.Struct, forbid_unknown_fields=True):
    """A card: its text and author."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    by: str


class Shaped(LiveState):
    schema = {
        "title": Annotated[str, msgspec.Meta(max_length=10)],
        "card:*": Card,
        "votes:*": Annotated[int, msgspec.Meta(ge=0, le=3)],
        "level": Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)],
        "log": Annotated[
            list[Annotated[str, msgspec.Meta(max_length=5)]], msgspec.Meta(max_length=3)
        ],
        "anything": Any,
    }

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": "board", "log": [], "level": 0.5}

    @action
    def add(self, ctx: ActionContext, id: str, text: str) -> None:
        ctx.put(f"card:{id}", {"text": text, "by": "action"})


BAD_WRITES = [
    ("put", ("title", "x" * 11), "length <= 10"),
    ("put", ("title", 1), "Expected `str`, got `int`"),
    ("put", ("card:1", {"text": "hi", "by": "a", "forged": True}), "unknown field `forged`"),
    ("put", ("card:1", {"text": "", "by": "a"}), "length >= 1"),
    ("put", ("card:1", {"text": "hi"}), "missing required field `by`"),
    ("put", ("nope", 1), "declares no such property"),
    ("append", ("log", "toolong"), "length <= 5"),
    ("append", ("title", "x"), "not a list"),
    ("increment", ("votes:1", 1.5), "an int"),
    ("increment", ("title", 1), "a number"),
    ("increment", ("votes:1", 4), "bounds (≥ 0 and ≤ 3)"),
    ("increment", ("votes:1", -1), "bounds (≥ 0 and ≤ 3)"),
    ("increment", ("level", 0.5), "bounds (> 0 and < 1)"),
    ("update", ("title", lambda title: title * 3), "length <= 10"),
    ("call", ("add", {"id": "1", "text": "x" * 21}), "length <= 20"),
]


@pytest.mark.parametrize(("method", "args", "message"), BAD_WRITES, ids=[b[2] for b in BAD_WRITES])
async def test_a_write_that_breaks_the_schema_is_refused_and_changes_nothing(
    make_node: MakeNode, method: str, args: tuple[Any, ...], message: str
) -> None:
    """Each kind of bad value, through a client, raises InvalidValueError naming the property
    and the rule; neither node's state or version moves."""
    writer, other = await make_node(), await make_node()
    client = await writer.attach(Shaped, "k")
    watcher = await other.attach(Shaped, "k")
    before = (dict(client.state), client.version)
    with pytest.raises(InvalidValueError, match="Shaped") as raised:
        await getattr(client, method)(*args)
    assert message in str(raised.value)
    assert (dict(client.state), client.version) == before
    assert (dict(watcher.state), watcher.version) == before
    assert dict(await writer.get(Shaped, "k")) == before[0]


async def test_values_that_fit_are_written_on_every_node(make_node: MakeNode) -> None:
    """Names match exactly or by pattern; fitting values of every kind are written."""
    writer, other = await make_node(), await make_node()
    client = await writer.attach(Shaped, "k")
    watcher = await other.attach(Shaped, "k")
    await client.put("card:a1", {"text": "hi", "by": "ann"})
    await client.put("anything", {"any": ["json", 1]})
    assert await client.increment("votes:a1", 3) == 3
    await client.append("log", "one")
    await client.call("add", {"id": "b", "text": "from an action"})
    await eventually(lambda: watcher.version == client.version)
    assert watcher.state["card:a1"] == {"text": "hi", "by": "ann"}
    assert watcher.state["card:b"] == {"text": "from an action", "by": "action"}
    assert watcher.state["votes:a1"] == 3


async def test_a_bounded_list_keeps_its_newest_items(node: Node) -> None:
    """An append to a list whose type has max_length drops the oldest items beyond it, as
    max_len does, so the list always fits its schema."""
    client = await node.attach(Shaped, "k")
    for item in ("a", "b", "c", "d", "e"):
        await client.append("log", item)
    assert list(client.state["log"]) == ["c", "d", "e"]
    await client.append("log", "f", max_len=2)
    assert list(client.state["log"]) == ["e", "f"]


async def test_increment_bounds_hold_against_concurrent_writers(make_node: MakeNode) -> None:
    """Writers on two nodes racing to raise a number bounded at 3 end at exactly 3: the
    bound is checked where the sum is made, atomically, not on a stale copy."""
    import asyncio

    nodes = [await make_node(), await make_node()]
    clients = [await node.attach(Shaped, "k") for node in nodes for _ in range(3)]

    async def vote(client: Any) -> bool:
        try:
            await client.increment("votes:x")
        except InvalidValueError:
            return False
        return True

    results = await asyncio.gather(*(vote(client) for client in clients))
    assert sum(results) == 3
    assert await nodes[0].get(Shaped, "k", "votes:x") == 3


def test_on_mount_must_fit_the_schema() -> None:
    """A state on_mount returns is checked too: a bad one fails the attach with the rule."""
    import asyncio

    class BadMountSchema(LiveState):
        schema = {"n": int}

        def on_mount(self, key: str) -> dict[str, Any]:
            return {"n": "one"}

    async def attach() -> None:
        async with Node("memory://") as node:
            await node.attach(BadMountSchema, "k")

    with pytest.raises(InvalidValueError, match=r"'n'.*Expected `int`, got `str`"):
        asyncio.run(attach())


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({}, "must map property names"),
        ({"x": object()}, "msgspec cannot check"),
        ({1: int}, "property name 1"),
        ("title", "must map property names"),
    ],
)
def test_a_bad_schema_fails_at_class_creation(schema: object, message: str) -> None:
    """The schema is compiled when the spec is defined, with an error naming the entry."""
    with pytest.raises(InvalidValueError, match=message):
        type("BadSchema", (LiveState,), {"schema": schema, "__module__": __name__})


def test_specs_without_a_schema_accept_any_json() -> None:
    """A plain spec keeps working unchanged: no schema, no msgspec needed for its writes."""
    import asyncio

    class Unshaped(LiveState):
        pass

    async def write() -> object:
        async with Node("memory://") as node:
            client = await node.attach(Unshaped, "k")
            await client.put("whatever", {"nested": [1, "two", None]})
            return client.state["whatever"]

    assert asyncio.run(write()) == {"nested": [1, "two", None]}


class ReadOnlyShaped(LiveState):
    """The same schema, and a group that may only read."""

    acl = {"group": ["read"], "public": "all"}
    schema = {"title": Annotated[str, msgspec.Meta(max_length=10)]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"title": "board"}


@pytest.mark.parametrize(
    ("method", "args"),
    [("put", ("title", 1)), ("append", ("title", "x" * 11)), ("increment", ("title", "x"))],
)
async def test_a_caller_who_may_not_write_is_told_so_whatever_the_value(
    make_node: MakeNode, method: str, args: tuple[Any, ...]
) -> None:
    """A read-only group member's bad write is refused for its permission, not its value:
    it may not write at all, and the rule it broke would only mislead it."""
    node = await make_node()
    client = await node.attach(ReadOnlyShaped, "k")
    with pytest.raises(PermissionDeniedError, match="'write'"):
        await getattr(client, method)(*args)
    with pytest.raises(InvalidValueError, match="length <= 10"):
        await ReadOnlyShaped.put("k", "title", "x" * 11)  # public may write: its value is wrong
    assert client.state == {"title": "board"}
