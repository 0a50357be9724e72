# Pure tests of migproxy.http1.connection.RequestReader on malformed and smuggling-prone
# requests: each must fail with the status hint the proxy answers with (400, 431, 501 or 505),
# whether the bytes arrive at once or one at a time, and leave the reader in ERROR.
#
# A proxy that guesses at framing is how request smuggling happens (RFC 9112 §6.1, §11.2), so
# every case here is one where two reasonable parsers could disagree about where a message ends.
from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1.connection import ReaderState, RequestReader
from migproxy.http1.events import Pause
from tests.http1.reader_events import Summary, bytewise, feed, summarize

pytestmark = pytest.mark.usefixtures("head_parser")

MAX_HEAD = 8192
MAX_FIELDS = 100


def head(request_line: bytes, *fields: bytes) -> bytes:
    """A request head: the request line, Host, then `fields`, each line ended by CRLF."""
    return b"".join(line + b"\r\n" for line in (request_line, b"Host: x", *fields)) + b"\r\n"


def get(*fields: bytes) -> bytes:
    return head(b"GET / HTTP/1.1", *fields)


def post(*fields: bytes) -> bytes:
    return head(b"POST / HTTP/1.1", *fields)


CHUNKED_POST = post(b"Transfer-Encoding: chunked")

MALFORMED = [
    # Framing (RFC 9112 §6.1, §6.3)
    pytest.param(post(b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400, id="cl-and-te"),
    pytest.param(post(b"Transfer-Encoding: chunked", b"Content-Length: 5"), 400, id="te-and-cl"),
    pytest.param(post(b"Content-Length: 5", b"Content-Length: 5"), 400, id="two-cl-lines-same"),
    pytest.param(
        post(b"Content-Length: 5", b"Content-Length: 6"), 400, id="two-cl-lines-different"
    ),
    pytest.param(post(b"Content-Length: 1,1"), 400, id="cl-list"),
    pytest.param(post(b"Content-Length: +5"), 400, id="cl-plus"),
    pytest.param(post(b"Content-Length: -5"), 400, id="cl-minus"),
    pytest.param(post(b"Content-Length: 1 0"), 400, id="cl-space-inside"),
    pytest.param(post(b"Content-Length: 0x5"), 400, id="cl-hex"),
    pytest.param(post(b"Content-Length: a"), 400, id="cl-letter"),
    pytest.param(post(b"Content-Length: "), 400, id="cl-empty"),
    pytest.param(post(b"Content-Length: 5.0"), 400, id="cl-float"),
    pytest.param(post(b"Content-Length: " + b"9" * 19), 400, id="cl-19-digits"),
    pytest.param(post(b"Transfer-Encoding: chunked, gzip"), 400, id="te-chunked-gzip"),
    pytest.param(post(b"Transfer-Encoding: identity"), 400, id="te-identity"),
    pytest.param(post(b"Transfer-Encoding: xchunked"), 400, id="te-xchunked"),
    pytest.param(post(b"Transfer-Encoding: "), 400, id="te-empty"),
    pytest.param(post(b"Transfer-Encoding: gzip, chunked"), 501, id="te-gzip-chunked"),
    # "chunked" twice violates a sender MUST NOT (RFC 9112 §6.1); h11 answers 501 here too.
    pytest.param(post(b"Transfer-Encoding: chunked, chunked"), 501, id="te-chunked-chunked"),
    pytest.param(
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), 501, id="te-two-lines"
    ),
    pytest.param(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="te-in-http10"
    ),
    pytest.param(post(b"Transfer-Encoding : chunked"), 400, id="te-space-before-colon"),
    # Field syntax (RFC 9112 §5, §2.2)
    pytest.param(get(b"X: a", b" b"), 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\n\tX: a\r\nHost: x\r\n\r\n", 400, id="obs-fold-first-line"),
    pytest.param(get(b"X: a\rb"), 400, id="bare-cr-in-value"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", 400, id="bare-lf-line-endings"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400, id="bare-lf-in-field-block"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, id="bare-lf-after-request-line"),
    pytest.param(get(b"X\x00: a"), 400, id="nul-in-name"),
    pytest.param(get(b"X: a\x00b"), 400, id="nul-in-value"),
    pytest.param(get(b"X: a\x7f"), 400, id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(get(b": a"), 400, id="empty-field-name"),
    pytest.param(get(b"X(y): a"), 400, id="paren-in-name"),
    pytest.param(get(b"X@y: a"), 400, id="at-in-name"),
    pytest.param(get(b"X y: a"), 400, id="space-in-name"),
    pytest.param(get(b"NoColon"), 400, id="no-colon"),
    # Host (RFC 9112 §3.2)
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="missing-host-11"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts-11"),
    # §3.2: "any request message that contains more than one Host header field line" gets 400,
    # whatever its version.
    pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts-10"),
    # Request line (RFC 9112 §3)
    pytest.param(head(b"GET / HTTP/2.0"), 505, id="http2"),
    pytest.param(head(b"GET / HTTP/3.0"), 505, id="http3"),
    pytest.param(head(b"GET / HTTP/0.9"), 505, id="http09-version"),
    pytest.param(head(b"GET / http/1.1"), 400, id="lower-case-version"),
    pytest.param(head(b"GET / HTTP/1.10"), 400, id="two-digit-minor"),
    pytest.param(head(b"GET / HTTP/1"), 400, id="no-minor"),
    pytest.param(head(b"GET  / HTTP/1.1"), 400, id="double-space-after-method"),
    pytest.param(head(b"GET /  HTTP/1.1"), 400, id="double-space-after-target"),
    pytest.param(head(b" GET / HTTP/1.1"), 400, id="leading-space"),
    pytest.param(head(b"GET / HTTP/1.1 "), 400, id="trailing-space"),
    pytest.param(head(b"GET\t/\tHTTP/1.1"), 400, id="tab-separators"),
    pytest.param(head(b"GET HTTP/1.1"), 400, id="missing-target"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http09-request"),
    pytest.param(head(b"G(T / HTTP/1.1"), 400, id="bad-method-char"),
    pytest.param(head(b"GET /a\x00b HTTP/1.1"), 400, id="nul-in-target"),
    pytest.param(head(b"GET index.html HTTP/1.1"), 400, id="relative-target"),
    pytest.param(head(b"GET * HTTP/1.1"), 400, id="asterisk-with-get"),
    pytest.param(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 501, id="connect"),
    # Chunked bodies (RFC 9112 §7.1)
    pytest.param(CHUNKED_POST + b"zz\r\n", 400, id="chunk-size-zz"),
    pytest.param(CHUNKED_POST + b"-1\r\n", 400, id="chunk-size-negative"),
    pytest.param(CHUNKED_POST + b"1" * 17 + b"\r\n", 400, id="chunk-size-17-digits"),
    pytest.param(CHUNKED_POST + b"0x10\r\n", 400, id="chunk-size-0x"),
    pytest.param(CHUNKED_POST + b"\r\n", 400, id="chunk-size-empty"),
    pytest.param(CHUNKED_POST + b"5\nhello\r\n0\r\n\r\n", 400, id="chunk-size-bare-lf"),
    pytest.param(CHUNKED_POST + b"5\r\nhelloXX", 400, id="chunk-data-without-crlf"),
    pytest.param(CHUNKED_POST + b"5;\r\nhello\r\n", 400, id="chunk-ext-empty"),
    pytest.param(CHUNKED_POST + b'5;a="b\r\nhello\r\n', 400, id="chunk-ext-unterminated"),
    pytest.param(CHUNKED_POST + b"5;a b\r\nhello\r\n", 400, id="chunk-ext-space-in-name"),
    pytest.param(CHUNKED_POST + b"0\r\nX : y\r\n\r\n", 400, id="trailer-bad-field"),
    # Limits
    pytest.param(get(b"X: " + b"a" * MAX_HEAD), 431, id="head-too-large"),
    pytest.param(b"GET /" + b"a" * MAX_HEAD, 431, id="head-too-large-incomplete"),
    pytest.param(get(*[b"X: 1"] * MAX_FIELDS), 431, id="too-many-fields"),
    pytest.param(
        CHUNKED_POST + b"0\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431, id="trailer-too-large"
    ),
    pytest.param(
        CHUNKED_POST + b"0\r\n" + b"X: 1\r\n" * (MAX_FIELDS + 1) + b"\r\n",
        431,
        id="too-many-trailer-fields",
    ),
]


def first_error(pieces: Iterable[bytes]) -> tuple[RemoteProtocolError, RequestReader]:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    with pytest.raises(RemoteProtocolError) as info:
        feed(reader, pieces)
    return info.value, reader


@pytest.mark.parametrize(("raw", "status"), MALFORMED)
def test_malformed_request(raw: bytes, status: int) -> None:
    err, reader = first_error([raw])
    assert err.status_hint == status
    assert reader.state is ReaderState.ERROR


@pytest.mark.parametrize(("raw", "status"), MALFORMED)
def test_malformed_request_byte_at_a_time(raw: bytes, status: int) -> None:
    err, reader = first_error(bytewise(raw))
    assert err.status_hint == status
    assert reader.state is ReaderState.ERROR


def test_malformed_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 30


# limits.max_body_bytes: a body over the limit fails before any byte beyond the limit is given
# out, and a body of exactly the limit passes.
MAX_BODY = 10


def limited_events(raw: bytes, *, whole: bool) -> tuple[list[Summary], RemoteProtocolError | None]:
    """The events a reader with MAX_BODY gives for `raw`, and the error that stopped it."""
    reader = RequestReader(MAX_HEAD, MAX_FIELDS, MAX_BODY)
    out: list[Summary] = []
    for piece in [raw] if whole else bytewise(raw):
        reader.receive_data(piece)
        try:
            ev = reader.next_event()
            while not isinstance(ev, Pause):
                out.append(summarize(ev))
                ev = reader.next_event()
        except RemoteProtocolError as err:
            assert reader.state is ReaderState.ERROR
            return out, err
    return out, None


def body_bytes(events: list[Summary]) -> bytes:
    """The body the events carried: their Data payloads, joined."""
    payloads = [ev[1] for ev in events if ev[0] == "data"]
    assert all(isinstance(payload, bytes) for payload in payloads)
    return b"".join(cast(list[bytes], payloads))


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "bytewise"])
@pytest.mark.parametrize(
    ("raw", "passed", "fails"),
    [
        pytest.param(post(b"Content-Length: 10") + b"x" * 10, b"x" * 10, False, id="length-at"),
        pytest.param(post(b"Content-Length: 11") + b"x" * 11, b"", True, id="length-over"),
        pytest.param(post(b"Content-Length: 99999999999") + b"x", b"", True, id="length-far-over"),
        pytest.param(
            CHUNKED_POST + b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n",
            b"abcdefghij",
            False,
            id="chunked-at",
        ),
        pytest.param(
            CHUNKED_POST + b"4\r\nabcd\r\n7\r\nefghijk\r\n0\r\n\r\n",
            b"abcd",
            True,
            id="chunked-over",
        ),
        pytest.param(CHUNKED_POST + b"ffffffff\r\nab", b"", True, id="chunked-first-over"),
    ],
)
def test_body_over_max_body_bytes_is_refused_413(
    raw: bytes, passed: bytes, fails: bool, whole: bool
) -> None:
    events, err = limited_events(raw, whole=whole)
    assert body_bytes(events) == passed
    if fails:
        assert err is not None and err.status_hint == 413
        assert err.reason == "request body larger than 10 bytes"
    else:
        assert err is None and events[-1][0] == "end"


def test_no_limit_by_default() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    events = feed(reader, [post(b"Content-Length: 100000") + b"x" * 100_000])
    assert len(body_bytes(events)) == 100_000
