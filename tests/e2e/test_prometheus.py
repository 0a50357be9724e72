# The metrics, the shipped recording rules and the shipped Grafana dashboard, checked through a
# real Prometheus that scrapes two real proxies (vip "old" and "new") while raw-socket
# keep-alive clients send them known traffic. Every count Prometheus reports must equal what
# the clients did; the rates of the recording rules must agree with those counts; every query
# of the dashboard must run and find series.
from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.e2e.prometheus import (
    RULES_FILE,
    Prometheus,
    PrometheusError,
    Sample,
    run_prometheus,
)
from tests.e2e.rawclient import RawClient
from tests.e2e.servers import ROOT, run_proxy
from tests.prometheus_names import ALERTS, RECORDING_RULES

DASHBOARD = ROOT / "config" / "grafana" / "migproxy-dashboard.json"
GET = b"GET / HTTP/1.1\r\nHost: migration.test\r\n\r\n"
SETTLE_TIMEOUT = 10.0
# When the recording rules last ran: the oldest sample timestamp among their series (the
# rule name is kept as a label, since timestamp() drops the metric name).
RULES_EVALUATED_AT = (
    'min(timestamp(label_replace({__name__=~"migproxy:.+"}, "rule", "$1", "__name__", "(.+)")))'
)

# The old VIP closes a seeded quarter of its responses; the new one closes every response, so
# each of its requests arrives on a fresh connection. Old: 4 clients x 30 requests = 120,
# new: 2 clients x 20 requests = 40, so the old VIP carries 3/4 of the traffic.
OLD_RATIO, OLD_CLIENTS, OLD_REQUESTS = 0.25, 4, 30
NEW_RATIO, NEW_CLIENTS, NEW_REQUESTS = 1.0, 2, 20
# rate() over a window extrapolates each series from its last sample to the evaluation time,
# by up to 1.1 scrape intervals (1 s here), and each target is scraped at its own offset. The
# counters start at 0 inside the window, so a rate is (last - first) / span * (span + gap):
# with a sampled span of at least WINDOW_SPAN seconds, the two targets' factors differ by at
# most 1.1/15 = 7 %, which moves a 3:1 share by about 0.013. SHARE_TOLERANCE leaves margin.
WINDOW_SPAN = 15.0
SHARE_TOLERANCE = 0.05
# A share of two series of one target (same scrape timestamps) is exact up to rounding.
SAME_TARGET_TOLERANCE = 1e-6


@dataclass
class Tally:
    """What the clients of one proxy did, counted on the client side."""

    requests: int = 0
    fresh: int = 0  # first request on a connection
    reused: int = 0  # a later request on a kept-alive connection
    connections: int = 0
    closes: int = 0  # responses that announced Connection: close


def drive(port: int, clients: int, requests_each: int) -> Tally:
    """`clients` keep-alive clients, `requests_each` requests each, in turn.

    A client whose response announces close waits for the proxy's FIN, closes, and sends its
    next request on a new connection, as a real client does.
    """
    tally = Tally()
    conns: list[RawClient | None] = [None] * clients
    try:
        for _ in range(requests_each):
            for index in range(clients):
                conn = conns[index]
                if conn is None:
                    conn = conns[index] = RawClient(port)
                    tally.connections += 1
                    tally.fresh += 1
                else:
                    tally.reused += 1
                resp = conn.request(GET)
                assert resp.status == 200, resp.head
                tally.requests += 1
                if resp.announces_close:
                    tally.closes += 1
                    assert conn.at_eof(), "a close was announced but the proxy did not close"
                    conn.close()
                    conns[index] = None
    finally:
        for conn in conns:
            if conn is not None:
                conn.close()
    return tally


def expected_counters(vip: str, tally: Tally, ratio: float) -> dict[str, float]:
    """PromQL (one series each) -> the value the clients' tally implies.

    run_proxy's readiness probe opens one connection without a request on each proxy: one more
    connection opened, closed by the client, and observed with 0 requests.
    """
    sel = f'vip="{vip}"'
    return {
        f'sum(migproxy_requests_total{{{sel},connection="fresh"}})': tally.fresh,
        f'sum(migproxy_requests_total{{{sel},connection="reused"}})': tally.reused,
        f'sum(migproxy_requests_total{{{sel},status_class!="2xx"}})': 0,
        f'sum(migproxy_requests_total{{{sel},cohort="stale"}}) or vector(0)': 0,
        f'sum(migproxy_injected_closes_total{{{sel},policy="ratio"}})': tally.closes,
        f"sum(migproxy_injected_closes_total{{{sel}}})": tally.closes,
        f'sum(migproxy_connections_closed_total{{{sel},reason="ratio"}})': tally.closes,
        f'sum(migproxy_connections_closed_total{{{sel},reason="client"}})': (
            tally.connections - tally.closes + 1
        ),
        f"sum(migproxy_connections_closed_total{{{sel}}})": tally.connections + 1,
        f"sum(migproxy_connections_opened_total{{{sel}}})": tally.connections + 1,
        f"sum(migproxy_connections_active{{{sel}}})": 0,
        f"sum(migproxy_requests_per_connection_count{{{sel}}})": tally.connections + 1,
        f"sum(migproxy_requests_per_connection_sum{{{sel}}})": tally.requests,
        f"sum(migproxy_upstream_requests_total{{{sel}}})": tally.requests,
        f"sum(migproxy_upstream_errors_total{{{sel}}})": 0,
        f"max(migproxy_close_ratio{{{sel}}})": ratio,
    }


def equals(want: float) -> Callable[[list[Sample]], bool]:
    return lambda found: len(found) == 1 and found[0].value == want


def by_label(found: list[Sample], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(name, "") for name in names): s.value for s in found}


@dataclass
class Lab:
    prom: Prometheus
    tallies: dict[str, Tally]
    expected: dict[str, float]


@pytest.fixture(scope="module")
def lab(backend_port: int) -> Iterator[Lab]:
    """Two proxies, a Prometheus scraping both, and the known traffic, settled in Prometheus."""
    require_tool("prometheus")
    if not RULES_FILE.is_file():
        pytest.fail(f"{RULES_FILE.relative_to(ROOT)} is missing: the rules must ship")
    with (
        run_proxy(
            backend_port, metrics={"vip": "old"}, close={"ratio": OLD_RATIO, "seed": 3}
        ) as old,
        run_proxy(
            backend_port, metrics={"vip": "new"}, close={"ratio": NEW_RATIO, "seed": 5}
        ) as new,
        run_prometheus([p.admin_url.removeprefix("http://") for p in (old, new)]) as prom,
    ):
        # A first scrape of both before any request: every rate window starts at zero.
        scraped = prom.wait_until(
            "count by (vip) (migproxy_requests_total)", lambda found: len(found) == 2
        )
        assert len(scraped) == 2, prom.log()[-3000:]
        first_scrape = time.time()
        tallies = {
            "old": drive(old.port, OLD_CLIENTS, OLD_REQUESTS),
            "new": drive(new.port, NEW_CLIENTS, NEW_REQUESTS),
        }
        expected = expected_counters("old", tallies["old"], OLD_RATIO)
        expected |= expected_counters("new", tallies["new"], NEW_RATIO)
        # Closes are counted when the client's FIN arrives, and scraped within a second.
        for expr, want in expected.items():
            prom.wait_until(expr, equals(want), timeout=SETTLE_TIMEOUT)
        # Rule evaluations stamped a second after that moment saw the final counts of both
        # proxies; waiting until the rate windows span WINDOW_SPAN s bounds the extrapolation.
        evaluated_after = max(time.time() + 1.0, first_scrape + WINDOW_SPAN)
        prom.wait_until(
            RULES_EVALUATED_AT,
            lambda found: bool(found) and found[0].value > evaluated_after,
            timeout=WINDOW_SPAN + SETTLE_TIMEOUT,
        )
        yield Lab(prom, tallies, expected)


def test_the_clients_did_what_the_test_needs(lab: Lab) -> None:
    old, new = lab.tallies["old"], lab.tallies["new"]
    assert old.requests == OLD_CLIENTS * OLD_REQUESTS
    assert new.requests == NEW_CLIENTS * NEW_REQUESTS
    # seeded 25 %: some closes, and still mostly reused connections
    assert 0 < old.closes < old.requests and old.reused > old.fresh
    # ratio 1.0: every response closes, every request arrives on a new connection
    assert new.closes == new.connections == new.fresh == new.requests and new.reused == 0


def test_prometheus_counts_equal_what_the_clients_did(lab: Lab) -> None:
    observed = {expr: lab.prom.value(expr) for expr in lab.expected}
    assert observed == lab.expected


def test_the_shipped_rules_load_and_evaluate_cleanly(lab: Lab) -> None:
    groups = lab.prom.rule_groups()
    rules = [rule for group in groups for rule in group["rules"]]
    assert {group["file"] for group in groups} == {str(RULES_FILE)}
    records = {rule["name"] for rule in rules if rule["type"] == "recording"}
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert set(RECORDING_RULES) <= records
    assert set(ALERTS) <= alerts
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert unhealthy == {}
    # None of these faults happened: no failed reload, no upstream error.
    firing = lab.prom.query(
        'ALERTS{alertname=~"MigproxyConfigReloadFailed|MigproxyUpstreamErrors"}'
    )
    assert firing == []


def test_recording_rules_agree_with_the_traffic(lab: Lab) -> None:
    prom, old, new = lab.prom, lab.tallies["old"], lab.tallies["new"]
    share = by_label(prom.query("migproxy:traffic_share:ratio_rate1m"), "vip")
    assert set(share) == {("old",), ("new",)}
    assert math.isclose(share["old",] + share["new",], 1.0, abs_tol=SAME_TARGET_TOLERANCE)
    old_share = old.requests / (old.requests + new.requests)  # 0.75
    assert abs(share["old",] - old_share) < SHARE_TOLERANCE, share

    rate = by_label(prom.query("migproxy:requests:rate1m"), "vip")
    assert rate["old",] > 0 and rate["new",] > 0
    assert math.isclose(
        rate["old",] / (rate["old",] + rate["new",]), share["old",], abs_tol=SAME_TARGET_TOLERANCE
    )

    reused = by_label(prom.query("migproxy:reused_request_share:ratio_rate1m"), "vip")
    assert set(reused) == {("old",), ("new",)}
    assert all(0.0 <= value <= 1.0 for value in reused.values()), reused
    assert reused["new",] == 0.0  # ratio 1.0: only fresh connections
    assert abs(reused["old",] - old.reused / old.requests) < SAME_TARGET_TOLERANCE, reused

    # No migration epoch is set, so no request is stale; the rule reports 0, not nothing.
    stale = by_label(prom.query("migproxy:stale_request_share:ratio_rate1m"), "vip")
    assert stale == {("old",): 0.0, ("new",): 0.0}

    closes = by_label(prom.query("migproxy:closes:rate1m"), "vip", "reason")
    assert closes["old", "ratio"] > 0 and closes["new", "ratio"] > 0
    old_close_share = closes["old", "ratio"] / (closes["old", "ratio"] + closes["new", "ratio"])
    assert abs(old_close_share - old.closes / (old.closes + new.closes)) < SHARE_TOLERANCE
    assert closes.get(("old", "error"), 0.0) == 0.0 and closes.get(("new", "error"), 0.0) == 0.0

    reconnects = by_label(prom.query("migproxy:reconnects:rate1m"), "vip")
    assert reconnects["old",] > 0 and reconnects["new",] > 0
    returning = by_label(prom.query("migproxy:returning_reconnects:rate1m"), "vip")
    assert set(returning) == {("old",), ("new",)}
    assert all(value >= 0.0 for value in returning.values())


# --- the Grafana dashboard ------------------------------------------------------------------

# Grafana's built-in interval variables, as the test's Prometheus (1 s scrapes) would get them.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# $name, ${name}, ${name:format} and [[name]]; "$1" (a label_replace group) is not a variable.
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]|\$([A-Za-z_]\w*)")
METRIC_NAME = re.compile(r"\bmigproxy[_:][A-Za-z0-9_:]*")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def substitute(expr: str, vip: str) -> str:
    """Expand the dashboard's template variables the way Grafana would."""
    values = BUILTIN_VARIABLES | {"vip": vip}

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name not in values:
            raise ValueError(f"undefined template variable ${name}")
        return values[name]

    return VARIABLE.sub(value, expr)


def test_the_dashboard_is_complete_and_documented() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    vip = variables["vip"]
    assert vip["definition"] == "label_values(migproxy_requests_total, vip)"
    assert vip["datasource"]["uid"] == "${datasource}"
    shown = [panel for panel in panels(board) if panel["type"] != "row"]
    assert len({panel["id"] for panel in shown}) == len(shown)
    undocumented = [panel["title"] for panel in shown if len(panel.get("description", "")) < 40]
    assert undocumented == []
    untargeted = [panel["title"] for panel in shown if not panel.get("targets")]
    assert untargeted == []
    used = " ".join(expr for _, expr in exprs())
    for name in (
        "migproxy:traffic_share:ratio_rate1m",
        "migproxy:stale_request_share:ratio_rate1m",
        "migproxy:reused_request_share:ratio_rate1m",
        "migproxy:closes:rate1m",
        "migproxy_injected_closes_total",
        "migproxy_close_ratio",
        "migproxy_migration_epoch_timestamp_seconds",
        "migproxy_connections_active",
        "migproxy_requests_per_connection_bucket",
        "migproxy_connection_duration_seconds_bucket",
        "migproxy_upstream_errors_total",
        "migproxy:reconnects:rate1m",
        "migproxy:returning_reconnects:rate1m",
    ):
        assert name in used, f"no panel shows {name}"


def test_the_vip_variable_lists_both_vips(lab: Lab) -> None:
    query = dashboard()["templating"]["list"]
    definition = next(var["definition"] for var in query if var["name"] == "vip")
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", definition)
    assert match is not None, definition
    values = lab.prom.api(f"label/{match[2]}/values", **{"match[]": match[1]})
    assert sorted(values) == ["new", "old"]


@pytest.mark.parametrize("vip", [".*", "old", "new"])
def test_every_dashboard_query_runs_and_finds_series(lab: Lab, vip: str) -> None:
    failures: list[str] = []
    names: set[str] = set()
    for title, expr in exprs():
        try:
            query = substitute(expr, vip)
            found = lab.prom.query(query)
        except (ValueError, PrometheusError) as err:  # a typo, or a query Prometheus rejects
            failures.append(f"{title}: {expr}: {err}")
            continue
        referenced = set(METRIC_NAME.findall(query))
        names |= referenced
        if referenced and not found:
            failures.append(f"{title}: {query}: no series")
    # Each name a panel uses is a series Prometheus has (not a typo or a dropped metric).
    for name in sorted(names):
        if not lab.prom.query(f'count({{__name__="{name}"}})'):
            failures.append(f"{name}: no such series in Prometheus")
    assert failures == []
