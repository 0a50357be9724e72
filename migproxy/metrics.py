# Every Prometheus metric of migproxy, defined in one place, and the flush that moves the data
# path's plain counters (stats.py) into them.
#
# Rules: names follow the Prometheus conventions (prefix migproxy_, base units, _total on
# counters); every series carries the configured `vip` label; label values come from bounded
# sets (never a client address, a path or a raw upstream address). build_metrics() takes the
# registry, so tests use a fresh one. Gauges name a multiprocess_mode for when worker
# processes share one exposition (prometheus-client multiprocess mode).
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from migproxy import __version__
from migproxy.http1 import parse
from migproxy.policy.close import POLICY_REASONS, CloseReason
from migproxy.policy.gate import Hold
from migproxy.stats import (
    CONNECTION_SECONDS_BUCKETS,
    REQUESTS_PER_CONNECTION_BUCKETS,
    STATUS_CLASSES,
    UPSTREAM_SECONDS_BUCKETS,
    BucketCounts,
    DnsSample,
    HealthCheck,
    Resolution,
    Stats,
    UpstreamClose,
)

K = TypeVar("K")
NAMESPACE = "migproxy"
CONNECTION_STATES = ("fresh", "reused")
COHORTS = ("current", "stale")
UPSTREAM_ERROR_KINDS = (
    "connect",
    "connect_timeout",
    "timeout",
    "reset",
    "protocol",
    "unavailable",
    "resolve",
    "error",
)


@dataclass(frozen=True)
class Metrics:
    """The metric families, with the label children the flush uses bound ahead of time."""

    families: tuple[MetricWrapperBase, ...]
    requests: tuple[tuple[Counter, ...], ...]  # [stale * 2 + reused][status class]
    connections_opened: Counter
    connections_closed: dict[CloseReason, Counter]
    injected_closes: dict[CloseReason, Counter]
    deferred_closes: dict[tuple[CloseReason, Hold], Counter]
    would_close: dict[CloseReason, Counter]
    connections_active: tuple[Gauge, Gauge]  # [current, stale]
    requests_per_connection: Histogram
    connection_duration: Histogram
    close_ratio: Gauge
    upstream_requests: tuple[Counter, Counter]  # [fresh, reused]
    upstream_opened: Counter
    upstream_closed: dict[UpstreamClose, Counter]
    upstream_errors: dict[str, Counter]
    upstream_duration: Histogram
    upstream_retries: Counter
    resolutions: dict[Resolution, Counter]
    health_checks: dict[HealthCheck, Counter]
    upstream_addresses: tuple[Gauge, Gauge]  # [healthy, ejected]
    upstream_all_down: Gauge
    returning_reconnects: Counter
    migration_epoch: Gauge  # set once migration epochs exist (#5); 0 = none
    migration_dns_share: Gauge
    migration_dns_samples: dict[DnsSample, Counter]
    reloads: dict[str, Counter]  # by result: "ok", "error" (reload itself is #5)
    last_reload_success: Gauge
    build_info: Gauge


def build_metrics(registry: CollectorRegistry | None, vip: str) -> Metrics:
    """Create every migproxy metric in `registry` (None: prometheus-client's default)."""
    requests = Counter(
        "requests",
        "Requests answered, by the state of their client connection "
        "(first request on it or a later one), cohort (connection opened before the current "
        "migration epoch or not) and status class.",
        ["vip", "connection", "cohort", "status_class"],
        namespace=NAMESPACE,
        registry=registry,
    )
    opened = Counter(
        "connections_opened",
        "Client connections accepted.",
        ["vip"],
        namespace=NAMESPACE,
        registry=registry,
    )
    closed = Counter(
        "connections_closed",
        "Client connections closed, by reason.",
        ["vip", "reason"],
        namespace=NAMESPACE,
        registry=registry,
    )
    injected = Counter(
        "injected_closes",
        "Connection: close announced by a migration policy, by policy.",
        ["vip", "policy"],
        namespace=NAMESPACE,
        registry=registry,
    )
    deferred = Counter(
        "deferred_closes",
        "Closes a policy wanted that were held back to a later response, by policy and cause "
        "(budget_denied: the close budget; returning_backoff: the client came straight back).",
        ["vip", "policy", "cause"],
        namespace=NAMESPACE,
        registry=registry,
    )
    would = Counter(
        "would_close",
        "Closes a policy decided while dry_run is on, none of them carried out, by policy.",
        ["vip", "policy"],
        namespace=NAMESPACE,
        registry=registry,
    )
    active = Gauge(
        "connections_active",
        "Client connections open now, by cohort.",
        ["vip", "cohort"],
        multiprocess_mode="livesum",
        namespace=NAMESPACE,
        registry=registry,
    )
    per_connection = Histogram(
        "requests_per_connection",
        "Requests served on each client connection, at its close.",
        ["vip"],
        buckets=REQUESTS_PER_CONNECTION_BUCKETS,
        namespace=NAMESPACE,
        registry=registry,
    )
    duration = Histogram(
        "connection_duration_seconds",
        "Lifetime of each client connection, at its close.",
        ["vip"],
        buckets=CONNECTION_SECONDS_BUCKETS,
        namespace=NAMESPACE,
        registry=registry,
    )
    ratio = Gauge(
        "close_ratio",
        "Configured share of responses that announce Connection: close.",
        ["vip"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    up_requests = Counter(
        "upstream_requests",
        "Requests sent upstream, by upstream connection state.",
        ["vip", "connection"],
        namespace=NAMESPACE,
        registry=registry,
    )
    up_opened = Counter(
        "upstream_connections_opened",
        "Upstream connections opened.",
        ["vip"],
        namespace=NAMESPACE,
        registry=registry,
    )
    up_closed = Counter(
        "upstream_connections_closed",
        "Upstream connections closed, by reason.",
        ["vip", "reason"],
        namespace=NAMESPACE,
        registry=registry,
    )
    up_errors = Counter(
        "upstream_errors",
        "Exchanges the upstream failed, by kind.",
        ["vip", "kind"],
        namespace=NAMESPACE,
        registry=registry,
    )
    up_duration = Histogram(
        "upstream_request_duration_seconds",
        "Time from a request sent upstream to its response complete.",
        ["vip"],
        buckets=UPSTREAM_SECONDS_BUCKETS,
        namespace=NAMESPACE,
        registry=registry,
    )
    up_retries = Counter(
        "upstream_retries",
        "Requests retried on a new upstream connection after a reused one turned out closed.",
        ["vip"],
        namespace=NAMESPACE,
        registry=registry,
    )
    resolutions = Counter(
        "upstream_resolutions",
        "DNS lookups of the upstream name, by result (stale_served: the last good answer "
        "stays in use after a failed lookup).",
        ["vip", "result"],
        namespace=NAMESPACE,
        registry=registry,
    )
    checks = Counter(
        "upstream_health_checks",
        "Active health checks, by result (inconclusive: the proxy itself was late).",
        ["vip", "result"],
        namespace=NAMESPACE,
        registry=registry,
    )
    addresses = Gauge(
        "upstream_addresses",
        "Addresses of the upstream name in the current DNS answer, by health state.",
        ["vip", "state"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    all_down = Gauge(
        "upstream_all_down",
        "1 when every upstream address failed its health checks (fail open or 503).",
        ["vip"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    returning = Counter(
        "returning_reconnects",
        "Client addresses that reconnected within the returning window after a forced close.",
        ["vip"],
        namespace=NAMESPACE,
        registry=registry,
    )
    epoch = Gauge(
        "migration_epoch_timestamp_seconds",
        "Start of the current migration epoch, Unix time (0: no epoch set).",
        ["vip"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    dns_share = Gauge(
        "migration_dns_share",
        "Share of the watched name's DNS answers that point at this VIP, last sample.",
        ["vip"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    dns_samples = Counter(
        "migration_dns_samples",
        "Samples of the watched name's DNS answers, by result.",
        ["vip", "result"],
        namespace=NAMESPACE,
        registry=registry,
    )
    reloads = Counter(
        "config_reloads",
        "Configuration reloads, by result.",
        ["vip", "result"],
        namespace=NAMESPACE,
        registry=registry,
    )
    last_reload = Gauge(
        "config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load.",
        ["vip"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    build_info = Gauge(
        "build_info",
        "Always 1: the version, and the head parser this process runs (c, or python when the "
        "C extension was not built, which costs about a third more CPU per request).",
        ["vip", "version", "parser"],
        multiprocess_mode="max",
        namespace=NAMESPACE,
        registry=registry,
    )
    build_info.labels(vip, __version__, "c" if parse.ACCELERATED else "python").set(1)
    return Metrics(
        families=(
            requests,
            opened,
            closed,
            injected,
            deferred,
            would,
            active,
            per_connection,
            duration,
            ratio,
            up_requests,
            up_opened,
            up_closed,
            up_errors,
            up_duration,
            up_retries,
            resolutions,
            checks,
            addresses,
            all_down,
            returning,
            epoch,
            dns_share,
            dns_samples,
            reloads,
            last_reload,
            build_info,
        ),
        requests=tuple(
            tuple(requests.labels(vip, state, cohort, cls) for cls in STATUS_CLASSES)
            for cohort in COHORTS
            for state in CONNECTION_STATES
        ),
        connections_opened=opened.labels(vip),
        connections_closed={r: closed.labels(vip, r.value) for r in CloseReason},
        injected_closes={r: injected.labels(vip, r.value) for r in POLICY_REASONS},
        deferred_closes={
            (r, h): deferred.labels(vip, r.value, h.value) for r in POLICY_REASONS for h in Hold
        },
        would_close={r: would.labels(vip, r.value) for r in POLICY_REASONS},
        connections_active=(active.labels(vip, "current"), active.labels(vip, "stale")),
        requests_per_connection=per_connection.labels(vip),
        connection_duration=duration.labels(vip),
        close_ratio=ratio.labels(vip),
        upstream_requests=(up_requests.labels(vip, "fresh"), up_requests.labels(vip, "reused")),
        upstream_opened=up_opened.labels(vip),
        upstream_closed={r: up_closed.labels(vip, r.value) for r in UpstreamClose},
        upstream_errors={k: up_errors.labels(vip, k) for k in UPSTREAM_ERROR_KINDS},
        upstream_duration=up_duration.labels(vip),
        upstream_retries=up_retries.labels(vip),
        resolutions={r: resolutions.labels(vip, r.value) for r in Resolution},
        health_checks={r: checks.labels(vip, r.value) for r in HealthCheck},
        upstream_addresses=(addresses.labels(vip, "healthy"), addresses.labels(vip, "ejected")),
        upstream_all_down=all_down.labels(vip),
        returning_reconnects=returning.labels(vip),
        migration_epoch=epoch.labels(vip),
        migration_dns_share=dns_share.labels(vip),
        migration_dns_samples={r: dns_samples.labels(vip, r.value) for r in DnsSample},
        reloads={result: reloads.labels(vip, result) for result in ("ok", "error")},
        last_reload_success=last_reload.labels(vip),
        build_info=build_info,
    )


def flush(stats: Stats, metrics: Metrics) -> None:
    """Add the counts gathered since the last flush to the metrics, and reset them."""
    for state, counts in enumerate(stats.requests):
        _flush_list(counts, metrics.requests[state])
    if stats.connections_opened:
        metrics.connections_opened.inc(stats.connections_opened)
        stats.connections_opened = 0
    _flush_map(stats.closes, metrics.connections_closed)
    _flush_map(stats.injected, metrics.injected_closes)
    _flush_map(stats.deferred, metrics.deferred_closes)
    _flush_map(stats.would_close, metrics.would_close)
    if stats.returning:
        metrics.returning_reconnects.inc(stats.returning)
        stats.returning = 0
    _flush_histogram(stats.requests_per_connection, metrics.requests_per_connection)
    _flush_histogram(stats.connection_seconds, metrics.connection_duration)
    metrics.connections_active[0].set(stats.active - stats.active_stale)
    metrics.connections_active[1].set(stats.active_stale)
    _flush_list(stats.upstream_requests, metrics.upstream_requests)
    if stats.upstream_opened:
        metrics.upstream_opened.inc(stats.upstream_opened)
        stats.upstream_opened = 0
    _flush_map(stats.upstream_closes, metrics.upstream_closed)
    _flush_map(stats.upstream_errors, metrics.upstream_errors)
    _flush_histogram(stats.upstream_seconds, metrics.upstream_duration)
    if stats.upstream_retries:
        metrics.upstream_retries.inc(stats.upstream_retries)
        stats.upstream_retries = 0
    _flush_map(stats.resolutions, metrics.resolutions)
    _flush_map(stats.health_checks, metrics.health_checks)
    metrics.upstream_addresses[0].set(stats.addresses_healthy)
    metrics.upstream_addresses[1].set(stats.addresses_ejected)
    metrics.upstream_all_down.set(stats.all_down)
    _flush_map(stats.dns_samples, metrics.migration_dns_samples)
    if stats.samples_dns:
        metrics.migration_dns_share.set(stats.dns_share)


def _flush_histogram(observed: BucketCounts, histogram: Histogram) -> None:
    # Histogram.observe() for every exchange would cost more than the rest of the metrics
    # together, so the data path counts per bucket and the counts are added here to the
    # histogram's own (non-cumulative) bucket values, the ones observe() increments.
    # tests/test_metrics_flush.py checks that the exposition is what observe() would give.
    counts = observed.counts
    if not any(counts):
        return
    for index, count in enumerate(counts):
        if count:
            histogram._buckets[index].inc(count)
            counts[index] = 0
    histogram._sum.inc(observed.total)
    observed.total = 0.0


def _flush_list(counts: list[int], children: Sequence[Counter]) -> None:
    for index, count in enumerate(counts):
        if count:
            children[index].inc(count)
            counts[index] = 0


def _flush_map(counts: dict[K, int], children: dict[K, Counter]) -> None:
    for key, count in counts.items():
        children[key].inc(count)
    counts.clear()
