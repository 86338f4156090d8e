"""A primary, a replica and three Sentinels watching them, for failover tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

from ._servers import ServerProcess, Started, command, expect_ok, free_ports, wait_until
from ._tls import Certificates, TlsServerProcess, tls_options, tls_server_binary


class SentinelProcess(Started):
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

        wait_until(ready, timeout, f"The Sentinels agreeing on service {self.service}")

    def fail_over(self, timeout: float = 20.0) -> int:
        """Have the Sentinels promote the replica now; return the new primary's port."""
        old = self.primary()
        expect_ok(self.ask(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.service))
        wait_until(lambda: self.primary() != old, timeout, "The Sentinel failover")
        new = self.primary()
        # The Sentinels demote the old primary only when they next poll it (up to 10 s
        # later); do now what they will, so that it answers writes with READONLY at once.
        if self.data(old, "ROLE")[0] == "master":
            expect_ok(self.data(old, "REPLICAOF", "127.0.0.1", new))
        self.wait_ready(timeout, sentinels_see_replica=False)
        return new

    def kill_primary(self, timeout: float = 20.0) -> int:
        """Kill the primary; wait until the Sentinels promote the replica; return its port.

        `restart(port)` brings the killed server back; the Sentinels make it a replica.
        """
        old = self.primary()
        self.servers[old].kill()
        wait_until(lambda: self.primary() != old, timeout, "The Sentinels promoting the replica")
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
            tls = tls_options(deployment.certificates)
            lines += [f"{name} {value}" for name, value in zip(tls[::2], tls[1::2], strict=True)]
        if not config.exists():  # a restarted Sentinel keeps what it learnt
            config.write_text("".join(f"{line.lstrip('-')}\n" for line in lines))
        return [self.binary, str(config), "--sentinel", "--loglevel", "warning"]
