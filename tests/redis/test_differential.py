"""Differential test: the Redis backend does exactly what the memory backend does."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis as sync_redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livestate import Limits, LiveState, LiveStateError, MemoryBackend, Node
from livestate._acl import Role
from livestate._changes import StateId
from livestate.testing import ServerProcess


class Model(LiveState):
    """Small limits, so size errors come up as often as successes; public callers may only
    read and delete, so denials come up too."""

    acl = {"group": "all", "public": ["read", "delete"]}

    ttl = 5.0
    limits = Limits(max_depth=6, max_value_bytes=120, max_state_bytes=400)

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"log": [1, "two"], "count": 3, "title": "é"}


PROPS = st.sampled_from(["log", "count", "title", "x", "ünï"])  # names count in bytes
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
NUMBERS = st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(
    allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300
)
OPS = st.one_of(
    st.tuples(st.just("put"), PROPS, VALUES),
    st.tuples(st.just("delete"), PROPS),
    st.tuples(st.just("append"), PROPS, VALUES, st.none() | st.integers(1, 4)),
    st.tuples(st.just("increment"), PROPS, NUMBERS),
    st.tuples(st.just("update"), PROPS, VALUES),
    st.tuples(st.just("reset")),
)
# The same calls by a public caller, which the ACL lets read and delete only: the
# denials (and the deletes it may make) must match to the word.
PUBLIC_OPS = st.tuples(
    st.just("public"),
    st.one_of(
        st.tuples(st.just("put"), PROPS, VALUES),
        st.tuples(st.just("delete"), PROPS),
        st.tuples(st.just("update"), PROPS, VALUES),
        st.tuples(st.just("increment"), PROPS, NUMBERS),
        st.tuples(st.just("reset")),
    ),
)


async def perform(node: Node, key: str, op: tuple[Any, ...]) -> object:
    """Run one operation; return its result or the error's type and message."""
    role: Role = "group"
    if op[0] == "public":
        role, op = "public", op[1]
    kind = op[0]
    try:
        if kind == "put":
            await node.put(Model, key, op[1], op[2], role=role)
        elif kind == "delete":
            await node.delete(Model, key, op[1], role=role)
        elif kind == "append":
            await node.append(Model, key, op[1], op[2], max_len=op[3], role=role)
        elif kind == "increment":
            return await node.increment(Model, key, op[1], op[2], role=role)
        elif kind == "update":
            return await node.update(
                Model, key, op[1], lambda old: [old, op[2]], default=0, role=role
            )
        else:
            await node.reset(Model, key, role=role)
    except LiveStateError as error:
        return type(error).__name__, str(error)
    return None


async def compare(url: str, ops: list[tuple[Any, ...]]) -> None:
    key = uuid.uuid4().hex
    async with Node(backend=MemoryBackend()) as memory, Node(url) as redis:
        expected_client = await memory.attach(Model, key)
        actual_client = await redis.attach(Model, key)
        first_expected, first_actual = expected_client.version, actual_client.version
        for op in ops:
            expected = await perform(memory, key, op)
            actual = await perform(redis, key, op)
            assert actual == expected, op
            assert actual_client.state == expected_client.state, op
        assert await redis.get(Model, key) == await memory.get(Model, key)
        # Each lifetime starts at its own clock reading; what follows must agree.
        assert actual_client.version - first_actual == expected_client.version - first_expected
        # repr tells 3 from 3.0, and sees the order of the properties and inside values.
        assert repr(await redis.get(Model, key)) == repr(await memory.get(Model, key))
        assert repr(actual_client.state) == repr(expected_client.state)
        # The size accounting that enforces Limits must agree to the byte, too.
        assert isinstance(memory.backend, MemoryBackend)
        entry = memory.backend._entries[StateId(Model.name, key)]
        with sync_redis.Redis.from_url(url) as admin:
            total = admin.hget(f"ls:{{{Model.name}:{key}}}:m", "n")
        assert total is not None
        assert int(total) == entry.total
        await redis.stop(Model, key)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(OPS | PUBLIC_OPS, max_size=25))
def test_redis_matches_memory(redis_server: ServerProcess, ops: list[tuple[Any, ...]]) -> None:
    """Any sequence of operations gives the same results, errors, state and version on both."""
    asyncio.run(compare(redis_server.url, ops))


@given(a=NUMBERS, b=NUMBERS)
@example(a=-0.0, b=-0.0)  # -0.0 read as `text + 0` in Lua came back as 0.0
@example(a=-0.0, b=0)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_increment_writes_numbers_as_python_does(
    redis_server: ServerProcess, a: float, b: float
) -> None:
    """Incrementing in Lua stores the very number, and text, that Python's a + b gives."""
    asyncio.run(compare(redis_server.url, [("put", "count", a), ("increment", "count", b)]))
