"""A minimal Phoenix LiveView protocol client over wsproto, for tests of the server's edge."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)


class LiveViewClient:
    """One page: fetched over HTTP from one node, its WebSocket opened to any node."""

    def __init__(self, page_url: str) -> None:
        self.page_url = page_url
        with urllib.request.urlopen(page_url, timeout=5) as response:
            html = response.read().decode()
        self.csrf = _find(r'name="csrf-token" content="([^"]+)"', html)
        self.session = _find(r'data-phx-session="([^"]*)"', html)
        self.topic = "lv:" + _find(r'id="(phx-[^"]+)"', html)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.ref = 0
        self.buffer: list[str] = []

    async def connect(self, node_url: str, origin: str | None = None) -> bool:
        """Open the WebSocket on `node_url` with an Origin header; True if it was accepted."""
        parts = urlsplit(node_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader, self.writer = await asyncio.open_connection(host, port)
        headers = [(b"origin", origin.encode())] if origin else []
        request = Request(
            host=f"{host}:{port}", target="/live/websocket?vsn=2.0.0", extra_headers=headers
        )
        self.writer.write(self.ws.send(request))
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return True
                if isinstance(event, RejectConnection):
                    return False

    async def join(self) -> dict[str, Any]:
        """Join the page's LiveView; returns the reply's payload."""
        payload = {
            "url": self.page_url,
            "params": {"_csrf_token": self.csrf, "_mounts": 0},
            "session": self.session,
            "static": "",
        }
        return await self.call("phx_join", payload)

    async def event(self, name: str, form: str) -> dict[str, Any]:
        """Send a form event (urlencoded `form`) and return the reply's payload."""
        return await self.call("event", {"type": "form", "event": name, "value": form})

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one message and wait for the reply with the same ref."""
        assert self.writer is not None
        self.ref += 1
        ref = str(self.ref)
        message = ["1", ref, self.topic, event, payload]
        self.writer.write(self.ws.send(TextMessage(data=json.dumps(message))))
        while True:
            for event_ in await self._events():
                if isinstance(event_, TextMessage):
                    self.buffer.append(event_.data)
                    if not event_.message_finished:
                        continue
                    reply = json.loads("".join(self.buffer))
                    self.buffer.clear()
                    if reply[1] == ref and reply[3] == "phx_reply":
                        result: dict[str, Any] = reply[4]
                        return result
                elif isinstance(event_, CloseConnection):
                    raise ConnectionError("The server closed the WebSocket.")

    async def close(self) -> None:
        """Close the WebSocket and the TCP connection."""
        if self.writer is not None:
            try:
                self.writer.write(self.ws.send(CloseConnection(code=1000)))
            except Exception:  # a refused or already closed socket has no close to send
                pass
            self.writer.close()

    async def _events(self) -> list[Any]:
        assert self.reader is not None
        data = await asyncio.wait_for(self.reader.read(65536), 5)
        if not data:
            raise ConnectionError("The server closed the connection.")
        self.ws.receive_data(data)
        return list(self.ws.events())


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise AssertionError(f"The page has no match for {pattern!r}.")
    return match[1]
