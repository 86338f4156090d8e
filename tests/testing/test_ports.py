"""livestate.testing's port helpers (its surface is checked with every public module's, in
tests/core/test_public_api.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from livestate.testing import free_port, free_ports, listening


def first_ephemeral_port() -> int:
    """Where the system starts giving outgoing connections their ports (Linux; else 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError:
        return 32768


def test_free_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    """free_ports gives distinct ports nothing listens on, below the range outgoing
    connections take theirs from; free_port gives one of the same kind."""
    high = first_ephemeral_port()
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(10000 <= port < high and not listening(port) for port in ports)
    assert 10000 <= free_port() < high


def test_consecutive_ports_follow_one_another() -> None:
    """With consecutive=True the ports are base, base + 1, …, all free."""
    ports = free_ports(5, consecutive=True)
    assert ports == list(range(ports[0], ports[0] + 5))
    assert not any(listening(port) for port in ports)


def test_cluster_ports_leave_the_bus_ports_free() -> None:
    """With cluster=True each port's bus port (10000 higher) is free too."""
    ports = free_ports(6, cluster=True)
    for port in (*ports, *(port + 10000 for port in ports)):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_listening_sees_a_listener_come_and_go() -> None:
    """listening(port) is True while a socket listens there, and False once it closed."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening(port)
    assert not listening(port)
