"""The redis:// backend over TLS (rediss://) with a CA file, against Debian's redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from livestate import BackendUnavailableError, Change, LiveState, Node
from livestate.testing import TlsServerProcess

from ...support import eventually


class Secured(LiveState):
    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0}


async def test_two_nodes_share_a_live_state_over_tls(tls_server: TlsServerProcess) -> None:
    """rediss://…?ssl_ca_certs=CA: writes on one node reach a client on the other."""
    async with Node(tls_server.url) as a, Node(tls_server.url) as b:
        changes: list[Change] = []
        client = await a.attach(Secured, "tls", on_change=changes.append)
        for _ in range(5):
            await b.increment(Secured, "tls", "n")
        await eventually(lambda: client.state["n"] == 5)
        assert [change.kind for change in changes] == ["updated"] * 5


async def test_a_server_not_signed_by_the_ca_is_refused(tls_server: TlsServerProcess) -> None:
    """Without the CA, the server's certificate is not trusted: the node refuses it."""
    node = Node(f"rediss://127.0.0.1:{tls_server.port}/0?timeout=1")
    try:
        with pytest.raises(BackendUnavailableError, match=r"CERTIFICATE_VERIFY_FAILED"):
            await node.start(Secured, "untrusted")
    finally:
        await node.aclose()
