# Pure tests of migproxy.http1.framing: body readers (RFC 9112 §6-§7) fed straight from a
# buffer, and the chunk encoder. Readers are driven the way connection.py drives them:
# read(buf, pos) -> (event or None, new position).
from __future__ import annotations

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import Data, EndOfMessage
from migproxy.http1.framing import (
    EMPTY_BODY,
    MAX_CHUNK_LINE,
    BodyReader,
    ChunkedBody,
    LengthBody,
    UntilCloseBody,
    encode_chunk,
    encode_last_chunk,
)

MAX_TRAILER = 1024
MAX_FIELDS = 10


def read_all(body: BodyReader, buf: bytes, pos: int = 0) -> tuple[bytes, list[bytes] | None, int]:
    """Read `buf` until the reader needs more: (data read, trailers if ended, position)."""
    data = b""
    while True:
        ev, pos = body.read(buf, pos)
        if ev is None:
            return data, None, pos
        if isinstance(ev, EndOfMessage):
            return data, ev.trailers, pos
        data += ev.data


def feed_bytewise(body: BodyReader, stream: bytes) -> tuple[bytes, list[bytes] | None]:
    """Feed `stream` one byte at a time, keeping unread bytes as connection.py does."""
    data = b""
    buf = b""
    for i in range(len(stream)):
        buf += stream[i : i + 1]
        got, trailers, pos = read_all(body, buf)
        data += got
        buf = buf[pos:]
        if trailers is not None:
            return data, trailers
    return data, None


def chunked() -> ChunkedBody:
    return ChunkedBody(MAX_TRAILER, MAX_FIELDS)


# EmptyBody


def test_empty_body_ends_at_once_and_reads_nothing() -> None:
    assert EMPTY_BODY.read(b"GET /next", 0) == (EndOfMessage([]), 0)
    assert EMPTY_BODY.at_eof() == EndOfMessage([])


# LengthBody


def test_length_body_whole_buffer_is_passed_on_as_is() -> None:
    buf = b"hello"
    ev, pos = LengthBody(5).read(buf, 0)
    assert isinstance(ev, Data)
    assert ev.data is buf  # no copy when the buffer is exactly body bytes
    assert pos == 5


def test_length_body_stops_at_its_length() -> None:
    body = LengthBody(5)
    buf = b"HEADhelloGET /next"
    assert read_all(body, buf, 4) == (b"hello", [], 9)


def test_length_body_across_reads() -> None:
    body = LengthBody(6)
    assert read_all(body, b"abc") == (b"abc", None, 3)
    assert body.remaining == 3
    assert read_all(body, b"defg") == (b"def", [], 3)


def test_length_body_needs_data() -> None:
    assert LengthBody(3).read(b"abc", 3) == (None, 3)


def test_length_body_zero_ends_at_once() -> None:
    ev, pos = LengthBody(0).read(b"xyz", 1)
    assert ev == EndOfMessage([])
    assert pos == 1


def test_length_body_eof_before_the_end() -> None:
    body = LengthBody(5)
    read_all(body, b"ab")
    with pytest.raises(RemoteProtocolError) as info:
        body.at_eof()
    assert info.value.status_hint == 400  # the reader facing an upstream turns it into 502


# UntilCloseBody


def test_until_close_body_takes_everything() -> None:
    body = UntilCloseBody()
    assert read_all(body, b"HEADabc", 4) == (b"abc", None, 7)
    assert read_all(body, b"") == (b"", None, 0)


def test_until_close_body_ends_at_eof() -> None:
    assert UntilCloseBody().at_eof() == EndOfMessage([])


# ChunkedBody: valid bodies


@pytest.mark.parametrize(
    ("stream", "data", "trailers"),
    [
        pytest.param(b"5\r\nhello\r\n0\r\n\r\n", b"hello", [], id="one-chunk"),
        pytest.param(b"0\r\n\r\n", b"", [], id="empty"),
        pytest.param(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", [], id="two-chunks"),
        pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", [], id="upper-hex"),
        pytest.param(b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", [], id="lower-hex"),
        pytest.param(b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc", [], id="16-digits"),
        pytest.param(b"3;name\r\nabc\r\n0\r\n\r\n", b"abc", [], id="ext-name"),
        pytest.param(b"3;n=v;m=w\r\nabc\r\n0;last\r\n\r\n", b"abc", [], id="ext-values"),
        pytest.param(b'3;n="a \\" b"\r\nabc\r\n0\r\n\r\n', b"abc", [], id="ext-quoted"),
        pytest.param(b"3 ; n = v \r\nabc\r\n0\r\n\r\n", b"abc", [], id="ext-bws"),
        pytest.param(
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:\t2\r\n\r\n",
            b"abc",
            [b"X-Sum: 1", b"X-Other:\t2"],
            id="trailers",
        ),
        pytest.param(
            b"0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n"
            b"Connection: close\r\nTrailer: x\r\nTE: trailers\r\nX-Ok: 1\r\n\r\n",
            b"",
            [b"X-Ok: 1"],
            id="framing-trailers-dropped",
        ),
    ],
)
def test_chunked_body_valid(stream: bytes, data: bytes, trailers: list[bytes]) -> None:
    assert read_all(chunked(), stream + b"NEXT") == (data, trailers, len(stream))
    assert feed_bytewise(chunked(), stream) == (data, trailers)


def test_chunked_body_data_is_returned_per_chunk() -> None:
    body = chunked()
    buf = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    ev, pos = body.read(buf, 0)
    assert ev == Data(b"abc")
    ev, pos = body.read(buf, pos)
    assert ev == Data(b"de")
    ev, pos = body.read(buf, pos)
    assert ev == EndOfMessage([])
    assert pos == len(buf)


def test_chunked_body_partial_chunk() -> None:
    body = chunked()
    assert read_all(body, b"5\r\nhel") == (b"hel", None, 6)
    assert body.remaining == 2


# ChunkedBody: errors


@pytest.mark.parametrize(
    ("stream", "status"),
    [
        pytest.param(b"zz\r\n", 400, id="size-not-hex"),
        pytest.param(b"-1\r\n", 400, id="size-negative"),
        pytest.param(b"+1\r\nx\r\n", 400, id="size-plus"),
        pytest.param(b"1" * 17 + b"\r\n", 400, id="size-17-digits"),
        pytest.param(b"0x10\r\n", 400, id="size-0x"),
        pytest.param(b"\r\n", 400, id="size-empty"),
        pytest.param(b" 5\r\nhello\r\n", 400, id="size-leading-space"),
        pytest.param(b"5\nhello\r\n0\r\n\r\n", 400, id="size-bare-lf"),
        pytest.param(b"5\rhello\r\n0\r\n\r\n", 400, id="size-bare-cr"),
        pytest.param(b"5\r\nhelloXX", 400, id="data-not-followed-by-crlf"),
        pytest.param(b"5\r\nhello\n0\r\n\r\n", 400, id="data-followed-by-lf"),
        pytest.param(b"5;\r\nhello\r\n", 400, id="ext-empty"),
        pytest.param(b"5;=v\r\nhello\r\n", 400, id="ext-no-name"),
        pytest.param(b'5;n="v\r\nhello\r\n', 400, id="ext-unterminated-quote"),
        pytest.param(b"5;n=\r\nhello\r\n", 400, id="ext-empty-value"),
        pytest.param(b"5;n@=v\r\nhello\r\n", 400, id="ext-bad-token"),
        pytest.param(b"5" + b" " * MAX_CHUNK_LINE, 400, id="size-line-too-long"),
        pytest.param(b"0\r\nX: 1\r\n y\r\n\r\n", 400, id="trailer-obs-fold"),
        pytest.param(b"0\r\nX : 1\r\n\r\n", 400, id="trailer-space-before-colon"),
        pytest.param(b"0\r\nX: " + b"a" * MAX_TRAILER + b"\r\n\r\n", 431, id="trailer-too-large"),
        pytest.param(b"0\r\nX: " + b"a" * MAX_TRAILER, 431, id="trailer-too-large-incomplete"),
        pytest.param(b"0\r\n" + b"X: 1\r\n" * (MAX_FIELDS + 1) + b"\r\n", 431, id="trailer-fields"),
    ],
)
def test_chunked_body_errors(stream: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        read_all(chunked(), stream)
    assert info.value.status_hint == status


def test_chunked_body_eof_inside() -> None:
    body = chunked()
    read_all(body, b"5\r\nhel")
    with pytest.raises(RemoteProtocolError) as info:
        body.at_eof()
    assert info.value.status_hint == 400  # the reader facing an upstream turns it into 502


# Encoders


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        pytest.param(b"hello", b"5\r\nhello\r\n", id="short"),
        pytest.param(b"x" * 255, b"ff\r\n" + b"x" * 255 + b"\r\n", id="hex-size"),
        pytest.param(b"\r\n", b"2\r\n\r\n\r\n", id="crlf-data"),
    ],
)
def test_encode_chunk(data: bytes, encoded: bytes) -> None:
    assert encode_chunk(data) == encoded


@pytest.mark.parametrize(
    ("trailers", "encoded"),
    [
        pytest.param([], b"0\r\n\r\n", id="no-trailers"),
        pytest.param([b"X-Sum: 1"], b"0\r\nX-Sum: 1\r\n\r\n", id="one-trailer"),
        pytest.param([b"A: 1", b"B: 2"], b"0\r\nA: 1\r\nB: 2\r\n\r\n", id="two-trailers"),
    ],
)
def test_encode_last_chunk(trailers: list[bytes], encoded: bytes) -> None:
    assert encode_last_chunk(trailers) == encoded


def test_encoded_chunks_decode_to_the_same_body() -> None:
    pieces = [b"a", b"bc" * 100, b"\r\n0\r\n\r\n"]
    stream = b"".join(encode_chunk(p) for p in pieces) + encode_last_chunk([b"X: y"])
    assert read_all(chunked(), stream) == (b"".join(pieces), [b"X: y"], len(stream))
