"""`livestate inspect`: what a running deployment holds, as text, once or live.

    livestate inspect [URL]            every live state and node (URL: LIVESTATE_URL)
    livestate inspect [URL] SPEC:KEY   one live state, with its properties
    livestate inspect [URL] --watch    the same, redrawn every second until Ctrl-C

It joins the deployment as a node that attaches nothing, so it sees what the
other nodes announce (Redis: `ls:node:*`, renewed with their leases).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .._backends.base import Survey
from .._exceptions import LiveStateError
from .._node import Node

WATCH_SECONDS = 1.0
"""Seconds between two redraws with --watch."""


def add_parser(commands: Any) -> None:
    """Add the `inspect` command to the `livestate` command's subparsers."""
    inspect = commands.add_parser(
        "inspect",
        help="show the live states and nodes of a running deployment",
        description="Show every live state (spec, key, version, size, presences, expiry, "
        "holders, clients per node) and every node (lease, live states, clients) of a deployment.",
    )
    inspect.add_argument(
        "target",
        nargs="*",
        metavar="URL|SPEC:KEY",
        help="the deployment's URL (default: LIVESTATE_URL), and/or one live state as SPEC:KEY",
    )
    inspect.add_argument("--watch", action="store_true", help="redraw every second until Ctrl-C")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run `livestate inspect`; return the exit status (errors are printed, not raised)."""
    url = os.environ.get("LIVESTATE_URL") or "memory://"
    spec = key = None
    for target in args.target:
        if "://" in target:
            url = target
        elif ":" in target:
            spec, _, key = target.partition(":")
        else:
            print(f"livestate inspect: {target!r} is neither a URL nor SPEC:KEY.", file=sys.stderr)
            return 2
    if url.startswith("memory://"):
        print(
            "livestate inspect: memory:// lives inside one process; point it at the "
            "deployment's redis:// URL, or mount livestate.inspector in the app.",
            file=sys.stderr,
        )
        return 2
    # What goes wrong is printed below, once: the node's own log lines would repeat it.
    logger, quiet = logging.getLogger("livestate"), logging.NullHandler()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(quiet)
    try:
        return asyncio.run(_inspect(url, spec, key, args.watch, out))
    except KeyboardInterrupt:
        return 0
    except LiveStateError as error:
        print(f"livestate inspect: {error}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate


async def _inspect(url: str, spec: str | None, key: str | None, watch: bool, out: TextIO) -> int:
    async with Node(url, metrics=False) as node:
        while True:
            survey = await node.survey(spec, key)
            text = render(survey, url)
            if spec is not None and key is not None:
                text += "\n" + await _properties(node, spec, key)
            if watch and out.isatty():
                out.write("\x1b[H\x1b[2J")  # home and clear: a live view on a terminal
            out.write(text + "\n")
            out.flush()
            if not watch:
                return 0 if (spec is None or survey.states) else 1
            await asyncio.sleep(WATCH_SECONDS)


async def _properties(node: Node, spec: str, key: str) -> str:
    """The properties of one live state, one per line, as JSON (long values cut)."""
    from .._changes import StateId

    snapshot = await node.backend.read(StateId(spec, key))
    if snapshot is None:
        return f"{spec} {key!r} is not running."
    lines = ["PROPERTY                        VALUE"]
    for prop, value in snapshot.state.items():
        text = json.dumps(value, ensure_ascii=False)
        lines.append(f"{prop[:30]:<30}  {text[:200]}{'…' if len(text) > 200 else ''}")
    return "\n".join(lines)


def render(survey: Survey, where: str) -> str:
    """A survey as text: a table of live states, then a table of nodes."""
    stamp = time.strftime("%H:%M:%S")
    lines = [
        f"livestate at {where}: {len(survey.states)} live states, {len(survey.nodes)} nodes "
        f"({stamp})",
        "",
        f"{'LIVE STATE':<32} {'VERSION':>17} {'BYTES':>9} {'PRESENT':>7} {'TTL':>7} "
        f"{'ENDS IN':>8}  HOLDERS: LEASE LEFT (CLIENTS)",
    ]
    for state in survey.states:
        name = f"{state.spec} {state.key!r}"
        holders = ", ".join(
            f"{node}: {_seconds(lease)} ({state.clients.get(node, 0)})"
            for node, lease in sorted(state.holders.items())
        )
        lines.append(
            f"{name[:32]:<32} {state.version:>17} {state.bytes:>9,} {state.present:>7} "
            f"{_seconds(state.ttl):>7} {_seconds(state.expires_in):>8}  {holders or '-'}"
        )
    lines += ["", f"{'NODE':<18} {'LEASE LEFT':>10} {'STATES':>7} {'CLIENTS':>8}"]
    for report in survey.nodes:
        lines.append(
            f"{report.id:<18} {_seconds(report.lease):>10} {report.states:>7} {report.clients:>8}"
        )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
