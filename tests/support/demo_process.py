"""`livestate demo` run as a terminal runs it, for the tests that drive it: started in its
own session, its URLs read from what it prints, stopped by its process group."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
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
    rest: list[str] = field(default_factory=list)  # lines printed after start-up
    reader: threading.Thread | None = None

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
        """Everything it printed, start-up included, once it has exited."""
        if self.reader is not None:
            self.reader.join(5)
        return self.output + "".join(self.rest)

    def printed(self) -> str:
        """What it has printed so far (it may still run): for a failure's message."""
        return self.output + "".join(self.rest)

    def drain(self) -> None:
        """Read what it prints from now on in a thread, so that it never waits on a full
        pipe, whatever it logs."""
        stdout = self.process.stdout
        assert stdout is not None
        self.reader = threading.Thread(
            target=lambda: self.rest.extend(line.decode() for line in stdout), daemon=True
        )
        self.reader.start()


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
    demo = Demo(process, output, node_ports, status[0], int(valkey[0]) if valkey else None)
    demo.drain()
    return demo


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
