"""Fixtures of the persistence tests: a real PostgreSQL cluster, SQLite files, a Valkey server.

PostgreSQL is Debian's (scripts/install-postgresql): `initdb` makes a cluster in a
temporary directory and `postgres` serves it on a free loopback port; the
fixture stops it by its PID. Both refuse to run as root, so as root (CI) they
run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from livestate.testing import ServerProcess, free_ports

from .journal import Recorder, use_store


def postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL programs (the newest, if several)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise FileNotFoundError(
            "PostgreSQL is not installed; run scripts/install-postgresql (as root), or "
            "apt-get install postgresql."
        )
    return Path(initdb).resolve().parent


def _major(path: str) -> int:
    version = Path(path).parents[1].name
    return int(version) if version.isdigit() else 0


class PostgresProcess:
    """A PostgreSQL cluster in a temporary directory on 127.0.0.1, started and stopped by PID."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_ports(1)[0]
        self.dir = Path(tempfile.mkdtemp(prefix="livestate-pg-"))
        self.data = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        # initdb and postgres refuse root: run them as the `postgres` user then.
        self.user: str | None = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The DSN of the cluster's `postgres` database, for the superuser `livestate`."""
        return f"postgresql://livestate@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> Self:
        """initdb, then start the server and wait until it accepts connections."""
        options: dict[str, Any] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            options = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        subprocess.run(
            [self.bin / "initdb", "-D", self.data, "-U", "livestate", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C"],
            cwd=self.dir, check=True, capture_output=True, **options,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", self.data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **options,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"postgres exited at start: {error.strip()}")
            ready = subprocess.run(
                [self.bin / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections on {self.port} in {timeout}s.")

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, SIGKILL after 10 s; then remove the directory."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGINT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stderr:
                process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresProcess]:
    """One PostgreSQL cluster for the session."""
    with PostgresProcess() as server:
        yield server


@pytest.fixture(scope="session")
def valkey() -> Iterator[ServerProcess]:
    """One Valkey server for the persistence tests (each test uses its own keys)."""
    with ServerProcess() as server:
        yield server


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="pg")])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's live states are saved: a SQLite file, or the PostgreSQL cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    server: PostgresProcess = request.getfixturevalue("postgres")
    return server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of the test's own."""
    return str(tmp_path / "store.sqlite3")


@pytest.fixture
async def saves(store_url: str) -> AsyncIterator[Recorder]:
    """Journals save to `store_url` during the test, through a fresh recorder."""
    recorder = use_store(store_url)
    yield recorder
    await recorder.store.aclose()


@pytest.fixture
async def sqlite_saves(sqlite_url: str) -> AsyncIterator[Recorder]:
    """Journals save to a SQLite file of the test's own, through a fresh recorder."""
    recorder = use_store(sqlite_url)
    yield recorder
    await recorder.store.aclose()
