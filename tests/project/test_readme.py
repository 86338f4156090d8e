"""Every command the README shows in a shell block, run exactly as written (bounded).

Servers (the demo, the dashboard) are started from the checkout's root, checked
to serve their pages, then stopped by Ctrl-C to their process group. Their
ports come from the environment (LIVESTATE_DEMO_PORT, UVICORN_PORT), so the
commands keep their README spelling. A command the test does not run must be
listed in NOT_RUN with the reason: a new README command fails the test until it
is run here or listed. `pip install 'livestate[demo]'` then `livestate demo
--nodes 2`, in the README's prose, are run by test_pyview_wheel.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from livestate.testing import free_ports, listening

ROOT = Path(__file__).resolve().parents[2]

NOT_RUN = {
    "make test": "it is the command that runs this test",
    "pip install 'livestate[redis]'": "installs into whatever pip is first on PATH; the "
    "extras are installed by make setup and the wheel test",
    "valkey-server --port 6379 --save '' --appendonly no &": "a system Valkey on a fixed "
    "port; the tests start their own (livestate.testing.ServerProcess)",
    "LIVESTATE_URL=redis://127.0.0.1:6379/0 uvicorn app:app --port 8001 &": "`app:app` "
    "stands for the reader's app; the chat runs this way in the browser tests",
    "LIVESTATE_URL=redis://127.0.0.1:6379/0 uvicorn app:app --port 8002 &": "as above",
}

# command -> (how many consecutive ports it uses, what each port must serve)
SERVERS = {
    "make demo": (2, [b"livestate chat", b"livestate demo"]),
    "make demo-nodes": (3, [b"livestate chat", b"livestate chat", b"livestate demo"]),
    ".venv/bin/livestate demo --nodes 2 --kill-control": (
        3,
        [b"livestate chat", b"livestate chat", b"Kill (SIGKILL)"],
    ),
    ".venv/bin/python -m livestate demo": (2, [b"livestate chat", b"livestate demo"]),
    ".venv/bin/uvicorn dashboard.app:app --app-dir examples": (1, [b"livestate dashboard"]),
}


def readme_commands() -> list[str]:
    """The command lines of the README's ```sh blocks, without their trailing comments."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = re.split(r"\s{2,}#\s", line, maxsplit=1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_every_readme_command_is_run_or_listed_with_a_reason() -> None:
    """The README's commands are exactly those this test runs plus those NOT_RUN explains."""
    assert set(readme_commands()) == set(SERVERS) | set(NOT_RUN)


def fetch(url: str) -> bytes:
    """The body at `url`."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", list(SERVERS))
def test_readme_command_serves_its_pages(command: str) -> None:
    """The command, run as written from the checkout, serves what the README says; Ctrl-C
    stops it and everything it started."""
    count, expected = SERVERS[command]
    base = free_ports(count, consecutive=True)[0]
    env = dict(os.environ, LIVESTATE_DEMO_PORT=str(base), UVICORN_PORT=str(base))
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not all(listening(base + i) for i in range(count)):
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{command} did not listen in time"
            time.sleep(0.1)
        for offset, marker in enumerate(expected):
            assert marker in fetch(f"http://127.0.0.1:{base + offset}/")
        os.killpg(process.pid, signal.SIGINT)
        process.wait(30)
        assert not any(listening(base + i) for i in range(count))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout:
            process.stdout.close()
