# Events produced by the HTTP/1.1 readers (connection.py) and consumed by the proxy.
#
# Rule: events are plain values; they never refer back to a reader or a socket.
# They are slotted but not frozen: a frozen dataclass's __init__ goes through
# object.__setattr__ and costs about twice as much, and these are built on every request.
from __future__ import annotations

import enum
from dataclasses import dataclass

from migproxy.http1.headers import Fields


class BodyKind(enum.Enum):
    """How a message body is delimited (RFC 9112 §6.3)."""

    NONE = "none"
    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"


@dataclass(slots=True)
class RequestHead:
    """A parsed, validated request head.

    `keep_alive` is the client's wish (HTTP/1.1 default, HTTP/1.0 opt-in); `upgrade` is the
    protocol named by Upgrade when Connection lists it, else None.
    """

    method: bytes
    target: bytes
    version: int  # 10 or 11
    fields: Fields
    body: BodyKind
    length: int  # the Content-Length, when body is LENGTH
    keep_alive: bool
    expect_continue: bool
    upgrade: bytes | None
    connection: list[bytes] | None = None  # Connection tokens, lower case
    has_hop_by_hop: bool = True  # a field the proxy must not forward is present
    start_line: bytes = b""  # the request line as received, with its CRLF


@dataclass(slots=True)
class ResponseHead:
    """A parsed, validated response head, framed for the request it answers."""

    status: int
    reason: bytes
    version: int
    fields: Fields
    body: BodyKind
    length: int
    keep_alive: bool  # the upstream will keep its connection open after this response
    connection: list[bytes] | None = None  # Connection tokens, lower case
    has_hop_by_hop: bool = True  # a field the proxy must not forward is present
    start_line: bytes = b""  # the status line as received, with its CRLF

    @property
    def is_informational(self) -> bool:
        return self.status < 200


@dataclass(slots=True)
class Data:
    """A piece of a message body, already de-framed (no chunk sizes)."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The end of a message body; `trailers` are raw field lines of a chunked body."""

    trailers: list[bytes]


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed its sending side at a message boundary."""


class Pause(enum.Enum):
    """Sentinels returned by next_event() when there is no event to give."""

    NEED_DATA = "need-data"  # feed more bytes
    PAUSED = "paused"  # a message is complete; call start_next_cycle() for the next one


NEED_DATA = Pause.NEED_DATA
PAUSED = Pause.PAUSED
END_OF_MESSAGE = EndOfMessage([])  # shared instance for the common no-trailers case

Event = RequestHead | ResponseHead | Data | EndOfMessage | ConnectionClosed
