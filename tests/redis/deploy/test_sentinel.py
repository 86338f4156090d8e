"""Following the primary through real Sentinels, and a managed endpoint's role change."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from livestate import BackendUnavailableError, LiveStateError
from livestate._backends.redis.resp import Endpoint, ReplyError
from livestate._backends.redis.sentinel import PrimaryPipe, Sentinels, fixed
from livestate._backends.redis.urls import parse_sentinel_url
from livestate.testing import SentinelProcess, ServerProcess, command

from ...support import eventually


@pytest.fixture
async def pipe(sentinel: SentinelProcess) -> AsyncIterator[PrimaryPipe]:
    """A PrimaryPipe that finds the primary through the deployment's Sentinels."""
    service, _ = parse_sentinel_url(sentinel.url, {})
    opened = PrimaryPipe(Sentinels(service, 5.0).primary, 5.0)
    yield opened
    await opened.aclose()


async def test_discovers_the_primary(sentinel: SentinelProcess, pipe: PrimaryPipe) -> None:
    """The Sentinels name the primary; a write through the pipe lands there."""
    assert (await pipe.resolve()).port == sentinel.primary()
    await pipe.call("SET", "greeting", "hello")
    assert command(sentinel.primary(), "GET", "greeting") == "hello"


async def test_writes_resume_after_the_primary_is_killed(
    sentinel: SentinelProcess, pipe: PrimaryPipe
) -> None:
    """The primary is killed under a writer: writes resume on the promoted replica within
    15 s, every error meanwhile is a BackendUnavailableError, and no write that a replica
    had (WAIT) is lost or applied twice."""
    await pipe.call("SET", "count", 0)
    acknowledged = attempted = 0
    errors: list[Exception] = []
    last_success = 0.0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal acknowledged, attempted, last_success
        while not stop.is_set():
            attempted += 1
            try:
                await pipe.call("INCR", "count")
                if await pipe.call("WAIT", 1, 1000) >= 1:
                    acknowledged += 1
                last_success = time.monotonic()
            except LiveStateError as error:
                errors.append(error)

    task = asyncio.create_task(writer())
    try:
        await eventually(lambda: acknowledged > 20)
        killed_at = time.monotonic()
        new = await asyncio.to_thread(sentinel.kill_primary)
        await eventually(lambda: last_success > killed_at + 0.1, within=15.0)
        assert last_success - killed_at < 15.0
    finally:
        stop.set()
        await task
    assert (await pipe.resolve()).port == new
    assert acknowledged <= int(command(new, "GET", "count")) <= attempted
    assert all(isinstance(error, BackendUnavailableError) for error in errors)


async def test_readonly_after_a_failover_moves_to_the_new_primary(
    sentinel: SentinelProcess, pipe: PrimaryPipe
) -> None:
    """The Sentinels fail over and demote the old primary, whose connection stays open:
    the next write gets READONLY there, and the pipe reconnects to the new primary and
    writes there, without an error. A Sentinel watcher hears +switch-master."""
    switches: list[Endpoint] = []
    service, _ = parse_sentinel_url(sentinel.url, {})
    watcher = Sentinels(service, 5.0).watch(switches.append)
    try:
        await pipe.call("SET", "where", "old")
        old, connections = sentinel.primary(), pipe.reconnects
        new = await asyncio.to_thread(sentinel.fail_over)
        assert command(old, "SET", "x", "1").startswith("READONLY")
        await pipe.call("SET", "where", "new")
        assert command(new, "GET", "where") == "new"
        assert pipe.reconnects == connections + 1
        assert pipe.answers["READONLY"] == 1
        await eventually(lambda: any(switch.port == new for switch in switches), within=5.0)
    finally:
        watcher.cancel()


async def test_logins_for_sentinels_and_data_nodes() -> None:
    """Sentinels and data nodes with their own passwords: the URL's two logins work,
    and a wrong Sentinel password fails with a BackendUnavailableError saying so."""
    with SentinelProcess(password="data-pw", sentinel_password="sentinel-pw") as deployment:
        service, _ = parse_sentinel_url(deployment.url, {})
        pipe = PrimaryPipe(Sentinels(service, 2.0).primary, 2.0)
        await pipe.call("SET", "k", "v")
        assert deployment.data(deployment.primary(), "GET", "k") == "v"
        await pipe.aclose()
        wrong, _ = parse_sentinel_url(deployment.url.replace("sentinel-pw", "nope"), {})
        with pytest.raises(BackendUnavailableError, match=r"WRONGPASS|invalid"):
            await Sentinels(wrong, 1.0).primary()


async def test_managed_endpoint_role_change() -> None:
    """A fixed endpoint demoted to a replica: writes fail with BackendUnavailableError
    (never a raw READONLY) within the timeout, and resume when the name points at a
    primary again, here the other server, as a managed service's DNS name would."""
    quick_stop = ("--shutdown-timeout", "0")  # a primary need not wait for its replica
    with ServerProcess(options=quick_stop) as first, ServerProcess(options=quick_stop) as second:
        where = Endpoint("127.0.0.1", first.port)

        async def resolve() -> Endpoint:
            return where

        pipe = PrimaryPipe(resolve, 1.0)
        await pipe.call("SET", "k", "first")
        command(first.port, "REPLICAOF", "127.0.0.1", second.port)
        started = time.monotonic()
        # The last refusal may be READONLY, a ROLE of replica, or LOADING while it syncs.
        took = r"No Redis primary took the command within 1\.0s"
        with pytest.raises(BackendUnavailableError, match=took):
            await pipe.call("SET", "k", "second")
        assert time.monotonic() - started < 1.0 + 1.5  # the timeout, and slack for a loaded machine
        where = dataclasses.replace(where, port=second.port)  # the DNS name moved
        await pipe.call("SET", "k", "second")
        assert command(second.port, "GET", "k") == "second"
        await pipe.aclose()

        fixed_pipe = PrimaryPipe(fixed(Endpoint("127.0.0.1", second.port)), 1.0)
        assert await fixed_pipe.call("GET", "k") == "second"
        await fixed_pipe.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await fixed_pipe.call("GET", "k")


async def test_a_frozen_primary_fails_the_call_within_the_timeout() -> None:
    """A primary frozen (SIGSTOP) mid-call: the call fails with BackendUnavailableError
    saying it may have run, within the timeout; once thawed, calls work again."""
    with ServerProcess() as server:
        pipe = PrimaryPipe(fixed(Endpoint("127.0.0.1", server.port)), 0.5)
        await pipe.call("SET", "k", "1")
        server.pause()
        started = time.monotonic()
        try:
            with pytest.raises(BackendUnavailableError, match="may have run"):
                await pipe.call("SET", "k", "2")
            assert (
                time.monotonic() - started < 0.5 + 1.5
            )  # the timeout, and slack for a loaded machine
        finally:
            server.resume()
        assert await pipe.call("GET", "k") in ("1", "2")
        await pipe.aclose()


async def test_works_with_only_the_listed_commands(sentinel: SentinelProcess) -> None:
    """Users allowed only ROLE (data nodes) and SENTINEL GET-MASTER-ADDR-BY-NAME and
    SUBSCRIBE (Sentinels), plus the command the test writes with, find the primary,
    hear the switch and follow a failover; another command is refused."""
    for port in sentinel.servers:
        command(port, "ACL", "SETUSER", "app", "reset", "on", ">pw", "~*", "-@all",
                "+role", "+incr")  # fmt: skip
    for watcher in sentinel.sentinels:
        command(watcher.port, "ACL", "SETUSER", "watcher", "reset", "on", ">spw", "&*",
                "-@all", "+sentinel|get-master-addr-by-name", "+subscribe")  # fmt: skip
    url = sentinel.url.replace("://", "://app:pw@") + "?sentinel_username=watcher"
    service, _ = parse_sentinel_url(url + "&sentinel_password=spw", {})
    pipe = PrimaryPipe(Sentinels(service, 5.0).primary, 5.0)
    switches: list[Endpoint] = []
    watch = Sentinels(service, 5.0).watch(switches.append)
    try:
        assert await pipe.call("INCR", "n") == 1
        await eventually(lambda: command(sentinel.replica(), "GET", "n") == "1")
        new = await asyncio.to_thread(sentinel.fail_over)
        assert await pipe.call("INCR", "n") == 2
        assert (await pipe.resolve()).port == new
        await eventually(lambda: any(switch.port == new for switch in switches), within=5.0)
        with pytest.raises(ReplyError, match="NOPERM"):
            await pipe.call("GET", "n")
    finally:
        watch.cancel()
        await pipe.aclose()


async def test_a_following_pipe_leaves_on_switch_master(
    sentinel: SentinelProcess, pipe: PrimaryPipe
) -> None:
    """A pipe that follows the Sentinels drops its connection when they announce the new
    primary, so its next write goes there without meeting a READONLY."""
    service, _ = parse_sentinel_url(sentinel.url, {})
    pipe.follow(Sentinels(service, 5.0))
    await pipe.call("SET", "where", "old")
    new = await asyncio.to_thread(sentinel.fail_over)
    await eventually(lambda: pipe.switches == 1, within=5.0)
    await pipe.call("SET", "where", "new")
    assert command(new, "GET", "where") == "new"
    assert pipe.answers["READONLY"] == 0
