"""Telling the process behind a loopback connection, as the Runtime API's gates do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bridge.targets._runtime_callers import _client_socket, _held_by_session


@pytest.fixture(params=["127.0.0.1", "::1"])
def connection(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, accepted) ends of a fresh loopback TCP connection."""
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((request.param, 0))
        server.listen()
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            yield client, accepted


def test_the_client_end_of_a_connection_is_found_with_its_owner(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    client, accepted = connection
    found = _client_socket(accepted.getpeername(), accepted.getsockname())
    assert found is not None
    assert found.uid == os.getuid()
    assert found.inode == os.fstat(client.fileno()).st_ino  # the client's, not the server's


def test_a_connection_that_is_not_there_is_not_found(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    _, accepted = connection
    host, port = accepted.getpeername()[:2]
    assert _client_socket((host, port ^ 1), accepted.getsockname()) is None
    assert _client_socket("/a/unix/socket", accepted.getsockname()) is None


def test_only_a_process_of_the_session_holds_the_socket(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    """This process holds the client end: its session passes, another session does not."""
    _, accepted = connection
    peer, local = accepted.getpeername(), accepted.getsockname()
    assert _held_by_session(peer, local, os.getsid(0))
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(5)"], start_new_session=True
    )
    try:
        assert not _held_by_session(peer, local, other.pid)
    finally:
        other.kill()
        other.wait()
