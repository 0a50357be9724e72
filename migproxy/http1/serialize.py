# Heads -> bytes for the next hop. The proxy forwards the field lines it received byte for
# byte, dropping hop-by-hop fields (RFC 9110 §7.6.1) and adding its own framing and
# forwarding fields; it never rewrites a line it keeps.
from __future__ import annotations

from dataclasses import dataclass

from migproxy.http1.events import BodyKind, RequestHead, ResponseHead
from migproxy.http1.headers import Fields

_CLIENT_PROTO = frozenset({b"x-forwarded-proto"})
# Enum members as module names: cheaper than a lookup on the Enum class (Python 3.11).
_CHUNKED_BODY = BodyKind.CHUNKED
_STATUS_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class ForwardingRules:
    """What the proxy adds to a forwarded request: X-Forwarded-*/Forwarded, Via, a Host."""

    forwarded: str = "x-forwarded"  # "x-forwarded", "forwarded" or "none"
    via: bool = False
    default_host: bytes = b"localhost"  # for HTTP/1.0 requests that carry no Host


def request_head_bytes(
    head: RequestHead, client_ip: bytes, rules: ForwardingRules, forwarding: bytes | None = None
) -> bytes:
    """The head to send upstream for `head`, always as HTTP/1.1.

    `forwarding` is forwarding_lines(client_ip, rules), when the caller has it already.
    """
    fields = head.fields
    block = fields.raw
    if head.has_hop_by_hop:
        block = fields.without_hop_by_hop(head.connection or [])
        if block.lower().find(b"x-forwarded-proto") >= 0:  # ours replaces the client's
            block = b"".join(line + b"\r\n" for line in Fields(block).without(_CLIENT_PROTO))
    extra = forwarding if forwarding is not None else forwarding_lines(client_ip, rules)
    if head.body is _CHUNKED_BODY:
        extra += b"Transfer-Encoding: chunked\r\n"
    if head.upgrade is not None:
        extra += b"Connection: upgrade\r\nUpgrade: " + head.upgrade + b"\r\n"
    if head.version == 10 and b"host" not in fields.names:
        extra += b"Host: " + rules.default_host + b"\r\n"
    start = head.start_line or b"%b %b HTTP/1.1\r\n" % (head.method, head.target)
    return b"".join((start, block, extra, b"\r\n"))


def forwarding_lines(client_ip: bytes, rules: ForwardingRules) -> bytes:
    """The X-Forwarded-*/Forwarded and Via lines the proxy adds for a client (with CRLFs)."""
    # Repeating a list-based field is the same as appending to it (RFC 9110 §5.3), so the
    # client's own X-Forwarded-For lines are kept and ours is added after them.
    if rules.forwarded == "x-forwarded":
        out = b"X-Forwarded-For: " + client_ip + b"\r\nX-Forwarded-Proto: http\r\n"
    elif rules.forwarded == "forwarded":
        node = b'"[' + client_ip + b']"' if client_ip.find(b":") >= 0 else client_ip
        out = b"Forwarded: for=" + node + b";proto=http\r\n"
    else:
        out = b""
    if rules.via:
        out += b"Via: 1.1 migproxy\r\n"
    return out


def response_head_bytes(
    head: ResponseHead, *, close: bool, chunked: bool, client_version: int, via: bool
) -> bytes:
    """The head to send the client for `head`.

    Args:
        close: announce `Connection: close` (the decision of policy.close.decide_close).
        chunked: the body goes out chunked (else as received: Content-Length or until close).
        client_version: 10 or 11; an HTTP/1.0 client staying open is told `keep-alive`.
        via: add a Via field.
    """
    fields = head.fields
    block = fields.without_hop_by_hop(head.connection or []) if head.has_hop_by_hop else fields.raw
    if head.status == 101:
        upgrade = fields.get(b"upgrade")
        extra = b"Connection: upgrade\r\n"
        if upgrade is not None:
            extra += b"Upgrade: " + upgrade + b"\r\n"
    elif close:
        extra = b"Connection: close\r\n"
    elif client_version == 10 and head.status >= 200:
        extra = b"Connection: keep-alive\r\n"
    else:
        extra = b""
    if chunked:
        extra += b"Transfer-Encoding: chunked\r\n"
    if via:
        extra += b"Via: 1.1 migproxy\r\n"
    start = head.start_line or b"HTTP/1.1 %d %b\r\n" % (head.status, head.reason)
    return b"".join((start, block, extra, b"\r\n"))


def error_response_bytes(status: int, reason: str, *, close: bool) -> bytes:
    """A complete proxy-generated response whose plain-text body says what went wrong."""
    body = reason.encode("utf-8", "replace") + b"\n"
    connection = b"close" if close else b"keep-alive"
    status_line = b"HTTP/1.1 %d %b\r\n" % (status, _STATUS_REASONS.get(status, b"Error"))
    return status_line + b"".join(
        [
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: " + connection + b"\r\n\r\n",
            body,
        ]
    )
