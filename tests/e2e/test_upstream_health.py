# Health checks through the proxy: two addresses behind one DNS name, one of which stalls,
# recovers and flaps. An ejected address gets no new requests, a single failed check ejects
# nothing, and when every address is down the proxy fails open or answers 503 as configured.
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.dns import ThreadedDns
from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import fetch, samples, value
from tests.e2e.servers import Proxy, ScriptedUpstream, free_port, run_proxy

HOSTS = ("127.0.0.2", "127.0.0.3")
WAIT_LIMIT = 15.0
HEALTH = {"enabled": True, "path": "/health", "interval": 0.2, "timeout": 0.1, "rise": 2, "fall": 3}


class Backend:
    """A scripted backend whose health-check answers the test switches: "ok", "stall", "503"."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.health = "ok"
        self.checks = 0
        self.served = 0
        self.lock = threading.Lock()
        self.upstream = ScriptedUpstream(self.answer, port=port, host=host)

    def answer(self, sock: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /health "):
            with self.lock:
                self.checks += 1
                health = self.health
            if health == "stall":
                time.sleep(0.5)  # longer than the check's timeout; the proxy gives up first
                raise OSError("stalled")
            status = b"503 Service Unavailable" if health == "503" else b"200 OK"
            sock.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            return
        with self.lock:
            self.served += 1
        body = self.host.encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def set(self, health: str) -> int:
        """Switch the health answers; return the checks seen so far."""
        with self.lock:
            self.health = health
            return self.checks

    def wait_checks(self, after: int, count: int) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while self.checks < after + count:
            assert time.monotonic() < deadline, f"{self.host}: fewer than {count} checks"
            time.sleep(0.05)


@contextlib.contextmanager
def two_backends(**health: object) -> Iterator[tuple[dict[str, Backend], Proxy]]:
    port = free_port()
    backends = {host: Backend(host, port) for host in HOSTS}
    with contextlib.ExitStack() as stack:
        for backend in backends.values():
            stack.enter_context(backend.upstream)
        dns = stack.enter_context(ThreadedDns())
        dns.set(list(HOSTS))
        proxy = stack.enter_context(
            run_proxy(port, upstream=dns.upstream(port, health={**HEALTH, **health}))
        )
        yield backends, proxy


def who_answers(proxy: Proxy, requests: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with contextlib.closing(RawClient(proxy.port)) as client:
        for _ in range(requests):
            resp = client.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            key = resp.body.decode() if resp.status == 200 else str(resp.status)
            counts[key] = counts.get(key, 0) + 1
    return counts


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def addresses(proxy: Proxy) -> dict[str, bool]:
    status, text = fetch(proxy.admin_url + "/upstreams")
    assert status == 200
    return {a["address"].split(":")[0]: a["healthy"] for a in json.loads(text)["addresses"]}


def test_stalling_address_is_ejected_then_readmitted() -> None:
    with two_backends() as (backends, proxy):
        bad = backends["127.0.0.2"]
        assert set(who_answers(proxy, 10)) == set(HOSTS)

        bad.set("stall")
        wait_until(lambda: addresses(proxy)["127.0.0.2"] is False, "never ejected")
        assert who_answers(proxy, 20) == {"127.0.0.3": 20}
        found = samples(proxy.admin_url)
        assert value(found, "migproxy_upstream_addresses", vip="default", state="ejected") == 1
        assert (
            value(found, "migproxy_upstream_health_checks_total", vip="default", result="failed")
            >= 3
        )

        seen = bad.set("ok")
        bad.wait_checks(seen, 2)  # rise = 2
        wait_until(lambda: addresses(proxy)["127.0.0.2"] is True, "never readmitted")
        assert set(who_answers(proxy, 10)) == set(HOSTS)
        assert "ejected: 3 consecutive failed health checks" in proxy.log()
        assert "readmitted" in proxy.log()


def test_flapping_address_is_never_ejected() -> None:
    with two_backends() as (backends, proxy):
        flapper = backends["127.0.0.2"]
        for _ in range(6):  # one failed check, then one good one: never `fall` in a row
            seen = flapper.set("503")
            flapper.wait_checks(seen, 1)
            seen = flapper.set("ok")
            flapper.wait_checks(seen, 1)
        assert addresses(proxy) == {"127.0.0.2": True, "127.0.0.3": True}
        assert "ejected" not in proxy.log()


@pytest.mark.parametrize(("all_down", "expected"), [("fail_open", 200), ("reject", 503)])
def test_every_address_down(all_down: str, expected: int) -> None:
    with two_backends(all_down=all_down) as (backends, proxy):
        for backend in backends.values():
            backend.set("503")
        wait_until(lambda: set(addresses(proxy).values()) == {False}, "not all ejected")
        answers = who_answers(proxy, 6)
        if expected == 200:
            assert set(answers) == set(HOSTS)  # still served, by every address
            assert "failing open" in proxy.log()
        else:
            assert answers == {"503": 6}
            assert "answering 503" in proxy.log()
        assert value(samples(proxy.admin_url), "migproxy_upstream_all_down", vip="default") == 1
