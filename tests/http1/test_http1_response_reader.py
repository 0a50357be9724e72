# Pure tests of migproxy.http1.connection.ResponseReader: bytes from an upstream in, events
# out. Responses are framed for the request they answer (expect(method)), 1xx heads are interim,
# a 101 turns the reader into a tunnel, and every upstream protocol error is a 502.
from __future__ import annotations

from collections.abc import Iterable

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1.connection import ReaderState, ResponseReader
from migproxy.http1.events import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Pause,
    ResponseHead,
)
from tests.http1.reader_events import (
    CLOSED,
    END,
    PAUSE,
    Summary,
    bytewise,
    coalesce,
    data,
    drain,
    end,
    feed,
    resp,
    state_of,
)

pytestmark = pytest.mark.usefixtures("head_parser")

MAX_HEAD = 8192
MAX_FIELDS = 100


def new_reader(method: bytes) -> ResponseReader:
    reader = ResponseReader(MAX_HEAD, MAX_FIELDS)
    reader.expect(method)
    return reader


def run(method: bytes, pieces: Iterable[bytes], eof: bool) -> list[Summary]:
    """Feed `pieces` to a new reader of one exchange (PAUSED ends it); the merged events."""
    return feed(new_reader(method), pieces, eof, resume=False)


CL_LINE = b"Content-Length: 5"
CL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
HELLO = CL_HEAD + b"hello"
EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
EMPTY_EVENTS = [resp(200, b"Content-Length: 0", body=BodyKind.LENGTH), END, PAUSE]


def hello_events(*lines: bytes, version: int = 11, keep_alive: bool = True) -> list[Summary]:
    """The events of a 200 response with `lines`, then Content-Length: 5, and body "hello"."""
    head = resp(
        200,
        *lines,
        CL_LINE,
        version=version,
        body=BodyKind.LENGTH,
        length=5,
        keep_alive=keep_alive,
    )
    return [head, data(b"hello"), END, PAUSE]


VALID = [
    pytest.param(b"GET", HELLO, False, hello_events(), id="content-length"),
    pytest.param(b"GET", EMPTY, False, EMPTY_EVENTS, id="content-length-zero"),
    pytest.param(
        b"HEAD", CL_HEAD, False, [resp(200, CL_LINE), END, PAUSE], id="head-with-cl-has-no-body"
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        False,
        [resp(204, CL_LINE, reason=b"No Content"), END, PAUSE],
        id="204-no-body",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        False,
        [resp(304, b"Transfer-Encoding: chunked", reason=b"Not Modified"), END, PAUSE],
        id="304-no-body",
    ),
    pytest.param(
        b"POST",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        False,
        [
            resp(100, reason=b"Continue"),
            resp(103, b"Link: </s.css>", reason=b"Early Hints"),
            resp(201, b"Content-Length: 2", reason=b"Created", body=BodyKind.LENGTH, length=2),
            data(b"ok"),
            END,
            PAUSE,
        ],
        id="interim-then-final",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"
        b"\x81\x05hello HTTP/1.1 200 OK\r\n\r\n",
        True,
        [
            resp(101, b"Connection: upgrade", b"Upgrade: ws", reason=b"Switching Protocols"),
            data(b"\x81\x05hello HTTP/1.1 200 OK\r\n\r\n"),
            CLOSED,
        ],
        id="101-tunnel",
    ),
    pytest.param(
        b"GET",
        CHUNKED_HEAD + b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Sum: 1\r\n\r\n",
        False,
        [
            resp(200, b"Transfer-Encoding: chunked", body=BodyKind.CHUNKED),
            data(b"abcde"),
            end(b"X-Sum: 1"),
            PAUSE,
        ],
        id="chunked",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nsome bytes",
        True,
        [
            resp(200, b"X: y", body=BodyKind.UNTIL_CLOSE, keep_alive=False),
            data(b"some bytes"),
            END,
        ],
        id="until-close-ends-at-eof",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b",
        True,
        [
            resp(
                200,
                b"Transfer-Encoding: gzip",
                body=BodyKind.UNTIL_CLOSE,
                keep_alive=False,
            ),
            data(b"\x1f\x8b"),
            END,
        ],
        id="te-gzip-until-close",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        False,
        hello_events(version=10, keep_alive=False),
        id="http10-default-close",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
        False,
        hello_events(b"Connection: keep-alive", version=10),
        id="http10-keep-alive",
    ),
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        False,
        hello_events(b"Connection: close", keep_alive=False),
        id="http11-connection-close",
    ),
    pytest.param(b"GET", b"\r\n" + EMPTY, False, EMPTY_EVENTS, id="leading-empty-line"),
    pytest.param(
        b"GET", HELLO + b"EXTRA", False, hello_events(), id="bytes-after-the-response-wait"
    ),
    pytest.param(b"GET", b"", True, [CLOSED], id="eof-before-response"),
]


@pytest.mark.parametrize(("method", "raw", "eof", "expected"), VALID)
def test_response_events(method: bytes, raw: bytes, eof: bool, expected: list[Summary]) -> None:
    assert run(method, [raw], eof) == expected


@pytest.mark.parametrize(("method", "raw", "eof", "expected"), VALID)
def test_response_events_byte_at_a_time(
    method: bytes, raw: bytes, eof: bool, expected: list[Summary]
) -> None:
    assert run(method, bytewise(raw), eof) == expected


ERRORS = [
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        False,
        id="cl-and-te",
    ),
    pytest.param(b"GET", b"HTTP/1.1 OK\r\n\r\n", False, id="bad-status-line"),
    pytest.param(b"GET", b"HTTP/2.0 200 OK\r\n\r\n", False, id="http2-status-line"),
    pytest.param(b"GET", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, id="not-http"),
    pytest.param(b"GET", CL_HEAD + b"hel", True, id="short-body-then-eof"),
    pytest.param(b"GET", CHUNKED_HEAD + b"5\r\nhel", True, id="eof-inside-chunked"),
    pytest.param(b"GET", b"HTTP/1.1 200 OK\r\nCont", True, id="eof-mid-head"),
    pytest.param(b"GET", b"HTTP/1.1 200 OK\nX: y\n\n", False, id="bare-lf"),
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n",
        False,
        id="head-too-large-431-becomes-502",
    ),
    pytest.param(b"GET", CHUNKED_HEAD + b"zz\r\n", False, id="bad-chunk-size"),
    pytest.param(
        b"GET", CHUNKED_HEAD + b"0\r\nX: " + b"a" * MAX_HEAD, False, id="trailer-too-large"
    ),
]


@pytest.mark.parametrize(("method", "raw", "eof"), ERRORS)
def test_response_errors_are_502(method: bytes, raw: bytes, eof: bool) -> None:
    for pieces in ([raw], bytewise(raw)):
        reader = new_reader(method)
        with pytest.raises(RemoteProtocolError) as info:
            feed(reader, pieces, eof, resume=False)
        assert info.value.status_hint == 502
        assert state_of(reader) is ReaderState.ERROR


# Reader state rules


def test_expect_resumes_the_next_exchange() -> None:
    reader = new_reader(b"HEAD")
    reader.receive_data(CL_HEAD)
    reader.receive_data(HELLO)
    head = reader.next_event()
    assert isinstance(head, ResponseHead) and head.body is BodyKind.NONE
    assert reader.next_event() == EndOfMessage([])
    assert reader.next_event() is PAUSED
    assert reader.next_event() is PAUSED
    assert state_of(reader) is ReaderState.DONE
    reader.expect(b"GET")
    assert state_of(reader) is ReaderState.HEAD
    head = reader.next_event()
    assert isinstance(head, ResponseHead) and head.body is BodyKind.LENGTH
    assert reader.next_event() == Data(b"hello")
    assert reader.next_event() == EndOfMessage([])
    assert reader.buffered() == 0


def test_interim_head_keeps_reading_heads() -> None:
    reader = new_reader(b"POST")
    reader.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
    head = reader.next_event()
    assert isinstance(head, ResponseHead) and head.is_informational
    assert state_of(reader) is ReaderState.HEAD
    assert reader.next_event() is NEED_DATA


def test_101_switches_to_tunnel() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n")
    assert isinstance(reader.next_event(), ResponseHead)
    assert state_of(reader) is ReaderState.TUNNEL
    assert reader.next_event() is NEED_DATA
    reader.receive_data(b"frame")
    assert reader.next_event() == Data(b"frame")


def test_eof_at_message_boundary_is_connection_closed() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert drain(reader, resume=False) == [resp(204, reason=b"No Content"), END, PAUSE]
    reader.receive_eof()
    reader.expect(b"GET")
    assert isinstance(reader.next_event(), ConnectionClosed)
    assert state_of(reader) is ReaderState.CLOSED
    assert reader.next_event() is NEED_DATA


def test_until_close_body_leaves_the_reader_closed() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 200 OK\r\n\r\nabc")
    reader.receive_eof()
    assert coalesce(drain(reader, resume=False)) == [
        resp(200, body=BodyKind.UNTIL_CLOSE, keep_alive=False),
        data(b"abc"),
        END,
    ]
    assert state_of(reader) is ReaderState.CLOSED
    reader.expect(b"GET")
    assert reader.next_event() is NEED_DATA


def test_error_state_sticks() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 OK\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        reader.next_event()
    reader.receive_data(EMPTY)
    reader.expect(b"GET")
    assert isinstance(reader.next_event(), Pause)
    assert state_of(reader) is ReaderState.ERROR


def test_502_error_keeps_its_reason() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="^upstream sent an invalid Content-Length$"):
        reader.next_event()


def test_non_502_error_is_rewrapped_for_the_upstream() -> None:
    reader = new_reader(b"GET")
    reader.receive_data(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="^upstream: .*too large") as info:
        reader.next_event()
    assert info.value.status_hint == 502
