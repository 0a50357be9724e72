# Flow control between the two sides of an exchange, on in-memory transports (no sockets):
# when an exchange ends, neither side may stay paused on the other's behalf.
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.datapath_bench import MemoryTransport
from migproxy.config import Address, Config, ListenConfig, UpstreamConfig
from migproxy.proxy import ProxyContext
from migproxy.server.client_protocol import ClientProtocol
from migproxy.upstream.connection import UpstreamConnection

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class FakeTransport(MemoryTransport):
    """The benchmark's in-memory transport, keeping what is written and whether it reads;
    `on_write` can play the kernel's buffer filling up."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.reading = True
        self.on_write: Callable[[], None] | None = None

    def write(self, data: Any) -> None:
        self.chunks.append(bytes(data))
        if self.on_write is not None:
            self.on_write()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def pair(
    loop: asyncio.AbstractEventLoop,
) -> tuple[ClientProtocol, FakeTransport, UpstreamConnection, FakeTransport]:
    config = Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
    )
    ctx = ProxyContext(config, loop)
    ctx.upstreams.set_addresses(("127.0.0.1",))
    backend = ctx.upstreams.pick()
    assert backend is not None
    upstream = UpstreamConnection(65536, 100, ctx.stats, backend, ctx.now)
    upstream_transport = FakeTransport()
    upstream.connection_made(upstream_transport)
    backend.pool.release(upstream, ctx.now)
    client = ClientProtocol(ctx)
    client_transport = FakeTransport()
    client.connection_made(client_transport)
    return client, client_transport, upstream, upstream_transport


def test_upstream_paused_for_a_slow_client_is_resumed_when_pooled(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    client.data_received(REQUEST)
    # The response's last bytes fill the client's write buffer: the proxy pauses the upstream.
    client_transport.on_write = client.pause_writing
    upstream.data_received(RESPONSE)
    assert client_transport.chunks[-1].endswith(b"ok")
    # The exchange is over and the connection went back to the pool: it must read again.
    assert upstream.is_usable()
    assert upstream_transport.reading
    client_transport.on_write = None
    client.resume_writing()
    client.data_received(REQUEST)  # the next exchange gets that connection, and its response
    upstream.data_received(RESPONSE)
    assert client_transport.chunks[-1].endswith(b"ok")


def test_client_paused_for_a_full_upstream_is_resumed_for_its_next_request(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    # Writing the request fills the upstream's write buffer: the proxy stops reading the client.
    upstream_transport.on_write = upstream.pause_writing
    client.data_received(REQUEST)
    assert not client_transport.reading
    upstream.data_received(RESPONSE)  # the upstream answers; its buffer is still draining
    assert client_transport.chunks[-1].endswith(b"ok")
    assert client_transport.reading, "the client's next request would never be read"
