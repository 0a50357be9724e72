# `migproxy watch`: the pure part (exposition -> snapshot -> rates, shares, trend, bars, lines)
# from hand-written expositions, then the real command over two live proxies (vip "old" and
# "new") that carry known traffic, plus an unreachable URL. No timing assertions: the live tests
# check who is there and which VIP carries more, never how many requests per second.
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from migproxy import watch
from migproxy.watch import Snapshot, Target
from tests.e2e.rawclient import RawClient
from tests.e2e.servers import ROOT, ScriptedUpstream, answer_ok, free_port, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
TIMEOUT = 60.0
TRAFFIC_BOUND = 30.0  # seconds the background traffic may run, at most
EPOCH = 1_700_000_000.0

# One scrape of a proxy for VIP "old", ten seconds into an epoch, by hand: the status classes
# are summed, the histogram and the non-migproxy series are ignored.
OLD_AT_10 = """\
# HELP migproxy_requests_total Requests answered.
# TYPE migproxy_requests_total counter
migproxy_requests_total{cohort="current",connection="fresh",status_class="2xx",vip="old"} 10.0
migproxy_requests_total{cohort="current",connection="reused",status_class="2xx",vip="old"} 70.0
migproxy_requests_total{cohort="current",connection="reused",status_class="5xx",vip="old"} 10.0
migproxy_requests_total{cohort="stale",connection="reused",status_class="2xx",vip="old"} 10.0
# HELP migproxy_connections_closed_total Client connections closed, by reason.
# TYPE migproxy_connections_closed_total counter
migproxy_connections_closed_total{reason="client",vip="old"} 1.0
migproxy_connections_closed_total{reason="ratio",vip="old"} 5.0
# HELP migproxy_injected_closes_total Injected closes, by policy.
# TYPE migproxy_injected_closes_total counter
migproxy_injected_closes_total{policy="ratio",vip="old"} 5.0
# HELP migproxy_connections_active Client connections open now, by cohort.
# TYPE migproxy_connections_active gauge
migproxy_connections_active{cohort="current",vip="old"} 8.0
migproxy_connections_active{cohort="stale",vip="old"} 2.0
# HELP migproxy_close_ratio Configured share of responses that announce Connection: close.
# TYPE migproxy_close_ratio gauge
migproxy_close_ratio{vip="old"} 0.05
# HELP migproxy_migration_epoch_timestamp_seconds Start of the current migration epoch.
# TYPE migproxy_migration_epoch_timestamp_seconds gauge
migproxy_migration_epoch_timestamp_seconds{vip="old"} 1.7e+09
# HELP migproxy_requests_per_connection Requests served on each client connection.
# TYPE migproxy_requests_per_connection histogram
migproxy_requests_per_connection_bucket{le="1.0",vip="old"} 3.0
migproxy_requests_per_connection_bucket{le="+Inf",vip="old"} 6.0
migproxy_requests_per_connection_count{vip="old"} 6.0
migproxy_requests_per_connection_sum{vip="old"} 90.0
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 1234.0
"""

# Two seconds later: +20 fresh, +150 reused current (two classes), +30 reused stale = 200
# requests; +2 client and +20 ratio closes, +20 injected; fewer connections open.
OLD_AT_12 = """\
# TYPE migproxy_requests_total counter
migproxy_requests_total{cohort="current",connection="fresh",status_class="2xx",vip="old"} 30.0
migproxy_requests_total{cohort="current",connection="reused",status_class="2xx",vip="old"} 210.0
migproxy_requests_total{cohort="current",connection="reused",status_class="5xx",vip="old"} 20.0
migproxy_requests_total{cohort="stale",connection="reused",status_class="2xx",vip="old"} 40.0
# TYPE migproxy_connections_closed_total counter
migproxy_connections_closed_total{reason="client",vip="old"} 3.0
migproxy_connections_closed_total{reason="ratio",vip="old"} 25.0
# TYPE migproxy_injected_closes_total counter
migproxy_injected_closes_total{policy="ratio",vip="old"} 25.0
# TYPE migproxy_connections_active gauge
migproxy_connections_active{cohort="current",vip="old"} 9.0
migproxy_connections_active{cohort="stale",vip="old"} 1.0
# TYPE migproxy_close_ratio gauge
migproxy_close_ratio{vip="old"} 0.05
# TYPE migproxy_migration_epoch_timestamp_seconds gauge
migproxy_migration_epoch_timestamp_seconds{vip="old"} 1.7e+09
"""


def exposition(vip: str, fresh: float, reused: float, stale: float = 0.0) -> str:
    """A minimal exposition: request counters only, no epoch."""
    return (
        "# TYPE migproxy_requests_total counter\n"
        f'migproxy_requests_total{{cohort="current",connection="fresh",vip="{vip}"}} {fresh}\n'
        f'migproxy_requests_total{{cohort="current",connection="reused",vip="{vip}"}} {reused}\n'
        f'migproxy_requests_total{{cohort="stale",connection="reused",vip="{vip}"}} {stale}\n'
        "# TYPE migproxy_migration_epoch_timestamp_seconds gauge\n"
        f'migproxy_migration_epoch_timestamp_seconds{{vip="{vip}"}} 0.0\n'
    )


def target(url: str, *snapshots: Snapshot) -> Target:
    t = Target(url)
    t.history.extend(snapshots)
    return t


# ---- the pure part -----------------------------------------------------------------------


def test_parse_keeps_the_migproxy_series_summed_over_status_classes() -> None:
    snap = watch.parse(OLD_AT_10, taken=10.0)
    assert snap.vips == ("old",)
    assert snap.requests == {
        ("old", "fresh", "current"): 10.0,
        ("old", "reused", "current"): 80.0,
        ("old", "reused", "stale"): 10.0,
    }
    assert snap.closes == {"client": 1.0, "ratio": 5.0}
    assert snap.injected == {"ratio": 5.0}
    assert snap.active == {"current": 8.0, "stale": 2.0}
    assert snap.ratio == 0.05
    assert snap.epoch == 1.7e9


def test_parse_rejects_what_is_not_an_exposition() -> None:
    with pytest.raises(ValueError):
        watch.parse("<html><body>not metrics</body></html>\n", taken=0.0)


def test_rates_are_the_increase_over_the_time_between_two_scrapes() -> None:
    r = watch.rates(watch.parse(OLD_AT_10, 10.0), watch.parse(OLD_AT_12, 12.0))
    assert r.requests == pytest.approx(100.0)
    assert r.reused_share == pytest.approx(0.9)
    assert r.stale_share == pytest.approx(0.15)
    assert r.by_vip == {"old": pytest.approx(100.0)}
    assert r.closes == {"client": pytest.approx(1.0), "ratio": pytest.approx(10.0)}
    assert r.injected == pytest.approx(10.0)


def test_a_counter_that_went_down_counts_from_zero() -> None:
    before = watch.parse(exposition("old", fresh=100, reused=900), 0.0)
    after = watch.parse(exposition("old", fresh=4, reused=6), 1.0)  # the proxy restarted
    assert watch.rates(before, after).requests == pytest.approx(10.0)


def test_no_requests_means_no_share() -> None:
    snap = watch.parse(exposition("old", fresh=1, reused=1), 0.0)
    r = watch.rates(snap, watch.parse(exposition("old", fresh=1, reused=1), 1.0))
    assert r.requests == 0.0
    assert r.reused_share is None
    assert r.stale_share is None


def stale_history(*stale_shares: float) -> list[Snapshot]:
    """Snapshots one second apart with 100 requests/s, `share` of them stale, per interval."""
    fresh, stale, out = 0.0, 0.0, [watch.parse(exposition("old", 0, 0, 0), 0.0)]
    for second, share in enumerate(stale_shares, start=1):
        stale += 100 * share
        fresh += 100 * (1 - share)
        out.append(watch.parse(exposition("old", fresh, 0, stale), float(second)))
    return out


def test_trend_of_the_stale_share() -> None:
    assert watch.direction(watch.halves(stale_history(0.5, 0.4, 0.3, 0.2))) == "falling"
    assert watch.direction(watch.halves(stale_history(0.1, 0.2, 0.3, 0.4))) == "rising"
    assert watch.direction(watch.halves(stale_history(0.3, 0.3, 0.305, 0.3))) == "flat"
    assert watch.direction(watch.halves(stale_history(0.5, 0.2))) == "falling"
    assert watch.direction(watch.halves(stale_history(0.5))) == "n/a"  # two snapshots


def test_the_total_trend_weighs_each_proxy_by_its_traffic() -> None:
    busy = watch.halves(stale_history(0.5, 0.5, 0.1, 0.1))  # falling
    quiet = watch.halves(stale_history(0.0, 0.0, 0.01, 0.01))  # barely rising
    assert watch.direction(watch.sum_halves([busy, quiet, None])) == "falling"
    assert watch.sum_halves([None]) is None


def test_bars() -> None:
    assert watch.bar(0.64, width=12) == "████████░░░░"
    assert watch.bar(0.0, width=4) == "░░░░"
    assert watch.bar(1.0, width=4, glyphs=watch.ASCII_GLYPHS) == "####"


def test_vip_bars_need_two_vips() -> None:
    old = target(
        "http://o/metrics",
        watch.parse(exposition("old", 0, 0), 0.0),
        watch.parse(exposition("old", 10, 54), 1.0),
    )
    new = target(
        "http://n/metrics",
        watch.parse(exposition("new", 0, 0), 0.0),
        watch.parse(exposition("new", 6, 30), 1.0),
    )
    assert watch.vip_lines([old]) == []
    lines = watch.vip_lines([old, new])
    assert lines[0] == "traffic share by VIP"
    assert lines[1] == f"  old {watch.bar(0.64)}  64%  64.0 req/s"
    assert lines[2] == f"  new {watch.bar(0.36)}  36%  36.0 req/s"


def test_render_names_each_proxy_and_reports_the_unreachable_one() -> None:
    old = target("http://o/metrics", watch.parse(OLD_AT_10, 10.0), watch.parse(OLD_AT_12, 12.0))
    new = target(
        "http://n/metrics",
        watch.parse(exposition("new", 0, 0), 10.0),
        watch.parse(exposition("new", 20, 80), 12.0),
    )
    gone = Target("http://g/metrics", error="unreachable (connection refused)")
    lines = watch.render([old, new, gone], now=1.7e9 + 192, interval=1.0)
    assert lines[0].startswith("migproxy watch  3 URL(s)  every 1 s  ")
    assert lines[2:6] == [
        "old  http://o/metrics",
        "  requests 100.0/s  reused 90%  fresh 10%  stale 15% trend n/a",
        "  closes/s ratio 10.0  client 1.0  (injected 10.0/s)",
        "  close ratio 0.05  epoch 3m12s ago  active 10 (stale 1)",
    ]
    assert lines[6] == "new  http://n/metrics"
    assert lines[8] == "  closes/s none  (injected 0.0/s)"
    assert lines[9] == "  close ratio n/a  epoch none  active 0 (stale 0)"
    assert lines[10] == "http://g/metrics: unreachable (connection refused)"
    assert lines[12:16] == [
        "total  2 of 3 proxies measured",
        "  requests 150.0/s  reused 87%  fresh 13%  stale 10% trend n/a",
        "  closes/s ratio 10.0  client 1.0  (injected 10.0/s)",
        "  active 10 (stale 1)",
    ]
    assert lines[17:] == [
        "traffic share by VIP",
        f"  old {watch.bar(2 / 3)}  67%  100.0 req/s",
        f"  new {watch.bar(1 / 3)}  33%  50.0 req/s",
    ]


def test_a_single_scrape_waits_for_the_second() -> None:
    lines = watch.render([target("http://o/metrics", watch.parse(OLD_AT_10, 1.0))], 1.7e9, 1.0)
    assert lines[2:] == [
        "old  http://o/metrics",
        "  waiting for a second scrape",
        "  close ratio 0.05  epoch 0s ago  active 10 (stale 2)",
    ]


def test_frame_clears_the_screen_only_on_a_terminal() -> None:
    assert watch.frame(["a", "b"], tty=True) == "\x1b[H\x1b[2Ja\nb\n"
    assert watch.frame(["a", "b"], tty=False) == "a\nb\n\n"


def test_metrics_url() -> None:
    assert watch.metrics_url("http://127.0.0.1:9105") == "http://127.0.0.1:9105/metrics"
    assert watch.metrics_url("http://127.0.0.1:9105/") == "http://127.0.0.1:9105/metrics"
    assert watch.metrics_url("127.0.0.1:9105") == "http://127.0.0.1:9105/metrics"
    assert watch.metrics_url("http://h:1/custom") == "http://h:1/custom"


# ---- live: the command against real proxies ----------------------------------------------


def run_watch(*urls: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migproxy", "watch", "--once", "--interval", "1", *urls],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        cwd=ROOT,
        timeout=TIMEOUT,
        check=False,
    )


@contextmanager
def traffic(old_port: int, new_port: int) -> Iterator[None]:
    """Three requests through `old` for every one through `new`, in a thread, until the block
    ends (or TRAFFIC_BOUND seconds pass)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def drive() -> None:
        deadline = time.monotonic() + TRAFFIC_BOUND
        old, new = RawClient(old_port), RawClient(new_port)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                for client in (old, old, old, new):
                    assert client.request(GET).status == 200
                time.sleep(0.002)
        except BaseException as err:  # reported by the test, not lost in the thread
            errors.append(err)
        finally:
            old.close()
            new.close()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert not errors, errors


def bar_share(stdout: str, vip: str) -> int:
    found = re.search(rf"^  {vip} +[█░]+ +(\d+)%", stdout, re.MULTILINE)
    assert found, stdout
    return int(found.group(1))


def test_watch_once_over_two_proxies_and_an_unreachable_url() -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, metrics={"vip": "old"}) as old,
        run_proxy(upstream.port, metrics={"vip": "new"}) as new,
        traffic(old.port, new.port),
    ):
        result = run_watch(old.admin_url, new.admin_url + "/metrics", dead)
    assert result.returncode == 0, result
    out = result.stdout
    assert f"old  {old.admin_url}/metrics" in out
    assert f"new  {new.admin_url}/metrics" in out
    assert f"{dead}: unreachable (connection refused)" in out
    assert "total  2 of 3 proxies measured" in out
    old_share, new_share = bar_share(out, "old"), bar_share(out, "new")
    assert old_share > new_share > 0, out
    assert 99 <= old_share + new_share <= 101, out


def test_watch_once_exits_1_when_no_url_answers() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    result = run_watch(*dead)
    assert result.returncode == 1, result
    for url in dead:
        assert f"{url}/metrics: unreachable (connection refused)" in result.stdout
