# UpstreamResolver against a real name server: migproxy.dnsserver on 127.0.0.1 (an ephemeral
# port), asked by dnspython's real resolver over UDP. Nothing here leaves the loopback
# interface: the tests without configured name servers look up names their hosts file lists.
#
# Answers use TTL 1 s and outages a stale_ttl of about a second, so the suite stays fast;
# every wait is bounded ("until X, at most N s"), none asserts how fast something happened.
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from migproxy.config import Address
from migproxy.dnsserver import DnsServer, Mode
from migproxy.stats import Resolution, Stats
from migproxy.upstream.resolver import ResolveError, UpstreamResolver
from tests.conftest import unavailable

T = TypeVar("T")
NAME = "up.test"
LOOKUP_TIMEOUT = 0.3  # a dropped query fails after this long


def run(coro: Coroutine[Any, Any, T], seconds: float = 15.0) -> T:
    """Run one test scenario on a fresh loop, failing it if it takes more than `seconds`."""

    async def bounded() -> T:
        async with asyncio.timeout(seconds):
            return await coro

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def name_server() -> AsyncIterator[DnsServer]:
    server = DnsServer("127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def resolver_for(
    server: DnsServer | None,
    stats: Stats,
    host: str = NAME,
    *,
    min_ttl: float = 1.0,
    max_ttl: float = 300.0,
    stale_ttl: float = 1.0,
    hosts_path: str = "/etc/hosts",
) -> UpstreamResolver:
    nameservers = () if server is None else (Address("127.0.0.1", server.port),)
    return UpstreamResolver(
        host,
        nameservers=nameservers,
        min_ttl=min_ttl,
        max_ttl=max_ttl,
        stale_ttl=stale_ttl,
        stats=stats,
        timeout=LOOKUP_TIMEOUT,
        hosts_path=hosts_path,
    )


@contextlib.asynccontextmanager
async def started(
    resolver: UpstreamResolver,
) -> AsyncIterator[asyncio.Queue[tuple[str, ...]]]:
    """The resolver's background task, running; yields the queue its changes arrive in."""
    changes: asyncio.Queue[tuple[str, ...]] = asyncio.Queue()
    resolver.start(changes.put_nowait)
    try:
        yield changes
    finally:
        await resolver.stop()


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait until `condition()` holds, at most `seconds`."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def next_change(changes: asyncio.Queue[tuple[str, ...]], seconds: float) -> tuple[str, ...]:
    async with asyncio.timeout(seconds):
        return await changes.get()


def count(stats: Stats, result: Resolution) -> int:
    return stats.resolutions.get(result, 0)


# Answers


def test_union_of_a_and_aaaa_sorted_ipv4_first() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["fd00::2", "10.0.0.2", "10.0.0.1", "fd00::1"], ttl=60)
            stats = Stats()
            resolver = resolver_for(server, stats)
            assert await resolver.resolve() == ("10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2")
            assert resolver.addresses == ("10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2")
            assert server.queries == 2  # A and AAAA
            assert stats.resolutions == {Resolution.OK: 1}

    run(scenario())


@pytest.mark.parametrize("addresses", [["10.0.0.1"], ["fd00::1"]], ids=["ipv4-only", "ipv6-only"])
def test_one_family_is_an_answer(addresses: list[str]) -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, addresses, ttl=60)
            stats = Stats()
            assert await resolver_for(server, stats).resolve() == tuple(addresses)
            assert stats.resolutions == {Resolution.OK: 1}

    run(scenario())


@pytest.mark.parametrize(
    ("record_ttl", "min_ttl", "max_ttl", "expected"),
    [
        pytest.param(0, 2.0, 300.0, 2.0, id="raised-to-min"),
        pytest.param(3600, 1.0, 5.0, 5.0, id="lowered-to-max"),
        pytest.param(42, 1.0, 300.0, 42.0, id="kept"),
    ],
)
def test_ttl_is_clamped(record_ttl: int, min_ttl: float, max_ttl: float, expected: float) -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1", "fd00::1"], ttl=record_ttl)
            resolver = resolver_for(server, Stats(), min_ttl=min_ttl, max_ttl=max_ttl)
            await resolver.resolve()
            assert resolver.ttl == expected

    run(scenario())


def test_answers_followed_and_on_change_only_when_the_set_changes() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1", "10.0.0.2"], ttl=1)
            stats = Stats()
            resolver = resolver_for(server, stats)
            async with started(resolver) as changes:
                # no resolve() before start(): the first answer is a change from ()
                assert await next_change(changes, seconds=2.0) == ("10.0.0.1", "10.0.0.2")
                server.set_records(NAME, ["10.0.0.2", "fd00::3"], ttl=1)
                assert await next_change(changes, seconds=2.0) == ("10.0.0.2", "fd00::3")
                assert resolver.addresses == ("10.0.0.2", "fd00::3")
                # one more refresh, the same set: no call
                answered = count(stats, Resolution.OK)
                await until(lambda: count(stats, Resolution.OK) > answered, seconds=2.0)
                assert changes.empty()
            assert count(stats, Resolution.ERROR) == 0

    run(scenario())


def test_concurrent_lookups_are_merged() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1", "fd00::1"], ttl=60)
            stats = Stats()
            resolver = resolver_for(server, stats)
            results = await asyncio.gather(*(resolver.resolve() for _ in range(20)))
            assert set(results) == {("10.0.0.1", "fd00::1")}
            assert server.queries == 2  # one lookup: A and AAAA
            assert stats.resolutions == {Resolution.OK: 1}
            await resolver.resolve()  # fresh: no lookup at all
            assert server.queries == 2

    run(scenario())


# Failures


@pytest.mark.parametrize("mode", ["drop", "servfail"])
def test_outage_serves_the_stale_answer_then_drops_it(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="migproxy")

    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1"], ttl=1)
            stats = Stats()
            resolver = resolver_for(server, stats, stale_ttl=1.0)
            assert await resolver.resolve() == ("10.0.0.1",)
            async with started(resolver) as changes:
                server.set_mode(mode)
                await until(lambda: count(stats, Resolution.STALE_SERVED) >= 1, seconds=4.0)
                assert await resolver.resolve() == ("10.0.0.1",)
                assert resolver.addresses == ("10.0.0.1",)
                # the stale time ends: the answer is gone
                assert await next_change(changes, seconds=4.0) == ()
                with pytest.raises(ResolveError, match=rf"^cannot resolve {NAME}: "):
                    await resolver.resolve()
                assert not resolver.addresses
                # the name server is back: without an answer, a caller looks it up at once
                server.set_mode("answer")
                assert await resolver.resolve() == ("10.0.0.1",)
                assert changes.get_nowait() == ("10.0.0.1",)
            assert count(stats, Resolution.ERROR) >= 2
            assert count(stats, Resolution.STALE_SERVED) <= count(stats, Resolution.ERROR)

    run(scenario())
    messages = [record.getMessage() for record in caplog.records if record.name == "migproxy"]
    assert all(NAME in message for message in messages)
    assert all(record.exc_info is None for record in caplog.records)
    reason = "timed out" if mode == "drop" else "no name server answered (SERVFAIL)"
    assert any(message.endswith(f"DNS lookup failed: {reason}") for message in messages)
    assert sum("serving the expired DNS answer" in message for message in messages) == 1
    assert sum("expired DNS answer is dropped" in message for message in messages) == 1


def test_nxdomain_without_an_answer_raises() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            stats = Stats()
            resolver = resolver_for(server, stats, host="unknown.test")
            with pytest.raises(ResolveError, match=r"unknown\.test: no such name \(NXDOMAIN\)"):
                await resolver.resolve()
            assert resolver.addresses == ()
            assert stats.resolutions == {Resolution.ERROR: 1}

    run(scenario())


def test_servfail_without_an_answer_names_the_rcode() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1"], ttl=60)
            server.set_mode("servfail")
            with pytest.raises(ResolveError, match=r"SERVFAIL"):
                await resolver_for(server, Stats()).resolve()

    run(scenario())


def test_a_name_without_addresses_raises() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, [], ttl=60)
            with pytest.raises(ResolveError, match="no A or AAAA records"):
                await resolver_for(server, Stats()).resolve()

    run(scenario())


# No DNS


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("2001:DB8::0001", "2001:db8::1")],
    ids=["ipv4", "ipv6"],
)
def test_ip_literal_is_never_looked_up(host: str, expected: str) -> None:
    async def scenario() -> None:
        async with name_server() as server:
            stats = Stats()
            resolver = resolver_for(server, stats, host=host)
            async with started(resolver) as changes:
                assert await resolver.resolve() == (expected,)
                assert resolver.addresses == (expected,)
            assert changes.empty()
            assert server.queries == 0
            assert stats.resolutions == {}

    run(scenario())


def test_localhost_from_the_system_hosts_file() -> None:
    if "localhost" not in Path("/etc/hosts").read_text(errors="replace"):
        unavailable("/etc/hosts does not list localhost")

    async def scenario() -> None:
        stats = Stats()
        resolver = resolver_for(None, stats, host="localhost", max_ttl=60.0)
        addresses = await resolver.resolve()
        assert addresses and set(addresses) <= {"127.0.0.1", "::1"}
        assert resolver.ttl == 60.0
        assert stats.resolutions == {Resolution.OK: 1}

    run(scenario())


def test_hosts_file_is_read_again_on_each_refresh(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.1.1 backend.lab\n")

    async def scenario() -> None:
        resolver = resolver_for(
            None, Stats(), host="backend.lab", max_ttl=1.0, hosts_path=str(hosts)
        )
        assert await resolver.resolve() == ("10.1.1.1",)
        async with started(resolver) as changes:
            hosts.write_text("10.1.1.2 backend.lab\n::2 backend.lab\n")
            assert await next_change(changes, seconds=2.0) == ("10.1.1.2", "::2")

    run(scenario())


# The name server itself (migproxy.dnsserver)


def test_name_server_flags_and_sections() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1", "fd00::1"], ttl=7)

            async def ask(name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
                query = dns.message.make_query(name, rdtype)
                if tcp:
                    return await dns.asyncquery.tcp(query, "127.0.0.1", 2.0, port=server.port)
                return await dns.asyncquery.udp(query, "127.0.0.1", 2.0, port=server.port)

            answer = await ask(NAME, "A")
            assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
            assert [(rrset.ttl, [str(r) for r in rrset]) for rrset in answer.answer] == [
                (7, ["10.0.0.1"])
            ]
            over_tcp = await ask(NAME.upper(), "AAAA", tcp=True)
            assert [str(r) for rrset in over_tcp.answer for r in rrset] == ["fd00::1"]
            nodata = await ask(NAME, "MX")
            assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
            nxdomain = await ask("other.test", "A")
            assert nxdomain.rcode() == dns.rcode.NXDOMAIN and nxdomain.flags & dns.flags.AA
            assert server.queries == 4

    run(scenario())


def test_name_server_ignores_malformed_packets() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            server.set_records(NAME, ["10.0.0.1"], ttl=7)
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.port)
            )
            udp.sendto(b"\x00")
            udp.sendto(b"\xff" * 40)
            udp.close()
            query = dns.message.make_query(NAME, "A")
            answer = await dns.asyncquery.udp(query, "127.0.0.1", 2.0, port=server.port)
            assert [str(r) for rrset in answer.answer for r in rrset] == ["10.0.0.1"]
            # over TCP: a malformed message, then a query on the same connection
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x00\x03abc" + query.to_wire(prepend_length=True))
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            answer = dns.message.from_wire(await reader.readexactly(length))
            assert [str(r) for rrset in answer.answer for r in rrset] == ["10.0.0.1"]
            assert server.queries == 2
            writer.close()
            await writer.wait_closed()

    run(scenario())
