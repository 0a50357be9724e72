# The state one worker's connections share: configuration turned into ready-to-use rules, the
# upstream pool, the random source of close draws, and the set of live client connections
# that the timeout sweep walks. The per-connection data path is server/client_protocol.py.
from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from migproxy.config import Config
from migproxy.errors import ConnectError, ConnectTimeout
from migproxy.http1.serialize import ForwardingRules
from migproxy.metrics import Metrics, flush
from migproxy.policy.close import ClosePolicy
from migproxy.stats import Stats, UpstreamClose
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.pool import IdlePool

if TYPE_CHECKING:
    from migproxy.server.client_protocol import ClientProtocol

log = logging.getLogger("migproxy")


class ProxyContext:
    """Everything the connections of one worker share."""

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        upstream_host: str,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.upstream_host = upstream_host  # the resolved address to connect to
        self.upstream_port = config.upstream.address.port
        self.rules = ForwardingRules(
            forwarded=config.proxy.forwarded,
            via=config.proxy.via,
            default_host=str(config.upstream.address).encode("ascii"),
        )
        self.policy = ClosePolicy(ratio=config.close.ratio)
        self.rng = rng if rng is not None else random.Random(config.close.seed)
        self.pool: IdlePool[UpstreamConnection] = IdlePool(
            config.upstream.max_idle, config.upstream.idle_timeout
        )
        self.connections: set[ClientProtocol] = set()
        self.draining = False
        self.serving = False  # the listeners are bound
        self.access_log = config.log.access_log
        self.stats = Stats()
        self.metrics = metrics
        if metrics is not None:
            metrics.close_ratio.set(config.close.ratio)
        self.now = loop.time()  # coarse clock for deadlines, refreshed by sweep()
        # Timeouts, read on every exchange: copied out of the config once.
        self.head_timeout = config.limits.head_timeout
        self.body_timeout = config.limits.body_timeout
        self.keepalive_timeout = config.limits.keepalive_timeout
        self.response_timeout = config.upstream.response_timeout
        self.linger = config.close.linger

    async def open_upstream(self) -> UpstreamConnection:
        """A new connection to the upstream.

        Raises:
            ConnectTimeout: not connected within upstream.connect_timeout.
            ConnectError: refused, unreachable, or any other OS error.
        """
        limits = self.config.limits
        try:
            async with asyncio.timeout(self.config.upstream.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(
                        limits.max_header_bytes, limits.max_headers, self.stats
                    ),
                    self.upstream_host,
                    self.upstream_port,
                )
        except TimeoutError:
            raise ConnectTimeout("upstream connect timed out") from None
        except OSError as err:
            raise ConnectError(f"upstream connect failed: {err.strerror or err}") from None
        self.stats.upstream_opened += 1
        return conn

    def release_upstream(self, conn: UpstreamConnection) -> None:
        """Return `conn` to the pool after an exchange, or close it if it cannot be reused."""
        conn.owner = None
        if conn.reading_paused:
            # Paused for the client of the exchange that just ended (its write buffer filled
            # with the response's last bytes): the next exchange must not inherit that.
            conn.resume_reading()
        if not conn.keep_alive:
            conn.close(UpstreamClose.UPSTREAM)
        elif not conn.is_reusable():
            conn.close(UpstreamClose.ERROR)
        elif self.draining:
            conn.close(UpstreamClose.DRAIN)
        elif not self.pool.release(conn, self.now):
            conn.close(UpstreamClose.POOL_FULL)

    def sweep(self) -> None:
        """Fire the deadlines that have passed; close idle upstream connections too old."""
        now = self.now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.deadline_passed(now)
        for upstream in self.pool.expired(now):
            upstream.close(UpstreamClose.IDLE)
        if self.metrics is not None:
            flush(self.stats, self.metrics)

    def set_draining(self) -> None:
        """From now on every response announces close, and idle connections are closed."""
        self.draining = True
        for conn in list(self.connections):
            conn.shutdown()
        for upstream in self.pool.drain():
            upstream.close(UpstreamClose.DRAIN)
