"""The Redis backend's own connections: URLs, login, databases, Unix sockets, pipelining."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from livestate import BackendError, BackendUnavailableError, InvalidValueError, LiveState, Node
from livestate._backends.redis.resp import Endpoint
from livestate._backends.redis.urls import parse_url
from livestate.testing import ServerProcess

SETTINGS = {"timeout": 2.0, "lease": 5.0}


class Tally(LiveState):
    """A counter, to see where writes land."""

    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://", Endpoint()),
        ("redis://example.com", Endpoint(host="example.com")),
        ("redis://example.com:7000/3", Endpoint(host="example.com", port=7000, db=3)),
        ("valkey://:p%40ss@h:1/2", Endpoint(host="h", port=1, password="p@ss", db=2)),
        ("redis://al:pw@h?db=4", Endpoint(host="h", username="al", password="pw", db=4)),
        ("redis://h?client_name=web-1", Endpoint(host="h", client_name="web-1")),
        ("unix:///run/valkey.sock?db=5", Endpoint(path="/run/valkey.sock", db=5)),
    ],
)
def test_a_url_names_its_endpoint(url: str, expected: Endpoint) -> None:
    """Host, port, database, user, password, client name and socket path come from the URL."""
    endpoint, settings = parse_url(url, SETTINGS)
    assert endpoint == expected
    assert settings == SETTINGS


def test_livestate_settings_come_out_of_the_query() -> None:
    """timeout and lease are read as numbers of seconds, apart from the endpoint."""
    endpoint, settings = parse_url("redis://h/1?timeout=0.5&lease=2", SETTINGS)
    assert settings == {"timeout": 0.5, "lease": 2.0}
    assert endpoint == Endpoint(host="h", db=1)


def test_rediss_makes_a_verifying_tls_context() -> None:
    """rediss:// verifies the server by default; ssl_cert_reqs=none turns that off."""
    strict, _ = parse_url("rediss://h", SETTINGS)
    assert strict.tls is not None
    assert strict.tls.verify_mode == ssl.CERT_REQUIRED
    assert strict.tls.check_hostname
    lax, _ = parse_url("valkeys://h?ssl_cert_reqs=none", SETTINGS)
    assert lax.tls is not None
    assert lax.tls.verify_mode == ssl.CERT_NONE
    assert not lax.tls.check_hostname


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis://h?socket_timeout=1", "'socket_timeout'"),
        ("http://h", "redis://"),
        ("redis://h/zero", "'zero'"),
        ("redis://h?timeout=soon", "'soon'"),
        ("rediss://h?ssl_cert_reqs=maybe", "'maybe'"),
    ],
)
def test_a_url_livestate_cannot_use_is_refused_by_name(url: str, names: str) -> None:
    """An unknown parameter, scheme, database or setting raises InvalidValueError naming it."""
    with pytest.raises(InvalidValueError, match=names):
        Node(url)


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/s"],
)
async def test_a_backend_used_before_start_says_so(url: str) -> None:
    """Whatever is asked of a RedisBackend before start(), the same RuntimeError says how
    to use it, and nothing is sent anywhere."""
    from livestate._backends.redis import RedisBackend
    from livestate._changes import Op, StateId

    backend = RedisBackend(url)
    id = StateId("Tally", "early")

    async def mount() -> Any:
        raise AssertionError("on_mount ran before start()")

    calls = [
        backend.open(id, mount, "n1", hold=True),
        backend.read(id),
        backend.apply(id, Op("put", "n", 1), "group"),
        backend.announce(id, "typing", True),
        backend.subscribe(id, Tally),  # type: ignore[arg-type]  # never reached
        backend.survey(),
        backend.claim_save(id, "n1", 5.0),
        backend.orphans(10),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"used before start\(\); use it through a Node"):
            await call
    await backend.unsubscribe(id, Tally)  # type: ignore[arg-type]  # nothing to undo: no error
    await backend.aclose()


async def test_a_user_logs_in_and_writes_to_its_database(redis_server: ServerProcess) -> None:
    """With user, password and /db in the URL, writes land in that database under that login."""
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.execute_command("ACL", "SETUSER", "tally", "on", ">s3cret", "~*", "&*", "+@all")
        admin.select(7)
        admin.flushdb()
        try:
            async with Node(f"redis://tally:s3cret@127.0.0.1:{redis_server.port}/7") as node:
                await node.start(Tally, "db7")
                assert await node.increment(Tally, "db7", "n") == 1
            assert admin.keys("ls:{Tally:db7}:*")
            admin.select(0)
            assert not admin.keys("ls:{Tally:db7}:*")
        finally:
            admin.execute_command("ACL", "DELUSER", "tally")


async def test_a_wrong_password_says_to_check_the_login(redis_server: ServerProcess) -> None:
    """A refused login raises BackendError quoting the server and naming what to check."""
    node = Node(f"redis://nobody:wrong@127.0.0.1:{redis_server.port}/0")
    try:
        with pytest.raises(
            BackendError, match=r"refused livestate's login \(WRONGPASS.*check the username"
        ) as caught:
            await node.get(Tally, "x")
        assert not isinstance(caught.value, BackendUnavailableError)  # retrying will not help
    finally:
        await node.aclose()


async def test_a_unix_socket_serves_like_tcp(tmp_path: Path) -> None:
    """unix:// reaches a server on its socket file; writes are seen by a client there."""
    path = tmp_path / "valkey.sock"
    with ServerProcess(options=("--unixsocket", str(path), "--unixsocketperm", "700")):
        async with Node(f"unix://{path}") as node:
            client = await node.attach(Tally, "sock")
            await node.increment(Tally, "sock", "n", 5)
            assert client.state["n"] == 5


async def test_concurrent_calls_get_their_own_replies(redis_server: ServerProcess) -> None:
    """500 increments made at once, pipelined on one connection, each get a distinct result."""
    key = uuid.uuid4().hex
    async with Node(redis_server.url) as node:
        await node.start(Tally, key)
        results = await asyncio.gather(*(node.increment(Tally, key, "n") for _ in range(500)))
        assert sorted(results) == list(range(1, 501))
        assert await node.get(Tally, key, "n") == 500
