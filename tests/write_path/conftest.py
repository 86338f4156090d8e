"""Fixtures of the write-path tests: a Valkey server of each test's own, stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from livestate.testing import ClusterProcess, ServerProcess


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A server of the test's own, on a free loopback port."""
    process = ServerProcess().start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    """Three primaries, each with a replica, for this module's tests."""
    with ClusterProcess(primaries=3, replicas=1) as deployment:
        yield deployment
