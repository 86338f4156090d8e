"""The backend contract, run against both backends: livestate.testing's CONTRACT (what any
backend must do, shipped for backend authors as `check_backend`), and what only the
public API's class methods show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import livestate
from livestate import Change, LiveState, NotFoundError
from livestate._changes import StateId
from livestate.backends import Backend
from livestate.testing import CONTRACT, check_backend, run_check

from ..support import eventually


class ContractRoom(LiveState):
    ttl = 30.0

    async def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": [], "title": f"ContractRoom {key}"}


@pytest.mark.parametrize("check", CONTRACT)
async def test_the_backend_keeps_the_contract(
    check: str, backend_name: str, request: pytest.FixtureRequest
) -> None:
    """Each check of the shipped contract holds on this backend, with fresh nodes on one
    deployment (its docstring says what it checks)."""
    await run_check(CONTRACT[check], new_node(backend_name, request))


def new_node(backend_name: str, request: pytest.FixtureRequest) -> Callable[[], livestate.Node]:
    """Makes nodes that share one backend: one MemoryBackend object, or one emptied server."""
    if backend_name == "memory":
        shared = livestate.MemoryBackend()
        return lambda: livestate.Node(backend=shared)
    import redis

    server = request.getfixturevalue("redis_server")
    with redis.Redis.from_url(server.url) as connection:
        connection.flushall()
    return lambda: livestate.Node(server.url)


async def test_check_backend_names_every_check_a_backend_breaks() -> None:
    """check_backend itself: a backend that forgets the version fences fails, with the
    check's name and what it checks in the error (so the shipped suite can fail)."""

    class Careless(livestate.MemoryBackend):
        async def apply(self, id: StateId, op: Any, role: Any) -> Any:
            return await super().apply(id, op._replace(epoch=None, expect=None), role)

    shared: Backend = Careless()
    with pytest.raises(AssertionError, match=r"the_backend_fences_and_conditions_writes"):
        await check_backend(lambda: livestate.Node(backend=shared))


async def test_on_mount_failure_leaves_nothing_running(node: livestate.Node) -> None:
    """When on_mount raises, attach raises it and no live state, replica or hold remains."""

    class ContractBroken(LiveState):
        def on_mount(self, key: str) -> dict[str, Any]:
            raise ConnectionError("database down")

    with pytest.raises(ConnectionError, match="database down"):
        await ContractBroken.attach("x")
    with pytest.raises(NotFoundError):
        await ContractBroken.get("x")
    assert node._replicas == {}


async def test_a_tuple_is_stored_as_a_list(node: livestate.Node) -> None:
    """Tuples are accepted and come back as lists."""
    await ContractRoom.start("t")
    await ContractRoom.put("t", "pair", (1, (2, 3)))
    assert await ContractRoom.get("t", "pair") == [1, [2, 3]]


async def test_detach_is_idempotent_and_async_with_detaches(node: livestate.Node) -> None:
    """Leaving an `async with` detaches; detaching again does nothing."""
    async with await ContractRoom.attach("d") as client:
        pass
    assert not client.attached
    await client.detach()


async def lose(node: livestate.Node, spec: type[LiveState], key: str) -> None:
    """Make the backend forget a live state without telling anyone, as a Redis restart would."""
    if isinstance(node.backend, livestate.MemoryBackend):
        del node.backend._entries[StateId(spec.name, key)]
    else:
        import redis.asyncio

        async with redis.asyncio.Redis.from_url(node.url) as connection:
            await connection.flushall()


async def test_a_live_state_lost_under_attached_clients_starts_anew(node: livestate.Node) -> None:
    """A client's write to a live state the backend lost runs on_mount, resets, then succeeds."""
    seen: list[Change] = []
    async with await ContractRoom.attach("lost", on_change=seen.append) as client:
        await client.put("x", 1)
        await lose(node, ContractRoom, "lost")
        await client.put("y", 2)
        assert "x" not in client.state and client.state["y"] == 2
        assert client.state["title"] == "ContractRoom lost"
        await eventually(lambda: seen[-1].prop == "y")
    kinds = [change.kind for change in seen]
    assert kinds[0] == "new" and "reset" in kinds and kinds[-1] == "new"
