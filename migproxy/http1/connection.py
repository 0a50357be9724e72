# Per-direction HTTP/1.1 state machines: RequestReader (our server side, facing a client) and
# ResponseReader (our client side, facing an upstream). API after h11: receive_data(bytes) /
# receive_eof(), then next_event() until it returns NEED_DATA or PAUSED.
#
# Rules:
# - One message at a time. After a request's EndOfMessage the RequestReader is PAUSED, and
#   pipelined bytes wait unparsed in its buffer until start_next_cycle(): responses then leave
#   in request order by construction, and a request that is dropped (the connection closes
#   after an announced close) was never parsed, let alone forwarded.
# - Any protocol error moves the reader to ERROR for good; the caller answers and closes.
# - A 101 response, or the caller's start_tunnel(), switches a reader to TUNNEL: from then on
#   bytes are passed through as Data without parsing.
from __future__ import annotations

import enum

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Pause,
)
from migproxy.http1.framing import (
    EMPTY_BODY,
    BodyReader,
    ChunkedBody,
    LengthBody,
    UntilCloseBody,
    body_too_large,
)
from migproxy.http1.parse import find_head_end, parse_request_head, parse_response_head


class ReaderState(enum.Enum):
    HEAD = "head"  # waiting for (or inside) a message head
    BODY = "body"
    DONE = "done"  # message complete, paused until start_next_cycle()
    TUNNEL = "tunnel"
    CLOSED = "closed"
    ERROR = "error"


# Enum members bound to module names for the per-event paths: on Python 3.11 a member lookup
# on an Enum class goes through the metaclass's __getattr__ hook, three times the cost of a
# plain global.
_HEAD = ReaderState.HEAD
_BODY = ReaderState.BODY
_DONE = ReaderState.DONE
_TUNNEL = ReaderState.TUNNEL
_CLOSED = ReaderState.CLOSED
_ERROR = ReaderState.ERROR
_NONE_BODY = BodyKind.NONE
_LENGTH_BODY = BodyKind.LENGTH
_CHUNKED_BODY = BodyKind.CHUNKED
_UNTIL_CLOSE_BODY = BodyKind.UNTIL_CLOSE


class _Reader:
    __slots__ = (
        "_buf",
        "_pos",
        "_eof",
        "_body",
        "state",
        "max_head_bytes",
        "max_fields",
        "max_body_bytes",
    )

    def __init__(self, max_head_bytes: int, max_fields: int, max_body_bytes: int = 0) -> None:
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._body: BodyReader = EMPTY_BODY
        self.state = _HEAD
        self.max_head_bytes = max_head_bytes
        self.max_fields = max_fields
        self.max_body_bytes = max_body_bytes  # 0: no limit

    def receive_data(self, data: bytes) -> None:
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def receive_eof(self) -> None:
        self._eof = True

    def has_eof(self) -> bool:
        """The peer has closed its sending side."""
        return self._eof

    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf) - self._pos

    def discard_buffer(self) -> None:
        self._buf = b""
        self._pos = 0

    def start_next_cycle(self) -> None:
        if self.state is _DONE:
            self.state = _HEAD

    def start_tunnel(self) -> None:
        self.state = _TUNNEL

    def _find_head(self) -> int:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n\r\n", pos)
        if end > pos and end + 4 - pos <= self.max_head_bytes and buf[pos] != 13:
            return end + 4  # the common case: a whole head, no leading empty line (13 = CR)
        # RFC 9112 §2.2: ignore empty lines before a request line or status line.
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        return find_head_end(buf, pos, self.max_head_bytes)

    def _read_body(self) -> Event | Pause:
        ev, self._pos = self._body.read(self._buf, self._pos)
        if ev is None:
            if self._eof:
                ev = self._body.at_eof()
                if type(ev) is EndOfMessage:
                    self.state = _CLOSED
                return ev
            return NEED_DATA
        if type(ev) is EndOfMessage:
            self.state = _DONE
        return ev

    def _read_tunnel(self) -> Event | Pause:
        if self._pos < len(self._buf):
            data = self._buf[self._pos :] if self._pos else self._buf
            self.discard_buffer()
            return Data(data)
        if self._eof:
            self.state = _CLOSED
            return ConnectionClosed()
        return NEED_DATA

    def _at_eof_in_head(self) -> Event | Pause:
        if not self._eof:
            return NEED_DATA
        self.state = _CLOSED
        if self.buffered():
            raise RemoteProtocolError("connection closed inside a message head")
        return ConnectionClosed()

    def _body_reader(self, kind: BodyKind, length: int) -> BodyReader:
        if kind is _LENGTH_BODY:
            return LengthBody(length)
        if kind is _CHUNKED_BODY:
            return ChunkedBody(self.max_head_bytes, self.max_fields, self.max_body_bytes)
        if kind is _UNTIL_CLOSE_BODY:
            return UntilCloseBody()
        return EMPTY_BODY


class RequestReader(_Reader):
    """Turns a client's bytes into RequestHead, Data, EndOfMessage and ConnectionClosed.

    With `max_body_bytes`, a request whose Content-Length is larger fails at its head (413,
    nothing of it is returned), and a chunked one at the chunk that would take it past.
    """

    # next_event() is written out in each reader rather than shared in _Reader: one shared
    # method, called with two classes, defeats CPython 3.11's per-call-site specialisation of
    # attribute access, which measured +2% instructions per exchange (benchmarks/).
    __slots__ = ()

    def next_event(self) -> Event | Pause:
        """The next event, or NEED_DATA / PAUSED.

        Raises:
            RemoteProtocolError: the request is malformed; its status_hint is the answer.
        """
        state = self.state
        try:
            if state is _BODY:
                if self._body is EMPTY_BODY:  # the common bodiless request, without a call
                    self.state = _DONE
                    return END_OF_MESSAGE
                return self._read_body()
            if state is _HEAD:
                return self._read_head()
            if state is _TUNNEL:
                return self._read_tunnel()
        except RemoteProtocolError:
            self.state = _ERROR
            raise
        if state is _CLOSED:
            return NEED_DATA
        return PAUSED

    def _read_head(self) -> Event | Pause:
        end = self._find_head()
        if end < 0:
            return self._at_eof_in_head()
        head = parse_request_head(self._buf, self._pos, end, self.max_fields)
        if head.length > self.max_body_bytes > 0:
            raise body_too_large(self.max_body_bytes)
        self._pos = end
        self._body = self._body_reader(head.body, head.length)
        self.state = _BODY
        return head


class ResponseReader(_Reader):
    """Turns an upstream's bytes into ResponseHead, Data, EndOfMessage and ConnectionClosed.

    The framing of a response depends on its request (HEAD), so call expect(method) before
    the response's bytes are parsed. Interim (1xx) heads are returned and reading stays in
    HEAD state, except for 101, after which the reader is a TUNNEL.
    """

    __slots__ = ("_method",)

    def __init__(self, max_head_bytes: int, max_fields: int) -> None:
        super().__init__(max_head_bytes, max_fields)
        self._method = b"GET"

    def expect(self, method: bytes) -> None:
        self._method = method
        self.start_next_cycle()

    def next_event(self) -> Event | Pause:
        state = self.state
        try:
            if state is _BODY:
                return self._read_body()
            if state is _HEAD:
                return self._read_head()
            if state is _TUNNEL:
                return self._read_tunnel()
        except RemoteProtocolError as err:
            self.state = _ERROR
            if err.status_hint != 502:
                raise RemoteProtocolError(f"upstream: {err.reason}", 502) from None
            raise
        if state is _CLOSED:
            return NEED_DATA
        return PAUSED

    def _read_head(self) -> Event | Pause:
        end = self._find_head()
        if end < 0:
            return self._at_eof_in_head()
        head = parse_response_head(self._buf, self._pos, end, self.max_fields, self._method)
        self._pos = end
        if head.status == 101:
            self.state = _TUNNEL
        elif head.status >= 200:
            self._body = self._body_reader(head.body, head.length)
            self.state = _BODY
        return head
