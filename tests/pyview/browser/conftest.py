"""Browser-test fixtures: the chat demo in subprocesses, and real headless Chromium.

The servers run `livestate demo` (the code path users run) on free 127.0.0.1
ports with short TTLs, and are stopped by their PID. A failing test leaves a
screenshot of each of its pages in test-artifacts/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from livestate.testing import ServerProcess, free_port, free_ports

from ...support.chromium import browser, playwright  # noqa: F401 - fixtures of these tests

ROOM_TTL = 1.5
TYPING_SECONDS = 1.0
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@dataclass
class Cluster:
    """The chat running on one or more nodes: their base URLs, and the demo process."""

    urls: list[str]
    process: subprocess.Popen[bytes]
    name: str

    @property
    def first(self) -> str:
        """The base URL of the first node."""
        return self.urls[0]

    @property
    def last(self) -> str:
        """The base URL of the last node (the first, on a one-node cluster)."""
        return self.urls[-1]


def start_demo(nodes: int, redis_url: str | None, name: str) -> Cluster:
    """Run `livestate demo` with short TTLs, and wait until it prints its URLs."""
    base = free_ports(nodes, consecutive=True)[0]
    command = [
        sys.executable, "-m", "livestate", "demo", "--port", str(base),
        "--nodes", str(nodes), "--room-ttl", str(ROOM_TTL),
        "--typing-seconds", str(TYPING_SECONDS),
    ]  # fmt: skip
    if redis_url:
        command += ["--redis", redis_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        output.append(line)
        if line.startswith("Press Ctrl-C"):
            # The nodes' lines only: the status page's and the "Open ..." line name URLs too.
            urls = re.findall(r"node \d+: (http://127\.0\.0\.1:\d+)/", "".join(output))
            return Cluster(urls, process, name)
    stop_process(process)
    raise RuntimeError(f"livestate demo did not start:\n{''.join(output)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop the demo by its PID (it stops its nodes and its Valkey), killing it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


@pytest.fixture(scope="session")
def one_node() -> Iterator[Cluster]:
    """The chat on one node, on memory://."""
    cluster = start_demo(1, None, "one_node")
    yield cluster
    stop_process(cluster.process)


@pytest.fixture(scope="session")
def two_nodes(redis_server: ServerProcess) -> Iterator[Cluster]:
    """The chat on two nodes sharing the session's Redis/Valkey server."""
    cluster = start_demo(2, redis_server.url, "two_nodes")
    yield cluster
    stop_process(cluster.process)


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="session")
def dashboard() -> Iterator[str]:
    """The dashboard example on one node (memory://), ticking fast; yields its base URL."""
    port = free_port()
    env = dict(os.environ, LIVESTATE_URL="memory://", DASHBOARD_TICK="0.2")
    command = [
        sys.executable, "-m", "uvicorn", "dashboard.app:app", "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    else:
        stop_process(process)
        raise RuntimeError("The dashboard example did not start.")
    yield url
    stop_process(process)


@pytest.fixture(params=["one_node", "two_nodes"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """Each chat browser test runs on one node, then across two nodes over Redis."""
    found: Cluster = request.getfixturevalue(request.param)
    return found


NewPage = Callable[[str], Page]


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewPage]:  # noqa: F811
    """Opens pages, each in its own browser context; screenshots them all if the test fails."""
    contexts = []
    pages: list[Page] = []

    def open_page(url: str) -> Page:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        pages.append(page)
        page.goto(url)
        wait_connected(page)
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


def wait_connected(page: Page) -> None:
    """Wait until the page's LiveView has joined over its WebSocket."""
    page.wait_for_selector("[data-phx-main].phx-connected", timeout=10000)


def get_json(url: str) -> tuple[int, Any]:
    """GET `url` and decode its JSON body; returns (status, body)."""
    import json

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
