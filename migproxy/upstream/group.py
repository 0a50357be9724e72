# UpstreamGroup: the upstream name as the data path sees it: addresses that follow DNS, their
# health, and their pooled connections.
#
# The resolver refreshes the name's answer in the background and hands every change to
# set_addresses(); health checkers (one per address, when enabled) report transitions to
# set_healthy(). Both only update the Balancer and close connections that must not be used
# any more, so the request path never waits for DNS or a health check: it calls pick(), takes
# an idle connection from the backend's pool or connects, and returns the connection with
# release() when the exchange ends.
from __future__ import annotations

import asyncio
import logging

from migproxy.config import Address, Config
from migproxy.errors import ConnectError, ConnectTimeout
from migproxy.sockopts import apply_tcp_keepalive
from migproxy.stats import Stats, UpstreamClose
from migproxy.upstream.balancer import Backend, Balancer
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.health import HealthChecker
from migproxy.upstream.resolver import UpstreamResolver

log = logging.getLogger("migproxy")

UpstreamBackend = Backend[UpstreamConnection]


class UpstreamGroup:
    """The addresses of `upstream.address` and the connections to them."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, stats: Stats) -> None:
        upstream = config.upstream
        self.config = config
        self.loop = loop
        self.stats = stats
        self.name = upstream.address.host
        self.balancer: Balancer[UpstreamConnection] = Balancer(
            upstream.address.port,
            upstream.balance,
            fail_open=upstream.health.all_down == "fail_open",
            max_idle=upstream.max_idle,
            idle_timeout=upstream.idle_timeout,
        )
        self.resolver = UpstreamResolver(
            upstream.address.host,
            nameservers=upstream.nameservers,
            min_ttl=upstream.min_ttl,
            max_ttl=upstream.max_ttl,
            stale_ttl=upstream.stale_ttl,
            stats=stats,
            loop=loop,
        )
        self.max_age = upstream.max_age
        self.checkers: dict[UpstreamBackend, HealthChecker] = {}
        self._stopping: set[asyncio.Task[None]] = set()  # checkers of removed addresses
        self._host_header = (upstream.health.host or str(upstream.address)).encode("ascii")

    def reconfigure(self, config: Config) -> None:
        """A reload: settings read per connection (timeouts, keep-alive, max_age) change;
        what needs a restart (the name, its resolution, balancing, checks) is refused earlier
        by control.restart_needed."""
        self.config = config
        self.max_age = config.upstream.max_age

    async def start(self) -> None:
        """Resolve the name (raises ResolveError if that fails) and start following it."""
        self.set_addresses(await self.resolver.resolve())
        self.resolver.start(self.set_addresses)

    async def stop(self) -> None:
        await self.resolver.stop()
        checkers, self.checkers = list(self.checkers.values()), {}
        for checker in checkers:
            await checker.stop()

    # Changes from DNS and health checks

    def set_addresses(self, hosts: tuple[str, ...]) -> None:
        """The name's answer changed: use new addresses at once, retire removed ones."""
        added, removed = self.balancer.update(hosts)
        for backend in removed:
            log.warning("upstream %s: %s left the DNS answer, retired", self.name, backend.label)
            for conn in backend.pool.drain():
                conn.close(UpstreamClose.DNS_REMOVED)
            checker = self.checkers.pop(backend, None)
            if checker is not None:
                stopping = self.loop.create_task(checker.stop())
                self._stopping.add(stopping)  # the loop keeps only a weak reference to a task
                stopping.add_done_callback(self._stopping.discard)
        for backend in added:
            if removed or len(self.balancer) > len(added):
                log.info("upstream %s: %s joined the DNS answer", self.name, backend.label)
            self._start_checks(backend)
        if not hosts:
            log.warning("upstream %s: no address left; requests get 503", self.name)
        self._count_addresses()

    def _count_addresses(self) -> None:
        backends = self.balancer.backends.values()
        healthy = sum(1 for b in backends if b.healthy)
        self.stats.addresses_healthy = healthy
        self.stats.addresses_ejected = len(backends) - healthy
        self.stats.all_down = int(self.balancer.all_down)

    def _start_checks(self, backend: UpstreamBackend) -> None:
        health = self.config.upstream.health
        if not health.enabled:
            return
        checker = HealthChecker(
            Address(backend.host, backend.port),
            health,
            self._host_header,
            self.stats,
            lambda healthy: self.set_healthy(backend, healthy),
        )
        self.checkers[backend] = checker
        checker.start()

    def set_healthy(self, backend: UpstreamBackend, healthy: bool) -> None:
        if backend.retired:
            return
        was_all_down = self.balancer.all_down
        self.balancer.set_healthy(backend, healthy)
        if not healthy:
            for conn in backend.pool.drain():
                conn.close(UpstreamClose.UNHEALTHY)
        if self.balancer.all_down and not was_all_down:
            if self.balancer.fail_open:
                log.error(
                    "upstream %s: every address failed its health checks; failing open "
                    "(requests go to all of them)",
                    self.name,
                )
            else:
                log.error(
                    "upstream %s: every address failed its health checks; answering 503",
                    self.name,
                )
        elif was_all_down and not self.balancer.all_down:
            log.warning("upstream %s: an address passed its health checks again", self.name)
        self._count_addresses()

    def unavailable_reason(self) -> str:
        """Why pick() returns None, for the 503 it causes."""
        if not self.balancer.backends:
            return f"upstream {self.name} has no address (DNS answer empty or expired)"
        return f"every address of upstream {self.name} failed its health checks"

    def describe(self) -> list[dict[str, object]]:
        """The addresses and their state, for the admin API."""
        out: list[dict[str, object]] = []
        for backend in self.balancer.backends.values():
            checker = self.checkers.get(backend)
            out.append(
                {
                    "address": backend.label,
                    "healthy": backend.healthy,
                    "eligible": backend.eligible,
                    "outstanding": backend.outstanding,
                    "idle_connections": len(backend.pool),
                    "last_check_failure": checker.last_failure if checker is not None else None,
                }
            )
        return out

    # The request path

    def pick(self) -> UpstreamBackend | None:
        """The backend for the next request; None when no address may be used (503)."""
        return self.balancer.pick()

    async def connect(self, backend: UpstreamBackend) -> UpstreamConnection:
        """A new connection to `backend`.

        Raises:
            ConnectTimeout: not connected within upstream.connect_timeout.
            ConnectError: refused, unreachable, or any other OS error.
        """
        config = self.config
        limits = config.limits
        now = self.loop.time()
        try:
            async with asyncio.timeout(config.upstream.connect_timeout):
                transport, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(
                        limits.max_header_bytes, limits.max_headers, self.stats, backend, now
                    ),
                    backend.host,
                    backend.port,
                )
        except TimeoutError:
            raise ConnectTimeout(f"connect to {backend.label} timed out") from None
        except OSError as err:
            raise ConnectError(
                f"connect to {backend.label} failed: {err.strerror or err}"
            ) from None
        self.stats.upstream_opened += 1  # counted even if it fails below: its close is
        if conn.closed:  # the upstream closed it before this task resumed (it is gone)
            raise ConnectError(f"connect to {backend.label} failed: closed at once by the upstream")
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None:
                apply_tcp_keepalive(sock, config.upstream.tcp_keepalive)
        except OSError as err:  # the peer reset it already
            conn.abort()
            raise ConnectError(
                f"connect to {backend.label} failed: {err.strerror or err}"
            ) from None
        return conn

    def release(self, conn: UpstreamConnection, now: float, draining: bool) -> None:
        """Return `conn` to its backend's pool after an exchange, or close it."""
        conn.owner = None
        if conn.reading_paused:
            # Paused for the client of the exchange that just ended (its write buffer filled
            # with the response's last bytes): the next exchange must not inherit that.
            conn.resume_reading()
        backend = conn.backend
        if not conn.keep_alive:
            conn.close(UpstreamClose.UPSTREAM)
        elif not conn.is_reusable():
            conn.close(UpstreamClose.ERROR)
        elif draining:
            conn.close(UpstreamClose.DRAIN)
        elif backend.retired:
            conn.close(UpstreamClose.DNS_REMOVED)
        elif not backend.eligible:
            conn.close(UpstreamClose.UNHEALTHY)
        elif self.max_age and now - conn.opened_at >= self.max_age:
            conn.close(UpstreamClose.MAX_AGE)
        elif not backend.pool.release(conn, now):
            # Full; maybe of connections past the idle timeout that the next sweep would close.
            for stale in backend.pool.make_room(now):
                stale.close(UpstreamClose.IDLE)
            if not backend.pool.release(conn, now):
                conn.close(UpstreamClose.POOL_FULL)

    # Housekeeping

    def sweep(self, now: float) -> None:
        """Close idle connections past the idle timeout or max_age."""
        max_age = self.max_age
        for backend in self.balancer.backends.values():
            pool = backend.pool
            if not len(pool):
                continue
            for conn in pool.expired(now):
                conn.close(UpstreamClose.IDLE)
            if max_age:
                for conn in pool.remove_if(lambda c: now - c.opened_at >= max_age):
                    conn.close(UpstreamClose.MAX_AGE)

    def drain(self) -> None:
        """Close every idle connection (the proxy is shutting down)."""
        for backend in self.balancer.backends.values():
            for conn in backend.pool.drain():
                conn.close(UpstreamClose.DRAIN)

    def idle_count(self) -> int:
        return sum(len(b.pool) for b in self.balancer.backends.values())
