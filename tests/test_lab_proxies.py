# The lab's view of its proxies, without processes: the config it writes (accepted by
# migproxy's own parser), the counters it reads from /metrics, and their per-second increases.
from __future__ import annotations

import tomllib
from pathlib import Path

from migproxy.config import parse_config
from migproxy.lab.proxies import ProxyProcess, parse_counters, render_toml
from migproxy.lab.record import HELD_RETURNING, ProxySeries

EXPOSITION = """\
# TYPE migproxy_requests_total counter
migproxy_requests_total{vip="old",connection="fresh",cohort="current",status_class="2xx"} 3.0
migproxy_requests_total{vip="old",connection="reused",cohort="stale",status_class="2xx"} 7.0
# TYPE migproxy_deferred_closes_total counter
migproxy_deferred_closes_total{vip="old",policy="ratio",cause="returning_backoff"} 4.0
migproxy_deferred_closes_total{vip="old",policy="epoch",cause="budget_denied"} 2.0
# TYPE migproxy_returning_reconnects_total counter
migproxy_returning_reconnects_total{vip="old"} 5.0
"""


def test_parse_counters_sums_labels_and_keeps_causes() -> None:
    counters = parse_counters(EXPOSITION)
    assert counters["migproxy_requests_total"] == 10.0
    assert counters["migproxy_deferred_closes_total"] == 6.0
    assert counters[HELD_RETURNING] == 4.0
    assert counters["migproxy_returning_reconnects_total"] == 5.0
    assert counters["migproxy_connections_opened_total"] == 0.0


def test_the_config_written_is_one_migproxy_accepts(tmp_path: Path) -> None:
    proxy = ProxyProcess("old", "127.0.0.2", 8080, 9000, 9105, 7, tmp_path)
    proxy.close = {"ratio": 0.1, "returning_window": 0}
    config = parse_config(tomllib.loads(proxy.config_text()), "lab")
    assert str(config.listen.address) == "127.0.0.2:8080"
    assert config.metrics.vip == "old"
    assert (config.close.ratio, config.close.seed, config.close.returning_window) == (0.1, 7, 0)
    assert render_toml({"a": {"s": 'q"', "l": [1, "x"], "b": False}}) == (
        '[a]\ns = "q\\""\nl = [1, "x"]\nb = false\n'
    )


def test_proxy_series_counts_increases_from_the_baseline() -> None:
    series = ProxySeries(3)
    series.add("old", 0, {"migproxy_requests_total": 100.0})  # baseline
    series.add("old", 0, {"migproxy_requests_total": 110.0})
    series.add("old", 1, None)  # a failed scrape: the next one catches up
    series.add("old", 2, {"migproxy_requests_total": 130.0})
    series.add("old", 9, {"migproxy_requests_total": 5.0})  # restarted: from zero, last slot
    assert series.series("old", "migproxy_requests_total") == [10.0, 0.0, 25.0]
    assert series.total("migproxy_requests_total") == 35.0
    assert series.series("new", "migproxy_requests_total") == [0.0, 0.0, 0.0]
