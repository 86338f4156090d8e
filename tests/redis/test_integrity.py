"""What the Redis backend keeps true under server trouble: every error in the tree, nothing
half-written, nothing applied twice, nothing lost to memory pressure or partial eviction."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import redis

from livestate import (
    ActionContext,
    BackendError,
    BackendUnavailableError,
    Change,
    LiveState,
    LiveStateError,
    Node,
    NotFoundError,
    action,
)
from livestate.testing import ServerProcess

from ..support import eventually, in_order
from ..support.proxy import Proxy

LEASE = 0.5


class Kept(LiveState):
    """Short TTL and lease: without renewals its keys would be gone within a second."""

    ttl = 0.5

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "items": ["a"]}


class Listed(Kept):
    """Kept, with an action that writes two list properties at once."""

    @action
    def two_lists(self, ctx: ActionContext) -> None:
        ctx.append("fresh_list", 1)
        ctx.put("other_list", [2])


def admin(server: ServerProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def url(server: ServerProcess, timeout: float = 1.0) -> str:
    return f"{server.url}?timeout={timeout}&lease={LEASE}"


@pytest.mark.server_options("--busy-reply-threshold", "50")
async def test_a_busy_server_is_unavailable_in_the_tree_and_pubsub_survives(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """During a long script: BackendUnavailableError naming BUSY; afterwards all converges,
    and the pub/sub connection was never dropped (no resync reset, no reconnect)."""
    # A lease longer than the script: this test is about errors, not lapsed leases.
    long = f"{server.url}?timeout=0.5&lease=10"
    async with Node(long) as writer, Node(long) as reader:
        changes: list[Change] = []
        client = await reader.attach(Kept, "busy", on_change=changes.append)
        spin = "local t = os.clock() + 0.8 while os.clock() < t do end"
        blocker = threading.Thread(target=lambda: admin(server).eval(spin, 0), daemon=True)
        blocker.start()
        await asyncio.sleep(0.2)  # let the script take the server
        with caplog.at_level(logging.WARNING, logger="livestate"):
            with pytest.raises(BackendUnavailableError, match=r"busy running a long script.*BUSY"):
                await writer.increment(Kept, "busy", "n")
            await asyncio.to_thread(blocker.join, 15)
            await writer.increment(Kept, "busy", "n")
            await eventually(lambda: client.state["n"] == 1, within=2.0)
        assert not [r for r in caplog.records if "pub/sub" in r.getMessage()]
        assert [c.kind for c in changes] == ["updated"]


@pytest.mark.server_options("--maxmemory-policy", "noeviction")
async def test_out_of_memory_refuses_writes_and_keeps_attached_states(
    server: ServerProcess,
) -> None:
    """Out of memory for many leases and TTLs: writes fail with a clear BackendError,
    the attached live state and its acknowledged writes survive, and writes resume after."""
    async with Node(url(server)) as node:
        client = await node.attach(Kept, "full")
        for _ in range(20):
            await client.increment("n")
        with admin(server) as connection:
            used = int(connection.info("memory")["used_memory"])
            connection.config_set("maxmemory", used // 2)
            try:
                with pytest.raises(BackendError, match=r"out of memory \(OOM") as caught:
                    await client.increment("n")
                assert not isinstance(caught.value, BackendUnavailableError)
                # Six times lease + TTL: without lease renewals the keys would expire.
                deadline = time.monotonic() + 6 * (LEASE + Kept.ttl)
                while time.monotonic() < deadline:
                    assert connection.exists("ls:{Kept:full}:m")
                    await asyncio.sleep(0.1)
            finally:
                connection.config_set("maxmemory", 0)
        assert await node.get(Kept, "full", "n") == 20
        assert await client.increment("n") == 21
        assert client.attached and client.state["n"] == 21


async def test_a_replica_answers_readonly_as_unavailable(server: ServerProcess) -> None:
    """Pointed at a replica, a write raises BackendUnavailableError saying it is a replica."""
    replica = ServerProcess(options=("--replicaof", "127.0.0.1", str(server.port))).start()
    node = Node(url(replica, 0.5))
    try:
        with pytest.raises(BackendUnavailableError, match=r"is a replica, not the primary"):
            await node.start(Kept, "ro")
    finally:
        await node.aclose()
        replica.stop()


async def test_a_user_without_permission_is_told_what_to_grant(server: ServerProcess) -> None:
    """A Redis user that may not run scripts gets a BackendError pointing at the docs."""
    with admin(server) as connection:
        connection.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all")
        connection.execute_command("ACL", "SETUSER", "limited", "-script")
    node = Node(f"redis://limited:pw@127.0.0.1:{server.port}/0?timeout=0.5")
    try:
        with pytest.raises(BackendError, match=r"may not do what livestate needs.*NOPERM"):
            await node.start(Kept, "x")
    finally:
        await node.aclose()


async def test_a_missing_password_is_a_login_error(server: ServerProcess) -> None:
    """No password for a server that needs one: BackendError saying to check the login."""
    with admin(server) as connection:
        connection.config_set("requirepass", "secret")
    node = Node(f"{server.url}?timeout=0.5")
    try:
        with pytest.raises(BackendError, match=r"refused livestate's login \(NOAUTH"):
            await node.start(Kept, "x")
    finally:
        await node.aclose()


async def test_a_script_error_is_a_backend_error(server: ServerProcess) -> None:
    """A meta field damaged from outside makes the script fail: a BackendError, not a raw reply."""
    async with Node(url(server)) as node:
        await node.start(Kept, "damaged")
        with admin(server) as connection:
            connection.hset("ls:{Kept:damaged}:m", "mv", "not a number")
        with pytest.raises(BackendError, match=r"refused when livestate tried to write 'n' of"):
            await node.put(Kept, "damaged", "n", 1)


@pytest.mark.parametrize("lost", ["m", "z", "k", "s"])
async def test_a_live_state_missing_one_key_starts_anew(server: ServerProcess, lost: str) -> None:
    """Lose one internal key: reads never fail raw, and attached clients get one reset to a
    fresh lifetime (on_mount's state, a higher version, consistent sizes)."""
    async with Node(url(server)) as node:
        changes: list[Change] = []
        client = await node.attach(Kept, "evicted", on_change=changes.append)
        await client.put("extra", "x" * 50)
        before = client.version
        with admin(server) as connection:
            connection.delete(f"ls:{{Kept:evicted}}:{lost}")
            with pytest.raises(NotFoundError):
                await Node.get(node, Kept, "evicted")
            await eventually(lambda: client.state == {"n": 0, "items": ["a"]}, within=2.0)
            assert client.version > before and changes[-1].kind == "reset"
            sizes = connection.hvals("ls:{Kept:evicted}:z")
            assert int(connection.hget("ls:{Kept:evicted}:m", "n")) == sum(map(int, sizes))
        assert await client.increment("n") == 1
        assert in_order(changes)


@pytest.mark.parametrize("call", ["delete", "reset", "put"])
async def test_a_wrong_type_key_changes_nothing(server: ServerProcess, call: str) -> None:
    """An internal key overwritten with another type: the write changes and publishes
    nothing; the live state is then started anew as a whole."""
    async with Node(url(server)) as node:
        await node.start(Kept, "typed")
        await node.put(Kept, "typed", "extra", 1)
        with admin(server) as connection:
            state_before = connection.hgetall("ls:{Kept:typed}:s")
            version_before = connection.hget("ls:{Kept:typed}:m", "v")
            connection.delete("ls:{Kept:typed}:k")
            connection.set("ls:{Kept:typed}:k", "not a sorted set")
            pubsub = connection.pubsub()
            pubsub.execute_command("SSUBSCRIBE", "ls:{Kept:typed}:c")
            with pytest.raises(NotFoundError):
                if call == "delete":
                    await node.delete(Kept, "typed", "extra")
                elif call == "reset":
                    await node.reset(Kept, "typed")
                else:
                    await node.put(Kept, "typed", "extra", 2)
            assert connection.hgetall("ls:{Kept:typed}:s") == state_before
            assert connection.hget("ls:{Kept:typed}:m", "v") == version_before
            message = pubsub.get_message(timeout=0.2)  # the subscription's confirmation
            assert message is None or message["type"] == "ssubscribe"
            assert pubsub.get_message(timeout=0.2) is None  # and nothing was published
            pubsub.close()
        client = await node.attach(Kept, "typed")
        assert dict(client.state) == {"n": 0, "items": ["a"]}
        assert client.version > int(version_before)


@pytest.mark.parametrize("call", ["put a list", "append", "delete a list", "action"])
async def test_a_damaged_list_set_fails_a_list_write_before_it_writes(
    server: ServerProcess, call: str
) -> None:
    """The set of list keys (:L) overwritten with a string: a write that would touch it fails
    before its first write (no state, sizes, meta or list key written, nothing published),
    and the live state is then started anew as a whole."""
    async with Node(url(server)) as node:
        await node.start(Listed, "typed")
        with admin(server) as connection:
            keys = ["s", "z", "m", "k", "l:fresh_list"]
            before = {key: connection.dump(f"ls:{{Listed:typed}}:{key}") for key in keys}
            version = int(connection.hget("ls:{Listed:typed}:m", "v"))
            connection.delete("ls:{Listed:typed}:L")
            connection.set("ls:{Listed:typed}:L", "not a set")
            pubsub = connection.pubsub()
            pubsub.execute_command("SSUBSCRIBE", "ls:{Listed:typed}:c")
            with pytest.raises(NotFoundError):
                if call == "put a list":
                    await node.put(Listed, "typed", "fresh_list", [1, 2])
                elif call == "append":
                    await node.append(Listed, "typed", "fresh_list", 1)
                elif call == "delete a list":
                    await node.delete(Listed, "typed", "items")
                else:
                    await node.call(Listed, "typed", "two_lists")
            after = {key: connection.dump(f"ls:{{Listed:typed}}:{key}") for key in keys}
            assert after == before
            message = pubsub.get_message(timeout=0.2)  # the subscription's confirmation
            assert message is None or message["type"] == "ssubscribe"
            assert pubsub.get_message(timeout=0.2) is None  # and nothing was published
            pubsub.close()
        client = await node.attach(Listed, "typed")
        assert dict(client.state) == {"n": 0, "items": ["a"]}
        assert client.version > version
        await client.append("fresh_list", 1)  # the new lifetime's list writes work


async def test_a_write_id_cache_written_over_from_outside_heals(server: ServerProcess) -> None:
    """The write-id hashes (:w, :v) are only a cache: overwritten with another type, writes
    and retries still apply once and are published, and the cache is made again."""
    async with Node(url(server)) as node:
        changes: list[Change] = []
        client = await node.attach(Kept, "cache", on_change=changes.append)
        await client.increment("n")
        with admin(server) as connection:
            for suffix in ("w", "v"):
                connection.delete(f"ls:{{Kept:cache}}:{suffix}")
                connection.set(f"ls:{{Kept:cache}}:{suffix}", "not a hash")
            assert await client.increment("n") == 2
            assert connection.type("ls:{Kept:cache}:w") == "hash"
        await eventually(lambda: [c.value for c in changes] == [1, 2])


async def test_a_write_whose_reply_was_lost_is_retried_and_applied_once(
    server: ServerProcess,
) -> None:
    """The network drops the reply to an increment the server applied: livestate retries
    it within its timeout, and its id makes the server answer without applying it again."""
    async with Proxy(server.port) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0?timeout=2") as node:
            client = await node.attach(Kept, "once")
            await client.increment("n")
            proxy.lose_reply_to(b'"increment"')
            assert await client.increment("n") == 2
            assert proxy.lost == 1
            assert await node.get(Kept, "once", "n") == 2
            assert client.state["n"] == 2


async def test_a_read_while_a_message_is_late_leaves_no_client_behind(
    server: ServerProcess,
) -> None:
    """Node A's pub/sub is 50 ms late; A reads the state right after B's write, before the
    write's message arrives. A's client still gets every write, in order (a read once
    made the late message look seen, and the client stayed behind for good)."""
    async with Proxy(server.port, pubsub_delay=0.05) as proxy:
        async with Node(f"redis://127.0.0.1:{proxy.port}/0") as a, Node(url(server)) as b:
            changes: list[Change] = []
            client = await a.attach(Kept, "late", on_change=changes.append)
            await b.increment(Kept, "late", "n")
            await eventually(lambda: client.state["n"] == 1)  # the subscription has settled
            changes.clear()
            for _ in range(20):
                await b.increment(Kept, "late", "n")
                assert (await a.get(Kept, "late"))["n"] >= 2
            await eventually(lambda: client.state["n"] == 21, within=2.0)
            assert [c.kind for c in changes] == ["updated"] * 20
            assert in_order(changes)


async def test_a_restarted_server_never_makes_versions_go_back(server: ServerProcess) -> None:
    """Redis restarted empty, and a node without clients starts the live state first:
    the clients elsewhere get one reset at a version above all they saw."""
    async with Node(url(server, 0.5)) as holder:
        changes: list[Change] = []
        client = await holder.attach(Kept, "reborn", on_change=changes.append)
        for _ in range(5):
            await client.increment("n")
        seen = client.version
        server.kill()
        server.start()
        async with Node(url(server, 0.5)) as starter:
            await starter.start(Kept, "reborn")
            await starter.put(Kept, "reborn", "n", 100)
            await eventually(lambda: client.state.get("n") == 100, within=2.0)
        assert client.version > seen
        assert in_order(changes)


async def test_attach_to_a_paused_server_fails_within_one_timeout(server: ServerProcess) -> None:
    """A server that accepts but never answers: attach gives up after one timeout, not two."""
    async with Node(url(server, 0.5)) as node:
        await node.start(Kept, "warm")
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                await node.attach(Kept, "paused")
            assert time.monotonic() - started < 0.9
        finally:
            server.resume()


async def test_a_silent_pubsub_connection_is_reported_as_silent(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen server: the log says the connection went silent, not that it was closed."""
    async with Node(url(server, 0.3)) as node:
        await node.attach(Kept, "quiet")
        with caplog.at_level(logging.WARNING, logger="livestate"):
            server.pause()
            try:
                await eventually(
                    lambda: any("went silent" in r.getMessage() for r in caplog.records),
                    within=3.0,
                )
            finally:
                server.resume()


async def test_an_unreadable_message_resyncs_only_its_live_state(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged or newer-format message: that live state resyncs; others see no reset."""
    async with Node(url(server)) as node:
        odd: list[Change] = []
        calm: list[Change] = []
        hit = await node.attach(Kept, "odd", on_change=odd.append)
        await node.attach(Kept, "calm", on_change=calm.append)
        with admin(server) as connection:
            # A write in a format this release cannot read, as a newer release would make it.
            connection.hset("ls:{Kept:odd}:s", "n", "7")
            version = connection.hincrby("ls:{Kept:odd}:m", "v", 1)
            epoch = connection.hget("ls:{Kept:odd}:m", "e")
            with caplog.at_level(logging.WARNING, logger="livestate"):
                connection.execute_command(
                    "SPUBLISH", "ls:{Kept:odd}:c", f'{epoch}\n{version}\n["frob"]\n1'
                )
                await eventually(lambda: hit.state["n"] == 7, within=2.0)
        await node.increment(Kept, "calm", "n")
        await eventually(lambda: len(calm) == 1)
        assert [c.kind for c in odd] == ["reset"] and [c.kind for c in calm] == ["updated"]
        assert any("cannot read" in r.getMessage() for r in caplog.records)


async def test_another_releases_layout_is_refused_at_start_and_left_alone(
    server: ServerProcess,
) -> None:
    """Two layout versions side by side: a node refuses a server claimed by another layout,
    saying why; a live state of another layout is neither read, written nor cleared."""
    async with Node(url(server)) as node:
        await node.start(Kept, "ours")
        await node.put(Kept, "ours", "n", 1)
        with admin(server) as connection:
            connection.hset("ls:{Kept:ours}:m", "L", "3")  # as a newer release would write it
            with pytest.raises(BackendError, match=r"in livestate's data layout 3.*layout 2 only"):
                await node.get(Kept, "ours")
            with pytest.raises(BackendError, match=r"data layout 3"):
                await node.put(Kept, "ours", "n", 2)
            with pytest.raises(BackendError, match=r"data layout 3"):
                await node.attach(Kept, "ours")
            assert connection.hget("ls:{Kept:ours}:s", "n") == "1"  # untouched
            connection.set("ls:layout", "3")
    newer = Node(url(server))
    try:
        with pytest.raises(BackendError, match=r"holds live states in livestate's data layout 3"):
            await newer.start(Kept, "x")
    finally:
        await newer.aclose()


async def test_a_spec_declared_otherwise_elsewhere_is_warned_about_once(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A node whose spec of the same name declares another ACL, TTL or limits than the one
    that started the live state logs one warning naming both."""
    async with Node(url(server)) as node:
        await node.start(Kept, "a")
        await node.start(Kept, "b")
        with admin(server) as connection:
            for key in ("a", "b"):  # as a node of another release would have stored them
                connection.hset(f"ls:{{Kept:{key}}}:m", "f", '{"acl":{"group":15,"public":1}}')
        with caplog.at_level(logging.WARNING, logger="livestate"):
            await node.attach(Kept, "a")
            await node.attach(Kept, "b")
        warnings = [r.getMessage() for r in caplog.records if "declares" in r.getMessage()]
        assert len(warnings) == 1
        assert '"public":1' in warnings[0] and '"ttl":0.5' in warnings[0]


def test_every_backend_error_is_a_livestate_error() -> None:
    """The tree: BackendUnavailableError is a BackendError, which is a LiveStateError."""
    assert issubclass(BackendUnavailableError, BackendError)
    assert issubclass(BackendError, LiveStateError)
