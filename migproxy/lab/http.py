# The lab clients' HTTP/1.1: one GET request, and the response read from an asyncio stream.
#
# Why our own: a lab client is a loop of "write 80 bytes, read one small response" on a
# keep-alive connection, run by hundreds of clients in one process next to the proxies on a
# 2-CPU machine. aiohttp's client costs several times more CPU per request (its connector,
# cookie jar, tracing and per-request objects) and hides what the lab measures: which address
# a connection went to, when it was opened, and whether the response announced its close.
#
# Rules (RFC 9112):
# - A response's framing: Transfer-Encoding ending in chunked, else Content-Length, else none
#   for 1xx/204/304, else the body runs until the server closes (§6.3).
# - The connection stays open only if the response allows it: HTTP/1.1 without the `close`
#   token in Connection, or HTTP/1.0 with `keep-alive` (§9.3); a close-delimited body always
#   ends the connection. Interim 1xx responses (not 101) are skipped.
# - parse_response_head() is pure; read_response() only adds the stream reads.
from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

MAX_HEAD = 65536
MAX_BODY = 1 << 20  # the lab's backends answer a few bytes; anything larger is a bug


class ProtocolError(Exception):
    """The response cannot be understood (a malformed head or body framing)."""


class Framing(enum.Enum):
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"
    NONE = "none"  # no body (1xx, 204, 304)
    UNTIL_CLOSE = "until_close"


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    keep_alive: bool  # False: the client must close the connection after this response
    framing: Framing
    length: int = 0  # for Framing.LENGTH


def request_bytes(host: str, path: str = "/") -> bytes:
    """A keep-alive GET request for `path` on `host`."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: migproxy-lab\r\n\r\n".encode()


def _tokens(values: list[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",")} - {b""}


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head (status line and fields, ending with an empty line).

    Raises:
        ProtocolError: a malformed status line, field or Content-Length.
    """
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status_text = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not status_text.isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(status_text)
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        fields.setdefault(name.lower(), []).append(value.strip())
    connection = _tokens(fields.get(b"connection", []))
    if version == b"HTTP/1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection
    codings = _tokens(fields.get(b"transfer-encoding", []))
    lengths = set(fields.get(b"content-length", []))
    if 100 <= status < 200 or status in (204, 304):
        return ResponseHead(status, keep_alive, Framing.NONE)
    if codings:
        last = fields[b"transfer-encoding"][-1].split(b",")[-1].strip().lower()
        if last != b"chunked":
            return ResponseHead(status, False, Framing.UNTIL_CLOSE)
        return ResponseHead(status, keep_alive, Framing.CHUNKED)
    if lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ProtocolError(f"bad Content-Length {sorted(lengths)!r}")
        return ResponseHead(status, keep_alive, Framing.LENGTH, int(next(iter(lengths))))
    return ResponseHead(status, False, Framing.UNTIL_CLOSE)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields: not needed
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ProtocolError("body larger than the lab expects")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


async def read_response(reader: asyncio.StreamReader) -> tuple[ResponseHead, bytes]:
    """Read one final response (skipping 1xx interim ones) and its body.

    Raises:
        ProtocolError: malformed response.
        asyncio.IncompleteReadError: the connection ended before the response did.
        asyncio.LimitOverrunError: a head or chunk line longer than the reader's limit.
    """
    while True:
        head = parse_response_head(await reader.readuntil(b"\r\n\r\n"))
        if not (100 <= head.status < 200) or head.status == 101:
            break
    if head.framing is Framing.LENGTH:
        if head.length > MAX_BODY:
            raise ProtocolError("body larger than the lab expects")
        return head, await reader.readexactly(head.length)
    if head.framing is Framing.CHUNKED:
        return head, await _read_chunked(reader)
    if head.framing is Framing.UNTIL_CLOSE:
        return head, await _read_until_close(reader)
    return head, b""


async def _read_until_close(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while piece := await reader.read(65536):
        body += piece
        if len(body) > MAX_BODY:
            raise ProtocolError("body larger than the lab expects")
    return bytes(body)
