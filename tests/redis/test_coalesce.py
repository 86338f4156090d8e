"""Writes coalesced per live state (coalesce.py, lua/many.lua): what one node's concurrent
writes sent in one call keep true, against a real server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from livestate import (
    ActionContext,
    BackendUnavailableError,
    Change,
    LiveState,
    Node,
    PermissionDeniedError,
    StartedAnewError,
    StateTooLargeError,
    action,
)
from livestate._backends.redis.coalesce import Coalescer
from livestate.backends import Applied, Op, StateId
from livestate.testing import ServerProcess

from ..support import eventually, in_order
from ..support.proxy import Proxy


class Board(LiveState):
    """The public may read only; a group client may write; values are small."""

    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "items": [], "text": "a"}


def admin(server: ServerProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def calls(server: ServerProcess) -> int:
    """EVALSHA calls since the server's stats were last reset."""
    stats: dict[str, Any] = admin(server).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def put(prop: str, value: Any, **fields: Any) -> Op:
    text = json.dumps(value)
    return Op("put", prop, value, text, len(text), **fields)


def increment(prop: str, by: int = 1, **fields: Any) -> Op:
    return Op("increment", prop, by, str(by), len(str(by)), **fields)


def append(prop: str, item: str, **fields: Any) -> Op:
    text = json.dumps(item)
    return Op("append", prop, item, text, len(text), **fields)


@pytest.fixture
def subscriber(server: ServerProcess) -> Iterator[Any]:
    """A bare subscriber of live state Board 'b''s channel on the server."""
    with admin(server) as connection:
        pubsub = connection.pubsub()
        pubsub.ssubscribe("ls:{Board:b}:c")
        pubsub.get_sharded_message(timeout=1.0)  # the confirmation
        yield pubsub
        pubsub.close()


def messages(pubsub: Any) -> list[list[tuple[int, str]]]:
    """The writes of each message published so far, as received: (version, head) of each
    (a call that applied several publishes them in one message, lua/write.lua's `announce`)."""
    seen = []
    while (message := pubsub.get_sharded_message(timeout=0.2)) is not None:
        if message["type"] != "smessage":
            continue
        _, first, rest = message["data"].split("\n", 2)
        if rest.startswith("["):  # one write (not the live state's start)
            seen.append([(int(first), rest.split("\n", 1)[0])])
        elif rest.startswith("many\n"):  # several: head, clock and value of each
            lines = rest.split("\n")[1:]
            heads = lines[::3]
            assert len(lines) == 3 * len(heads) and len(heads) > 1
            seen.append([(int(first) + n, head) for n, head in enumerate(heads)])
    return seen


def published(pubsub: Any) -> list[tuple[int, str]]:
    """(version, head) of each write published so far, in the order received."""
    return [write for message in messages(pubsub) for write in message]


async def test_a_batch_with_writes_refused_applies_the_others_and_reports_each(
    server: ServerProcess, subscriber: Any
) -> None:
    """Writes made in one loop turn go in one call: the one the ACL denies, the one too
    large and the one fenced to another lifetime are refused, each with its own error, and
    the others are applied, each at its own version, in the order they were made, and
    published in one message."""
    async with Node(server.url) as node:
        await node.start(Board, "b")
        id = StateId("Board", "b")
        snapshot = await node.backend.read(id)
        assert snapshot is not None
        before = snapshot.version
        admin(server).config_resetstat()
        writes: list[tuple[Op, Any]] = [
            (increment("n"), "group"),
            (increment("n", 2), "group"),
            (put("text", "b"), "public"),  # denied: the public may only read
            (put("big", "x" * 2_000_000), "group"),  # above max_value_bytes
            (increment("n", 4, epoch="an-ended-lifetime"), "group"),
            (put("text", "c"), "group"),
            (append("items", "i"), "group"),
        ]
        results = await asyncio.gather(
            *(node.backend.apply(id, op, role) for op, role in writes), return_exceptions=True
        )
        assert calls(server) == 1  # all seven in one call
        assert isinstance(results[2], PermissionDeniedError)
        assert isinstance(results[3], StateTooLargeError)
        assert isinstance(results[4], StartedAnewError)
        applied = [results[i] for i in (0, 1, 5, 6)]
        assert all(isinstance(result, Applied) for result in applied), results
        versions = [result.version for result in applied]  # type: ignore[union-attr]
        assert versions == list(range(before + 1, before + 5))
        assert [result.value for result in applied[:2]] == [1, 3]  # type: ignore[union-attr]
        assert await node.get(Board, "b") == {"n": 3, "items": ["i"], "text": "c"}
        assert messages(subscriber) == [  # the four applied, in one message
            [
                (before + 1, '["increment","n",null]'),
                (before + 2, '["increment","n",null]'),
                (before + 3, '["put","text",null]'),
                (before + 4, '["append","items",null]'),
            ]
        ]


async def test_a_batch_deleting_a_list_keeps_the_order(server: ServerProcess) -> None:
    """A delete queued with others finds its property is a list, whose keys the call did not
    declare: it and the writes after it are sent again, alone and in order, each applied
    once, so none overtakes it."""
    async with Node(server.url) as node:
        client = await node.attach(Board, "b")
        id = StateId("Board", "b")
        writes = [increment("n"), increment("n"), Op("delete", "items"), increment("n")]
        results = await asyncio.gather(*(node.backend.apply(id, op, "group") for op in writes))
        first = results[0].version
        assert [result.version - first for result in results] == [0, 1, 2, 3]
        assert await node.get(Board, "b") == {"n": 3, "text": "a"}
        await eventually(lambda: client.state == {"n": 3, "text": "a"})


async def test_a_reply_lost_mid_batch_is_retried_and_each_write_applied_once(
    server: ServerProcess, subscriber: Any
) -> None:
    """The connection drops after the server ran a batch and before its reply came back:
    the call is retried with the same write ids, the server answers each from what it
    kept, and every write is reported applied, once, at the version it got the first time."""
    async with Proxy(server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?timeout=3") as node:
            await node.start(Board, "b")
            id = StateId("Board", "b")
            assert published(subscriber) == []
            proxy.lose_reply_to(b'"item-3"')
            items = [f"item-{i}" for i in range(6)]
            results = await asyncio.gather(
                *(node.backend.apply(id, append("items", item), "group") for item in items)
            )
            assert proxy.lost == 1
            assert [result.repeated for result in results] == [True] * 6  # all in that call
            versions = [result.version for result in results]
            assert versions == list(range(versions[0], versions[0] + 6))
            with admin(server) as connection:
                stored = [
                    json.loads(text) for text in connection.lrange("ls:{Board:b}:l:items", 0, -1)
                ]
            assert stored == items
            assert [version for version, _ in published(subscriber)] == versions


async def test_a_batch_cut_off_is_reported_unknown_and_applied_at_most_once(
    server: ServerProcess,
) -> None:
    """The network holds every byte while writes are in flight and queued, past the
    timeout: each write raises BackendUnavailableError that says it may have happened;
    once the network is back, whatever reached the server was applied at most once."""
    async with Proxy(server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?timeout=0.5") as node:
            await node.start(Board, "b")
            id = StateId("Board", "b")
            proxy.cut()
            items = [f"item-{i}" for i in range(6)]
            results = await asyncio.gather(
                *(node.backend.apply(id, append("items", item), "group") for item in items),
                return_exceptions=True,
            )
            assert all(isinstance(result, BackendUnavailableError) for result in results)
            assert all("may" in str(result) for result in results), results
            proxy.mend()
            await node.increment(Board, "b", "n", role="group")  # the network works again
            with admin(server) as connection:
                key = "ls:{Board:b}:l:items"

                def stored() -> list[str]:
                    return [json.loads(text) for text in connection.lrange(key, 0, -1)]

                # What was held reaches the server now, retries included, and the proxy
                # closes each dead connection after it: then only the node's two and ours.
                await eventually(lambda: len(connection.client_list()) == 3)
                for item in items:
                    assert stored().count(item) <= 1
                assert all(item in items for item in stored())


async def test_concurrent_writers_keep_their_order_and_another_node_sees_every_change(
    server: ServerProcess,
) -> None:
    """16 writers on one node, each appending its own numbered items one after another:
    their writes share calls, each writer's items land in the order it made them, and the
    clients of another node see every change once, in version order."""
    async with Node(server.url) as writer, Node(server.url) as reader:
        changes: list[Change] = []
        watcher = await reader.attach(Board, "b", on_change=changes.append)
        clients = [await writer.attach(Board, "b") for _ in range(16)]
        admin(server).config_resetstat()

        async def write(w: int) -> None:
            for i in range(25):
                await clients[w].append("items", f"{w}:{i}")

        await asyncio.wait_for(asyncio.gather(*(write(w) for w in range(16))), 20)
        assert calls(server) < 16 * 25 / 2  # most calls carried several writes
        items = (await writer.get(Board, "b"))["items"]
        assert len(items) == 16 * 25
        for w in range(16):
            assert [item for item in items if item.startswith(f"{w}:")] == [
                f"{w}:{i}" for i in range(25)
            ]
        await eventually(lambda: len(watcher.state["items"]) == 16 * 25, within=5.0)
        assert [change.value[-1] for change in changes] == items  # each the whole list
        assert in_order(changes)
        assert all(client.state["items"] == items for client in clients)


async def test_a_write_cancelled_before_its_call_leaves_is_not_sent_and_the_others_are(
    server: ServerProcess,
) -> None:
    """The first of three writes made in one loop turn is cancelled while the turn's writes
    gather: it is never applied, and the two others go, in their order."""
    async with Node(server.url) as node:
        await node.start(Board, "b")
        id = StateId("Board", "b")
        tasks = [
            asyncio.create_task(node.backend.apply(id, append("items", item), "group"))
            for item in ("first", "second", "third")
        ]
        await asyncio.sleep(0)  # each task has made its write; the first waits for the others
        tasks[0].cancel()
        second, third = await asyncio.gather(*tasks[1:])
        assert third.version == second.version + 1
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        assert (await node.get(Board, "b"))["items"] == ["second", "third"]


class Open(LiveState):
    """The public may write too."""

    acl = {"group": "all", "public": ["read", "write"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_a_batch_shares_the_meta_hash_across_roles_and_leaves_it_exact(
    server: ServerProcess,
) -> None:
    """The writes of one call read the meta hash once per role and write it back at the
    end: group and public writes interleaved in one call, adding properties, each get the
    next version, and the meta hash then counts exactly the state's version, bytes and
    properties, as a read on another node finds it."""
    async with Node(server.url) as node:
        await node.start(Open, "o")
        id = StateId("Open", "o")
        admin(server).config_resetstat()
        writes: list[tuple[Op, Any]] = [
            (increment("n"), "group"),
            (put("a", "x"), "public"),
            (increment("n", 5), "public"),
            (put("a", "longer"), "group"),
            (put("b", [1, 2]), "group"),
        ]
        results = await asyncio.gather(*(node.backend.apply(id, op, role) for op, role in writes))
        assert calls(server) == 1
        first = results[0].version
        assert [result.version for result in results] == list(range(first, first + 5))
        assert results[2].value == 6
        with admin(server) as connection:
            meta = connection.hgetall("ls:{Open:o}:m")
            sizes = connection.hgetall("ls:{Open:o}:z")
        assert int(meta["v"]) == first + 4
        assert int(meta["c"]) == 3 == len(sizes)
        assert int(meta["n"]) == sum(int(size) for size in sizes.values())
    async with Node(server.url) as other:
        assert await other.get(Open, "o") == {"n": 6, "a": "longer", "b": [1, 2]}


async def test_one_write_id_twice_in_one_batch_is_applied_once(
    server: ServerProcess, subscriber: Any
) -> None:
    """A caller's write id used by two writes that go in one call: the second is answered
    with the first one's reply, as a retry is, and applied and published once."""
    async with Node(server.url) as node:
        await node.start(Board, "b")
        id = StateId("Board", "b")
        admin(server).config_resetstat()
        ops = [increment("n", 2, write_id="w-1"), increment("n", 2, write_id="w-1")]
        first, second = await asyncio.gather(*(node.backend.apply(id, op, "group") for op in ops))
        assert calls(server) == 1
        assert (first.repeated, second.repeated) == (False, True)
        assert (second.version, second.value) == (first.version, 2)
        assert (await node.get(Board, "b"))["n"] == 2
        assert published(subscriber) == [(first.version, '["increment","n",null]')]
        with admin(server) as connection:  # the reply is kept for a retry in a later call
            assert connection.hget("ls:{Board:b}:w", "u:w-1") == f"{first.version}\n" + (
                connection.hget("ls:{Board:b}:m", "e") + "\n2"
            )


async def test_a_message_of_several_writes_cut_short_is_not_applied_in_part(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A message of several writes that lacks a line (damaged, or from another release):
    the node applies none of it and loads the live state anew, so its clients never show
    half of it."""
    async with Node(server.url) as node:
        changes: list[Change] = []
        client = await node.attach(Board, "b", on_change=changes.append)
        with admin(server) as connection:
            connection.hset("ls:{Board:b}:s", "n", "2")
            version = connection.hincrby("ls:{Board:b}:m", "v", 2) - 1
            epoch = connection.hget("ls:{Board:b}:m", "e")
            head = '["increment","n",null]'
            with caplog.at_level(logging.WARNING, logger="livestate"):
                connection.execute_command(
                    "SPUBLISH",
                    "ls:{Board:b}:c",
                    f"{epoch}\n{version}\nmany\n{head}\n1\n1\n{head}\n1",
                )
                await eventually(lambda: client.state["n"] == 2, within=2.0)
        assert [change.kind for change in changes] == ["reset"]
        assert any("cannot read" in record.getMessage() for record in caplog.records)


class Scored(LiveState):
    """Actions that write several properties at once."""

    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"a": 0, "b": 0, "log": []}

    @action
    def score(self, ctx: ActionContext, by: int) -> None:
        ctx.increment("a", by)
        ctx.increment("b", -by)
        ctx.append("log", by)


async def test_an_action_is_published_in_one_message_and_another_node_sees_each_change(
    server: ServerProcess,
) -> None:
    """An action's writes (all or none, lua/batch.lua) go out in one message: a client on
    another node gets each of its changes, in version order, and the same state."""
    async with Node(server.url) as writer, Node(server.url) as reader:
        changes: list[Change] = []
        watcher = await reader.attach(Scored, "s", on_change=changes.append)
        client = await writer.attach(Scored, "s")
        with admin(server) as connection:
            pubsub = connection.pubsub()
            pubsub.ssubscribe("ls:{Scored:s}:c")
            pubsub.get_sharded_message(timeout=1.0)
            await client.call("score", {"by": 3})
            sent = messages(pubsub)
            pubsub.close()
        assert [[head for _, head in message] for message in sent] == [
            ['["increment","a",null]', '["increment","b",null]', '["append","log",null]']
        ]
        await eventually(lambda: watcher.state == {"a": 3, "b": -3, "log": [3]})
        assert [change.prop for change in changes] == ["a", "b", "log"]
        assert in_order(changes)


async def test_a_call_sent_after_one_not_applied_whole_waits_for_it_and_keeps_the_order(
    server: ServerProcess,
) -> None:
    """16 writes made in one turn go as two calls, the second sent while the first is in
    flight. The first finds a delete of a list and leaves it and the writes after it to be
    sent again alone: the server holds the second call back, and it goes again once the
    first returned, so every write is applied in the order it was made."""
    async with Node(server.url) as node:
        await node.start(Board, "b")
        id = StateId("Board", "b")
        writes = [append("items", "0"), Op("delete", "items")]
        writes += [append("items", str(n)) for n in range(2, 16)]
        results = await asyncio.gather(*(node.backend.apply(id, op, "group") for op in writes))
        first = results[0].version
        assert [result.version - first for result in results] == list(range(16))
        assert (await node.get(Board, "b"))["items"] == [str(n) for n in range(2, 16)]


async def test_two_calls_in_flight_are_named_in_order(server: ServerProcess) -> None:
    """A call named after a call the server never applied is held back with nothing
    applied, and one named after a call applied whole goes ahead."""
    async with Node(server.url) as node:
        await node.start(Board, "b")
        id = StateId("Board", "b")
        backend: Any = node.backend
        ops = [(increment("n"), "group"), (increment("n"), "group")]
        assert await backend._apply_together(id, ops, 2, 1) is None  # call 1 never ran
        assert (await node.get(Board, "b"))["n"] == 0
        applied = await backend._apply_together(id, ops, 1, None)
        assert [result.value for result in applied] == [1, 2]
        applied = await backend._apply_together(id, ops, 2, 1)
        assert [result.value for result in applied] == [3, 4]


class Calls:
    """A stand-in for the backend's two send functions: records each call and holds it
    until the test releases it; each write's result is its value doubled, and the server
    holds back the calls `held` names (by their place in `sent`)."""

    def __init__(self, held: frozenset[int] = frozenset()) -> None:
        self.sent: list[tuple[str, list[int], int | None, int | None]] = []
        self.gates: list[asyncio.Event] = []
        self.held = held

    async def alone(self, id: StateId, write: int) -> int:
        await self._call("alone", [write], None, None)
        return 2 * write

    async def together(
        self, id: StateId, writes: Sequence[int], number: int | None, after: int | None
    ) -> list[int | BaseException] | None:
        if await self._call("together", list(writes), number, after) in self.held:
            return None
        return [2 * write for write in writes]

    async def _call(
        self, kind: str, writes: list[int], number: int | None, after: int | None
    ) -> int:
        place = len(self.sent)
        self.sent.append((kind, writes, number, after))
        self.gates.append(asyncio.Event())
        await self.gates[place].wait()
        return place

    async def release(self, place: int) -> None:
        """Let call `place` return, once it was sent."""
        await eventually(lambda: len(self.gates) > place)
        self.gates[place].set()


async def turns(count: int = 20) -> None:
    """Let the event loop run `count` turns: whatever was due to happen now has."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_sixteen_writes_go_as_two_calls_in_flight_the_second_named_after_the_first() -> None:
    """16 writes made in one turn, nothing in flight: two calls of 8, both sent before
    either returns, the second named after the first; each writer gets its own result."""
    calls = Calls()
    coalescer: Coalescer[int, int] = Coalescer(calls.alone, calls.together)
    id = StateId("S", "k")
    writes = [asyncio.create_task(coalescer.write(id, n)) for n in range(16)]
    await eventually(lambda: len(calls.sent) == 2)
    (_, first, one, none), (_, second, two, after) = calls.sent
    assert (first, second) == (list(range(8)), list(range(8, 16)))
    assert none is None and after == one and two != one
    await calls.release(0)
    await calls.release(1)
    assert await asyncio.gather(*writes) == [2 * n for n in range(16)]


async def test_a_call_held_back_goes_again_once_the_call_before_it_returned() -> None:
    """The server holds the second call back (the first was not applied yet): it is sent
    again only after the first returned, named after nothing, and its writers get the
    results of that second sending."""
    calls = Calls(held=frozenset({1}))
    coalescer: Coalescer[int, int] = Coalescer(calls.alone, calls.together)
    id = StateId("S", "k")
    writes = [asyncio.create_task(coalescer.write(id, n)) for n in range(16)]
    await calls.release(1)  # held back, while the first is still in flight
    await turns()
    assert len(calls.sent) == 2  # not again before the first returned
    await calls.release(0)
    await calls.release(2)
    assert calls.sent[2] == ("together", list(range(8, 16)), calls.sent[1][2], None)
    assert await asyncio.gather(*writes) == [2 * n for n in range(16)]


async def test_a_write_that_goes_alone_waits_for_every_call_in_flight() -> None:
    """A write that cannot be named on the server (one going alone), queued while two
    calls are in flight, is sent only once both returned."""
    calls = Calls()
    coalescer: Coalescer[int, int] = Coalescer(calls.alone, calls.together)
    id = StateId("S", "k")
    writes = [asyncio.create_task(coalescer.write(id, n)) for n in range(16)]
    await eventually(lambda: len(calls.sent) == 2)
    last = asyncio.create_task(coalescer.write(id, 99, shared=False))
    await calls.release(0)
    await asyncio.gather(*writes[:8])
    await turns()
    assert len(calls.sent) == 2  # the second call is still in flight
    await calls.release(1)
    await calls.release(2)
    assert calls.sent[2] == ("alone", [99], None, None)
    assert await last == 198
    assert await asyncio.gather(*writes) == [2 * n for n in range(16)]


async def test_two_calls_in_flight_through_dropped_connections_keep_each_writers_order(
    server: ServerProcess,
) -> None:
    """32 writers append their own numbered items (two calls in flight) while the
    connection is dropped three times: every item acknowledged is stored, none twice,
    and each writer's items are stored in the order it made them."""
    async with Proxy(server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?timeout=2") as node:
            await node.start(Board, "b")
            id = StateId("Board", "b")
            acknowledged: set[str] = set()
            made = 0
            opened = admin(server).info("stats")["total_connections_received"]

            async def write(w: int) -> None:
                nonlocal made
                for i in range(40):
                    item = f"{w}:{i}"
                    made += 1
                    try:
                        await node.backend.apply(id, append("items", item), "group")
                    except BackendUnavailableError:
                        continue  # unknown: stored at most once, in its place
                    acknowledged.add(item)

            writers = asyncio.gather(*(write(w) for w in range(32)))
            for drop in (200, 500, 800):
                await eventually(lambda: made >= drop, within=10.0)  # noqa: B023
                proxy.sever()
            await asyncio.wait_for(writers, 30)
        with admin(server) as connection:
            # Each drop made the node connect again (its calls went again, marked retries).
            assert connection.info("stats")["total_connections_received"] >= opened + 3
            stored = [json.loads(text) for text in connection.lrange("ls:{Board:b}:l:items", 0, -1)]
    assert len(stored) == len(set(stored))
    assert acknowledged <= set(stored)
    assert len(acknowledged) > 32 * 40 / 2  # most went through
    for w in range(32):
        mine = [int(item.split(":")[1]) for item in stored if item.startswith(f"{w}:")]
        assert mine == sorted(mine)
