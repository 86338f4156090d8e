"""The `livestate demo` command: what it starts, that it restarts a dead node, how it stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from livestate._cli import find_examples, main
from livestate.testing import ServerProcess, listening

from ..support.demo_process import Demo, start_demo, stop
from ..support.phoenix import LiveViewClient


@pytest.fixture
def demo() -> Iterator[Demo]:
    """`livestate demo --nodes 2 --kill-control` on free ports, with its own Valkey."""
    running = start_demo("--kill-control")
    yield running
    stop(running.process)


def ctrl_c(demo: Demo) -> int:
    """Press Ctrl-C as a terminal does (SIGINT to the whole process group); the exit status."""
    os.killpg(demo.process.pid, signal.SIGINT)
    try:
        return demo.process.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"livestate demo did not stop within 20 s of Ctrl-C; it printed:\n{demo.printed()}"
        ) from None


async def ctrl_c_with_pages_joined(demo: Demo) -> int:
    """Ctrl-C while a page is joined to a room on each node (so each node holds clients and
    subscriptions on Valkey); the exit status."""
    pages = []
    try:
        for port in demo.node_ports:
            page = LiveViewClient(f"http://127.0.0.1:{port}/rooms/ctrlc?nick=n{port}")
            pages.append(page)
            assert await page.connect(f"http://127.0.0.1:{port}")
            assert (await page.join())["status"] == "ok"
        return await asyncio.to_thread(ctrl_c, demo)
    finally:
        for page in pages:
            with contextlib.suppress(OSError):
                await page.close()


def kill_button(demo: Demo, node: int, token: str | None = None) -> int:
    """Post the status page's kill form for `node`; returns the HTTP status."""
    if token is None:
        with urllib.request.urlopen(demo.status_url, timeout=5) as response:
            token = re.findall(r'name="token" value="([^"]+)"', response.read().decode())[0]
    data = urllib.parse.urlencode({"token": token, "node": node}).encode()
    request = urllib.request.Request(demo.status_url + "kill", data=data)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def eventually(condition: Any, timeout: float = 20.0) -> None:
    """Wait until `condition()` is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def test_demo_serves_nodes_and_ctrl_c_stops_nodes_then_valkey(demo: Demo) -> None:
    """`demo --nodes 2` serves the chat on two ports over its own Valkey; Ctrl-C stops all
    three, nodes before Valkey, without a warning or traceback."""
    assert demo.valkey_port is not None
    for port in demo.node_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert b"livestate chat" in response.read()
    assert asyncio.run(ctrl_c_with_pages_joined(demo)) == 0
    output = demo.read_rest()
    assert "stopping the nodes, then Valkey" in output
    assert not re.search(r"warning|error|traceback|exception", output, re.IGNORECASE), output
    assert not any(listening(port) for port in [*demo.node_ports, demo.valkey_port])


def test_a_killed_node_is_restarted_while_the_rest_keeps_running(demo: Demo) -> None:
    """SIGKILL of node 2 (by its PID) restarts node 2 on its port; node 1 and Valkey keep
    their processes."""
    before = {node["number"]: node["pid"] for node in demo.status()["nodes"]}
    os.kill(before[2], signal.SIGKILL)

    def restarted() -> bool:
        node = demo.status()["nodes"][1]
        return bool(node["up"]) and node["pid"] not in (None, before[2])

    eventually(restarted)
    after = demo.status()["nodes"]
    assert after[0]["pid"] == before[1] and after[0]["restarts"] == 0
    assert after[1]["restarts"] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{demo.node_ports[1]}/", timeout=5) as page:
        assert b"livestate chat" in page.read()
    assert demo.valkey_port is not None and listening(demo.valkey_port)
    assert demo.process.poll() is None


def test_kill_button_needs_the_token_and_kills_one_node(demo: Demo) -> None:
    """The status page's kill form without the page's token is refused; with it, node 1 dies
    and comes back."""
    pid = demo.status()["nodes"][0]["pid"]
    assert kill_button(demo, 1, token="guessed") == 403
    assert demo.status()["nodes"][0]["pid"] == pid
    assert kill_button(demo, 1) == 303
    eventually(lambda: demo.status()["nodes"][0]["restarts"] == 1)
    eventually(lambda: demo.status()["nodes"][0]["up"])
    assert ctrl_c(demo) == 0
    assert "node 1 on port" in demo.read_rest()


def test_demo_stops_with_an_error_if_its_valkey_dies(demo: Demo) -> None:
    """If the demo's own Valkey is killed, the demo says so, stops its nodes and exits 1."""
    assert demo.valkey_port is not None
    os.kill(demo.status()["valkey_pid"], signal.SIGKILL)
    assert demo.process.wait(20) == 1
    assert "Valkey exited" in demo.read_rest()
    assert not any(listening(port) for port in demo.node_ports)


def test_kill_control_is_opt_in() -> None:
    """Without --kill-control the status page has no kill button and refuses the kill form."""
    running = start_demo(nodes=1)
    try:
        with urllib.request.urlopen(running.status_url, timeout=5) as response:
            assert "Kill" not in response.read().decode()
        assert kill_button(running, 1, token="x") == 404
        assert running.status()["nodes"][0]["up"]
    finally:
        stop(running.process)


def test_status_page_hides_a_redis_password() -> None:
    """With --redis naming a password (a real Valkey that requires it), the nodes serve the
    chat and the status page shows the URL with the password as ***."""
    with ServerProcess() as server:
        # A password set after start: ServerProcess checks the start with a bare PING.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"CONFIG SET requirepass s3cret\r\n")
            assert raw.recv(64).startswith(b"+OK")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        running = start_demo("--redis", url, nodes=2)
        try:
            page = urllib.request.urlopen(running.status_url, timeout=5).read().decode()
            assert "s3cret" not in page and "s3cret" not in json.dumps(running.status())
            assert f"redis://:***@127.0.0.1:{server.port}/0" in page
            node = f"http://127.0.0.1:{running.node_ports[1]}/"
            with urllib.request.urlopen(node, timeout=5) as response:
                assert b"livestate chat" in response.read()
        finally:
            stop(running.process)


def test_no_command_prints_help() -> None:
    """`livestate` without a command prints its help and exits with status 2."""
    assert main([]) == 2


def test_examples_are_found_in_a_checkout() -> None:
    """The demo finds the chat example of a source checkout."""
    assert (find_examples() / "chat" / "app.py").is_file()
