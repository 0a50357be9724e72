# Pure tests of migproxy.http1.parse: head boundaries, the field block, request and response
# heads. No event loop, no sockets: bytes in, values or RemoteProtocolError out.
from __future__ import annotations

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import BodyKind, RequestHead, ResponseHead
from migproxy.http1.parse import (
    find_head_end,
    parse_request_head,
    parse_response_head,
    split_fields,
)

pytestmark = pytest.mark.usefixtures("head_parser")

MAX_HEAD = 8192
MAX_FIELDS = 100


def parse_request(raw: bytes, max_fields: int = MAX_FIELDS) -> RequestHead:
    """Parse `raw`, which must be exactly one complete request head."""
    end = find_head_end(raw, 0, MAX_HEAD)
    assert end == len(raw)
    return parse_request_head(raw, 0, end, max_fields)


def parse_response(raw: bytes, method: bytes = b"GET") -> ResponseHead:
    """Parse `raw`, which must be exactly one complete response head."""
    end = find_head_end(raw, 0, MAX_HEAD)
    assert end == len(raw)
    return parse_response_head(raw, 0, end, MAX_FIELDS, method)


# find_head_end


def test_find_head_end_returns_index_past_blank_line() -> None:
    buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"
    assert find_head_end(buf, 0, MAX_HEAD) == len(buf) - 4


def test_find_head_end_counts_from_start() -> None:
    first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    buf = first + second
    assert find_head_end(buf, len(first), MAX_HEAD) == len(buf)


def test_find_head_end_incomplete_head() -> None:
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0, MAX_HEAD) == -1


@pytest.mark.parametrize(
    ("buf", "max_bytes", "expected"),
    [
        pytest.param(b"ab\r\n\r\n", 6, 6, id="complete-at-limit"),
        pytest.param(b"abc\r\n", 5, -1, id="incomplete-at-limit"),
        pytest.param(b"xx" + b"ab\r\n\r\n", 6, 8, id="limit-counts-from-start"),
    ],
)
def test_find_head_end_at_the_size_limit(buf: bytes, max_bytes: int, expected: int) -> None:
    start = 2 if buf.startswith(b"xx") else 0
    assert find_head_end(buf, start, max_bytes) == expected


@pytest.mark.parametrize(
    ("buf", "max_bytes"),
    [
        pytest.param(b"abc\r\n\r\n", 6, id="complete-over-limit"),
        pytest.param(b"abcdef\r\n", 7, id="incomplete-over-limit"),
    ],
)
def test_find_head_end_over_the_size_limit(buf: bytes, max_bytes: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        find_head_end(buf, 0, max_bytes)
    assert info.value.status_hint == 431


def test_find_head_end_rejects_bare_lf_before_the_head_is_complete() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        find_head_end(b"GET / HTTP/1.1\nHost: x\n", 0, MAX_HEAD)
    assert info.value.status_hint == 400


# split_fields


def test_split_fields_empty_block() -> None:
    fields = split_fields(b"", 0, 0, MAX_FIELDS)
    assert fields.lines == []
    assert fields.names == []


def test_split_fields_keeps_raw_lines_and_lowercases_names() -> None:
    block = b"Host: Example.COM\r\nX-Thing:\t a  b \r\nACCEPT:*/*\r\n"
    fields = split_fields(block, 0, len(block), MAX_FIELDS)
    assert fields.lines == [b"Host: Example.COM", b"X-Thing:\t a  b ", b"ACCEPT:*/*"]
    assert fields.names == [b"host", b"x-thing", b"accept"]


def test_split_fields_honours_start_and_end() -> None:
    buf = b"junk\r\nA: 1\r\nB: 2\r\njunk"
    fields = split_fields(buf, 6, len(buf) - 4, MAX_FIELDS)
    assert fields.lines == [b"A: 1", b"B: 2"]


def test_split_fields_field_count_limit() -> None:
    block = b"A: 1\r\n" * 3
    assert len(split_fields(block, 0, len(block), 3)) == 3
    with pytest.raises(RemoteProtocolError) as info:
        split_fields(block, 0, len(block), 2)
    assert info.value.status_hint == 431


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        pytest.param(b"A: 1\r\n folded\r\n", "obsolete line folding", id="obs-fold-space"),
        pytest.param(b"A: 1\r\n\tfolded\r\n", "obsolete line folding", id="obs-fold-tab"),
        pytest.param(b"A: 1\x00\r\n", "NUL byte", id="nul-in-value"),
        pytest.param(b"A\x00B: 1\r\n", "NUL byte", id="nul-in-name"),
        pytest.param(b"A: 1\r2\r\n", "bare CR or LF", id="bare-cr"),
        pytest.param(b"A: 1\n2\r\n", "bare CR or LF", id="bare-lf"),
        pytest.param(b"A 1\r\n", "without a colon", id="no-colon"),
        pytest.param(b"A B: 1\r\n", "invalid header field name", id="space-in-name"),
        pytest.param(b": 1\r\n", "invalid header field name", id="empty-name"),
        pytest.param(b"A: 1\x7f\r\n", "invalid byte in header value", id="del-in-value"),
        pytest.param(b"A: \x1b[0m\r\n", "invalid byte in header value", id="escape-in-value"),
        pytest.param(b"A: 1", "malformed header section", id="no-final-crlf"),
    ],
)
def test_split_fields_rejects_malformed_blocks(block: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason) as info:
        split_fields(block, 0, len(block), MAX_FIELDS)
    assert info.value.status_hint == 400


# parse_request_head


def test_parse_request_head_fields() -> None:
    head = parse_request(b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    assert head.method == b"GET"
    assert head.target == b"/p?q=1"
    assert head.version == 11
    assert head.fields.lines == [b"Host: x", b"Accept: */*"]
    assert head.fields.names == [b"host", b"accept"]
    assert head.body is BodyKind.NONE
    assert head.length == 0
    assert head.keep_alive is True
    assert head.expect_continue is False
    assert head.upgrade is None


def test_parse_request_head_higher_minor_version_is_read_as_11() -> None:
    # RFC 9110 §2.5: a higher minor version is handled as the highest one we implement.
    assert parse_request(b"GET / HTTP/1.9\r\nHost: x\r\n\r\n").version == 11


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        pytest.param(b"1.1", b"", True, id="11-default"),
        pytest.param(b"1.1", b"Connection: close\r\n", False, id="11-close"),
        pytest.param(b"1.1", b"Connection: Keep-Alive, CLOSE\r\n", False, id="11-close-wins"),
        pytest.param(b"1.1", b"Connection: keep-alive\r\n", True, id="11-keep-alive"),
        pytest.param(b"1.0", b"", False, id="10-default"),
        pytest.param(b"1.0", b"Connection: keep-alive\r\n", True, id="10-keep-alive"),
        pytest.param(b"1.0", b"Connection: Keep-Alive\r\n", True, id="10-keep-alive-case"),
        pytest.param(b"1.0", b"Connection: keep-alive, close\r\n", False, id="10-close-wins"),
    ],
)
def test_parse_request_head_keep_alive(version: bytes, connection: bytes, keep_alive: bool) -> None:
    head = parse_request(b"GET / HTTP/" + version + b"\r\nHost: x\r\n" + connection + b"\r\n")
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("raw", "upgrade"),
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"websocket",
            id="connection-lists-upgrade",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            None,
            id="connection-does-not-list-upgrade",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            None,
            id="http10",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: \r\n\r\n",
            None,
            id="empty-upgrade",
        ),
    ],
)
def test_parse_request_head_upgrade(raw: bytes, upgrade: bytes | None) -> None:
    assert parse_request(raw).upgrade == upgrade


@pytest.mark.parametrize(
    ("raw", "expect_continue"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            True,
            id="11",
        ),
        pytest.param(
            # RFC 9110 §10.1.1: "The Expect field value is case-insensitive."
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
            True,
            id="11-mixed-case",
        ),
        pytest.param(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            False,
            id="10",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", False, id="absent"
        ),
    ],
)
def test_parse_request_head_expect_continue(raw: bytes, expect_continue: bool) -> None:
    assert parse_request(raw).expect_continue is expect_continue


@pytest.mark.parametrize(
    ("framing", "body", "length"),
    [
        pytest.param(b"Content-Length: 5\r\n", BodyKind.LENGTH, 5, id="cl"),
        pytest.param(b"Content-Length: 0\r\n", BodyKind.NONE, 0, id="cl-zero"),
        pytest.param(b"Content-Length: 007\r\n", BodyKind.LENGTH, 7, id="cl-leading-zeros"),
        pytest.param(b"Content-Length:5 \t\r\n", BodyKind.LENGTH, 5, id="cl-ows"),
        pytest.param(
            b"Content-Length: 999999999999999999\r\n",
            BodyKind.LENGTH,
            999999999999999999,
            id="cl-18-digits",
        ),
        pytest.param(b"Transfer-Encoding: chunked\r\n", BodyKind.CHUNKED, 0, id="te"),
        pytest.param(b"Transfer-Encoding: Chunked\r\n", BodyKind.CHUNKED, 0, id="te-case"),
        pytest.param(b"", BodyKind.NONE, 0, id="none"),
    ],
)
def test_parse_request_head_framing(framing: bytes, body: BodyKind, length: int) -> None:
    head = parse_request(b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n")
    assert head.body is body
    assert head.length == length


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"OPTIONS * HTTP/1.1", id="asterisk-form"),
        pytest.param(b"GET http://x/p HTTP/1.1", id="absolute-form-http"),
        pytest.param(b"GET HTTPS://x/p HTTP/1.1", id="absolute-form-https-upper"),
        pytest.param(b"PURGE /p HTTP/1.1", id="extension-method"),
    ],
)
def test_parse_request_head_accepts_targets(request_line: bytes) -> None:
    head = parse_request(request_line + b"\r\nHost: x\r\n\r\n")
    assert head.method + b" " + head.target == request_line.rsplit(b" ", 1)[0]


# parse_response_head


def test_parse_response_head_fields() -> None:
    head = parse_response(b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 3\r\nX: y\r\n\r\n")
    assert head.status == 404
    assert head.reason == b"Not Found Here"
    assert head.version == 11
    assert head.fields.lines == [b"Content-Length: 3", b"X: y"]
    assert head.body is BodyKind.LENGTH
    assert head.length == 3
    assert head.keep_alive is True
    assert head.is_informational is False


@pytest.mark.parametrize(
    "status_line",
    [
        pytest.param(b"HTTP/1.1 200", id="no-reason"),
        pytest.param(b"HTTP/1.1 200 ", id="empty-reason"),
    ],
)
def test_parse_response_head_without_reason(status_line: bytes) -> None:
    head = parse_response(status_line + b"\r\nContent-Length: 0\r\n\r\n")
    assert head.status == 200
    assert head.reason == b""


@pytest.mark.parametrize(
    ("raw", "method", "body", "length", "keep_alive"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"HEAD",
            BodyKind.NONE,
            0,
            True,
            id="head-with-cl",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HEAD",
            BodyKind.NONE,
            0,
            True,
            id="head-with-te",
        ),
        pytest.param(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            b"GET",
            BodyKind.NONE,
            0,
            True,
            id="204",
        ),
        pytest.param(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            b"GET",
            BodyKind.NONE,
            0,
            True,
            id="304",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"POST",
            BodyKind.NONE,
            0,
            True,
            id="100",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET",
            BodyKind.CHUNKED,
            0,
            True,
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET",
            BodyKind.UNTIL_CLOSE,
            0,
            False,
            id="te-gzip-until-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"GET",
            BodyKind.UNTIL_CLOSE,
            0,
            False,
            id="te-chunked-gzip-until-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"GET",
            BodyKind.UNTIL_CLOSE,
            0,
            False,
            id="no-framing-until-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"GET",
            BodyKind.LENGTH,
            0,
            True,
            id="cl-zero",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
            b"GET",
            BodyKind.LENGTH,
            4,
            False,
            id="11-close",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n",
            b"GET",
            BodyKind.LENGTH,
            4,
            False,
            id="10-default",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n",
            b"GET",
            BodyKind.LENGTH,
            4,
            True,
            id="10-keep-alive",
        ),
        pytest.param(
            # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing; the
            # recipient MUST close the connection after processing the message.
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
            b"GET",
            BodyKind.CHUNKED,
            0,
            False,
            id="10-te-must-close",
        ),
    ],
)
def test_parse_response_head_framing(
    raw: bytes, method: bytes, body: BodyKind, length: int, keep_alive: bool
) -> None:
    head = parse_response(raw, method)
    assert head.body is body
    assert head.length == length
    assert head.keep_alive is keep_alive


def test_parse_response_head_informational() -> None:
    assert parse_response(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").is_informational


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HTTP/1.1 OK\r\n\r\n", id="no-status"),
        pytest.param(b"HTTP/1.1 20 OK\r\n\r\n", id="two-digit-status"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit-status"),
        pytest.param(b"http/1.1 200 OK\r\n\r\n", id="lower-case-version"),
        pytest.param(b"HTTP/2.0 200 OK\r\n\r\n", id="http2"),
        pytest.param(b"HTTP/2 200 OK\r\n\r\n", id="http2-short"),
        pytest.param(b"ICY 200 OK\r\n\r\n", id="icy"),
        pytest.param(b"HTTP/1.1  200 OK\r\n\r\n", id="double-space"),
        pytest.param(b"HTTP/1.1 200 O\x00K\r\n\r\n", id="nul-in-reason"),
        # RFC 9110 §15: status codes outside 100..599 are invalid; 099 must not be taken for
        # an interim (1xx) response.
        pytest.param(b"HTTP/1.1 099 Odd\r\n\r\n", id="status-below-100"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", id="bad-field"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", id="obs-fold"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="cl-and-te",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", id="te-gzip-chunked"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", id="cl-list"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", id="two-cl"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="cl-negative"),
    ],
)
def test_parse_response_head_errors_are_502(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_response(raw)
    assert info.value.status_hint == 502


def test_parse_response_head_field_error_names_the_upstream() -> None:
    with pytest.raises(RemoteProtocolError, match="^upstream: ") as info:
        parse_response(b"HTTP/1.1 200 OK\r\nA\x00: b\r\n\r\n")
    assert info.value.status_hint == 502
