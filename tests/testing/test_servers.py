"""livestate.testing's server fixture: it says why a server did not start, takes
another port when one it chose was taken meanwhile, and starts empty whatever an
earlier server on its port left on disk."""

from __future__ import annotations

import socket

import pytest

from livestate.testing import ServerProcess, command


def test_a_port_taken_meanwhile_is_chosen_anew() -> None:
    """Another process listens on the port the fixture chose: it starts on another one."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ServerProcess()
        server.port = taken.getsockname()[1]  # as if taken between the choice and the start
        with server:
            assert server.port != taken.getsockname()[1]
            assert server.answers()


def test_a_port_given_that_is_taken_fails_with_what_the_server_said() -> None:
    """A port the caller gave is not changed: the error quotes the server's own log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ServerProcess(port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match=r"(?s)exited at start: .*in use"):
            server.start()


def test_a_server_starts_empty_whatever_an_earlier_one_left_on_disk() -> None:
    """A replica on this port once wrote its synced data (here, a file no release can read,
    as a newer server's format is to an older one): the next server on the port neither
    loads it nor refuses to start, and a restart after kill() is empty too."""
    server = ServerProcess()
    server.database.write_bytes(b"REDIS0099 written by a release this server cannot read")
    with server:
        assert command(server.port, "DBSIZE") == 0
        command(server.port, "SET", "k", "v")
        command(server.port, "SAVE")
        assert server.database.exists()
        server.kill()
        assert not server.database.exists()
        server.start()
        assert command(server.port, "DBSIZE") == 0
