# The drain's hand-over of the accept queues (lifecycle._dup_listeners, _accept_queued), in
# process on loopback; the end-to-end behaviour is in tests/e2e/test_shutdown.py.
from __future__ import annotations

import asyncio
import errno
import os
import socket

import pytest

from migproxy import lifecycle
from migproxy.config import Address, Config, ListenConfig, UpstreamConfig
from migproxy.proxy import ProxyContext


def test_a_listener_that_cannot_be_duplicated_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # At the descriptor limit (which fdlimit.py treats as a state to live with), dup() fails:
    # that queue is lost, but the drain must go on and announce its closes.
    def no_descriptor_left(fd: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    async def main() -> list[socket.socket]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            monkeypatch.setattr(os, "dup", no_descriptor_left)
            return lifecycle._dup_listeners([server])
        finally:
            monkeypatch.undo()
            server.close()

    assert asyncio.run(main()) == []
    assert "drain: cannot keep an accept queue: Too many open files" in caplog.text


def test_every_queued_connection_is_taken_and_the_listener_closed() -> None:
    async def main() -> tuple[int, int, bool]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
        try:
            config = Config(
                listen=ListenConfig(Address("127.0.0.1", 8080)),
                upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
            )
            ctx = ProxyContext(config, loop)
            ctx.set_draining()
            taken = await lifecycle._accept_queued(ctx, [listener])
            served = len(ctx.connections)
            for conn in list(ctx.connections):
                assert conn.transport is not None
                conn.transport.abort()
            return taken, served, listener.fileno() == -1
        finally:
            for client in clients:
                client.close()

    assert asyncio.run(main()) == (5, 5, True)
