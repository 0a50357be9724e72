# limits.max_body_bytes, end to end: a request body over the limit gets 413 and never reaches
# the upstream whole; a body of exactly the limit passes; a client that sends its whole upload
# before it reads still gets its 413. Real clients (curl, aiohttp, http.client) against the
# demo backend, and a raw client against a scripted upstream to see what was forwarded.
from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp

from tests.e2e.rawclient import RawClient
from tests.e2e.servers import (
    ScriptedUpstream,
    answer_ok,
    read_until_closed,
    run_proxy,
    wait_until,
)
from tests.e2e.test_protocol import run_curl

LIMIT = 1000
LIMITS: dict[str, object] = {"max_body_bytes": LIMIT}
REASON = b"request body larger than 1000 bytes\n"


def test_curl_upload_over_the_limit_gets_413_and_is_not_forwarded() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, limits=LIMITS) as proxy,
    ):
        # 1001 bytes go with the head; 1 MiB makes curl ask `Expect: 100-continue` first,
        # and the 413 spares it the upload.
        for size in (LIMIT + 1, 1 << 20):
            resp = run_curl("--data-binary", "@-", proxy.url + "/upload", stdin=b"x" * size)
            assert resp.status == 413, resp
            assert resp.body == REASON
            assert resp.values("connection") == ["close"]
        assert run_curl(proxy.url + "/after").status == 200  # the proxy serves on
    assert [head.split(b"\r\n", 1)[0] for head in upstream.heads] == [b"GET /after HTTP/1.1"]


async def chunks(total: int, piece: int = 300) -> AsyncIterator[bytes]:
    """A body of `total` bytes in pieces: aiohttp sends it chunked."""
    while total > 0:
        yield b"y" * min(piece, total)
        total -= piece


async def aiohttp_uploads(base: str) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession() as session:
        out = []
        for body in (b"x" * LIMIT, chunks(LIMIT), b"x" * (LIMIT + 1)):
            async with session.post(base + "/count", data=body) as resp:
                out.append((resp.status, await resp.read()))
        return out


def test_aiohttp_uploads_at_the_limit_pass_and_over_it_get_413(backend_port: int) -> None:
    with run_proxy(backend_port, limits=LIMITS) as proxy:
        results = asyncio.run(aiohttp_uploads(proxy.url))
    assert results == [(200, b"1000\n"), (200, b"1000\n"), (413, REASON)]


def test_chunked_upload_is_cut_off_before_the_chunk_that_crosses_the_limit() -> None:
    # The head and the first chunk are forwarded as they arrive (bodies stream); the chunk that
    # would cross the limit is refused before any byte of it leaves, and the upstream
    # connection is dropped, so the upstream never receives a last chunk completing the request.
    received = bytearray()  # what the upstream read after the POST head, as it arrives
    first_chunk = b"258\r\n" + b"a" * 600 + b"\r\n"  # 600 bytes: within the limit

    def script(sock: socket.socket, head: bytes) -> None:
        if head.startswith(b"POST"):
            read_until_closed(sock, into=received)
            received.extend(b"<closed>")
        else:
            answer_ok(sock, head)

    with (
        ScriptedUpstream(script) as upstream,
        run_proxy(upstream.port, limits=LIMITS) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(b"POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            wait_until(lambda: len(upstream.heads) == 1, "the forwarded head")
            client.send(first_chunk)
            wait_until(lambda: received == first_chunk, "the first chunk upstream")
            client.send(b"258\r\n" + b"b" * 600 + b"\r\n0\r\n\r\n")  # 1200 in all: over it
            resp = client.read_response()
            assert (resp.status, resp.body, resp.announces_close) == (413, REASON, True)
            assert client.at_eof()
        finally:
            client.close()
        wait_until(lambda: received.endswith(b"<closed>"), "the upstream connection to end")
        assert run_curl(proxy.url + "/after").status == 200  # the proxy serves on
    assert bytes(received) == first_chunk + b"<closed>"


def slow_body(pieces: int, piece: int = 32 * 1024, gap: float = 0.02) -> Iterator[bytes]:
    for _ in range(pieces):
        yield b"z" * piece
        time.sleep(gap)


def test_a_slow_upload_sent_whole_before_reading_still_gets_its_413() -> None:
    # http.client (as requests) sends the whole body before it reads. The 413 goes out at the
    # head; the upload goes on for seconds, far longer than the linger's silence (0.3 s), and
    # the proxy keeps discarding it: closing under it would break the upload with a reset and
    # the client would see that instead of its answer.
    pieces = 100  # 3.2 MiB over about 2 s
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, limits=LIMITS, close={"linger": 0.3}) as proxy,
    ):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            conn.request(
                "POST",
                "/upload",
                body=slow_body(pieces),
                headers={"Content-Length": str(pieces * 32 * 1024)},
            )
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (413, REASON)
            assert resp.getheader("connection") == "close"
        finally:
            conn.close()
    assert upstream.heads == []
