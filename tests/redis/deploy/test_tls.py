"""TLS with a CA file, against Debian's redis-server speaking only TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import livestate
from livestate import BackendUnavailableError, LiveState, Node
from livestate._backends.redis.resp import Pipe
from livestate._backends.redis.sentinel import PrimaryPipe, Sentinels, fixed
from livestate._backends.redis.urls import parse_sentinel_url, parse_url
from livestate.testing import (
    Certificates,
    SentinelProcess,
    TlsServerProcess,
    command,
    make_certificates,
)


class Note(LiveState):
    """One text property."""

    def on_mount(self, key: str) -> dict[str, str]:
        return {"text": ""}


async def test_rediss_url_with_a_ca_file(tls_server: TlsServerProcess) -> None:
    """A rediss:// URL whose ssl_ca_certs names the CA connects, checks the certificate
    and hostname, and runs commands."""
    endpoint, _ = parse_url(tls_server.url, {})
    assert endpoint.tls is not None and endpoint.tls.check_hostname
    pipe = Pipe(endpoint, 2.0)
    await pipe.call("SET", "secret", "kept")
    assert await pipe.call("GET", "secret") == "kept"
    await pipe.aclose()
    assert (
        command(tls_server.port, "GET", "secret", context=tls_server.certificates.client_context())
        == "kept"
    )


async def test_primary_pipe_over_tls(tls_server: TlsServerProcess) -> None:
    """The primary-following pipe checks ROLE and writes over TLS too."""
    endpoint, _ = parse_url(tls_server.url, {})
    pipe = PrimaryPipe(fixed(endpoint), 2.0)
    assert await pipe.call("PING") == "PONG"
    await pipe.aclose()


async def test_a_certificate_from_another_ca_is_refused(
    tls_server: TlsServerProcess, tmp_path: Path
) -> None:
    """Trusting a different CA, the connection is refused with BackendUnavailableError
    naming the certificate failure, not a hang or a raw SSL error."""
    other: Certificates = make_certificates(tmp_path)
    url = tls_server.url.replace(str(tls_server.certificates.ca), str(other.ca))
    endpoint, _ = parse_url(url, {})
    pipe = Pipe(endpoint, 2.0)
    with pytest.raises(BackendUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        await pipe.call("PING")
    await pipe.aclose()


async def test_plain_connection_to_a_tls_port_fails(tls_server: TlsServerProcess) -> None:
    """redis:// (no TLS) to the TLS port fails within the timeout, as unavailable."""
    endpoint, _ = parse_url(f"redis://127.0.0.1:{tls_server.port}/0", {})
    pipe = Pipe(endpoint, 1.0)
    with pytest.raises(BackendUnavailableError):
        await pipe.call("PING")
    await pipe.aclose()


async def test_a_node_shares_state_over_tls(tls_server: TlsServerProcess) -> None:
    """Two livestate nodes on the TLS server: a put on one reaches the other's client."""
    async with Node(tls_server.url) as writer, Node(tls_server.url) as reader:
        with livestate.use(writer):
            client = await Note.attach("tls-note")
            await client.put("text", "over TLS")
        with livestate.use(reader):
            other = await Note.attach("tls-note")
            assert other.state["text"] == "over TLS"


async def test_sentinel_over_tls(certificates: Certificates) -> None:
    """rediss+sentinel:// with a CA file and a data-node password: the Sentinels are asked
    over TLS, the primary is written over TLS, and after the primary is killed the
    writes follow the Sentinels to the promoted replica, over TLS."""
    with SentinelProcess(certificates=certificates, password="data-pw") as deployment:
        service, _ = parse_sentinel_url(deployment.url, {})
        assert service.primary.tls is not None
        assert all(sentinel.tls is not None for sentinel in service.sentinels)
        pipe = PrimaryPipe(Sentinels(service, 5.0).primary, 5.0)
        try:
            await pipe.call("SET", "where", "first")
            old = deployment.primary()
            assert deployment.data(old, "GET", "where") == "first"
            new = await asyncio.to_thread(deployment.kill_primary)
            await pipe.call("SET", "where", "second")  # waits out the failover, within 5 s
            assert new != old
            assert deployment.data(new, "GET", "where") == "second"
        finally:
            await pipe.aclose()
