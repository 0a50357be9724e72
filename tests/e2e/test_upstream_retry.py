# The stale keep-alive race (RFC 9112 §9.3.1): a reused upstream connection that the upstream
# had already closed. An idempotent request without a body is retried once on a new
# connection; anything else gets a 502, and the upstream never sees a request twice.
from __future__ import annotations

import contextlib
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import samples, value
from tests.e2e.servers import Proxy, ScriptedUpstream, run_proxy

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def hang_up_on_second_request(close: Callable[[socket.socket], None]) -> Callable[..., None]:
    """An upstream that keeps connections alive but closes each one instead of answering
    its second request: what a keep-alive timeout racing with a new request looks like."""
    # Keyed by the socket object itself, weakly: an id() or a file descriptor is reused by a
    # later connection once the first one is closed, which would carry its count over.
    served: weakref.WeakKeyDictionary[socket.socket, int] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def script(sock: socket.socket, head: bytes) -> None:
        with lock:
            served[sock] = count = served.get(sock, 0) + 1
        if count == 2:
            close(sock)
            raise OSError("closed by the script")
        sock.sendall(OK)

    return script


def fin(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_RDWR)


def rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextlib.contextmanager
def racing_upstream(
    close: Callable[[socket.socket], None],
) -> Iterator[tuple[ScriptedUpstream, Proxy]]:
    with (
        ScriptedUpstream(hang_up_on_second_request(close)) as upstream,
        run_proxy(upstream.port) as proxy,
    ):
        yield upstream, proxy


def first_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("close", [fin, rst], ids=["fin", "rst"])
@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"DELETE"])
def test_idempotent_request_is_retried_once_on_a_new_connection(
    close: Callable[[socket.socket], None], method: bytes
) -> None:
    with (
        racing_upstream(close) as (upstream, proxy),
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        first = client.request(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
        again = client.request(
            method + b" /2 HTTP/1.1\r\nHost: t\r\n\r\n", head_request=method == b"HEAD"
        )
        assert (first.status, again.status) == (200, 200)
        assert not again.announces_close
        assert [first_line(h) for h in upstream.heads] == [
            b"GET /1 HTTP/1.1",
            method + b" /2 HTTP/1.1",  # on the reused connection, which hung up
            method + b" /2 HTTP/1.1",  # the retry, on a new one
        ]
        assert upstream.connections == 2
        found = samples(proxy.admin_url)
        assert value(found, "migproxy_upstream_retries_total", vip="default") == 1
        assert value(found, "migproxy_upstream_errors_total", vip="default", kind="reset") == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"PATCH /2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PUT /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["post", "patch", "put-with-body", "get-with-body"],
)
def test_request_that_cannot_be_sent_twice_gets_502(request_bytes: bytes) -> None:
    with (
        racing_upstream(fin) as (upstream, proxy),
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert client.request(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        failed = client.request(request_bytes)
        assert failed.status == 502
        assert len(upstream.heads) == 2  # never sent again
        assert (
            value(samples(proxy.admin_url), "migproxy_upstream_retries_total", vip="default") == 0
        )


def test_failure_on_a_fresh_connection_is_not_retried() -> None:
    def hang_up(sock: socket.socket, head: bytes) -> None:
        fin(sock)
        raise OSError("closed by the script")

    with (
        ScriptedUpstream(hang_up) as upstream,
        run_proxy(upstream.port) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert client.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status == 502
        assert len(upstream.heads) == 1


def test_a_retry_that_fails_too_is_answered_once() -> None:
    # Every connection answers its first request and hangs up on its second, so the retry
    # (a first request) succeeds; then a third request on the client's connection is
    # retried again: one retry per request, not one per connection.
    with (
        racing_upstream(fin) as (upstream, proxy),
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        statuses = [
            client.request(f"GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode()).status
            for n in range(1, 5)
        ]
        assert statuses == [200] * 4
        assert (
            value(samples(proxy.admin_url), "migproxy_upstream_retries_total", vip="default") == 3
        )
