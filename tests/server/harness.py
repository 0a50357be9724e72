# The in-memory harness of the server tests: a ClientProtocol and an UpstreamConnection on
# fake transports that record what they are asked to do, joined through a real ProxyContext
# (no sockets, no running loop).
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from benchmarks.datapath_bench import MemoryTransport
from migproxy.config import Address, Config, LimitsConfig, ListenConfig, UpstreamConfig
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
        self.eof_written = False
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.chunks.append(bytes(data))
        if self.on_write is not None:
            self.on_write()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class Clock:
    """The loop's clock, set by the test (loop.time() is replaced); `ctx.now`, the sweep's
    coarse copy, is set apart where a test needs it stale."""

    def __init__(self, loop: asyncio.AbstractEventLoop, now: float = 1000.0) -> None:
        self.now = now
        loop.time = self  # type: ignore[method-assign]

    def __call__(self) -> float:
        return self.now


def pair(
    loop: asyncio.AbstractEventLoop,
    limits: LimitsConfig | None = None,
) -> tuple[ClientProtocol, FakeTransport, UpstreamConnection, FakeTransport]:
    config = Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
        limits=limits or LimitsConfig(),
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
