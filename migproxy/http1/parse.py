# bytes -> validated heads (RFC 9112 §2-§6), strict enough to be smuggling-safe.
#
# Strategy: the whole field block is validated by one compiled regular expression (C speed)
# before anything is looked at, so obs-fold (RFC 9112 §5.2), bare CR or LF, NUL and other
# control bytes, and invalid field names can never reach the framing logic. Then the block is
# split into lines. benchmarks/parser_bench.py measures this against httptools and h11.
#
# Framing rules (RFC 9112 §6): a request with both Content-Length and Transfer-Encoding, with
# several or malformed Content-Length values, or with a Transfer-Encoding other than a single
# final "chunked" is rejected: a proxy that guesses here is how request smuggling happens.
from __future__ import annotations

import re

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import BodyKind, RequestHead, ResponseHead
from migproxy.http1.headers import Fields

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# field-line = field-name ":" OWS field-value OWS; field-value bytes are VCHAR, obs-text, SP, HTAB.
_FIELD_BLOCK = re.compile(rb"(?:" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_FIELD_LINE = re.compile(rb"(" + _TCHAR + rb"+):[\t\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_INTERESTING = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"host", b"expect", b"upgrade"}
)
_NO_BODY_STATUS = frozenset({204, 304})


def find_head_end(buf: bytes, start: int, max_bytes: int) -> int:
    """The index just past the head's blank line in `buf[start:]`, or -1 if not there yet.

    Raises:
        RemoteProtocolError: 431 when the head is larger than `max_bytes`, 400 on a bare LF.
    """
    end = buf.find(b"\r\n\r\n", start)
    if end >= 0:
        if end + 4 - start > max_bytes:
            raise RemoteProtocolError("request header section too large", 431)
        return end + 4
    if len(buf) - start > max_bytes:
        raise RemoteProtocolError("request header section too large", 431)
    if _BARE_LF.search(buf, start) is not None:
        raise RemoteProtocolError("bare LF in message head")
    return -1


def split_fields(buf: bytes, start: int, end: int, max_fields: int) -> Fields:
    """Validate and split the field block `buf[start:end]` (each line ends with CRLF)."""
    if _FIELD_BLOCK.fullmatch(buf, start, end) is None:
        raise RemoteProtocolError(_field_block_reason(buf[start:end]))
    if start == end:
        return Fields([], [])
    lines = buf[start : end - 2].split(b"\r\n")
    if len(lines) > max_fields:
        raise RemoteProtocolError(f"more than {max_fields} header fields", 431)
    return Fields(lines, [line[: line.index(b":")].lower() for line in lines])


def _field_block_reason(block: bytes) -> str:
    for line in block.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding in header"
        if _FIELD_LINE.fullmatch(line) is None:
            if b"\x00" in line:
                return "NUL byte in header"
            if b"\r" in line or b"\n" in line:
                return "bare CR or LF in header"
            if b":" not in line:
                return "header line without a colon"
            if _FIELD_LINE.match(line) is None:
                return "invalid header field name"
            return "invalid byte in header value"
    return "malformed header section"


def parse_request_head(buf: bytes, start: int, end: int, max_fields: int) -> RequestHead:
    """Parse the request head `buf[start:end]` (ending with its blank line).

    Raises:
        RemoteProtocolError: with status_hint 400, 431, 501 or 505.
    """
    line_end = buf.find(b"\r\n", start, end)
    m = _REQUEST_LINE.fullmatch(buf, start, line_end)
    if m is None:
        raise RemoteProtocolError("invalid request line")
    method, target, major, minor = m.groups()
    if major != b"1":
        raise RemoteProtocolError("HTTP version not supported", 505)
    version = 11 if minor != b"0" else 10
    fields = split_fields(buf, line_end + 2, end - 2, max_fields)
    _check_target(method, target)
    present = _INTERESTING.intersection(fields.names)
    body, length = _request_framing(fields, present, version)
    connection = fields.tokens(b"connection") if b"connection" in present else []
    if version == 11:
        keep_alive = b"close" not in connection
        _check_host(fields, present)
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    upgrade = None
    if b"upgrade" in present and b"upgrade" in connection and version == 11:
        upgrade = fields.get(b"upgrade")
    expect = b"expect" in present and fields.get(b"expect") == b"100-continue" and version == 11
    return RequestHead(
        method, target, version, fields, body, length, keep_alive, expect, upgrade or None
    )


def _check_target(method: bytes, target: bytes) -> None:
    if method == b"CONNECT":
        raise RemoteProtocolError("CONNECT is not supported by this reverse proxy", 501)
    if target[:1] == b"/" or target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        return
    if target == b"*" and method == b"OPTIONS":
        return
    raise RemoteProtocolError("invalid request target")


def _check_host(fields: Fields, present: frozenset[bytes]) -> None:
    # RFC 9112 §3.2: a 1.1 request without Host, or with several, gets 400.
    if b"host" not in present or fields.names.count(b"host") != 1:
        raise RemoteProtocolError("HTTP/1.1 request needs exactly one Host header")


def _request_framing(
    fields: Fields, present: frozenset[bytes], version: int
) -> tuple[BodyKind, int]:
    if b"transfer-encoding" in present:
        if b"content-length" in present:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if version == 10:
            # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        codings = fields.tokens(b"transfer-encoding")
        if not codings or codings[-1] != b"chunked":
            raise RemoteProtocolError("Transfer-Encoding must end with chunked")
        if codings != [b"chunked"]:
            raise RemoteProtocolError("transfer coding not implemented", 501)
        return BodyKind.CHUNKED, 0
    if b"content-length" in present:
        length = _content_length(fields)
        if length < 0:
            raise RemoteProtocolError("invalid or repeated Content-Length")
        return (BodyKind.LENGTH, length) if length else (BodyKind.NONE, 0)
    return BodyKind.NONE, 0


def _content_length(fields: Fields) -> int:
    """The single Content-Length value, or -1 if there are several or it is malformed."""
    values = fields.get_all(b"content-length")
    if len(values) != 1 or _DIGITS.fullmatch(values[0]) is None:
        return -1
    return int(values[0])


def parse_response_head(
    buf: bytes, start: int, end: int, max_fields: int, request_method: bytes
) -> ResponseHead:
    """Parse the response head `buf[start:end]`, framed for a request with `request_method`.

    Raises:
        RemoteProtocolError: the upstream's head cannot be framed exactly (answer 502).
    """
    line_end = buf.find(b"\r\n", start, end)
    m = _STATUS_LINE.fullmatch(buf, start, line_end)
    if m is None:
        raise RemoteProtocolError("invalid status line", 502)
    major, minor, code, reason = m.groups()
    if major != b"1":
        raise RemoteProtocolError("upstream HTTP version not supported", 502)
    version = 11 if minor != b"0" else 10
    status = int(code)
    try:
        fields = split_fields(buf, line_end + 2, end - 2, max_fields)
    except RemoteProtocolError as err:
        raise RemoteProtocolError(f"upstream: {err.reason}", 502) from None
    present = _INTERESTING.intersection(fields.names)
    body, length = _response_framing(fields, present, status, request_method)
    connection = fields.tokens(b"connection") if b"connection" in present else []
    if version == 11:
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if body is BodyKind.UNTIL_CLOSE:
        keep_alive = False
    return ResponseHead(status, reason or b"", version, fields, body, length, keep_alive)


def _response_framing(
    fields: Fields, present: frozenset[bytes], status: int, method: bytes
) -> tuple[BodyKind, int]:
    # RFC 9112 §6.3, in order.
    if method == b"HEAD" or status < 200 or status in _NO_BODY_STATUS:
        return BodyKind.NONE, 0
    if b"transfer-encoding" in present:
        if b"content-length" in present:
            raise RemoteProtocolError(
                "upstream sent both Content-Length and Transfer-Encoding", 502
            )
        codings = fields.tokens(b"transfer-encoding")
        if codings == [b"chunked"]:
            return BodyKind.CHUNKED, 0
        if codings and codings[-1] == b"chunked":
            raise RemoteProtocolError("upstream used a transfer coding we cannot forward", 502)
        return BodyKind.UNTIL_CLOSE, 0
    if b"content-length" in present:
        length = _content_length(fields)
        if length < 0:
            raise RemoteProtocolError("upstream sent an invalid Content-Length", 502)
        return BodyKind.LENGTH, length
    return BodyKind.UNTIL_CLOSE, 0
