# Plain counters the data path bumps: integer additions on one object per worker, nothing
# else. metrics.py turns them into Prometheus series when the sweep runs and before every
# scrape, so the per-request cost of observability is a few attribute increments.
#
# Rule: this module imports nothing from prometheus_client (the data path imports it).
from __future__ import annotations

import enum
import math
from bisect import bisect_left

from migproxy.policy.close import CloseReason
from migproxy.policy.gate import Hold

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Histogram bucket upper bounds (+Inf is implied).
REQUESTS_PER_CONNECTION_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000)
CONNECTION_SECONDS_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
UPSTREAM_SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class UpstreamClose(enum.Enum):
    """Why an upstream connection was closed (metric label values)."""

    IDLE = "idle"  # idle in the pool for longer than upstream.idle_timeout
    UPSTREAM = "upstream"  # the upstream announced or performed the close
    POOL_FULL = "pool_full"  # released while the pool already held max_idle connections
    ERROR = "error"  # protocol error, reset, timeout, or the client left mid-exchange
    DRAIN = "drain"  # the proxy is shutting down
    DNS_REMOVED = "dns_removed"  # its address left the upstream name's DNS answer
    MAX_AGE = "max_age"  # older than upstream.max_age
    UNHEALTHY = "unhealthy"  # its address was ejected by the health checks


class Resolution(enum.Enum):
    """Outcome of one DNS lookup of the upstream name (metric label values)."""

    OK = "ok"  # a fresh answer
    ERROR = "error"  # the lookup failed (timeout, SERVFAIL, NXDOMAIN, no address)
    STALE_SERVED = "stale_served"  # it failed and the last good answer stays in use


class DnsSample(enum.Enum):
    """Outcome of one sample of the watched name's DNS answers (metric label values)."""

    OK = "ok"  # enough queries answered to measure the share
    ERROR = "error"  # they timed out or failed (SERVFAIL, NXDOMAIN, no address)


class HealthCheck(enum.Enum):
    """Outcome of one active health check (metric label values)."""

    OK = "ok"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # the proxy itself was too late to judge the answer


class BucketCounts:
    """A histogram as plain counts: observations per bucket (not cumulative) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last bucket is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class Stats:
    """Counters since the last flush (deltas), and a few current values (gauges)."""

    __slots__ = (
        "requests",
        "connections_opened",
        "closes",
        "injected",
        "deferred",
        "would_close",
        "returning",
        "requests_per_connection",
        "connection_seconds",
        "upstream_requests",
        "upstream_opened",
        "upstream_closes",
        "upstream_errors",
        "upstream_seconds",
        "upstream_retries",
        "resolutions",
        "health_checks",
        "addresses_healthy",
        "addresses_ejected",
        "all_down",
        "active",
        "active_stale",
        "dns_samples",
        "dns_share",
        "samples_dns",
    )

    def __init__(self) -> None:
        # requests[stale * 2 + reused][status class index]: stale is 1 for a connection opened
        # before the migration epoch, reused is 1 for every request but a connection's first
        self.requests = [[0] * len(STATUS_CLASSES) for _ in range(4)]
        self.connections_opened = 0
        self.closes: dict[CloseReason, int] = {}
        self.injected: dict[CloseReason, int] = {}
        self.deferred: dict[tuple[CloseReason, Hold], int] = {}  # policy closes held back
        self.would_close: dict[CloseReason, int] = {}  # what dry_run did not close
        self.returning = 0  # reconnects of client addresses within the returning window
        # of each client connection closed: requests served, lifetime in seconds
        self.requests_per_connection = BucketCounts(REQUESTS_PER_CONNECTION_BUCKETS)
        self.connection_seconds = BucketCounts(CONNECTION_SECONDS_BUCKETS)
        self.upstream_requests = [0, 0]  # [fresh, reused]
        self.upstream_opened = 0
        self.upstream_closes: dict[UpstreamClose, int] = {}
        self.upstream_errors: dict[str, int] = {}
        self.upstream_seconds = BucketCounts(UPSTREAM_SECONDS_BUCKETS)
        self.upstream_retries = 0  # requests retried after a stale keep-alive connection
        self.resolutions: dict[Resolution, int] = {}
        self.health_checks: dict[HealthCheck, int] = {}
        # Gauges of the upstream name's current answer, set by UpstreamGroup on each change.
        self.addresses_healthy = 0
        self.addresses_ejected = 0
        self.all_down = 0
        self.active = 0  # client connections open now (a gauge, never reset)
        self.active_stale = 0  # of which opened before the epoch (set by each sweep)
        self.dns_samples: dict[DnsSample, int] = {}  # samples of the migration watch
        # A gauge set by the migration watch: the share of the watched name's answers that
        # point at this VIP in its last sample; NaN while nothing is watched or measured.
        self.dns_share = math.nan
        # False in a worker that leaves the sampling of the watched name to another: it
        # reports no share (its NaN would hide the sampler's in the workers' aggregate).
        self.samples_dns = True

    def count_response(self, stale: bool, reused: bool, status: int) -> None:
        index = status // 100 - 1
        if 0 <= index < len(STATUS_CLASSES):
            self.requests[stale * 2 + reused][index] += 1

    def count_close(self, reason: CloseReason, requests: int, lifetime: float) -> None:
        self.closes[reason] = self.closes.get(reason, 0) + 1
        self.requests_per_connection.observe(requests)
        self.connection_seconds.observe(lifetime)

    def count_injected(self, reason: CloseReason) -> None:
        self.injected[reason] = self.injected.get(reason, 0) + 1

    def count_deferred(self, reason: CloseReason, hold: Hold) -> None:
        key = (reason, hold)
        self.deferred[key] = self.deferred.get(key, 0) + 1

    def count_would_close(self, reason: CloseReason) -> None:
        self.would_close[reason] = self.would_close.get(reason, 0) + 1

    def count_upstream_close(self, reason: UpstreamClose) -> None:
        self.upstream_closes[reason] = self.upstream_closes.get(reason, 0) + 1

    def count_upstream_error(self, kind: str) -> None:
        # kind is an UpstreamError.kind: a fixed set (metrics.UPSTREAM_ERROR_KINDS)
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def count_resolution(self, result: Resolution) -> None:
        self.resolutions[result] = self.resolutions.get(result, 0) + 1

    def count_health_check(self, result: HealthCheck) -> None:
        self.health_checks[result] = self.health_checks.get(result, 0) + 1

    def count_dns_sample(self, result: DnsSample) -> None:
        self.dns_samples[result] = self.dns_samples.get(result, 0) + 1
