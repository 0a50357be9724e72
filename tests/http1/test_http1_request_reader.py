# Pure tests of migproxy.http1.connection.RequestReader: bytes from a client in, events out.
#
# Events are compared as plain tuples (reader_events.summarize) because Fields has no equality, and
# adjacent Data events are merged: how a body is cut into Data events depends on how the bytes
# arrived, and the valid-request table checks that every way of cutting the input gives the
# same events.
from __future__ import annotations

from collections.abc import Iterable

import pytest

from migproxy.errors import RemoteProtocolError
from migproxy.http1.connection import ReaderState, RequestReader
from migproxy.http1.events import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Pause,
    RequestHead,
)
from tests.http1.reader_events import (
    CLOSED,
    END,
    PAUSE,
    Summary,
    bytewise,
    data,
    drain,
    end,
    feed,
    req,
    state_of,
)

pytestmark = pytest.mark.usefixtures("head_parser")

MAX_HEAD = 8192
MAX_FIELDS = 100


def run(pieces: Iterable[bytes], eof: bool = False) -> list[Summary]:
    """Feed `pieces` to a new RequestReader, resuming after each PAUSED; the merged events."""
    return feed(RequestReader(MAX_HEAD, MAX_FIELDS), pieces, eof)


# Valid requests and the exact events they produce.

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b'6;a;b="q s"\r\n world\r\n'
    b"0;last\r\nX-Sum: 42\r\nContent-Length: 99\r\n\r\n"
)
CHUNKED_POST = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
GET_HEAD = req(b"GET", b"/", b"Host: x")
POST_HEAD = req(b"POST", b"/f", b"Host: x", b"Content-Length: 5", body=BodyKind.LENGTH, length=5)

VALID = [
    pytest.param(GET, False, [GET_HEAD, END, PAUSE], id="get"),
    pytest.param(GET, True, [GET_HEAD, END, PAUSE, CLOSED], id="get-then-eof"),
    pytest.param(POST, False, [POST_HEAD, data(b"hello"), END, PAUSE], id="post-cl"),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        False,
        [req(b"POST", b"/", b"Host: x", b"Content-Length: 0"), END, PAUSE],
        id="post-cl-zero",
    ),
    pytest.param(
        CHUNKED,
        False,
        [
            req(
                b"POST",
                b"/up",
                b"Host: x",
                b"Transfer-Encoding: chunked",
                b"Trailer: X-Sum",
                body=BodyKind.CHUNKED,
            ),
            data(b"hello world"),
            end(b"X-Sum: 42"),  # Content-Length in a trailer section is dropped
            PAUSE,
        ],
        id="chunked-extensions-trailers",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\n\r\n",
        False,
        [req(b"GET", b"/", version=10, keep_alive=False), END, PAUSE],
        id="http10",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        False,
        [req(b"GET", b"/", b"Connection: keep-alive", version=10), END, PAUSE],
        id="http10-keep-alive",
    ),
    pytest.param(
        b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
        False,
        [
            req(
                b"POST",
                b"/",
                b"Content-Length: 2",
                version=10,
                body=BodyKind.LENGTH,
                length=2,
                keep_alive=False,
            ),
            data(b"hi"),
            END,
            PAUSE,
        ],
        id="http10-post",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        False,
        [req(b"GET", b"/", b"Host: x", b"Connection: close", keep_alive=False), END, PAUSE],
        id="connection-close",
    ),
    pytest.param(b"\r\n" + GET, False, [GET_HEAD, END, PAUSE], id="leading-empty-line"),
    pytest.param(b"\r\n\r\n" + GET, False, [GET_HEAD, END, PAUSE], id="leading-empty-lines"),
    pytest.param(
        GET + POST,
        False,
        [GET_HEAD, END, PAUSE, POST_HEAD, data(b"hello"), END, PAUSE],
        id="pipelined-pair",
    ),
    pytest.param(
        POST + b"\r\n" + GET,
        True,
        [POST_HEAD, data(b"hello"), END, PAUSE, GET_HEAD, END, PAUSE, CLOSED],
        id="pipelined-with-empty-line-then-eof",
    ),
    pytest.param(
        GET + b"GET /next HTTP/1.1\r\n",
        False,
        [GET_HEAD, END, PAUSE],
        id="pipelined-second-head-incomplete",
    ),
    pytest.param(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        False,
        [
            req(
                b"GET",
                b"/chat",
                b"Host: x",
                b"Connection: Upgrade",
                b"Upgrade: websocket",
                upgrade=b"websocket",
            ),
            END,
            PAUSE,
        ],
        id="upgrade",
    ),
    pytest.param(
        b"PUT /f HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
        False,
        [
            req(
                b"PUT",
                b"/f",
                b"Host: x",
                b"Expect: 100-continue",
                b"Content-Length: 1",
                body=BodyKind.LENGTH,
                length=1,
                expect_continue=True,
            ),
            data(b"z"),
            END,
            PAUSE,
        ],
        id="expect-continue",
    ),
    pytest.param(
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        False,
        [req(b"OPTIONS", b"*", b"Host: x"), END, PAUSE],
        id="options-asterisk",
    ),
    pytest.param(
        b"GET http://x/p HTTP/1.1\r\nHost: x\r\n\r\n",
        False,
        [req(b"GET", b"http://x/p", b"Host: x"), END, PAUSE],
        id="absolute-form",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\t3 \r\nX:\xe9t\xe9\r\n\r\nabc",
        False,
        [
            req(
                b"POST",
                b"/",
                b"Host: x",
                b"Content-Length:\t3 ",
                b"X:\xe9t\xe9",
                body=BodyKind.LENGTH,
                length=3,
            ),
            data(b"abc"),
            END,
            PAUSE,
        ],
        id="ows-and-obs-text",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
        False,
        [
            req(b"POST", b"/", b"Host: x", b"Transfer-Encoding: Chunked", body=BodyKind.CHUNKED),
            END,
            PAUSE,
        ],
        id="chunked-mixed-case-empty-body",
    ),
    pytest.param(b"", True, [CLOSED], id="eof-before-any-request"),
    pytest.param(b"\r\n", True, [CLOSED], id="eof-after-empty-line"),
]


@pytest.mark.parametrize(("raw", "eof", "expected"), VALID)
def test_valid_request_events(raw: bytes, eof: bool, expected: list[Summary]) -> None:
    assert run([raw], eof) == expected


@pytest.mark.parametrize(("raw", "eof", "expected"), VALID)
def test_valid_request_events_byte_at_a_time(
    raw: bytes, eof: bool, expected: list[Summary]
) -> None:
    assert run(bytewise(raw), eof) == expected


@pytest.mark.parametrize(("raw", "eof", "expected"), VALID)
def test_valid_request_events_at_every_split_point(
    raw: bytes, eof: bool, expected: list[Summary]
) -> None:
    for cut in range(1, len(raw)):
        assert run([raw[:cut], raw[cut:]], eof) == expected, f"cut at {cut}"


# Reader state rules


def test_paused_after_end_of_message_until_start_next_cycle() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(GET + POST)
    assert isinstance(reader.next_event(), RequestHead)
    assert reader.next_event() == EndOfMessage([])
    assert state_of(reader) is ReaderState.DONE
    for _ in range(3):
        assert reader.next_event() is PAUSED
    assert reader.buffered() == len(POST)  # the pipelined request waits, unparsed
    reader.receive_data(b"more")
    assert reader.next_event() is PAUSED
    assert reader.buffered() == len(POST) + 4
    reader.start_next_cycle()
    assert state_of(reader) is ReaderState.HEAD
    head = reader.next_event()
    assert isinstance(head, RequestHead)
    assert head.target == b"/f"


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        pytest.param(b"", ReaderState.HEAD, id="head"),
        pytest.param(POST[:-2], ReaderState.BODY, id="body"),
    ],
)
def test_start_next_cycle_outside_done_changes_nothing(raw: bytes, state: ReaderState) -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(raw)
    drain(reader)
    assert state_of(reader) is state
    reader.start_next_cycle()
    assert state_of(reader) is state


def test_eof_at_message_boundary_is_connection_closed() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(GET)
    reader.receive_eof()
    assert isinstance(reader.next_event(), RequestHead)
    assert reader.next_event() == EndOfMessage([])
    assert reader.next_event() is PAUSED  # EOF does not skip the pause
    reader.start_next_cycle()
    assert isinstance(reader.next_event(), ConnectionClosed)
    assert state_of(reader) is ReaderState.CLOSED
    assert reader.next_event() is NEED_DATA


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"G", id="one-byte"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n", id="no-blank-line"),
        pytest.param(b"\r\n\r", id="after-empty-lines"),
    ],
)
def test_eof_mid_head_is_an_error(raw: bytes) -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(raw)
    assert reader.next_event() is NEED_DATA
    reader.receive_eof()
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_event()
    assert info.value.status_hint == 400
    assert state_of(reader) is ReaderState.ERROR


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(POST[:-2], id="content-length"),
        pytest.param(CHUNKED_POST + b"5\r\nhel", id="chunked"),
    ],
)
def test_eof_mid_body_is_a_client_error(raw: bytes) -> None:
    # The client broke off its own request: that is a 400, not an upstream failure (502).
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(raw)
    drain(reader)
    reader.receive_eof()
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_event()
    assert state_of(reader) is ReaderState.ERROR
    assert info.value.status_hint == 400


def test_error_state_sticks() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        reader.next_event()
    reader.receive_data(GET)
    for _ in range(2):
        ev = reader.next_event()
        assert isinstance(ev, Pause)  # no event is ever produced again
        assert state_of(reader) is ReaderState.ERROR
    reader.start_next_cycle()
    assert state_of(reader) is ReaderState.ERROR
    reader.receive_eof()
    assert isinstance(reader.next_event(), Pause)
    assert state_of(reader) is ReaderState.ERROR


def test_tunnel_passes_bytes_through_unparsed() -> None:
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(upgrade + b"\x00\x01 not http\r\n\r\n")
    assert isinstance(reader.next_event(), RequestHead)
    assert reader.next_event() == EndOfMessage([])
    reader.start_tunnel()
    assert state_of(reader) is ReaderState.TUNNEL
    assert reader.next_event() == Data(b"\x00\x01 not http\r\n\r\n")
    assert reader.buffered() == 0
    assert reader.next_event() is NEED_DATA
    reader.receive_data(b"GET / HTTP/9.9\r\n")
    assert reader.next_event() == Data(b"GET / HTTP/9.9\r\n")
    reader.receive_eof()
    assert isinstance(reader.next_event(), ConnectionClosed)
    assert state_of(reader) is ReaderState.CLOSED


def test_receive_data_keeps_unread_bytes() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(GET[:10])
    assert reader.next_event() is NEED_DATA
    assert reader.buffered() == 10
    reader.receive_data(GET[10:])
    assert reader.buffered() == len(GET)
    assert isinstance(reader.next_event(), RequestHead)
    assert reader.buffered() == 0


def test_discard_buffer() -> None:
    reader = RequestReader(MAX_HEAD, MAX_FIELDS)
    reader.receive_data(GET + GET)
    assert isinstance(reader.next_event(), RequestHead)
    assert reader.next_event() == EndOfMessage([])
    assert reader.next_event() is PAUSED
    assert reader.buffered() == len(GET)
    reader.discard_buffer()
    assert reader.buffered() == 0
    reader.start_next_cycle()
    assert reader.next_event() is NEED_DATA
