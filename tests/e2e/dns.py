# A real DNS server for the end-to-end tests, on its own thread so that synchronous tests can
# change its answers while proxies (separate processes) resolve names through it.
from __future__ import annotations

import asyncio
import threading

from migproxy.dnsserver import DnsServer, Mode

NAME = "svc.migproxy.test"


class ThreadedDns:
    """A DnsServer on its own event loop thread, driven from the (synchronous) test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = DnsServer("127.0.0.1", 0)

    def __enter__(self) -> ThreadedDns:
        self.thread.start()
        self._call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)  # type: ignore[arg-type]

    def set(self, addresses: list[str], name: str = NAME, ttl: int = 1) -> None:
        self.loop.call_soon_threadsafe(self.server.set_records, name, addresses, ttl)

    def weighted(self, weights: dict[str, float], name: str = NAME, ttl: int = 1) -> None:
        """One address per answer, drawn by weight (a GSLB)."""
        self.loop.call_soon_threadsafe(self.server.set_weighted, name, weights, ttl)

    def upstream(self, port: int, **keys: object) -> dict[str, object]:
        """run_proxy's [upstream] section for NAME:port resolved through this server."""
        return {"address": f"{NAME}:{port}", "nameservers": [f"127.0.0.1:{self.port}"], **keys}

    def mode(self, mode: Mode) -> None:
        self.loop.call_soon_threadsafe(self.server.set_mode, mode)

    @property
    def port(self) -> int:
        return self.server.port
