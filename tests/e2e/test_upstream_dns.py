# The proxy follows its upstream's DNS name: a real DNS server on loopback whose answers change
# during the test (TTL 1 s), three backends on 127.0.0.2-4, keep-alive clients sending all
# along. New requests move to the new addresses within TTL + 1 s, connections to removed
# addresses are retired, no request fails, and a DNS outage leaves traffic on the stale answer.
from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.e2e.dns import ThreadedDns
from tests.e2e.fleet import ClientThreads
from tests.e2e.scrape import samples, value
from tests.e2e.servers import Proxy, free_port, run_backend, run_proxy

TTL = 1
MOVE_BOUND = TTL + 1.0  # the bound for new requests to reach a new answer
WAIT_LIMIT = 15.0


@dataclass
class Fleet(ClientThreads):
    """Keep-alive clients sending GET / in a loop; each answer is logged with its send time."""

    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (sent, status, who)
    errors: list[str] = field(default_factory=list)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        with contextlib.closing(conn):
            while not self.stopping():
                sent = time.monotonic()
                try:
                    conn.request("GET", "/")
                    resp = conn.getresponse()
                    body = resp.read().decode()
                except (OSError, http.client.HTTPException) as err:
                    self.errors.append(repr(err))
                    conn.close()
                    continue
                self.answers.append((sent, resp.status, body.removeprefix("hello from ").strip()))
                if resp.will_close:
                    conn.close()
                time.sleep(0.01)

    def who_since(self, since: float) -> set[str]:
        return {who for sent, _, who in list(self.answers) if sent >= since}

    def wait_for_answers(self, since: float, count: int) -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while sum(1 for a in list(self.answers) if a[0] >= since) < count:
            assert time.monotonic() < deadline, "the clients got no answers"
            time.sleep(0.05)


@contextlib.contextmanager
def lab() -> Iterator[tuple[ThreadedDns, Proxy]]:
    port = free_port()
    with contextlib.ExitStack() as stack:
        for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            stack.enter_context(run_backend(host, port, name=host))
        dns = stack.enter_context(ThreadedDns())
        dns.set(["127.0.0.2", "127.0.0.3"])
        proxy = stack.enter_context(run_proxy(port, upstream=dns.upstream(port, stale_ttl=30.0)))
        yield dns, proxy


def metric(proxy: Proxy, name: str, **labels: str) -> float:
    return value(samples(proxy.admin_url), name, vip="default", **labels)


def test_requests_follow_dns_changes_without_a_failure() -> None:
    with lab() as (dns, proxy), Fleet(proxy.port) as fleet:
        start = time.monotonic()
        fleet.wait_for_answers(start, 40)
        assert fleet.who_since(start) == {"127.0.0.2", "127.0.0.3"}

        changed = time.monotonic()
        dns.set(["127.0.0.4"])
        fleet.wait_for_answers(changed + MOVE_BOUND, 40)
        assert fleet.who_since(changed + MOVE_BOUND) == {"127.0.0.4"}
        retired = metric(proxy, "migproxy_upstream_connections_closed_total", reason="dns_removed")
        assert retired >= 1, "connections to the removed addresses were not retired"

        # Both old addresses come back beside the new one: used at once.
        back = time.monotonic()
        dns.set(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        fleet.wait_for_answers(back + MOVE_BOUND, 60)
        assert fleet.who_since(back + MOVE_BOUND) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
        assert metric(proxy, "migproxy_upstream_resolutions_total", result="ok") >= 3

    assert fleet.errors == []
    assert {status for _, status, _ in fleet.answers} == {200}


def test_dns_outage_keeps_traffic_on_the_stale_answer() -> None:
    with lab() as (dns, proxy), Fleet(proxy.port) as fleet:
        fleet.wait_for_answers(time.monotonic(), 20)
        dns.mode("drop")  # queries go unanswered: the resolver times out
        outage = time.monotonic()
        deadline = outage + WAIT_LIMIT
        while metric(proxy, "migproxy_upstream_resolutions_total", result="stale_served") < 2:
            assert time.monotonic() < deadline, "no stale answer was served"
            time.sleep(0.2)
        fleet.wait_for_answers(time.monotonic(), 40)
        assert fleet.who_since(outage + MOVE_BOUND) == {"127.0.0.2", "127.0.0.3"}
        assert metric(proxy, "migproxy_upstream_resolutions_total", result="error") >= 2

        dns.mode("answer")
        dns.set(["127.0.0.4"])
        recovered = time.monotonic()
        # Failed lookups are retried with a backoff; the bound allows for it.
        fleet.wait_for_answers(recovered + 5.0, 20)
        assert fleet.who_since(recovered + 5.0) == {"127.0.0.4"}

    assert fleet.errors == []
    assert {status for _, status, _ in fleet.answers} == {200}
