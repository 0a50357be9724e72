# Flow control between the two sides of an exchange, on in-memory transports (no sockets):
# when an exchange ends, neither side may stay paused on the other's behalf, the next exchange
# inherits whatever pause still holds, and a timeout blames the side that stopped reading.
from __future__ import annotations

import asyncio

from migproxy.server.client_protocol import ClientProtocol
from tests.server.harness import REQUEST, RESPONSE, FakeTransport, pair


def test_upstream_paused_for_a_slow_client_is_resumed_when_pooled(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    client.data_received(REQUEST)
    # The response's last bytes fill the client's write buffer: the proxy pauses the upstream.
    client_transport.on_write = client.pause_writing
    upstream.data_received(RESPONSE)
    assert client_transport.chunks[-1].endswith(b"ok")
    # The exchange is over and the connection went back to the pool: it must read again.
    assert upstream.is_usable()
    assert upstream_transport.reading
    client_transport.on_write = None
    client.resume_writing()
    client.data_received(REQUEST)  # the next exchange gets that connection, and its response
    upstream.data_received(RESPONSE)
    assert client_transport.chunks[-1].endswith(b"ok")


def test_client_paused_for_a_full_upstream_is_resumed_for_its_next_request(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    # Writing the request fills the upstream's write buffer: the proxy stops reading the client.
    upstream_transport.on_write = upstream.pause_writing
    client.data_received(REQUEST)
    assert not client_transport.reading
    upstream.data_received(RESPONSE)  # the upstream answers; its buffer is still draining
    assert client_transport.chunks[-1].endswith(b"ok")
    assert client_transport.reading, "the client's next request would never be read"


def test_a_pipelined_exchange_inherits_the_clients_full_write_buffer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # The first response's last bytes fill the client's buffer; the second exchange's upstream
    # must not read (uvloop will not say pause_writing again): else the proxy buffers it all.
    client, client_transport, upstream, upstream_transport = pair(loop)
    client_transport.on_write = client.pause_writing
    client.data_received(REQUEST + REQUEST)
    upstream.data_received(RESPONSE)
    assert upstream.owner is client, "the second exchange took the pooled connection"
    assert not upstream_transport.reading
    client_transport.on_write = None
    client.resume_writing()
    assert upstream_transport.reading


def test_a_connection_pooled_with_a_full_write_buffer_holds_back_its_next_client(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    upstream_transport.on_write = upstream.pause_writing
    client.data_received(REQUEST)
    upstream.data_received(RESPONSE)  # pooled again, its write buffer still above high water
    upstream_transport.on_write = None  # as with uvloop: no second pause_writing for it
    other = ClientProtocol(client.ctx)
    other_transport = FakeTransport()
    other.connection_made(other_transport)
    other.data_received(REQUEST)
    assert upstream.owner is other
    assert not other_transport.reading
    upstream.resume_writing()
    assert other_transport.reading


def test_an_early_response_aborts_its_upstream_and_the_body_is_read_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    upstream_transport.on_write = upstream.pause_writing  # the upstream reads nothing more
    client.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n012")
    assert not client_transport.reading
    upstream.data_received(RESPONSE)  # answered before the body: the exchange is over for it
    assert client_transport.chunks[-1].endswith(b"ok")
    assert upstream_transport.aborted, "a graceful close would wait for it for ever"
    assert client_transport.reading, "the rest of the body must still be read and dropped"


def test_a_response_stalled_by_the_client_is_the_clients_fault(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, _ = pair(loop)
    client.data_received(REQUEST)
    upstream.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    client.pause_writing()  # the client stopped reading: the upstream is paused for it
    client.deadline_passed(client.ctx.now)
    assert client_transport.aborted
    assert client.ctx.stats.upstream_errors == {}, "the upstream did nothing wrong"


def test_a_request_body_stalled_by_the_upstream_gets_504(
    loop: asyncio.AbstractEventLoop,
) -> None:
    client, client_transport, upstream, upstream_transport = pair(loop)
    upstream_transport.on_write = upstream.pause_writing  # the upstream stopped reading
    client.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123")
    client.deadline_passed(client.ctx.now)
    assert client_transport.chunks[-1].startswith(b"HTTP/1.1 504 "), client_transport.chunks
    assert client.ctx.stats.upstream_errors == {"timeout": 1}
