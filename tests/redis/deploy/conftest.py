"""Real deployments for the deploy tests: a Valkey cluster, Sentinels, a TLS server.

Each is started by a fixture on free 127.0.0.1 ports and stopped by its PIDs.
The cluster lives for the session (a test that kills a node restarts it); a
Sentinel deployment is started per test, because a failover leaves the
Sentinels polling for up to 10 s before they trust the new replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from livestate.testing import (
    Certificates,
    ClusterProcess,
    SentinelProcess,
    TlsServerProcess,
    make_certificates,
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterProcess]:
    """Three primaries, each with a replica."""
    with ClusterProcess(primaries=3, replicas=1) as deployment:
        yield deployment


@pytest.fixture
def sentinel() -> Iterator[SentinelProcess]:
    """A primary, its replica and three Sentinels watching service "livestate"."""
    with SentinelProcess() as deployment:
        yield deployment


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a server certificate for 127.0.0.1, made with openssl for this session."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_certificates(directory)


@pytest.fixture(scope="session")
def tls_server(certificates: Certificates) -> Iterator[TlsServerProcess]:
    """Debian's redis-server speaking only TLS (scripts/install-redis-server installs it)."""
    with TlsServerProcess(certificates) as server:
        yield server
