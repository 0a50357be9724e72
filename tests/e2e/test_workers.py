# `[server] workers = 2`: a supervisor and two worker processes on one listening address.
# Connections reach both workers, the supervisor's /metrics adds their counts up exactly, a
# killed worker is started again, and reloads, epochs and drains reach every worker.
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator

from tests.e2e.dns import NAME, ThreadedDns
from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import fetch, post, samples, value
from tests.e2e.servers import Proxy, ScriptedUpstream, answer_ok, rewrite, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
WAIT_LIMIT = 15.0
ACCESS = re.compile(r"worker (\d): 127\.0\.0\.1 \"GET")


@contextlib.contextmanager
def two_workers(**close: object) -> Iterator[Proxy]:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(
            upstream.port,
            server={"workers": 2},
            log={"access_log": True},
            close={"linger": 0.2, **close},
        ) as proxy,
    ):
        wait_ready(proxy)
        yield proxy


def wait_ready(proxy: Proxy) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while fetch(proxy.admin_url + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "the workers never became ready"
        time.sleep(0.1)


def workers(proxy: Proxy) -> list[dict[str, object]]:
    status, text = fetch(proxy.admin_url + "/workers")
    assert status == 200
    result: list[dict[str, object]] = json.loads(text)
    return result


def one_request_each(proxy: Proxy, connections: int) -> list[bool]:
    """`connections` new connections, one GET each; whether each response announced close."""
    closes = []
    for _ in range(connections):
        with contextlib.closing(RawClient(proxy.port)) as client:
            resp = client.request(GET)
            assert resp.status == 200
            closes.append(resp.announces_close)
    return closes


def test_connections_reach_both_workers_and_metrics_add_up() -> None:
    with two_workers() as proxy:
        assert [w["alive"] for w in workers(proxy)] == [True, True]
        one_request_each(proxy, 40)
        found = samples(proxy.admin_url)
        fresh = value(
            found,
            "migproxy_requests_total",
            vip="default",
            connection="fresh",
            cohort="current",
            status_class="2xx",
        )
        assert fresh == 40
        served_by = Counter(ACCESS.findall(proxy.log()))
        assert set(served_by) == {"0", "1"} and sum(served_by.values()) == 40


def test_a_killed_worker_is_started_again() -> None:
    with two_workers() as proxy:
        victim = workers(proxy)[0]["pid"]
        assert isinstance(victim, int)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            first = workers(proxy)[0]
            if first["alive"] and first["pid"] != victim:
                break
            assert time.monotonic() < deadline, "the worker was not started again"
            time.sleep(0.1)
        assert first["restarts"] == 1
        wait_ready(proxy)
        assert one_request_each(proxy, 10) == [False] * 10
        assert "exited with -9; starting it again" in proxy.log()


def test_reload_and_epoch_reach_every_worker() -> None:
    with two_workers() as proxy:
        rewrite(proxy, close={"ratio": 1.0})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 200 and answer["reloaded"] is True
        assert one_request_each(proxy, 20) == [True] * 20  # whichever worker answers

        rewrite(proxy, close={"ratio": 2.0})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 400 and "close.ratio: must be" in str(answer["message"])

        status, state = post(proxy.admin_url + "/migration/epoch")
        assert status == 200 and state["epoch"] is not None
        epochs = re.findall(r"worker (\d): migration epoch (\S+)", proxy.log())
        assert sorted(index for index, _ in epochs) == ["0", "1"]
        assert len({moment for _, moment in epochs}) == 1  # one epoch, set once


def test_sigterm_drains_every_worker() -> None:
    with two_workers() as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        assert not client.request(GET).announces_close
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(WAIT_LIMIT) == 0
        assert proxy.log().count("drained") == 2


def test_one_worker_samples_the_watched_name_and_every_worker_gets_its_epoch() -> None:
    with ThreadedDns() as dns, ScriptedUpstream(answer_ok) as upstream:
        dns.weighted({"127.0.0.2": 1.0, "127.0.0.3": 0.0})
        migration = {
            "watch_name": NAME,
            "vip_addresses": ["127.0.0.2"],
            "nameservers": [f"127.0.0.1:{dns.port}"],
            "sample_interval": 0.2,
            "samples": 20,
        }
        with run_proxy(upstream.port, server={"workers": 2}, migration=migration) as proxy:
            wait_ready(proxy)
            deadline = time.monotonic() + WAIT_LIMIT
            while "migration watch" not in proxy.log():  # the baseline sample
                assert time.monotonic() < deadline, "the watched name was never sampled"
                time.sleep(0.1)
            dns.weighted({"127.0.0.2": 0.0, "127.0.0.3": 1.0})  # the GSLB moves everyone away
            while len(re.findall(r"worker \d: migration epoch", proxy.log())) < 2:
                assert time.monotonic() < deadline, "the epoch did not reach both workers"
                time.sleep(0.1)
            log = proxy.log()
            assert log.count("a new epoch") == 1  # sampled by one worker only
            epochs = re.findall(r"worker (\d): migration epoch (\S+)", log)
            assert sorted(index for index, _ in epochs) == ["0", "1"]
            assert len({moment for _, moment in epochs}) == 1
            share = value(samples(proxy.admin_url), "migproxy_migration_dns_share", vip="default")
            assert share == 0.0
