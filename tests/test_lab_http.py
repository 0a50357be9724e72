# The lab client's HTTP/1.1 response reading: framing and keep-alive per RFC 9112, from bytes
# fed to a real asyncio.StreamReader (no socket); and the lab backend's request framing.
from __future__ import annotations

import asyncio

import pytest

from migproxy.lab.backend import content_length, response_bytes
from migproxy.lab.http import (
    Framing,
    ProtocolError,
    ResponseHead,
    parse_response_head,
    read_response,
    request_bytes,
)

HEADS = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
        ResponseHead(200, True, Framing.LENGTH, 4),
        id="keep-alive",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 4\r\n\r\n",
        ResponseHead(200, False, Framing.LENGTH, 4),
        id="close-token",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nconnection: x\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
        ResponseHead(200, False, Framing.LENGTH, 0),
        id="close-in-second-field",
    ),
    pytest.param(
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        ResponseHead(200, False, Framing.LENGTH, 1),
        id="http10-default-close",
    ),
    pytest.param(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        ResponseHead(200, True, Framing.LENGTH, 1),
        id="http10-keep-alive",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ResponseHead(200, True, Framing.CHUNKED),
        id="chunked",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ResponseHead(200, False, Framing.UNTIL_CLOSE),
        id="not-chunked-last",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\n\r\n", ResponseHead(200, False, Framing.UNTIL_CLOSE), id="no-length"
    ),
    pytest.param(
        b"HTTP/1.1 204 No Content\r\n\r\n", ResponseHead(204, True, Framing.NONE), id="204"
    ),
    pytest.param(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        ResponseHead(304, True, Framing.NONE),
        id="304",
    ),
]


@pytest.mark.parametrize(("head", "want"), HEADS)
def test_parse_response_head(head: bytes, want: ResponseHead) -> None:
    assert parse_response_head(head) == want


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ],
)
def test_malformed_heads(head: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response_head(head)


def read(data: bytes, eof: bool = True) -> tuple[ResponseHead, bytes]:
    async def go() -> tuple[ResponseHead, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return await read_response(reader)

    return asyncio.run(go())


def test_read_length_and_leave_the_next_response() -> None:
    head, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nold\nHTTP/1.1 200", eof=False)
    assert body == b"old\n" and head.keep_alive


def test_read_chunked_with_extensions_and_trailers() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;x=1\r\nol\r\n2\r\nd\n\r\n0\r\nTrailer: yes\r\n\r\n"
    )
    head, body = read(data, eof=False)
    assert body == b"old\n" and head.framing is Framing.CHUNKED


def test_read_skips_interim_responses_and_reads_until_close() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n" + b"x" * 100_000
    head, body = read(data)
    assert head.status == 200 and not head.keep_alive and len(body) == 100_000


def test_truncated_responses_fail() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nold")
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"HTTP/1.1 200 OK\r\nContent-")
    with pytest.raises(ProtocolError):
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def test_request_and_backend_answer() -> None:
    assert request_bytes("service.lab.test") == (
        b"GET / HTTP/1.1\r\nHost: service.lab.test\r\nUser-Agent: migproxy-lab\r\n\r\n"
    )
    head, body = read(response_bytes("new"), eof=False)
    assert head == ResponseHead(200, True, Framing.LENGTH, 4) and body == b"new\n"
    assert content_length(b"GET / HTTP/1.1\r\nHost: x") == 0
    assert content_length(b"POST / HTTP/1.1\r\nContent-Length: 12") == 12
    assert content_length(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked") is None
