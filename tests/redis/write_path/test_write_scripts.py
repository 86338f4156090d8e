"""The lean write scripts (lua/write.lua): what their shorter whole-state check and their
own key declarations keep true."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from livestate import Change, LiveState, Node, NotFoundError
from livestate.testing import ServerProcess

from ...support import eventually


class WritePath(LiveState):
    """A number, a text and a list, so every write has something to work on."""

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 1, "text": "a", "items": ["x"]}


def admin(server: ServerProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


async def write(node: Node, call: str, key: str) -> None:
    if call == "put":
        await node.put(WritePath, key, "text", "b")
    elif call == "put_new":
        await node.put(WritePath, key, "other", "b")
    elif call == "increment":
        await node.increment(WritePath, key, "n")
    elif call == "append":
        await node.append(WritePath, key, "items", "y")
    else:
        await node.delete(WritePath, key, "text")


@pytest.mark.parametrize("call", ["put", "put_new", "increment", "append", "delete"])
@pytest.mark.parametrize("lost", ["s", "z"])
async def test_a_state_or_sizes_hash_of_another_type_changes_nothing(
    server: ServerProcess, lost: str, call: str
) -> None:
    """The state or sizes hash written over with a string: every write raises NotFoundError
    and changes and publishes nothing; the live state then starts anew as a whole."""
    key = f"{call}-{lost}"
    async with Node(f"{server.url}?timeout=1") as node:
        await node.start(WritePath, key)
        with admin(server) as connection:
            prefix = f"ls:{{WritePath:{key}}}"
            meta_before = connection.hgetall(f"{prefix}:m")
            other = "z" if lost == "s" else "s"
            kept_before = connection.hgetall(f"{prefix}:{other}")
            order_before = connection.zrange(f"{prefix}:k", 0, -1, withscores=True)
            connection.delete(f"{prefix}:{lost}")
            connection.set(f"{prefix}:{lost}", "not a hash")
            pubsub = connection.pubsub()
            pubsub.execute_command("SSUBSCRIBE", f"{prefix}:c")
            with pytest.raises(NotFoundError):
                await write(node, call, key)
            assert connection.hgetall(f"{prefix}:m") == meta_before
            assert connection.hgetall(f"{prefix}:{other}") == kept_before
            assert connection.zrange(f"{prefix}:k", 0, -1, withscores=True) == order_before
            assert connection.get(f"{prefix}:{lost}") == "not a hash"
            message = pubsub.get_message(timeout=0.2)  # the subscription's confirmation
            assert message is None or message["type"] == "ssubscribe"
            assert pubsub.get_message(timeout=0.2) is None  # and nothing was published
            pubsub.close()
        client = await node.attach(WritePath, key)
        assert dict(client.state) == {"n": 1, "text": "a", "items": ["x"]}
        assert client.version > int(meta_before["v"])


async def test_writes_that_turn_out_to_touch_a_list_are_applied_once(
    server: ServerProcess,
) -> None:
    """put and delete go out without the list keys; on a list property the script answers
    'lists' without writing and they are sent again with them: each applies once, the list
    key is gone with its property, and every version is one more than the last."""
    async with Node(server.url) as node:
        client = await node.attach(WritePath, "lists")
        first = client.version
        await node.put(WritePath, "lists", "items", "no longer a list")
        assert await node.get(WritePath, "lists", "items") == "no longer a list"
        await node.put(WritePath, "lists", "items", ["a", "b"])
        await node.delete(WritePath, "lists", "items")
        await node.put(WritePath, "lists", "items", ["c"])
        await node.put(WritePath, "lists", "items", ["d", "e"])
        assert await node.get(WritePath, "lists", "items") == ["d", "e"]
        assert dict(await node.get(WritePath, "lists")) == {
            "n": 1,
            "text": "a",
            "items": ["d", "e"],
        }
        assert client.version == first + 5
        with admin(server) as connection:
            prefix = "ls:{WritePath:lists}"
            assert connection.smembers(f"{prefix}:L") == {f"{prefix}:l:items"}
            assert connection.lrange(f"{prefix}:l:items", 0, -1) == ['"d"', '"e"']
            sizes = connection.hvals(f"{prefix}:z")
            assert int(connection.hget(f"{prefix}:m", "n")) == sum(map(int, sizes))
            assert int(connection.hget(f"{prefix}:m", "c")) == 3


async def test_each_write_script_declares_only_the_keys_it_may_touch(
    server: ServerProcess,
) -> None:
    """A cluster holds a script back (TRYAGAIN) while any key it declares is missing during
    a slot migration, so the writes declare neither the holders, nor the start lock, nor a
    list key they do not need: seen in the EVALSHA calls the server receives (MONITOR)."""
    async with Node(server.url) as node:
        await node.start(WritePath, "keys")
        with admin(server) as connection, connection.monitor() as monitor:
            await node.increment(WritePath, "keys", "n")
            await node.put(WritePath, "keys", "text", "b")
            await node.append(WritePath, "keys", "items", "y")
            seen: list[list[str]] = []
            while len(seen) < 3:
                command = monitor.next_command()["command"].split()
                if command[0] == "EVALSHA":
                    seen.append([key.split(":")[-1] for key in command[3 : 3 + int(command[2])]])
    increment, put, append = seen
    assert increment == ["m", "s", "z", "k", "w", "v"]
    assert put == ["m", "s", "z", "k", "w", "v"]
    assert append == ["m", "s", "z", "k", "w", "v", "L", "items"]


async def test_a_hash_that_lost_single_fields_is_started_anew_by_the_heartbeat(
    server: ServerProcess,
) -> None:
    """A write does not count the fields of the state and sizes hashes; one field taken out
    of either from outside is found by the heartbeat, and the attached client gets one reset
    to a fresh lifetime within 2 s."""
    async with Node(f"{server.url}?lease=0.5") as node:
        changes: list[Change] = []
        client = await node.attach(WritePath, "fields", on_change=changes.append)
        await client.put("extra", 1)
        before = client.version
        with admin(server) as connection:
            connection.hdel("ls:{WritePath:fields}:s", "extra")
        fresh = {"n": 1, "text": "a", "items": ["x"]}
        await eventually(lambda: dict(client.state) == fresh, within=2.0)
        assert client.version > before and changes[-1].kind == "reset"
        with admin(server) as connection:
            sizes = connection.hvals("ls:{WritePath:fields}:z")
            assert int(connection.hget("ls:{WritePath:fields}:m", "n")) == sum(map(int, sizes))


async def test_long_keys_and_property_names_write_as_short_ones(server: ServerProcess) -> None:
    """A 4,000-character key and a 300-character property name (built each time, not cached,
    past 1,024 characters of keys): every kind of write applies, and the list keys too."""
    key, prop = "k" * 4000, "p" * 300
    async with Node(server.url) as node:
        client = await node.attach(WritePath, key)
        await node.put(WritePath, key, prop, ["a"])
        await node.append(WritePath, key, prop, "b")
        await node.put(WritePath, key, prop, 1)
        assert await node.increment(WritePath, key, prop) == 2
        await node.delete(WritePath, key, prop)
        await node.put(WritePath, key, prop, ["c"])
        await node.delete(WritePath, key, prop)
        assert dict(await node.get(WritePath, key)) == {"n": 1, "text": "a", "items": ["x"]}
        assert dict(client.state) == {"n": 1, "text": "a", "items": ["x"]}
