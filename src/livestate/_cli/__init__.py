"""The `livestate` command (also `python -m livestate`).

`livestate demo` runs the chat example: one node on `memory://` by default;
`--nodes N` runs N server processes on consecutive ports against one Redis or
Valkey (`--redis URL`, or an embedded Valkey it starts), with one shared PyView
signing secret so that a page served by one node can join on any other. A node
that dies is restarted; a status page lists the nodes (and, with
`--kill-control`, kills one on request). Ctrl-C stops the nodes, then Valkey.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import survey

__all__ = ["find_examples", "main"]


def find_examples() -> Path:
    """The directory that holds the `chat` example package.

    Looks at LIVESTATE_EXAMPLES, then examples shipped inside the package, then
    the `examples/` of a source checkout, then `./examples`. Raises
    FileNotFoundError, saying where it looked, if none has `chat/app.py`.
    """
    package = Path(__file__).resolve().parents[1]  # src/livestate, or site-packages/livestate
    candidates = [
        Path(os.environ["LIVESTATE_EXAMPLES"]) if os.environ.get("LIVESTATE_EXAMPLES") else None,
        package / "_examples",
        package.parents[1] / "examples",
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
        description="Run the chat example at http://HOST:PORT (and the next ports with "
        "--nodes), restarting any node that dies.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    demo.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LIVESTATE_DEMO_PORT") or 8000),
        help="port of the first node (default: LIVESTATE_DEMO_PORT, or 8000)",
    )
    demo.add_argument("--nodes", type=int, default=1, help="server processes, on consecutive ports")
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="a Redis/Valkey URL shared by the nodes; without it one node uses memory:// "
        "and several nodes share an embedded Valkey started for the demo",
    )
    demo.add_argument(
        "--status-port",
        type=int,
        help="port of the status page (default: the port after the last node's, or any "
        "free port if that one is taken)",
    )
    demo.add_argument(
        "--kill-control",
        action="store_true",
        help="give the status page a button per node that kills it (SIGKILL), to watch "
        "pages reconnect to the restarted node; for demos only",
    )
    demo.add_argument(
        "--restart-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before restarting a node that died (default 0), to watch its "
        "pages while it is down",
    )
    demo.add_argument(
        "--room-ttl", type=float, help="seconds a room outlives its last visitor (default 60)"
    )
    demo.add_argument("--typing-seconds", type=float, help="how long 'is typing' lasts (default 3)")
    survey.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `livestate` command with `argv` (default: sys.argv); return the exit status.

    Raises nothing: errors are printed and give a non-zero status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "inspect":
        return survey.run(args)
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
    from .demo import Supervisor

    examples = find_examples()
    env = dict(os.environ)
    # One signing secret for every node: the CSRF token and session that node A
    # puts into a page must verify on node B, where the WebSocket may land.
    env["PYVIEW_SECRET"] = os.environ.get("PYVIEW_SECRET") or secrets.token_urlsafe(32)
    if args.room_ttl is not None:
        env["CHAT_ROOM_TTL"] = str(args.room_ttl)
    if args.typing_seconds is not None:
        env["CHAT_TYPING_SECONDS"] = str(args.typing_seconds)
    ports = [args.port + i for i in range(args.nodes)]
    status_port = args.status_port if args.status_port is not None else ports[-1] + 1
    supervisor = Supervisor(
        examples,
        args.host,
        ports,
        args.redis,
        env,
        status_port,
        args.kill_control,
        restart_delay=args.restart_delay,
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        supervisor.start()
        where = f"{supervisor.url} (embedded Valkey)" if supervisor.valkey else supervisor.url
        print(f"livestate demo: the chat on {args.nodes} node(s), state in {where}", flush=True)
        for number, port in enumerate(ports, 1):
            print(f"  node {number}: http://{args.host}:{port}/", flush=True)
        what = "nodes, and a button to kill one" if args.kill_control else "nodes"
        print(f"  status ({what}): {supervisor.status_url}", flush=True)
        print(f"Open http://{args.host}:{ports[0]}/ in a browser.", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        supervisor.run()
    except (KeyboardInterrupt, _Stop):
        print("livestate demo: stopping the nodes, then Valkey.", flush=True)
        return 0
    finally:
        # Ctrl-C again during the stop must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            supervisor.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
