# migproxy/sockopts.py on real loopback sockets: the options set are the options the kernel
# reports (getsockopt, and the keep-alive timer `ss -tnoi` shows), a disabled config only
# clears SO_KEEPALIVE, accepted sockets inherit a listener's options, and the same calls work
# on what asyncio and uvloop transports return from get_extra_info("socket").
from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from migproxy.config import TcpKeepaliveConfig
from migproxy.loop import loop_factory
from migproxy.sockopts import apply_tcp_keepalive, read_tcp_keepalive, reset_on_close
from tests.e2e.blackhole import tcp_sockets

SETTINGS = TcpKeepaliveConfig(enabled=True, idle=17, interval=4, count=5, user_timeout=21.5)
OTHER = TcpKeepaliveConfig(enabled=True, idle=41, interval=7, count=3, user_timeout=0.0)
TIMEOUT = 5.0
LOOPS = pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(TIMEOUT)
        yield sock


@pytest.fixture
def pair(listener: socket.socket) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback pair: (client side, server side)."""
    with socket.create_connection(listener.getsockname(), TIMEOUT) as client:
        accepted, _ = listener.accept()
        with accepted:
            yield client, accepted


@pytest.mark.parametrize("settings", [SETTINGS, OTHER], ids=["user_timeout", "no_user_timeout"])
def test_applied_options_read_back(
    pair: tuple[socket.socket, socket.socket], settings: TcpKeepaliveConfig
) -> None:
    client, _ = pair
    apply_tcp_keepalive(client, settings)
    assert read_tcp_keepalive(client) == settings
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == round(
        settings.user_timeout * 1000
    )


def test_disabled_clears_so_keepalive_and_leaves_the_rest(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = pair
    apply_tcp_keepalive(client, SETTINGS)
    apply_tcp_keepalive(client, TcpKeepaliveConfig(enabled=False, idle=1, interval=1, count=1))
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    assert read_tcp_keepalive(client) == TcpKeepaliveConfig(
        enabled=False, idle=17, interval=4, count=5, user_timeout=21.5
    )


def test_accepted_socket_inherits_the_listeners_options(listener: socket.socket) -> None:
    # The lead's bind_listeners sets the options once per listening socket; this is the
    # kernel behaviour that makes it cover every client connection (Linux, sk_clone).
    apply_tcp_keepalive(listener, SETTINGS)
    with socket.create_connection(listener.getsockname(), TIMEOUT) as client:
        accepted, _ = listener.accept()
        with accepted:
            assert read_tcp_keepalive(accepted) == SETTINGS
            assert read_tcp_keepalive(client).enabled is False


def test_ss_shows_the_keepalive_timer_of_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, accepted = pair
    apply_tcp_keepalive(client, SETTINGS)
    port = client.getsockname()[1]
    by_port = {s.local_port: s for s in tcp_sockets(port)}
    assert set(by_port) == {port, accepted.getsockname()[1]}
    ours, theirs = by_port[port], by_port[accepted.getsockname()[1]]
    assert ours.has_keepalive_timer, ours.line
    # The time left counts down from our idle (17 s), not the kernel's default of 7200 s.
    assert ours.timer_left is not None and 0 < ours.timer_left <= SETTINGS.idle, ours.line
    assert not theirs.has_keepalive_timer, theirs.line


async def _open_through_transports() -> tuple[TcpKeepaliveConfig, TcpKeepaliveConfig]:
    """Apply through a client transport and a server's listening socket; read both back."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.BaseTransport] = loop.create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    server = await loop.create_server(Accept, "127.0.0.1", 0)
    try:
        for listening in server.sockets:
            apply_tcp_keepalive(listening, OTHER)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        try:
            apply_tcp_keepalive(transport.get_extra_info("socket"), SETTINGS)
            client_side = read_tcp_keepalive(transport.get_extra_info("socket"))
            server_transport = await asyncio.wait_for(accepted, TIMEOUT)
            server_side = read_tcp_keepalive(server_transport.get_extra_info("socket"))
            server_transport.close()
        finally:
            transport.close()
    finally:
        server.close()
        await server.wait_closed()
    return client_side, server_side


@LOOPS
def test_transport_sockets_of_both_loops(use_uvloop: bool) -> None:
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        if use_uvloop:
            assert type(runner.get_loop()).__module__.startswith("uvloop")
        client_side, server_side = runner.run(_open_through_transports())
    assert client_side == SETTINGS
    assert server_side == OTHER  # inherited from the listening socket, as in bind_listeners


async def _linger_through_a_transport() -> tuple[int, int]:
    """SO_LINGER of a transport's socket after reset_on_close (read back on a duplicate)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        sock = transport.get_extra_info("socket")
        reset_on_close(sock)
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            onoff, seconds = struct.unpack(
                "ii", dup.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
            )
    finally:
        transport.abort()
        server.close()
        await server.wait_closed()
    return onoff, seconds


@LOOPS
def test_reset_on_close_sets_a_zero_linger_on_both_loops(use_uvloop: bool) -> None:
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        assert runner.run(_linger_through_a_transport()) == (1, 0)
