# Message body framing (RFC 9112 §6-§7): readers that turn framed bytes into Data/EndOfMessage,
# and the chunk encoder used when forwarding a chunked body.
#
# Rules: a reader never looks past the end of its own message, so pipelined bytes stay in the
# buffer for the next head; Content-Length bodies are passed on as the same bytes objects
# (slices only at message edges); chunked bodies are decoded strictly and re-encoded by the
# writer, so what the next hop sees is always framed by us.
from __future__ import annotations

import re

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import END_OF_MESSAGE, Data, EndOfMessage
from migproxy.http1.parse import split_fields

Read = tuple[Data | EndOfMessage | None, int]

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
# chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1); at most 16 hex digits (2**64 - 1).
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*[ \t]*"
)
MAX_CHUNK_LINE = 4096
# Trailer fields that would change framing or routing if a recipient merged them into the head.
_FORBIDDEN_TRAILERS = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"connection", b"trailer", b"te"}
)


class EmptyBody:
    """A message without a body: its end comes at once."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int) -> Read:
        return END_OF_MESSAGE, pos

    def at_eof(self) -> EndOfMessage:
        return END_OF_MESSAGE


EMPTY_BODY = EmptyBody()


class LengthBody:
    """A body of exactly `remaining` bytes (Content-Length)."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def read(self, buf: bytes, pos: int) -> Read:
        if self.remaining == 0:
            return END_OF_MESSAGE, pos
        avail = len(buf) - pos
        if avail <= 0:
            return None, pos
        if avail <= self.remaining:
            self.remaining -= avail
            return Data(buf[pos:] if pos else buf), len(buf)
        n = self.remaining
        self.remaining = 0
        return Data(buf[pos : pos + n]), pos + n

    def at_eof(self) -> EndOfMessage:
        raise RemoteProtocolError("connection closed before the body was complete")


class UntilCloseBody:
    """A response body delimited by the upstream closing the connection (RFC 9112 §6.3 p8)."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int) -> Read:
        if pos >= len(buf):
            return None, pos
        return Data(buf[pos:] if pos else buf), len(buf)

    def at_eof(self) -> EndOfMessage:
        return END_OF_MESSAGE


class ChunkedBody:
    """A chunked body, decoded strictly (RFC 9112 §7.1).

    States: reading a size line (`remaining` < 0), chunk data (`remaining` > 0), the CRLF that
    ends a chunk (`need_crlf`), or the trailer section after the last chunk (`in_trailers`).

    `max_size` (0: none) bounds the decoded body: a chunk whose size line would take the body
    past it is refused (413) before any byte of that chunk is passed on.
    """

    __slots__ = (
        "remaining",
        "need_crlf",
        "in_trailers",
        "max_trailer_bytes",
        "max_fields",
        "max_size",
        "size",
    )

    def __init__(self, max_trailer_bytes: int, max_fields: int, max_size: int = 0) -> None:
        self.remaining = -1
        self.need_crlf = False
        self.in_trailers = False
        self.max_trailer_bytes = max_trailer_bytes
        self.max_fields = max_fields
        self.max_size = max_size
        self.size = 0  # the sum of the chunk sizes read so far

    def read(self, buf: bytes, pos: int) -> Read:
        while True:
            if self.in_trailers:
                return self._read_trailers(buf, pos)
            if self.remaining > 0:
                avail = len(buf) - pos
                if avail <= 0:
                    return None, pos
                n = min(avail, self.remaining)
                self.remaining -= n
                if self.remaining == 0:
                    self.need_crlf = True
                return Data(buf[pos : pos + n]), pos + n
            if self.need_crlf:
                if len(buf) - pos < 2:
                    return None, pos
                if buf[pos : pos + 2] != b"\r\n":
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                self.need_crlf = False
                self.remaining = -1
                pos += 2
                continue
            new_pos = self._read_size_line(buf, pos)
            if new_pos < 0:
                return None, pos
            pos = new_pos

    def _read_size_line(self, buf: bytes, pos: int) -> int:
        end = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
        if end < 0:
            if len(buf) - pos >= MAX_CHUNK_LINE:
                raise RemoteProtocolError("chunk size line too long")
            if b"\n" in buf[pos:]:
                raise RemoteProtocolError("bare LF in chunk size line")
            return -1
        m = _CHUNK_LINE.fullmatch(buf, pos, end)
        if m is None:
            raise RemoteProtocolError("invalid chunk size line")
        size = int(m.group(1), 16)
        if size == 0:
            self.in_trailers = True
        else:
            self.size += size
            if self.max_size and self.size > self.max_size:
                raise body_too_large(self.max_size)
            self.remaining = size
        return end + 2

    def _read_trailers(self, buf: bytes, pos: int) -> Read:
        if buf.startswith(b"\r\n", pos):
            return END_OF_MESSAGE, pos + 2
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > self.max_trailer_bytes:
                raise RemoteProtocolError("trailer section too large", 431)
            return None, pos
        if end + 4 - pos > self.max_trailer_bytes:
            raise RemoteProtocolError("trailer section too large", 431)
        fields = split_fields(buf, pos, end + 2, self.max_fields)
        return EndOfMessage(fields.without(_FORBIDDEN_TRAILERS)), end + 4

    def at_eof(self) -> EndOfMessage:
        raise RemoteProtocolError("connection closed inside a chunked body")


BodyReader = EmptyBody | LengthBody | UntilCloseBody | ChunkedBody


def body_too_large(max_size: int) -> RemoteProtocolError:
    """The error for a request body over its limit: 413 Content Too Large (RFC 9110 §15.5.14)."""
    return RemoteProtocolError(f"request body larger than {max_size} bytes", 413)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body carrying `data` (which must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: list[bytes]) -> bytes:
    """The last chunk and the trailer section."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"\r\n".join(trailers) + b"\r\n\r\n"
