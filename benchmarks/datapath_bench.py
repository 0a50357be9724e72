"""Python cost of one proxied exchange, without sockets.

Runs ClientProtocol and UpstreamConnection against in-memory transports, so the figure is the
interpreter's share of the per-request CPU time (parse, decide, serialize, bookkeeping); the
syscalls a real exchange adds are measured by bench_proxy.py.

Usage: .venv/bin/python benchmarks/datapath_bench.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from migproxy.config import Address, CloseConfig, Config, ListenConfig, UpstreamConfig
from migproxy.proxy import ProxyContext
from migproxy.server.client_protocol import ClientProtocol
from migproxy.upstream.connection import UpstreamConnection

REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: */*\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 23:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\n"
    b"hello from nginx\n"
)


class MemoryTransport(asyncio.Transport):
    """Collects writes; what a transport must answer for the proxy, and nothing more."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def run(requests: int, ratio: float) -> float:
    loop = asyncio.new_event_loop()
    config = Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
        close=CloseConfig(ratio=ratio, seed=1),
    )
    ctx = ProxyContext(config, loop)
    ctx.upstreams.set_addresses(("127.0.0.1",))
    backend = ctx.upstreams.pick()
    assert backend is not None
    upstream = UpstreamConnection(65536, 100, ctx.stats, backend, ctx.now)
    upstream.connection_made(MemoryTransport())
    client = ClientProtocol(ctx)
    client.connection_made(MemoryTransport())
    start = time.process_time()
    for _ in range(requests):
        backend.pool.release(upstream, loop.time())
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)
        if client.phase.value == "linger":  # an injected close: the client reconnects
            client = ClientProtocol(ctx)
            client.connection_made(MemoryTransport())
    elapsed = time.process_time() - start
    loop.close()
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    for ratio in (0.0, 0.1):
        print(f"ratio {ratio}: {run(args.requests, ratio):.2f} µs of Python per exchange")


if __name__ == "__main__":
    main()
