# Live control through a running proxy: reloads (POST /reload, SIGHUP, a changed file) under
# load, with an invalid file among them; the migration epoch; every close policy, the budget,
# dry run, scope and the returning-client back-off, each seen from real clients.
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.fleet import ClientThreads
from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import fetch, post, samples, value
from tests.e2e.servers import Proxy, ScriptedUpstream, answer_ok, rewrite, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
WAIT_LIMIT = 10.0
FAST_CLOSE = {"linger": 0.2}


@contextlib.contextmanager
def proxy_with(**close: object) -> Iterator[Proxy]:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={**FAST_CLOSE, **close}) as proxy,
    ):
        yield proxy


def metric(proxy: Proxy, name: str, **labels: str) -> float:
    return value(samples(proxy.admin_url), name, vip="default", **labels)


@dataclass
class Fleet(ClientThreads):
    """Keep-alive raw clients sending GETs until stopped. Each response is logged with its
    send time and whether it announced close; a connection that ends without an announced
    close, or any error, is a failure."""

    log: list[tuple[float, float, bool]] = field(default_factory=list)  # sent, done, closed
    failures: list[str] = field(default_factory=list)

    def _run(self) -> None:
        client = RawClient(self.port)
        try:
            while not self.stopping():
                sent = time.monotonic()
                try:
                    resp = client.request(GET)
                except OSError as err:
                    self.failures.append(f"request failed: {err!r}")
                    client.close()
                    client = RawClient(self.port)
                    continue
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
                self.log.append((sent, time.monotonic(), resp.announces_close))
                if resp.announces_close:
                    if not client.at_eof():
                        self.failures.append("announced close not followed by FIN")
                    client.close()
                    client = RawClient(self.port)
        finally:
            client.close()

    def shares(self, start: float, end: float) -> tuple[int, float]:
        """Exchanges inside [start, end) (sent after start, answered before end) and the
        share of their responses that announced close."""
        picked = [closed for sent, done, closed in list(self.log) if start <= sent and done < end]
        return len(picked), (sum(picked) / len(picked) if picked else float("nan"))

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        target = len(self.log) + count
        while len(self.log) < target:
            assert time.monotonic() < deadline, "the fleet is stuck"
            time.sleep(0.01)


def test_fifty_reloads_under_load_lose_nothing_and_the_share_follows() -> None:
    with proxy_with(ratio=0.0) as proxy, Fleet(proxy.port) as fleet:
        phases: list[tuple[float, float, float]] = []  # (start, end, ratio in force)
        ratio = 0.0
        for n in range(50):
            fleet.wait(30)
            if n == 25:  # an invalid file among them: refused whole, nothing changes
                rewrite(proxy, close={"ratio": 1.5})
                status, answer = post(proxy.admin_url + "/reload")
                assert status == 400
                assert str(answer["message"]).endswith(
                    "close.ratio: must be a number between 0.0 and 1.0, got 1.5"
                )
                continue
            ratio = 1.0 if ratio == 0.0 else 0.0
            rewrite(proxy, close={"ratio": ratio})
            before = time.monotonic()
            status, answer = post(proxy.admin_url + "/reload")
            after = time.monotonic()
            assert status == 200, answer
            if phases:
                phases[-1] = (phases[-1][0], before, phases[-1][2])
            phases.append((after, float("inf"), ratio))
        fleet.wait(30)
        assert metric(proxy, "migproxy_config_reloads_total", result="ok") == 49
        assert metric(proxy, "migproxy_config_reloads_total", result="error") == 1
    assert fleet.failures == []
    for start, end, expected in phases[:-1]:
        count, share = fleet.shares(start, end)
        assert count > 0 and share == expected, (start, end, expected, count, share)


def test_sighup_and_a_changed_file_reload() -> None:
    with proxy_with(ratio=0.0) as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        rewrite(proxy, close={"ratio": 1.0})  # picked up by the file watch (polled each second)
        deadline = time.monotonic() + WAIT_LIMIT
        while not client.request(GET).announces_close:
            assert time.monotonic() < deadline, "the changed file was not reloaded"
            time.sleep(0.1)
        assert "reloaded (file changed): close.ratio=1.0" in proxy.log()

        # Replaced by a rename, as editors and Kubernetes ConfigMaps do: still picked up.
        assert proxy.config_path is not None
        text = proxy.config_path.read_text().replace("ratio = 1.0", "ratio = 0.0")
        staged = proxy.config_path.with_suffix(".new")
        staged.write_text(text)
        staged.rename(proxy.config_path)
        wait_for_log(proxy, "reloaded (file changed): close.ratio=0.0")

        rewrite(proxy, limits={"head_timeout": 3.0})
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for_log(proxy, "limits.head_timeout=3.0")


def wait_for_log(proxy: Proxy, text: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while text not in proxy.log():
        assert time.monotonic() < deadline, f"not logged: {text}"
        time.sleep(0.1)


def test_reload_that_needs_a_restart_is_refused() -> None:
    with proxy_with() as proxy:
        rewrite(proxy, listen={"backlog": 17})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 400
        assert str(answer["message"]).endswith(
            "listen.backlog: changed; a restart is needed to apply it (nothing changed)"
        )
        assert metric(proxy, "migproxy_config_reloads_total", result="error") == 1


def test_state_changing_requests_need_the_token() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, admin={"token": "s3cret"}) as proxy,
    ):
        assert post(proxy.admin_url + "/reload")[0] == 401
        assert post(proxy.admin_url + "/migration/epoch")[0] == 401
        assert post(proxy.admin_url + "/reload", token="wrong")[0] == 401
        assert post(proxy.admin_url + "/reload", token="s3cret")[0] == 200
        assert post(proxy.admin_url + "/migration/epoch", token="s3cret")[0] == 200


def test_epoch_closes_connections_opened_before_it_once() -> None:
    with proxy_with() as proxy:
        old = RawClient(proxy.port)
        assert not old.request(GET).announces_close
        status, state = post(proxy.admin_url + "/migration/epoch")
        assert status == 200 and state["epoch"] is not None
        with contextlib.closing(RawClient(proxy.port)) as new:
            assert [new.request(GET).announces_close for _ in range(5)] == [False] * 5
        stale = old.request(GET)
        assert stale.announces_close and old.at_eof()
        old.close()
        found = samples(proxy.admin_url)
        assert value(found, "migproxy_injected_closes_total", vip="default", policy="epoch") == 1
        stale_requests = value(
            found,
            "migproxy_requests_total",
            vip="default",
            connection="reused",
            cohort="stale",
            status_class="2xx",
        )
        assert stale_requests == 1
        assert value(found, "migproxy_migration_epoch_timestamp_seconds", vip="default") > 0


def test_epoch_set_in_the_config_and_by_a_reload() -> None:
    with proxy_with() as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        assert not client.request(GET).announces_close
        rewrite(proxy, migration={"epoch": "now"})
        assert post(proxy.admin_url + "/reload")[0] == 200
        assert client.request(GET).announces_close
        status, text = fetch(proxy.admin_url + "/migration")
        assert status == 200 and json.loads(text)["epoch"] is not None


@pytest.mark.parametrize(
    ("close", "closes_at"),
    [({"max_requests": 3}, 3), ({"max_requests": 1}, 1)],
    ids=["third", "first"],
)
def test_max_requests(close: dict[str, object], closes_at: int) -> None:
    with proxy_with(**close) as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        announced = [client.request(GET).announces_close for _ in range(closes_at)]
        assert announced == [False] * (closes_at - 1) + [True]
        assert metric(proxy, "migproxy_injected_closes_total", policy="max_requests") == 1


def test_max_age() -> None:
    with proxy_with(max_age=1.0) as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        assert not client.request(GET).announces_close
        time.sleep(2.2)  # past max_age, and past one sweep of the proxy's coarse clock
        assert client.request(GET).announces_close
        assert metric(proxy, "migproxy_injected_closes_total", policy="max_age") == 1


def test_dry_run_counts_and_closes_nothing() -> None:
    with (
        proxy_with(ratio=1.0, dry_run=True) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert not any(client.request(GET).announces_close for _ in range(10))
        assert metric(proxy, "migproxy_would_close_total", policy="ratio") == 10
        assert metric(proxy, "migproxy_injected_closes_total", policy="ratio") == 0


def test_budget_defers_closes_to_later_responses() -> None:
    with (
        proxy_with(ratio=1.0, max_closes_per_second=1) as proxy,
        Fleet(proxy.port) as fleet,
    ):
        start = time.monotonic()
        fleet.wait(200)
        elapsed = time.monotonic() - start
    assert fleet.failures == []
    closes = sum(closed for _, _, closed in fleet.log)
    assert 1 <= closes <= 2 + elapsed  # a full bucket (1), then one per second


def test_budget_denied_is_counted() -> None:
    with (
        proxy_with(ratio=1.0, max_closes_per_second=0.5) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert client.request(GET).announces_close  # the bucket starts with one token
        client.close()
        client = RawClient(proxy.port)
        assert [client.request(GET).announces_close for _ in range(5)] == [False] * 5
        deferred = metric(
            proxy, "migproxy_deferred_closes_total", policy="ratio", cause="budget_denied"
        )
        assert deferred == 5
        client.close()


def test_scope_limits_the_policies_to_a_path_prefix() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(
            upstream.port, close={**FAST_CLOSE, "ratio": 1.0, "scope": {"paths": ["/api/"]}}
        ) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        for _ in range(5):
            assert not client.request(b"GET /web/x HTTP/1.1\r\nHost: t\r\n\r\n").announces_close
        assert client.request(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n").announces_close


def test_returning_client_is_counted_and_backed_off() -> None:
    with (
        proxy_with(ratio=1.0, returning_window=5.0, returning_max_backoff=60.0) as proxy,
    ):
        first = RawClient(proxy.port)
        assert first.request(GET).announces_close  # a forced close...
        first.close()
        again = RawClient(proxy.port)  # ...and the same address is straight back
        assert [again.request(GET).announces_close for _ in range(3)] == [False] * 3
        found = samples(proxy.admin_url)
        assert value(found, "migproxy_returning_reconnects_total", vip="default") == 1
        held = value(
            found,
            "migproxy_deferred_closes_total",
            vip="default",
            policy="ratio",
            cause="returning_backoff",
        )
        assert held == 3
        status, text = fetch(proxy.admin_url + "/migration")
        returning = json.loads(text)["returning"]
        assert status == 200 and returning[0]["address"] == "127.0.0.1"
        # A new epoch: DNS changed, so the back-off earned under the old answer is forgotten
        # and the held connection, stale now, is closed at its next response.
        assert post(proxy.admin_url + "/migration/epoch")[0] == 200
        assert again.request(GET).announces_close
        again.close()


def test_drain_delay_fails_readiness_first_and_keeps_serving() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, drain={"delay": 2.0, "idle_grace": 0.5}) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert fetch(proxy.admin_url + "/readyz")[0] == 200
        assert not client.request(GET).announces_close
        proxy.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT_LIMIT
        while fetch(proxy.admin_url + "/readyz")[0] != 503:
            assert time.monotonic() < deadline, "readiness did not fail"
            time.sleep(0.05)
        # During the delay the proxy serves as before: keep-alive, new connections.
        assert not client.request(GET).announces_close
        with contextlib.closing(RawClient(proxy.port)) as late:
            assert late.request(GET).status == 200
        # Then every response announces close, and the idle connection is closed.
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            resp = client.request(GET)
            if resp.announces_close:
                break
            assert time.monotonic() < deadline, "the drain never began"
            time.sleep(0.2)
        assert proxy.proc.wait(WAIT_LIMIT) == 0


def test_ramp_moves_the_ratio_gradually() -> None:
    with proxy_with(ratio=0.0, ramp_seconds=3.0) as proxy:
        rewrite(proxy, close={"ratio": 1.0})
        assert post(proxy.admin_url + "/reload")[0] == 200
        seen: list[float] = []
        deadline = time.monotonic() + WAIT_LIMIT
        while not seen or seen[-1] < 1.0:
            assert time.monotonic() < deadline, f"the ramp never ended: {seen}"
            status, text = fetch(proxy.admin_url + "/migration")
            seen.append(json.loads(text)["ratio"])
            time.sleep(0.2)
        assert seen == sorted(seen)  # never backwards
        assert any(0.0 < ratio < 1.0 for ratio in seen), seen  # and not in one step


def test_idle_timeout_closes_a_quiet_connection() -> None:
    with proxy_with(idle_timeout=1.0) as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        assert not client.request(GET).announces_close
        client.sock.settimeout(WAIT_LIMIT)
        assert client.at_eof()  # closed by the proxy after a second of silence
        assert metric(proxy, "migproxy_connections_closed_total", reason="idle_timeout") == 1


def test_drain_under_traffic_answers_every_request_sent() -> None:
    with proxy_with() as proxy:
        results: list[list[tuple[int, bool]]] = [[] for _ in range(4)]
        errors: list[str] = []
        draining = threading.Event()

        def client_loop(log: list[tuple[int, bool]]) -> None:
            with contextlib.closing(RawClient(proxy.port)) as client:
                for _ in range(100_000):  # bounded; ends at the announced close
                    try:
                        resp = client.request(GET)
                    except OSError as err:
                        errors.append(repr(err))
                        return
                    log.append((resp.status, resp.announces_close))
                    if resp.announces_close:
                        if not client.at_eof():
                            errors.append("announced close not followed by FIN")
                        return
                    if draining.is_set():
                        time.sleep(0.01)

        threads = [threading.Thread(target=client_loop, args=(log,)) for log in results]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # mid-traffic
        draining.set()
        proxy.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(WAIT_LIMIT)
        assert proxy.proc.wait(WAIT_LIMIT) == 0
    assert errors == []
    for log in results:
        assert log and all(status == 200 for status, _ in log)
        assert log[-1][1], "the last response announced the close"
