# The admin endpoint and the metrics, checked against what a client actually did.
from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import fetch, samples, value, wait_for
from tests.e2e.servers import ScriptedUpstream, answer_ok, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_fresh_and_reused_requests_match_what_the_clients_did() -> None:
    connections, per_connection = 5, 20
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, metrics={"vip": "old"}) as proxy,
    ):
        before = samples(proxy.admin_url)  # run_proxy's readiness probe opened one connection
        for _ in range(connections):
            client = RawClient(proxy.port)
            try:
                for _ in range(per_connection):
                    assert client.request(GET).status == 200
            finally:
                client.close()
        found = samples(proxy.admin_url)
        probe = value(before, "migproxy_connections_closed_total", vip="old", reason="client")
        closed = (
            wait_for(
                proxy.admin_url,
                "migproxy_connections_closed_total",
                probe + connections,
                vip="old",
                reason="client",
            )
            - probe
        )
    common = {"vip": "old", "cohort": "current", "status_class": "2xx"}
    assert value(found, "migproxy_requests_total", connection="fresh", **common) == connections
    assert value(found, "migproxy_requests_total", connection="reused", **common) == (
        connections * (per_connection - 1)
    )
    opened = value(found, "migproxy_connections_opened_total", vip="old")
    assert opened - value(before, "migproxy_connections_opened_total", vip="old") == connections
    assert value(found, "migproxy_close_ratio", vip="old") == 0.0
    assert closed == connections
    upstream_total = value(
        found, "migproxy_upstream_requests_total", vip="old", connection="fresh"
    ) + value(found, "migproxy_upstream_requests_total", vip="old", connection="reused")
    assert upstream_total == connections * per_connection
    assert value(found, "migproxy_upstream_connections_opened_total", vip="old") == (
        upstream.connections
    )


def test_injected_closes_are_counted_by_policy_and_reason() -> None:
    requests = 30
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={"ratio": 1.0}) as proxy,
    ):
        for _ in range(requests):
            client = RawClient(proxy.port)
            try:
                assert client.request(GET).announces_close
                assert client.at_eof()
            finally:
                client.close()
        closed = wait_for(
            proxy.admin_url,
            "migproxy_connections_closed_total",
            requests,
            vip="default",
            reason="ratio",
        )
        found = samples(proxy.admin_url)
    assert closed == requests
    assert value(found, "migproxy_injected_closes_total", vip="default", policy="ratio") == (
        requests
    )
    # one more connection than requests: run_proxy's readiness probe (no request on it)
    assert value(found, "migproxy_requests_per_connection_count", vip="default") == requests + 1
    assert value(found, "migproxy_requests_per_connection_sum", vip="default") == requests
    assert value(found, "migproxy_close_ratio", vip="default") == 1.0


def test_upstream_errors_are_counted_by_kind() -> None:
    def hang_up(sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        sock.shutdown(socket.SHUT_RDWR)

    with ScriptedUpstream(hang_up) as upstream, run_proxy(upstream.port) as proxy:
        client = RawClient(proxy.port)
        try:
            client.send(GET)
            try:
                client.read_response()
            except ConnectionError:
                pass
        finally:
            client.close()
        got = wait_for(
            proxy.admin_url, "migproxy_upstream_errors_total", 1, vip="default", kind="reset"
        )
    assert got == 1


def test_health_readiness_and_config_with_the_token_redacted() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, admin={"token": "s3cret"}) as proxy,
    ):
        assert fetch(proxy.admin_url + "/healthz") == (200, "ok\n")
        assert fetch(proxy.admin_url + "/readyz") == (200, "ready\n")
        status, text = fetch(proxy.admin_url + "/config")
    assert status == 200
    config = json.loads(text)
    assert config["admin"]["token"] == "<redacted>"
    assert "s3cret" not in text
    assert config["upstream"]["address"]["port"] == upstream.port


def test_readiness_fails_when_the_upstream_is_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    with run_proxy(dead_port) as proxy:
        status, text = fetch(proxy.admin_url + "/readyz")
        assert fetch(proxy.admin_url + "/healthz")[0] == 200
    assert status == 503
    assert "upstream unreachable" in text


def test_multiprocess_mode_counts_through_the_shared_directory(tmp_path: Path) -> None:
    # Worker processes (a later change) share one exposition through prometheus-client's
    # multiprocess mode; one process already works that way when the directory is set.
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            for _ in range(10):
                assert client.request(GET).status == 200
        finally:
            client.close()
        found = samples(proxy.admin_url)
    common = {"vip": "default", "cohort": "current", "status_class": "2xx"}
    assert value(found, "migproxy_requests_total", connection="fresh", **common) == 1
    assert value(found, "migproxy_requests_total", connection="reused", **common) == 9
    assert list(tmp_path.glob("*.db")), "metrics were written to the multiprocess directory"


def test_readiness_probe_connection_is_pooled_for_the_next_request() -> None:
    with ScriptedUpstream(answer_ok) as upstream, run_proxy(upstream.port) as proxy:
        assert fetch(proxy.admin_url + "/readyz")[0] == 200
        client = RawClient(proxy.port)
        try:
            assert client.request(GET).status == 200
        finally:
            client.close()
        assert upstream.connections == 1, "the probe's upstream connection was not reused"
