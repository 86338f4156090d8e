"""`livestate demo` run as a terminal runs it, for the tests that drive it: started in its
own session, its URLs read from what it prints, stopped by its process group."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from livestate.testing import free_ports


@dataclass
class Demo:
    """A running `livestate demo`."""

    process: subprocess.Popen[bytes]
    output: str
    node_ports: list[int]
    status_url: str
    valkey_port: int | None

    @property
    def node_urls(self) -> list[str]:
        """Each node's http://127.0.0.1:port, in order."""
        return [f"http://127.0.0.1:{port}" for port in self.node_ports]

    def status(self) -> dict[str, Any]:
        """The status page's JSON."""
        with urllib.request.urlopen(self.status_url + "status.json", timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def read_rest(self) -> str:
        """Everything it printed after start-up, once it has exited."""
        assert self.process.stdout is not None
        self.output += self.process.stdout.read().decode()
        return self.output


def start_demo(*extra: str, nodes: int = 2) -> Demo:
    """Run `python -m livestate demo` and wait until it prints "Press Ctrl-C"."""
    base = free_ports(nodes + 1, consecutive=True)[0]
    command = [sys.executable, "-m", "livestate", "demo", "--port", str(base)]
    command += ["--nodes", str(nodes), *extra]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and "Press Ctrl-C" not in output:
        line = process.stdout.readline().decode()
        if not line:
            break
        output += line
    node_ports = [int(p) for p in re.findall(r"node \d+: http://127\.0\.0\.1:(\d+)/", output)]
    status = re.findall(r"status .*: (http://127\.0\.0\.1:\d+/)", output)
    valkey = re.findall(r"redis://127\.0\.0\.1:(\d+)/0 \(embedded Valkey\)", output)
    if not status or len(node_ports) != nodes:
        stop(process)
        raise AssertionError(f"livestate demo did not start:\n{output}")
    return Demo(process, output, node_ports, status[0], int(valkey[0]) if valkey else None)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the demo and what it started (its process group) if it still runs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout:
        process.stdout.close()
