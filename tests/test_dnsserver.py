# The name server's weighted (GSLB-style) answers: one address per query, drawn by weight from
# the asked family. Most cases call DnsServer.respond with a query packet (no socket); one asks
# over UDP on 127.0.0.1. The draws use a seeded random source, so the counts are reproducible.
from __future__ import annotations

import math
import random
from collections import Counter

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from migproxy.dnsserver import DnsServer
from tests.upstream.test_resolver import name_server, run

NAME = "gslb.test"


def ask(server: DnsServer, rdtype: str, name: str = NAME) -> dns.message.Message:
    response = server.respond(dns.message.make_query(name, rdtype).to_wire())
    assert response is not None
    return response


def addresses(response: dns.message.Message) -> list[str]:
    return [str(rdata) for rrset in response.answer for rdata in rrset]


def draws(server: DnsServer, rdtype: str, count: int) -> Counter[str]:
    """How often each address answered `count` queries; each answer holds exactly one."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        found = addresses(ask(server, rdtype))
        assert len(found) == 1
        seen[found[0]] += 1
    return seen


def test_each_query_gets_one_address_drawn_by_weight() -> None:
    server = DnsServer()
    weights = {"10.0.0.1": 3.0, "10.0.0.2": 1.0, "10.0.0.3": 0.0}
    server.set_weighted(NAME, weights, ttl=30, rng=random.Random(1))
    seen = draws(server, "A", 2000)
    assert set(seen) == {"10.0.0.1", "10.0.0.2"}  # weight 0: never
    assert 0.70 < seen["10.0.0.1"] / 2000 < 0.80  # 3:1 is 75%
    response = ask(server, "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert [rrset.ttl for rrset in response.answer] == [30]


def test_families_are_drawn_apart() -> None:
    server = DnsServer()
    weights = {"10.0.0.1": 1.0, "10.0.0.2": 1.0, "fd00::1": 1.0, "fd00::2": 0.0}
    server.set_weighted(NAME, weights, ttl=30, rng=random.Random(2))
    assert set(draws(server, "A", 200)) == {"10.0.0.1", "10.0.0.2"}
    assert set(draws(server, "AAAA", 200)) == {"fd00::1"}


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param({"10.0.0.1": 1.0, "fd00::1": 0.0}, id="zero-weights"),
        pytest.param({"10.0.0.1": 1.0}, id="no-address"),
    ],
)
def test_a_family_without_weight_gets_nodata(weights: dict[str, float]) -> None:
    server = DnsServer()
    server.set_weighted(NAME, weights, ttl=30)
    nodata = ask(server, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    assert ask(server, "MX").answer == []


def test_weights_and_records_replace_each_other() -> None:
    server = DnsServer()
    server.set_records(NAME, ["10.0.0.1", "10.0.0.2"], ttl=30)
    assert addresses(ask(server, "A")) == ["10.0.0.1", "10.0.0.2"]
    server.set_weighted(NAME, {"10.0.0.1": 0.0, "10.0.0.2": 1.0}, ttl=30)
    assert addresses(ask(server, "A")) == ["10.0.0.2"]
    server.set_records(NAME, ["10.0.0.3"], ttl=30)
    assert addresses(ask(server, "A")) == ["10.0.0.3"]
    assert ask(server, "A", name="other.test").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("weights", "ttl", "message"),
    [
        pytest.param({"10.0.0.1": -1.0}, 30, "finite number >= 0", id="negative"),
        pytest.param({"10.0.0.1": math.nan}, 30, "finite number >= 0", id="nan"),
        pytest.param({"10.0.0.1": math.inf}, 30, "finite number >= 0", id="inf"),
        pytest.param({"gslb.test": 1.0}, 30, "does not appear to be an IPv4 or IPv6", id="name"),
        pytest.param({"10.0.0.1": 1.0}, -1, "ttl must be >= 0", id="ttl"),
    ],
)
def test_invalid_weights_are_refused(weights: dict[str, float], ttl: int, message: str) -> None:
    server = DnsServer()
    with pytest.raises(ValueError, match=message):
        server.set_weighted(NAME, weights, ttl=ttl)
    assert ask(server, "A").rcode() == dns.rcode.NXDOMAIN  # nothing was set


def test_weighted_answers_over_udp() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            weights = {"10.0.0.1": 1.0, "10.0.0.2": 1.0}
            server.set_weighted(NAME, weights, ttl=5, rng=random.Random(3))
            seen: set[str] = set()
            for _ in range(40):
                query = dns.message.make_query(NAME, "A")
                answer = await dns.asyncquery.udp(query, "127.0.0.1", 2.0, port=server.port)
                assert [(rrset.rdtype, rrset.ttl, len(rrset)) for rrset in answer.answer] == [
                    (dns.rdatatype.A, 5, 1)
                ]
                seen.update(addresses(answer))
            assert seen == {"10.0.0.1", "10.0.0.2"}
            assert server.queries == 40

    run(scenario())
