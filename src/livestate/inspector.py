"""An inspector page to mount in any ASGI app: the deployment's live states and nodes, live.

    from livestate.inspector import inspector

    def is_operator(scope) -> bool:                  # your own check: a header, a cookie...
        return dict(scope["headers"]).get(b"x-operator-token") == TOKEN

    app.mount("/livestate", inspector(authorize=is_operator))

It shows what `livestate inspect` shows, refreshed every second, and nothing
unless `authorize(scope)` (sync or async) says yes: there is no default, so the
page is opt-in twice, by mounting it and by writing the check. Requests refused
get 403 and no data. It reads through the node of the app (or `node=`), so on
memory:// it sees that process's live states, and on Redis the whole deployment.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict
from typing import Any

from ._exceptions import InvalidValueError
from ._node import Node, current_node

__all__ = ["Authorize", "inspector"]

Authorize = Callable[[Mapping[str, Any]], "bool | Awaitable[bool]"]
"""`authorize(scope)`: whether the HTTP request described by the ASGI `scope` may see it."""

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def inspector(*, authorize: Authorize, node: Node | None = None, refresh: float = 1.0) -> App:
    """An ASGI app serving the inspector page (GET /) and its data (GET /survey.json).

    `authorize(scope)` decides every request; `node` defaults to the current node
    when a request comes; the page refreshes every `refresh` seconds. Raises
    InvalidValueError if `authorize` is not callable.
    """
    if not callable(authorize):
        raise InvalidValueError(
            "inspector(authorize=...) needs a function of the ASGI scope that says whether "
            "the request may see the inspector; there is no default, on purpose."
        )

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        allowed = authorize(scope)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not allowed:
            await _respond(send, 403, "text/plain", b"Forbidden: not allowed to inspect livestate.")
        elif scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 405, "text/plain", b"Method not allowed.")
        elif path in ("", "/"):
            page = _PAGE.replace("{{data}}", f"{root}/survey.json").replace(
                "{{refresh}}", str(int(refresh * 1000))
            )
            await _respond(send, 200, "text/html; charset=utf-8", page.encode())
        elif path == "/survey.json":
            survey = await (node or current_node()).survey()
            await _respond(send, 200, "application/json", json.dumps(asdict(survey)).encode())
        else:
            await _respond(send, 404, "text/plain", b"Not found.")

    return app


async def _respond(send: Send, status: int, kind: str, body: bytes) -> None:
    headers = [
        (b"content-type", kind.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'self'; style-src 'unsafe-inline'; "
         b"script-src 'unsafe-inline'"),
    ]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>livestate inspector</title>
<style>
  :root { color-scheme: light dark; --bg: #f7f7f5; --card: #fff; --ink: #1d1f21;
          --muted: #6b7075; --line: #e3e4e0; --accent: #2f6f4f; --warn: #b5542a; }
  @media (prefers-color-scheme: dark) {
    :root { --bg: #15171a; --card: #1d2024; --ink: #e8e9e6; --muted: #9aa0a6;
            --line: #2c3035; --accent: #6fcf97; --warn: #f2994a; } }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         background: var(--bg); color: var(--ink); }
  header { padding: 20px clamp(16px, 4vw, 40px); display: flex; flex-wrap: wrap;
           gap: 8px 24px; align-items: baseline; border-bottom: 1px solid var(--line); }
  h1 { font-size: 20px; margin: 0; letter-spacing: -0.01em; }
  h1 span { color: var(--accent); }
  #summary { color: var(--muted); }
  #updated { margin-left: auto; color: var(--muted); font-variant-numeric: tabular-nums; }
  #updated.stale { color: var(--warn); }
  main { padding: 20px clamp(16px, 4vw, 40px); display: grid; gap: 24px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
            overflow-x: auto; }
  h2 { font-size: 14px; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted);
       margin: 0; padding: 14px 16px 0; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 10px 16px; border-bottom: 1px solid var(--line);
           white-space: nowrap; }
  th { font-weight: 600; font-size: 13px; color: var(--muted); }
  td.num, th.num { text-align: right; }
  tr:last-child td { border-bottom: 0; }
  code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
  .pill { display: inline-block; padding: 1px 8px; margin: 2px 4px 2px 0; border-radius: 999px;
          background: color-mix(in srgb, var(--accent) 14%, transparent); font-size: 13px; }
  .empty { padding: 16px; color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1><span>live</span>state inspector</h1>
  <div id="summary" aria-live="polite">Loading…</div>
  <div id="updated"></div>
</header>
<main>
  <section aria-labelledby="states-title">
    <h2 id="states-title">Live states</h2>
    <table id="states">
      <thead><tr><th>Spec</th><th>Key</th><th class="num">Version</th>
        <th class="num">Bytes</th><th class="num">Present</th><th class="num">TTL</th>
        <th class="num">Ends in</th>
        <th>Holders: lease left (clients)</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section aria-labelledby="nodes-title">
    <h2 id="nodes-title">Nodes</h2>
    <table id="nodes">
      <thead><tr><th>Node</th><th class="num">Lease left</th><th class="num">Live states</th>
        <th class="num">Clients</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
const DATA = "{{data}}", REFRESH = {{refresh}};
const seconds = (v) => v === null ? "\u2013" : v.toFixed(1) + " s";
const cell = (text, cls) => {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
};
function fill(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = document.createElement("tr"), td = cell(empty, "empty");
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.append(td);
    body.append(tr);
  }
}
async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const response = await fetch(DATA, {cache: "no-store", credentials: "same-origin"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const survey = await response.json();
    const clients = survey.states.reduce((n, s) =>
      n + Object.values(s.clients).reduce((a, b) => a + b, 0), 0);
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    document.getElementById("summary").textContent = [
      plural(survey.states.length, "live state"), plural(survey.nodes.length, "node"),
      plural(clients, "client")].join(" · ");
    fill(document.getElementById("states"), survey.states.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.key = s.spec + ":" + s.key;
      const holders = cell("");
      for (const [node, lease] of Object.entries(s.holders)) {
        const pill = document.createElement("span");
        pill.className = "pill";
        pill.textContent = `${node.slice(0, 8)}: ${seconds(lease)} (${s.clients[node] || 0})`;
        holders.append(pill);
      }
      const key = cell(""), code = document.createElement("code");
      code.textContent = s.key;
      key.append(code);
      tr.append(cell(s.spec), key, cell(String(s.version), "num"),
                cell(s.bytes.toLocaleString(), "num"), cell(String(s.present), "num"),
                cell(seconds(s.ttl), "num"),
                cell(seconds(s.expires_in), "num"), holders);
      return tr;
    }), "No live state is running.");
    fill(document.getElementById("nodes"), survey.nodes.map((n) => {
      const tr = document.createElement("tr");
      tr.append(cell(n.id), cell(seconds(n.lease), "num"), cell(String(n.states), "num"),
                cell(String(n.clients), "num"));
      return tr;
    }), "No node holds a live state.");
    updated.textContent = "Updated " + new Date().toLocaleTimeString();
    updated.className = "";
  } catch (error) {
    updated.textContent = "Cannot refresh (" + error.message + "); retrying";
    updated.className = "stale";
  }
  setTimeout(refresh, REFRESH);
}
refresh();
</script>
</body>
</html>
"""
