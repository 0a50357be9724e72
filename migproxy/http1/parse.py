# bytes -> validated heads (RFC 9112 §2-§6), strict enough to be smuggling-safe.
#
# Strategy: the whole field block is validated by one compiled regular expression (C speed)
# before anything is looked at, so obs-fold (RFC 9112 §5.2), bare CR or LF, NUL and other
# control bytes, and invalid field names can never reach the framing logic. A second regular
# expression then pulls out, in one pass, only the fields that decide framing, keep-alive and
# forwarding; the block itself is forwarded as received unless a hop-by-hop field must go.
# benchmarks/parser_bench.py measures this against httptools and h11.
#
# The common heads take a faster road: _speedups.c builds exactly what py_parse_request_head
# and py_parse_response_head would, in one pass, and hands every other head (errors and rare
# forms alike) to them. These functions stay the specification; see the end of this file.
#
# Framing rules (RFC 9112 §6): a request with both Content-Length and Transfer-Encoding, with
# several or malformed Content-Length values, or with a Transfer-Encoding other than a single
# final "chunked" is rejected: a proxy that guesses here is how request smuggling happens.
from __future__ import annotations

import os
import re
from collections.abc import Callable

from migproxy.errors import RemoteProtocolError
from migproxy.http1.events import BodyKind, RequestHead, ResponseHead
from migproxy.http1.headers import Fields, split_tokens

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# field-line = field-name ":" OWS field-value OWS; field-value bytes are VCHAR, obs-text, SP, HTAB.
_FIELD_BLOCK = re.compile(rb"(?:" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_FIELD_LINE = re.compile(rb"(" + _TCHAR + rb"+):[\t\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
# Whole heads in one call each: the common case costs one pass of the regex engine. When they
# do not match, the line-by-line expressions above find what is wrong, for the error reason.
_FIELD_LINES = rb"(?:" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
_REQUEST_HEAD = re.compile(_REQUEST_LINE.pattern + rb"\r\n(" + _FIELD_LINES + rb")\r\n")
_RESPONSE_HEAD = re.compile(_STATUS_LINE.pattern + rb"\r\n(" + _FIELD_LINES + rb")\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# The fields that matter to the proxy, found in the lower-cased block in one pass.
_HOP_BY_HOP_NAMES = b"connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
# Each field line follows an LF (the block is searched from the LF that ends the start line);
# the literal LF prefix lets the regex engine skip to candidate positions quickly.
_SPECIAL = re.compile(
    rb"\n(content-length|host|expect|x-forwarded-proto|" + _HOP_BY_HOP_NAMES + rb"):[ \t]*([^\r]*)"
)
# x-forwarded-proto is set by the proxy itself, never trusted from a client.
_HOP_BY_HOP_OR_PROTO = frozenset(_HOP_BY_HOP_NAMES.split(b"|")) | {b"x-forwarded-proto"}
_HOP_BY_HOP_BUT_CONNECTION = _HOP_BY_HOP_OR_PROTO - {b"connection"}
_NO_BODY_STATUS = frozenset({204, 304})
_NO_FIELDS: dict[bytes, bytes] = {}
# On the per-request paths, `x.find(b",") < 0` stands for `b"," not in x`: on CPython 3.11,
# `bytes in bytes` first tries the left operand as an int, and the TypeError it builds and
# drops on the way costs more than the search itself (measured: ~1,800 instructions).
_NO_TOKENS: list[bytes] = []  # shared: callers never mutate token lists
# The Connection values nearly every message carries (lower-cased), tokenized once.
_COMMON_TOKENS = {value: [value] for value in (b"keep-alive", b"close", b"upgrade")}
# Enum members as module names: cheaper than a lookup on the Enum class (Python 3.11).
_NONE_BODY = BodyKind.NONE
_LENGTH_BODY = BodyKind.LENGTH
_CHUNKED_BODY = BodyKind.CHUNKED
_UNTIL_CLOSE_BODY = BodyKind.UNTIL_CLOSE


def _special_fields(buf: bytes, start: int, end: int) -> dict[bytes, bytes]:
    """The fields that decide framing, keep-alive and forwarding, by lower-case name.

    `buf[start:end]` is the field block preceded by the LF that ends the start line.

    A field that appears on several lines gets its values joined with commas, which is what
    a list-based field means (RFC 9110 §5.3) and makes a repeated Content-Length or Host
    invalid by construction (neither may contain a comma).
    """
    if end - start < 2:
        return _NO_FIELDS
    pairs = _SPECIAL.findall(buf[start:end].lower())
    fields = dict(pairs)
    if len(fields) != len(pairs):
        fields = {}
        for name, value in pairs:
            fields[name] = fields[name] + b"," + value if name in fields else value
    return fields


def _has_hop_by_hop(special: dict[bytes, bytes], fields: Fields) -> bool:
    """Whether a field the proxy must not forward is present; notes the common single case.

    When the only one is a single Connection line (`Connection: keep-alive`, by far the most
    common), Fields.without_hop_by_hop can cut that line out with a plain search.
    """
    if _HOP_BY_HOP_OR_PROTO.isdisjoint(special):
        return False
    value = special.get(b"connection")
    # Repeated lines were joined with commas, so a value without one came from one line.
    if (
        value is not None
        and value.find(b",") < 0
        and _HOP_BY_HOP_BUT_CONNECTION.isdisjoint(special)
    ):
        fields.single_connection_line = True
    return True


def _tokens(value: bytes | None) -> list[bytes]:
    if value is None:
        return _NO_TOKENS
    common = _COMMON_TOKENS.get(value)
    if common is not None:
        return common
    if value.find(b",") < 0:
        return [value.strip(b" \t")]
    return split_tokens([value])


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
    """Validate the field block `buf[start:end]` (each line ends with CRLF) as Fields."""
    if _FIELD_BLOCK.fullmatch(buf, start, end) is None:
        raise RemoteProtocolError(_field_block_reason(buf[start:end]))
    raw = buf[start:end]
    _check_field_count(raw, max_fields)
    return Fields(raw)


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


def py_parse_request_head(buf: bytes, start: int, end: int, max_fields: int) -> RequestHead:
    """Parse the request head `buf[start:end]` (ending with its blank line).

    Raises:
        RemoteProtocolError: with status_hint 400, 431, 501 or 505.
    """
    m = _REQUEST_HEAD.fullmatch(buf, start, end)
    if m is None:
        raise _request_head_error(buf, start, end, max_fields)
    method, target, major, minor, raw = m.groups()
    if major != b"1":
        raise RemoteProtocolError("HTTP version not supported", 505)
    version = 10 if minor == b"0" else 11
    if len(raw) > max_fields * 4:  # shorter blocks cannot hold more fields than that
        _check_field_count(raw, max_fields)
    fields = Fields(raw)
    line_end = end - 4 - len(raw)  # where the request line's CRLF starts
    if target[:1] != b"/" or method == b"CONNECT":
        _check_target(method, target)
    special = _special_fields(buf, line_end + 1, end - 2)
    if b"transfer-encoding" in special or b"content-length" in special:
        body, length = _request_framing(special, version)
    else:
        body, length = _NONE_BODY, 0
    connection = _tokens(special.get(b"connection"))
    host = special.get(b"host")
    if version == 11:
        keep_alive = b"close" not in connection
        if host is None or host.find(b",") >= 0:  # RFC 9112 §3.2
            raise RemoteProtocolError("HTTP/1.1 request needs exactly one Host header")
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
        if host is not None and host.find(b",") >= 0:  # RFC 9112 §3.2: one Host line at most
            raise RemoteProtocolError("more than one Host header")
    upgrade = None
    if b"upgrade" in special and b"upgrade" in connection and version == 11:
        upgrade = fields.get(b"upgrade") or None
    expect = b"expect" in special and version == 11 and _is_100_continue(special[b"expect"])
    return RequestHead(
        method,
        target,
        version,
        fields,
        body,
        length,
        keep_alive,
        expect,
        upgrade,
        connection,
        _has_hop_by_hop(special, fields),
        buf[start : line_end + 2] if minor == b"1" else b"",  # forwarded as HTTP/1.1
    )


def _request_head_error(buf: bytes, start: int, end: int, max_fields: int) -> Exception:
    """What is wrong with a request head that did not match _REQUEST_HEAD."""
    line_end = buf.find(b"\r\n", start, end)
    if _REQUEST_LINE.fullmatch(buf, start, line_end) is None:
        return RemoteProtocolError("invalid request line")
    try:
        split_fields(buf, line_end + 2, end - 2, max_fields)
    except RemoteProtocolError as err:
        return err
    return RemoteProtocolError("malformed request head")


def _check_field_count(raw: bytes, max_fields: int) -> None:
    # Every field line is at least 4 bytes ("a:\r\n"), so short blocks need no count.
    if len(raw) > max_fields * 4 and raw.count(b"\n") > max_fields:
        raise RemoteProtocolError(f"more than {max_fields} header fields", 431)


def _is_100_continue(value: bytes) -> bool:
    return value.rstrip(b" \t") == b"100-continue"


def _check_target(method: bytes, target: bytes) -> None:
    if method == b"CONNECT":
        raise RemoteProtocolError("CONNECT is not supported by this reverse proxy", 501)
    if target[:1] == b"/" or target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        return
    if target == b"*" and method == b"OPTIONS":
        return
    raise RemoteProtocolError("invalid request target")


def _request_framing(special: dict[bytes, bytes], version: int) -> tuple[BodyKind, int]:
    te = special.get(b"transfer-encoding")
    cl = special.get(b"content-length")
    if te is not None:
        if cl is not None:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if version == 10:
            # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        codings = _tokens(te)
        if not codings or codings[-1] != b"chunked":
            raise RemoteProtocolError("Transfer-Encoding must end with chunked")
        if codings != [b"chunked"]:
            raise RemoteProtocolError("transfer coding not implemented", 501)
        return _CHUNKED_BODY, 0
    if cl is not None:
        length = _content_length(cl)
        if length < 0:
            raise RemoteProtocolError("invalid or repeated Content-Length")
        return (_LENGTH_BODY, length) if length else (_NONE_BODY, 0)
    return _NONE_BODY, 0


def _content_length(value: bytes) -> int:
    """The Content-Length value, or -1 if it is a list (several values) or malformed."""
    value = value.rstrip(b" \t")
    # bytes.isdigit() is ASCII-only; 18 digits keep the value far below 2**63.
    if not value.isdigit() or len(value) > 18:
        return -1
    return int(value)


def py_parse_response_head(
    buf: bytes, start: int, end: int, max_fields: int, request_method: bytes
) -> ResponseHead:
    """Parse the response head `buf[start:end]`, framed for a request with `request_method`.

    Raises:
        RemoteProtocolError: the upstream's head cannot be framed exactly (answer 502).
    """
    m = _RESPONSE_HEAD.fullmatch(buf, start, end)
    if m is None:
        raise _response_head_error(buf, start, end, max_fields)
    major, minor, code, reason, raw = m.groups()
    if major != b"1":
        raise RemoteProtocolError("upstream HTTP version not supported", 502)
    version = 11 if minor != b"0" else 10
    status = int(code)
    if status < 100:  # RFC 9110 §15: three digits, 1xx to 5xx
        raise RemoteProtocolError("invalid status code", 502)
    if len(raw) > max_fields * 4:  # shorter blocks cannot hold more fields than that
        try:
            _check_field_count(raw, max_fields)
        except RemoteProtocolError as err:
            raise RemoteProtocolError(f"upstream: {err.reason}", 502) from None
    fields = Fields(raw)
    line_end = end - 4 - len(raw)  # where the status line's CRLF starts
    special = _special_fields(buf, line_end + 1, end - 2)
    body, length = _response_framing(special, status, request_method)
    connection = _tokens(special.get(b"connection"))
    if version == 11:
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if body is _UNTIL_CLOSE_BODY or (version == 10 and b"transfer-encoding" in special):
        keep_alive = False  # RFC 9112 §6.1: close after a 1.0 message with Transfer-Encoding
    return ResponseHead(
        status,
        reason or b"",
        version,
        fields,
        body,
        length,
        keep_alive,
        connection,
        _has_hop_by_hop(special, fields),
        buf[start : line_end + 2] if minor == b"1" and reason else b"",
    )


def _response_head_error(buf: bytes, start: int, end: int, max_fields: int) -> Exception:
    """What is wrong with a response head that did not match _RESPONSE_HEAD."""
    line_end = buf.find(b"\r\n", start, end)
    if _STATUS_LINE.fullmatch(buf, start, line_end) is None:
        return RemoteProtocolError("invalid status line", 502)
    try:
        split_fields(buf, line_end + 2, end - 2, max_fields)
    except RemoteProtocolError as err:
        return RemoteProtocolError(f"upstream: {err.reason}", 502)
    return RemoteProtocolError("malformed response head", 502)


def _response_framing(
    special: dict[bytes, bytes], status: int, method: bytes
) -> tuple[BodyKind, int]:
    # RFC 9112 §6.3, in order.
    if method == b"HEAD" or status < 200 or status in _NO_BODY_STATUS:
        return _NONE_BODY, 0
    te = special.get(b"transfer-encoding")
    cl = special.get(b"content-length")
    if te is not None:
        if cl is not None:
            raise RemoteProtocolError(
                "upstream sent both Content-Length and Transfer-Encoding", 502
            )
        codings = _tokens(te)
        if codings == [b"chunked"]:
            return _CHUNKED_BODY, 0
        if codings and codings[-1] == b"chunked":
            raise RemoteProtocolError("upstream used a transfer coding we cannot forward", 502)
        return _UNTIL_CLOSE_BODY, 0
    if cl is not None:
        length = _content_length(cl)
        if length < 0:
            raise RemoteProtocolError("upstream sent an invalid Content-Length", 502)
        return _LENGTH_BODY, length
    return _UNTIL_CLOSE_BODY, 0


# The parsers the readers call: the C accelerator when it was built (it falls back to the
# functions above for every head it does not take), else the functions above.
# MIGPROXY_PURE_PYTHON=1 keeps the accelerator off, to compare or to rule it out.
try:
    from migproxy.http1 import _speedups
except ImportError:  # built without a C compiler: correct, and slower
    _speedups = None  # type: ignore[assignment]


def bind_speedups(
    request_fallback: Callable[[bytes, int, int, int], RequestHead] = py_parse_request_head,
    response_fallback: Callable[
        [bytes, int, int, int, bytes], ResponseHead
    ] = py_parse_response_head,
) -> None:
    """Hand the C accelerator what it builds heads from, and where it sends the rest."""
    _speedups.bind(
        request_head=RequestHead,
        response_head=ResponseHead,
        fields=Fields,
        body_none=_NONE_BODY,
        body_length=_LENGTH_BODY,
        body_chunked=_CHUNKED_BODY,
        body_until_close=_UNTIL_CLOSE_BODY,
        no_tokens=_NO_TOKENS,
        keep_alive_tokens=_COMMON_TOKENS[b"keep-alive"],
        close_tokens=_COMMON_TOKENS[b"close"],
        upgrade_tokens=_COMMON_TOKENS[b"upgrade"],
        request_fallback=request_fallback,
        response_fallback=response_fallback,
    )


parse_request_head: Callable[[bytes, int, int, int], RequestHead] = py_parse_request_head
parse_response_head: Callable[[bytes, int, int, int, bytes], ResponseHead] = py_parse_response_head
ACCELERATED = _speedups is not None and not os.environ.get("MIGPROXY_PURE_PYTHON")
if ACCELERATED:
    bind_speedups()
    parse_request_head = _speedups.parse_request_head
    parse_response_head = _speedups.parse_response_head
