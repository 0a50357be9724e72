# The state one worker's connections share: configuration turned into ready-to-use rules, the
# upstream group (addresses, health, pools), the random source of close draws, and the set of
# live client connections that the timeout sweep walks. The per-connection data path is
# server/client_protocol.py.
from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from migproxy.config import Config
from migproxy.http1.serialize import ForwardingRules
from migproxy.metrics import Metrics, flush
from migproxy.policy.close import ClosePolicy
from migproxy.stats import Stats
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.group import UpstreamGroup

if TYPE_CHECKING:
    from migproxy.server.client_protocol import ClientProtocol

log = logging.getLogger("migproxy")


class ProxyContext:
    """Everything the connections of one worker share."""

    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.rules = ForwardingRules(
            forwarded=config.proxy.forwarded,
            via=config.proxy.via,
            default_host=str(config.upstream.address).encode("ascii"),
        )
        self.policy = ClosePolicy(ratio=config.close.ratio)
        self.rng = rng if rng is not None else random.Random(config.close.seed)
        self.connections: set[ClientProtocol] = set()
        self.draining = False
        self.serving = False  # the listeners are bound
        self.access_log = config.log.access_log
        self.stats = Stats()
        self.upstreams = UpstreamGroup(config, loop, self.stats)
        self.balancer = self.upstreams.balancer  # picks the backend of each exchange
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

    def release_upstream(self, conn: UpstreamConnection) -> None:
        """Return `conn` to its pool after an exchange, or close it if it cannot be reused."""
        self.upstreams.release(conn, self.now, self.draining)

    def sweep(self) -> None:
        """Fire the deadlines that have passed; close idle upstream connections too old."""
        now = self.now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.deadline_passed(now)
        self.upstreams.sweep(now)
        if self.metrics is not None:
            flush(self.stats, self.metrics)

    def set_draining(self) -> None:
        """From now on every response announces close, and idle connections are closed."""
        self.draining = True
        for conn in list(self.connections):
            conn.shutdown()
        self.upstreams.drain()
