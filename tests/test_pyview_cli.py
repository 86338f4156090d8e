"""The `livestate demo` command: what it starts, and that Ctrl-C stops all of it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from livestate._cli import find_examples, main
from livestate.testing import free_port


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_demo_runs_nodes_and_ctrl_c_stops_everything() -> None:
    """`demo --nodes 2` serves the chat on two ports over its own Valkey; SIGINT stops all three."""
    base = free_port()
    while listening(base + 1):
        base = free_port()
    command = [sys.executable, "-m", "livestate._cli", "demo", "--port", str(base), "--nodes", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = ""
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "Press Ctrl-C" not in output:
            line = process.stdout.readline().decode()
            if not line:
                break
            output += line
        urls = re.findall(r"http://127\.0\.0\.1:\d+/", output)
        assert urls == [f"http://127.0.0.1:{base}/", f"http://127.0.0.1:{base + 1}/"], output
        valkey = int(re.findall(r"redis://127\.0\.0\.1:(\d+)/0 \(embedded Valkey\)", output)[0])
        for url in urls:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert b"livestate chat" in response.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        assert not any(listening(port) for port in (base, base + 1, valkey))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_no_command_prints_help() -> None:
    """`livestate` without a command prints its help and exits with status 2."""
    assert main([]) == 2


def test_examples_are_found_in_a_checkout() -> None:
    """The demo finds the chat example of a source checkout."""
    assert (find_examples() / "chat" / "app.py").is_file()
