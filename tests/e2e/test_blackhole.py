# The blackhole fixture itself, with plain sockets and no proxy: a port it covers goes silent
# (no reset, no refusal), TCP keep-alive then fails an idle connection to it with ETIMEDOUT
# within idle + interval x count seconds, other ports are untouched, and once it is removed
# the port works again. Needs root and nftables (tests/e2e/blackhole.py).
from __future__ import annotations

import errno
import select
import socket
from collections.abc import Iterator

import pytest

from migproxy.config import TcpKeepaliveConfig
from migproxy.sockopts import apply_tcp_keepalive
from tests.e2e.blackhole import blackhole, require_blackhole, table_exists, tcp_sockets

FAST_PROBES = TcpKeepaliveConfig(enabled=True, idle=1, interval=1, count=2)
MARGIN = 5.0  # seconds beyond the keep-alive's own detection time
DETECTION_BOUND = FAST_PROBES.detection_seconds() + MARGIN  # ≤ 15 s, as the issue asks
TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _nftables() -> None:
    require_blackhole()


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def connect(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    """A connected pair (client, server side); the client probes with FAST_PROBES."""
    client = socket.create_connection(server.getsockname(), TIMEOUT)
    apply_tcp_keepalive(client, FAST_PROBES)
    server.settimeout(TIMEOUT)
    accepted, _ = server.accept()
    return client, accepted


def assert_alive(client: socket.socket, accepted: socket.socket) -> None:
    client.sendall(b"ping")
    accepted.settimeout(TIMEOUT)
    assert accepted.recv(4) == b"ping"


def test_idle_connection_fails_with_etimedout_when_its_peer_goes_silent(
    server: socket.socket,
) -> None:
    client, accepted = connect(server)
    with socket.create_server(("127.0.0.1", 0)) as other_server:
        control, control_accepted = connect(other_server)
        with client, accepted, control, control_accepted, blackhole(server.getsockname()[1]):
            readable, _, _ = select.select([client], [], [], DETECTION_BOUND)
            assert readable == [client], f"no error within {DETECTION_BOUND} s"
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT
            assert client.recv(1) == b""  # the error was consumed: the socket is closed
            gone = client.getsockname()[1]
            assert [s for s in tcp_sockets(gone) if s.local_port == gone] == []
            # The same probes on a port the blackhole does not cover are answered.
            assert select.select([control], [], [], 0)[0] == []
            assert_alive(control, control_accepted)


def test_new_connections_hang_silently_while_the_port_is_blackholed(
    server: socket.socket,
) -> None:
    with blackhole(server.getsockname()[1]), pytest.raises(TimeoutError):
        # A refused or reset connect would raise ConnectionRefusedError/ResetError instead.
        socket.create_connection(server.getsockname(), 1.0).close()


def test_the_port_works_again_once_the_blackhole_is_removed(server: socket.socket) -> None:
    with blackhole(server.getsockname()[1]) as table:
        assert table_exists(table)
    assert not table_exists(table)
    client, accepted = connect(server)
    with client, accepted:
        assert_alive(client, accepted)


def test_the_table_is_removed_when_the_block_fails(server: socket.socket) -> None:
    with pytest.raises(RuntimeError, match="inside"), blackhole(server.getsockname()[1]) as table:
        raise RuntimeError("inside")
    assert not table_exists(table)
