"""Fixtures of the write-path tests: a cluster for each module (each test's own server is
tests/conftest.py's `server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from livestate.testing import ClusterProcess


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    """Three primaries, each with a replica, for this module's tests."""
    with ClusterProcess(primaries=3, replicas=1) as deployment:
        yield deployment
