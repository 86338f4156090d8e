"""Fixtures: a real Valkey/Redis server, and nodes on each backend for the contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import livestate
from livestate import MemoryBackend, Node
from livestate.testing import ServerProcess

from .support import MakeNode, node_maker


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server of the test's own, which it may kill, restart or pause (options from a
    `server_options` mark); stopped by its PID."""
    mark = request.node.get_closest_marker("server_options")
    with ServerProcess(options=mark.args if mark else ()) as process:
        yield process


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """One real server for the session, on a free loopback port, stopped by its PID."""
    with ServerProcess() as server:
        yield server


SHORT_LEASE = 1.0
"""Seconds a node's hold lasts in tests that kill nodes (the default is 5)."""


@pytest.fixture
def lease_url(redis_server: ServerProcess) -> Iterator[str]:
    """The session server, emptied, with a short lease (SHORT_LEASE)."""
    import redis

    with redis.Redis.from_url(redis_server.url) as connection:
        connection.flushall()
    yield f"{redis_server.url}?lease={SHORT_LEASE}"


@pytest.fixture(params=[pytest.param("memory", id="memory"), pytest.param("redis", id="redis")])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each contract test runs once per backend."""
    name: str = request.param
    return name


@pytest.fixture
async def make_node(backend_name: str, request: pytest.FixtureRequest) -> AsyncIterator[MakeNode]:
    """Makes nodes that share one backend: one MemoryBackend object, or one empty server."""
    if backend_name == "memory":
        shared = MemoryBackend()

        def new() -> Node:
            return Node(backend=shared)
    else:
        import redis

        server: ServerProcess = request.getfixturevalue("redis_server")
        with redis.Redis.from_url(server.url) as connection:
            connection.flushall()

        def new() -> Node:
            return Node(server.url)

    async with node_maker(new) as make:
        yield make


@pytest.fixture
async def node(make_node: MakeNode) -> AsyncIterator[Node]:
    """A node on the backend under test, current for the LiveState class methods."""
    node = await make_node()
    with livestate.use(node):
        yield node


@pytest.fixture
async def memory_node() -> AsyncIterator[Node]:
    """A fresh in-memory node, current for the LiveState class methods."""
    async with Node("memory://") as node:
        with livestate.use(node):
            yield node
