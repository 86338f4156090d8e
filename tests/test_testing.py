"""livestate.testing's server fixture: it says why a server did not start, and takes
another port when one it chose was taken meanwhile."""

from __future__ import annotations

import socket

import pytest

from livestate.testing import ServerProcess


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
