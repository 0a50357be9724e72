# Plain counters the data path bumps: integer additions on one object per worker, nothing
# else. metrics.py turns them into Prometheus series when the sweep runs and before every
# scrape, so the per-request cost of observability is a few attribute increments.
#
# Rule: this module imports nothing from prometheus_client (the data path imports it).
from __future__ import annotations

import enum
from bisect import bisect_left

from migproxy.policy.close import CloseReason

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds of the upstream request duration histogram, in seconds (+Inf is implied).
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


class Stats:
    """Counters since the last flush (deltas), and a few current values (gauges)."""

    __slots__ = (
        "requests",
        "connections_opened",
        "closes",
        "injected",
        "connection_samples",
        "upstream_requests",
        "upstream_opened",
        "upstream_closes",
        "upstream_errors",
        "upstream_seconds",
        "upstream_seconds_sum",
        "active",
    )

    def __init__(self) -> None:
        # requests[reused][status class index]: reused is 0 (fresh) or 1 (reused)
        self.requests = [[0] * len(STATUS_CLASSES), [0] * len(STATUS_CLASSES)]
        self.connections_opened = 0
        self.closes: dict[CloseReason, int] = {}
        self.injected: dict[CloseReason, int] = {}
        # (requests served, lifetime in seconds) of each client connection closed
        self.connection_samples: list[tuple[int, float]] = []
        self.upstream_requests = [0, 0]  # [fresh, reused]
        self.upstream_opened = 0
        self.upstream_closes: dict[UpstreamClose, int] = {}
        self.upstream_errors: dict[str, int] = {}
        # observations per bucket (not cumulative; the last one is +Inf), and their sum
        self.upstream_seconds = [0] * (len(UPSTREAM_SECONDS_BUCKETS) + 1)
        self.upstream_seconds_sum = 0.0
        self.active = 0  # client connections open now (a gauge, never reset)

    def count_response(self, reused: bool, status: int) -> None:
        index = status // 100 - 1
        if 0 <= index < len(STATUS_CLASSES):
            self.requests[reused][index] += 1

    def count_close(self, reason: CloseReason, requests: int, lifetime: float) -> None:
        self.closes[reason] = self.closes.get(reason, 0) + 1
        self.connection_samples.append((requests, lifetime))

    def count_injected(self, reason: CloseReason) -> None:
        self.injected[reason] = self.injected.get(reason, 0) + 1

    def count_upstream_close(self, reason: UpstreamClose) -> None:
        self.upstream_closes[reason] = self.upstream_closes.get(reason, 0) + 1

    def count_upstream_error(self, kind: str) -> None:
        # kind is an UpstreamError.kind: a fixed set (metrics.UPSTREAM_ERROR_KINDS)
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def observe_upstream(self, seconds: float) -> None:
        """One upstream exchange took `seconds` (request sent to response complete)."""
        self.upstream_seconds[bisect_left(UPSTREAM_SECONDS_BUCKETS, seconds)] += 1
        self.upstream_seconds_sum += seconds
