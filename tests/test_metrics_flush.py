# The flush from the data path's plain counters into Prometheus series, on a fresh registry.
from __future__ import annotations

from prometheus_client import CollectorRegistry

from migproxy import __version__
from migproxy.http1.parse import ACCELERATED
from migproxy.metrics import build_metrics, flush
from migproxy.policy.close import CloseReason
from migproxy.policy.gate import Hold
from migproxy.stats import Stats, UpstreamClose


def fresh() -> tuple[CollectorRegistry, Stats]:
    registry = CollectorRegistry()
    return registry, Stats()


def test_counts_move_into_series_once_and_are_reset() -> None:
    registry, stats = fresh()
    metrics = build_metrics(registry, "old")
    stats.count_response(False, False, 200)
    for _ in range(3):
        stats.count_response(False, True, 204)
    stats.count_response(False, True, 502)
    stats.count_response(True, True, 200)
    stats.count_injected(CloseReason.RATIO)
    stats.count_injected(CloseReason.EPOCH)
    stats.count_deferred(CloseReason.EPOCH, Hold.BUDGET)
    stats.count_would_close(CloseReason.MAX_AGE)
    stats.returning += 2
    stats.active_stale = 3
    stats.count_close(CloseReason.RATIO, requests=4, lifetime=1.5)
    stats.count_upstream_close(UpstreamClose.IDLE)
    stats.count_upstream_error("timeout")
    stats.connections_opened += 1
    stats.upstream_requests[1] += 4
    stats.active = 7
    flush(stats, metrics)
    flush(stats, metrics)  # a second flush adds nothing

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"vip": "old", **labels})

    base = {"cohort": "current"}
    assert get("migproxy_requests_total", connection="fresh", status_class="2xx", **base) == 1
    assert get("migproxy_requests_total", connection="reused", status_class="2xx", **base) == 3
    assert get("migproxy_requests_total", connection="reused", status_class="5xx", **base) == 1
    stale = {"cohort": "stale", "connection": "reused"}
    assert get("migproxy_requests_total", status_class="2xx", **stale) == 1
    assert get("migproxy_injected_closes_total", policy="ratio") == 1
    assert get("migproxy_injected_closes_total", policy="epoch") == 1
    assert get("migproxy_deferred_closes_total", policy="epoch", cause="budget_denied") == 1
    assert get("migproxy_would_close_total", policy="max_age") == 1
    assert get("migproxy_returning_reconnects_total") == 2
    assert get("migproxy_connections_closed_total", reason="ratio") == 1
    assert get("migproxy_connections_closed_total", reason="client") == 0
    assert get("migproxy_requests_per_connection_sum") == 4
    assert get("migproxy_connection_duration_seconds_sum") == 1.5
    assert get("migproxy_upstream_connections_closed_total", reason="idle") == 1
    assert get("migproxy_upstream_errors_total", kind="timeout") == 1
    assert get("migproxy_connections_opened_total") == 1
    assert get("migproxy_upstream_requests_total", connection="reused") == 4
    assert get("migproxy_connections_active", cohort="current") == 4
    assert get("migproxy_connections_active", cohort="stale") == 3
    assert stats.requests == [[0] * 5] * 4 and not stats.closes and not stats.deferred


def test_out_of_range_status_is_not_counted() -> None:
    stats = Stats()
    stats.count_response(False, False, 99)
    stats.count_response(False, False, 600)
    assert stats.requests == [[0] * 5] * 4


def test_every_series_carries_the_vip_label() -> None:
    registry, _ = fresh()
    build_metrics(registry, "new")
    for family in registry.collect():
        for sample in family.samples:
            assert sample.labels.get("vip") == "new", sample


def histogram_samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    """(sample name, le) -> value for a histogram's buckets, sum and count."""
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_upstream_durations_reach_the_histogram_as_observe_would_put_them() -> None:
    registry, stats = fresh()
    metrics = build_metrics(registry, "old")
    reference = CollectorRegistry()
    expected = build_metrics(reference, "old").upstream_duration
    for seconds in (0.0002, 0.0007, 0.003, 0.003, 0.2, 1.0, 45.0, 120.0):
        stats.upstream_seconds.observe(seconds)
        expected.observe(seconds)
    flush(stats, metrics)
    name = "migproxy_upstream_request_duration_seconds"
    ours = histogram_samples(registry, name)
    theirs = histogram_samples(reference, name)
    assert ours == theirs
    assert stats.upstream_seconds.total == 0.0 and not any(stats.upstream_seconds.counts)


def test_build_info_names_the_version_and_the_parser() -> None:
    registry, _ = fresh()
    build_metrics(registry, "old")
    labels = {"vip": "old", "version": __version__, "parser": "c" if ACCELERATED else "python"}
    assert registry.get_sample_value("migproxy_build_info", labels) == 1.0
