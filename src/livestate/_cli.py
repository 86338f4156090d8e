"""The `livestate` command.

`livestate demo` runs the chat example: one node on `memory://` by default;
`--nodes N` runs N server processes on consecutive ports against one Redis or
Valkey (`--redis URL`, or an embedded Valkey it starts), with one shared PyView
signing secret so that a page served by one node can join on any other. Ctrl-C
stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import _inspect

__all__ = ["find_examples", "main"]

READY_TIMEOUT = 30.0
"""Seconds a node may take to start listening."""


def find_examples() -> Path:
    """The directory that holds the `chat` example package.

    Looks at LIVESTATE_EXAMPLES, then examples shipped inside the package, then
    the `examples/` of a source checkout, then `./examples`. Raises
    FileNotFoundError, saying where it looked, if none has `chat/app.py`.
    """
    here = Path(__file__).resolve().parent
    candidates = [
        Path(os.environ["LIVESTATE_EXAMPLES"]) if os.environ.get("LIVESTATE_EXAMPLES") else None,
        here / "_examples",
        here.parent.parent / "examples",
        Path.cwd() / "examples",
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "chat" / "app.py").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates if c is not None)
    raise FileNotFoundError(
        f"livestate demo could not find the chat example (looked in {looked}); run it from "
        "a livestate source checkout, or set LIVESTATE_EXAMPLES to the examples directory."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livestate", description="Shared live state for Python web apps."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the chat example, on one node or several",
        description="Run the chat example at http://HOST:PORT (and the next ports with --nodes).",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    demo.add_argument("--port", type=int, default=8000, help="port of the first node")
    demo.add_argument("--nodes", type=int, default=1, help="server processes, on consecutive ports")
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="a Redis/Valkey URL shared by the nodes; without it one node uses memory:// "
        "and several nodes share an embedded Valkey started for the demo",
    )
    demo.add_argument(
        "--room-ttl", type=float, help="seconds a room outlives its last visitor (default 60)"
    )
    demo.add_argument("--typing-seconds", type=float, help="how long 'is typing' lasts (default 3)")
    _inspect.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `livestate` command with `argv` (default: sys.argv); return the exit status.

    Raises nothing: errors are printed and give a non-zero status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "inspect":
        return _inspect.run(args)
    if args.command != "demo":
        parser.print_help()
        return 2
    if args.nodes < 1:
        parser.error("--nodes must be at least 1.")
    try:
        return _demo(args)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"livestate demo: {error}", file=sys.stderr)
        return 1


class _Stop(Exception):
    """Raised by the SIGTERM handler so that the demo stops what it started."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _demo(args: argparse.Namespace) -> int:
    from .testing import ServerProcess

    examples = find_examples()
    server: ServerProcess | None = None
    nodes: list[subprocess.Popen[bytes]] = []
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        url = args.redis
        if url is None and args.nodes > 1:
            # memory:// lives in one process: several nodes need a server to share.
            server = ServerProcess().start()
            url = server.url
        url = url or "memory://"
        env = dict(os.environ)
        env["LIVESTATE_URL"] = url
        # One signing secret for every node: the CSRF token and session that node A
        # puts into a page must verify on node B, where the WebSocket may land.
        env["PYVIEW_SECRET"] = os.environ.get("PYVIEW_SECRET") or secrets.token_urlsafe(32)
        if args.room_ttl is not None:
            env["CHAT_ROOM_TTL"] = str(args.room_ttl)
        if args.typing_seconds is not None:
            env["CHAT_TYPING_SECONDS"] = str(args.typing_seconds)
        ports = [args.port + i for i in range(args.nodes)]
        for port in ports:
            command = [
                sys.executable, "-m", "uvicorn", "chat.app:app", "--app-dir", str(examples),
                "--host", args.host, "--port", str(port), "--log-level", "warning",
            ]  # fmt: skip
            nodes.append(subprocess.Popen(command, env=env))
        for port, node in zip(ports, nodes, strict=True):
            _wait_listening(args.host, port, node)
        where = f"{url} (embedded Valkey)" if server else url
        print(f"livestate demo: the chat on {len(nodes)} node(s), state in {where}", flush=True)
        for number, port in enumerate(ports, 1):
            print(f"  node {number}: http://{args.host}:{port}/", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            for port, node in zip(ports, nodes, strict=True):
                if node.poll() is not None:
                    raise RuntimeError(f"the node on port {port} exited ({node.returncode}).")
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        print("livestate demo: stopping.", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_all(nodes)
        if server is not None:
            server.stop()


def _wait_listening(host: str, port: int, node: subprocess.Popen[bytes]) -> None:
    """Wait until `node` accepts connections on `port`; raise RuntimeError if it never does."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(
                f"the node on port {port} exited at start ({node.returncode}); is the port "
                "free? Choose another with --port."
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the node on port {port} did not listen within {READY_TIMEOUT:.0f}s.")


def _stop_all(nodes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the nodes by PID: SIGTERM (a graceful uvicorn shutdown), then SIGKILL after 5 s."""
    for node in nodes:
        if node.poll() is None:
            node.terminate()
    deadline = time.monotonic() + 5.0
    for node in nodes:
        try:
            node.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


if __name__ == "__main__":
    sys.exit(main())
