# Edges of an exchange on in-memory transports: an upgrade with bytes behind it, a client that
# half-closes after its request, a drain that begins mid-response or before a slow head, a
# linger that input keeps going, a pooled connection the upstream closed while it waited, and
# the stale keep-alive retry of such a connection.
from __future__ import annotations

import asyncio

import pytest

from migproxy.config import LimitsConfig
from migproxy.server.client_protocol import ClientProtocol
from tests.server.harness import REQUEST, RESPONSE, Clock, FakeTransport, pair

UPGRADE = b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n"
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n"


def test_bytes_behind_an_upgrade_request_go_up_with_the_101(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # A protocol whose client speaks first: "hello" arrived with the request, and must not
    # wait for the client's next bytes (which may never come before the server answers).
    client, client_transport, upstream, upstream_transport = pair(loop)
    client.data_received(UPGRADE + b"hello")
    upstream.data_received(SWITCH)
    assert client_transport.chunks[-1].startswith(b"HTTP/1.1 101 ")
    assert upstream_transport.chunks[-1] == b"hello"


def test_a_client_that_half_closes_after_its_request_gets_an_announced_close(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, _ = pair(loop)
    client.data_received(REQUEST)
    client.eof_received()
    upstream.data_received(RESPONSE)
    head = client_transport.chunks[-1]
    assert b"\r\nConnection: close\r\n" in head and head.endswith(b"ok")
    assert client_transport.eof_written, "closed after the response, not at the idle timeout"


def test_a_connection_that_goes_idle_during_a_drain_closes_after_the_grace(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, _ = pair(loop)
    ctx = client.ctx
    client.data_received(REQUEST)
    upstream.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")  # head sent
    ctx.set_draining()  # too late to announce the close in this response
    upstream.data_received(b"k")
    assert client.deadline <= ctx.now + ctx.config.drain.idle_grace
    client.deadline_passed(client.deadline)
    assert client_transport.closed


def test_a_head_begun_during_a_drain_gets_the_head_timeout_not_the_grace(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, _, _ = pair(loop)  # connected, nothing sent yet
    ctx = client.ctx
    ctx.set_draining()
    assert client.deadline <= ctx.now + ctx.config.drain.idle_grace  # silent: closes soon
    ctx.now += 0.1
    client.data_received(REQUEST[:10])  # a head on its way, in pieces
    assert client.deadline == ctx.now + ctx.head_timeout  # not a 408 when the grace ends
    assert not client_transport.chunks and not client_transport.closed


def lingering(
    loop: asyncio.AbstractEventLoop, drain_first: bool = False
) -> tuple[ClientProtocol, FakeTransport, Clock]:
    """A client connection lingering after a response that announced close, at clock.now."""
    clock = Clock(loop)
    client, client_transport, upstream, _ = pair(loop)
    client.ctx.now = clock.now
    if drain_first:
        client.data_received(REQUEST)
        client.ctx.set_draining()  # the response announces close: the drain's
    else:
        client.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    upstream.data_received(RESPONSE)
    assert client_transport.eof_written and client.phase.value == "linger"
    return client, client_transport, clock


def test_input_after_an_announced_close_keeps_the_linger_going_up_to_linger_max(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, clock = lingering(loop)
    ctx = client.ctx
    start, linger, linger_max = clock.now, ctx.linger, ctx.linger_max
    assert client.deadline == start + linger
    clock.now = start + linger - 0.1
    client.data_received(b"x" * 100)  # still sending: a silence ends the linger, not the clock
    assert client.deadline == clock.now + linger
    clock.now = start + linger_max - 0.1
    client.data_received(b"x" * 100)
    assert client.deadline == start + linger_max  # never longer than linger_max in all
    client.deadline_passed(client.deadline)
    assert client_transport.closed


def test_the_lingers_silence_is_timed_from_the_clock_not_the_sweeps_copy(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # ctx.now is refreshed by the sweep only: timed from it, the silence ended up to one
    # sweep interval early, and a client still sending got a reset.
    client, _, clock = lingering(loop)
    ctx = client.ctx
    clock.now += 0.4  # the sweep has not run since
    client.data_received(b"x")
    assert client.deadline == clock.now + ctx.linger > ctx.now + ctx.linger


def test_a_drain_does_not_wait_on_a_linger_that_input_keeps_going(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, _, clock = lingering(loop)
    ctx = client.ctx
    clock.now += 1.0
    client.data_received(b"x")
    ctx.set_draining()
    assert client.deadline == clock.now + ctx.linger
    clock.now += ctx.linger - 0.1
    client.data_received(b"x")  # still sending: no longer extends it
    assert client.deadline == pytest.approx(clock.now + 0.1)


def test_a_linger_that_begins_during_a_drain_lasts_linger_in_all(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, _, clock = lingering(loop, drain_first=True)
    start = clock.now
    clock.now += client.ctx.linger - 0.1
    client.data_received(b"x")
    assert client.deadline == start + client.ctx.linger


def test_a_body_error_after_an_early_answer_closes_gracefully(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # The upstream answered before the body ended; the rest of the body is read and dropped,
    # and crosses max_body_bytes: the connection closes, but with a FIN and a linger, not a
    # reset that could destroy the answer the client has not read yet.
    client, client_transport, upstream, _ = pair(loop, LimitsConfig(max_body_bytes=1000))
    client.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    upstream.data_received(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
    assert client_transport.chunks[-1].endswith(b"nope")
    client.data_received(b"3e8\r\n" + b"a" * 1000 + b"\r\n3e8\r\n")  # 2000 bytes: over it
    assert client_transport.eof_written and not client_transport.closed
    assert client.phase.value == "linger"


def test_a_pooled_connection_closed_by_the_upstream_leaves_the_pool(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, _, upstream, _ = pair(loop)
    pool = upstream.backend.pool
    assert len(pool) == 1
    upstream.connection_lost(None)  # the upstream closed it while it waited
    assert len(pool) == 0, "/readyz and /upstreams would count a dead connection"


def test_a_pooled_connection_that_never_carried_a_request_is_retried_when_stale(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # The /readyz probe leaves a connection in the pool that carried nothing: it waited idle
    # like any other, so the upstream closing it first is the stale keep-alive race.
    client, client_transport, upstream, _ = pair(loop)
    assert upstream.requests == 0
    client.data_received(REQUEST)
    assert upstream.owner is client and upstream.reused
    upstream.connection_lost(None)
    stats = client.ctx.stats
    assert stats.upstream_retries == 1 and stats.upstream_errors == {}
    assert client_transport.chunks == [], "no 502: the request goes again on a new connection"
    task = client._connecting
    assert task is not None
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
