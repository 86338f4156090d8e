"""Fixtures for the browser tests of livestate.asgi: the examples in real server processes.

The FastAPI board runs on two uvicorn processes sharing the session's Valkey, and
on one memory:// process (`board_cluster` runs a test on each); the React counter
(built by `make js`) on one memory:// process and on two over Valkey. Servers
listen on free 127.0.0.1 ports and are stopped by their PID. Pages are driven by
Debian's headless Chromium; a failing test leaves a screenshot of each page in
test-artifacts/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from livestate.testing import ServerProcess, free_port

from ...support.chromium import browser, playwright  # noqa: F401 - fixtures of these tests

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts"


class AppProcess:
    """One uvicorn process serving an example on a fixed 127.0.0.1 port; restartable."""

    def __init__(self, module: str, livestate_url: str) -> None:
        self.module = module
        self.livestate_url = livestate_url
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base http:// URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        """Start the server and wait until it accepts connections (20 s at most)."""
        env = dict(os.environ, LIVESTATE_URL=self.livestate_url)
        command = [
            sys.executable, "-m", "uvicorn", self.module, "--app-dir", str(EXAMPLES),
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            "--ws", "websockets-sansio",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"{self.module} exited at start:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.module} did not listen on port {self.port} within 20 s.")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.fixture(scope="package")
def valkey() -> Iterator[ServerProcess]:
    """A Valkey server of this package's own (the tests restart app processes, not it)."""
    with ServerProcess() as server:
        yield server


@pytest.fixture(scope="package")
def board_nodes(valkey: ServerProcess) -> Iterator[list[AppProcess]]:
    """The FastAPI board on two processes sharing one Valkey."""
    nodes = [AppProcess("fastapi_board.app:app", valkey.url) for _ in range(2)]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="package")
def board_memory() -> Iterator[AppProcess]:
    """The FastAPI board on one process, memory://."""
    node = AppProcess("fastapi_board.app:app", "memory://").start()
    yield node
    node.stop()


@pytest.fixture(params=["memory", "redis"])
def board_cluster(request: pytest.FixtureRequest) -> list[AppProcess]:
    """The FastAPI board on one memory:// process, then on two processes over Valkey."""
    if request.param == "memory":
        return [request.getfixturevalue("board_memory")]
    nodes: list[AppProcess] = request.getfixturevalue("board_nodes")
    return nodes


@pytest.fixture(scope="package", params=["memory", "redis"])
def counter_nodes(request: pytest.FixtureRequest) -> Iterator[list[AppProcess]]:
    """The React counter (built by `make js`): on one memory:// process, then two on Valkey."""
    if not (EXAMPLES / "react_counter" / "dist" / "index.html").exists():
        pytest.fail(
            "The React example is not built: run `make js` (or npm ci && npm run build in "
            "examples/react_counter).",
            pytrace=False,
        )
    if request.param == "memory":
        nodes = [AppProcess("react_counter.app:app", "memory://")]
    else:
        valkey: ServerProcess = request.getfixturevalue("valkey")
        nodes = [AppProcess("react_counter.app:app", valkey.url) for _ in range(2)]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


NewPage = Callable[[str], Page]


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewPage]:  # noqa: F811
    """Opens pages, each in its own browser context; screenshots them all if the test fails."""
    contexts = []
    pages: list[Page] = []
    errors: list[str] = []

    def open_page(url: str) -> Page:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append(page)
        page.goto(url)
        page.wait_for_selector("#status.live")
        return page

    yield open_page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]", "_", request.node.name)
        for number, page in enumerate(pages, 1):
            if not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / f"{name}-page{number}.png"), full_page=True)
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the pages: {errors}"
