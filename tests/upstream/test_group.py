# What UpstreamGroup does with connections when addresses change, are ejected, age or overflow
# the pool: each is closed with its reason, or pooled. In-memory transports, no sockets.
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.datapath_bench import MemoryTransport
from migproxy.config import Address, Config, ListenConfig, UpstreamConfig
from migproxy.errors import ConnectError
from migproxy.stats import Stats, UpstreamClose
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.group import UpstreamBackend, UpstreamGroup

NOW = 1000.0


@pytest.fixture
def group() -> Iterator[UpstreamGroup]:
    loop = asyncio.new_event_loop()
    config = Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("svc.test", 8081), max_idle=2, max_age=60.0),
    )
    group = UpstreamGroup(config, loop, Stats())
    group.set_addresses(("10.0.0.1", "10.0.0.2"))
    yield group
    loop.close()


def connection(group: UpstreamGroup, host: str, opened_at: float = NOW) -> UpstreamConnection:
    backend = group.balancer.backends[host]
    conn = UpstreamConnection(65536, 100, group.stats, backend, opened_at)
    conn.connection_made(MemoryTransport())
    return conn


def pooled(group: UpstreamGroup, host: str) -> UpstreamConnection:
    conn = connection(group, host)
    group.release(conn, NOW, draining=False)
    assert conn.close_reason is None
    return conn


def backend(group: UpstreamGroup, host: str) -> UpstreamBackend:
    return group.balancer.backends[host]


def test_reusable_connection_is_pooled_with_its_address(group: UpstreamGroup) -> None:
    conn = pooled(group, "10.0.0.1")
    assert backend(group, "10.0.0.1").pool.acquire(NOW) is conn
    assert backend(group, "10.0.0.2").pool.acquire(NOW) is None


def test_address_leaving_the_answer_closes_idle_now_and_busy_after(group: UpstreamGroup) -> None:
    idle = pooled(group, "10.0.0.1")
    busy = connection(group, "10.0.0.1")
    group.set_addresses(("10.0.0.2", "10.0.0.3"))
    assert idle.close_reason is UpstreamClose.DNS_REMOVED
    assert busy.close_reason is None  # its exchange goes on
    group.release(busy, NOW, draining=False)
    assert busy.close_reason is UpstreamClose.DNS_REMOVED
    assert set(group.balancer.backends) == {"10.0.0.2", "10.0.0.3"}
    assert (group.stats.addresses_healthy, group.stats.addresses_ejected) == (2, 0)


def test_ejected_address_closes_idle_and_released_connections(group: UpstreamGroup) -> None:
    idle = pooled(group, "10.0.0.1")
    busy = connection(group, "10.0.0.1")
    group.set_healthy(backend(group, "10.0.0.1"), False)
    assert idle.close_reason is UpstreamClose.UNHEALTHY
    group.release(busy, NOW, draining=False)
    assert busy.close_reason is UpstreamClose.UNHEALTHY
    assert (group.stats.addresses_healthy, group.stats.addresses_ejected) == (1, 1)
    assert group.pick() is backend(group, "10.0.0.2")


def test_fail_open_keeps_pooling_when_every_address_is_down(group: UpstreamGroup) -> None:
    for host in ("10.0.0.1", "10.0.0.2"):
        group.set_healthy(backend(group, host), False)
    assert group.stats.all_down == 1
    conn = pooled(group, "10.0.0.1")  # still eligible: fail open
    assert backend(group, "10.0.0.1").pool.acquire(NOW) is conn


@pytest.mark.parametrize(
    ("opened_at", "now", "reason"),
    [(NOW, NOW + 59.0, None), (NOW, NOW + 60.0, UpstreamClose.MAX_AGE)],
    ids=["young", "too-old"],
)
def test_max_age_on_release(
    group: UpstreamGroup, opened_at: float, now: float, reason: UpstreamClose | None
) -> None:
    conn = connection(group, "10.0.0.1", opened_at)
    group.release(conn, now, draining=False)
    assert conn.close_reason is reason


def test_sweep_retires_idle_connections_by_age_and_idleness(group: UpstreamGroup) -> None:
    old = connection(group, "10.0.0.1", opened_at=NOW - 59.0)
    group.release(old, NOW, draining=False)
    young = pooled(group, "10.0.0.2")
    group.sweep(NOW + 1.0)
    assert old.close_reason is UpstreamClose.MAX_AGE
    assert young.close_reason is None
    group.sweep(NOW + 50.0)  # upstream.idle_timeout
    assert young.close_reason is UpstreamClose.IDLE


def test_full_pool_and_draining(group: UpstreamGroup) -> None:
    pooled(group, "10.0.0.1")
    pooled(group, "10.0.0.1")
    third = connection(group, "10.0.0.1")
    group.release(third, NOW, draining=False)
    assert third.close_reason is UpstreamClose.POOL_FULL
    late = connection(group, "10.0.0.2")
    group.release(late, NOW, draining=True)
    assert late.close_reason is UpstreamClose.DRAIN


def test_no_address_left_explains_the_503(group: UpstreamGroup) -> None:
    group.set_addresses(())
    assert group.pick() is None
    assert "no address" in group.unavailable_reason()


def test_a_connection_the_upstream_closed_before_connect_returned_is_a_connect_error(
    group: UpstreamGroup,
) -> None:
    # Its close (or a greeting, which closes it) can be handled by the loop before the task
    # that awaited the connect resumes: the exchange must fail now (502), not wait for a
    # response that cannot come (504 after the response timeout).
    async def connect_then_lose(factory: Any, host: str, port: int) -> tuple[Any, Any]:
        conn = factory()
        transport = MemoryTransport()
        conn.connection_made(transport)
        conn.connection_lost(None)
        return transport, conn

    group.loop.create_connection = connect_then_lose  # type: ignore[method-assign,assignment]
    backend = group.balancer.backends["10.0.0.1"]
    with pytest.raises(ConnectError, match="closed at once by the upstream"):
        group.loop.run_until_complete(group.connect(backend))
    # opened and closed alike: what is open (opened - closed) stays true
    assert group.stats.upstream_opened == sum(group.stats.upstream_closes.values()) == 1
