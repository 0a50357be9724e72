# Pure tests of migproxy.http1.serialize: heads out to the next hop. Heads are built by the
# real parser from raw bytes, and what is written is parsed again to check it.
from __future__ import annotations

import pytest

from migproxy.http1.connection import ResponseReader
from migproxy.http1.events import (
    BodyKind,
    Data,
    EndOfMessage,
    RequestHead,
    ResponseHead,
)
from migproxy.http1.headers import HOP_BY_HOP, hop_by_hop_names
from migproxy.http1.parse import find_head_end, parse_request_head, parse_response_head
from migproxy.http1.serialize import (
    ForwardingRules,
    error_response_bytes,
    request_head_bytes,
    response_head_bytes,
)

pytestmark = pytest.mark.usefixtures("head_parser")

MAX_HEAD = 8192
MAX_FIELDS = 100
CLIENT_IP = b"192.0.2.7"
RULES = ForwardingRules()
PLAIN = ForwardingRules(forwarded="none")


def parse_request(raw: bytes) -> RequestHead:
    end = find_head_end(raw, 0, MAX_HEAD)
    assert end == len(raw), "expected exactly one complete head"
    return parse_request_head(raw, 0, end, MAX_FIELDS)


def parse_response(raw: bytes, method: bytes = b"GET") -> ResponseHead:
    end = find_head_end(raw, 0, MAX_HEAD)
    assert end == len(raw), "expected exactly one complete head"
    return parse_response_head(raw, 0, end, MAX_FIELDS, method)


def request(*lines: bytes, start: bytes = b"GET /p HTTP/1.1") -> RequestHead:
    return parse_request(start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n")


def response(*lines: bytes, start: bytes = b"HTTP/1.1 200 OK") -> ResponseHead:
    return parse_response(start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n")


def forward(head: RequestHead, rules: ForwardingRules = PLAIN) -> RequestHead:
    """What the upstream sees: request_head_bytes, parsed again."""
    return parse_request(request_head_bytes(head, CLIENT_IP, rules))


def answer(
    head: ResponseHead,
    *,
    close: bool = False,
    chunked: bool = False,
    client_version: int = 11,
    via: bool = False,
) -> ResponseHead:
    """What the client sees: response_head_bytes, parsed again."""
    raw = response_head_bytes(
        head, close=close, chunked=chunked, client_version=client_version, via=via
    )
    return parse_response(raw)


# Requests: hop-by-hop fields (RFC 9110 §7.6.1)

HOP_BY_HOP_REQUEST_LINES = [
    pytest.param(b"Connection: keep-alive", id="connection"),
    pytest.param(b"Keep-Alive: timeout=5", id="keep-alive"),
    pytest.param(b"TE: trailers", id="te"),
    pytest.param(b"Trailer: X-Sum", id="trailer"),
    pytest.param(b"Upgrade: websocket", id="upgrade"),
    pytest.param(b"Proxy-Connection: keep-alive", id="proxy-connection"),
    pytest.param(b"PROXY-CONNECTION: keep-alive", id="upper-case-name"),
]


@pytest.mark.parametrize("line", HOP_BY_HOP_REQUEST_LINES)
def test_request_hop_by_hop_field_is_removed(line: bytes) -> None:
    head = request(b"Host: x", line, b"Accept: */*")
    assert forward(head).fields.lines == [b"Host: x", b"Accept: */*"]


def test_request_transfer_encoding_is_rewritten_once() -> None:
    head = request(b"Host: x", b"Transfer-Encoding: chunked", start=b"POST / HTTP/1.1")
    out = forward(head)
    assert out.fields.lines == [b"Host: x", b"Transfer-Encoding: chunked"]
    assert out.body is BodyKind.CHUNKED


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param(b"Connection: X-Private, close", id="one-line"),
        pytest.param(b"Connection: x-private\r\nConnection: close", id="two-lines"),
        pytest.param(b"Connection: X-PRIVATE", id="case-insensitive"),
    ],
)
def test_request_fields_named_by_connection_are_removed(connection: bytes) -> None:
    head = request(b"Host: x", b"X-Private: secret", *connection.split(b"\r\n"), b"X-Kept: 1")
    assert forward(head).fields.lines == [b"Host: x", b"X-Kept: 1"]


def test_request_fields_that_only_look_hop_by_hop_are_kept() -> None:
    lines = (b"Host: x", b"Upgrade-Insecure-Requests: 1", b"Tea: green", b"Connection-Id: 7")
    assert forward(request(*lines, b"Connection: keep-alive")).fields.lines == list(lines)


def test_request_fields_kept_byte_for_byte() -> None:
    lines = (b"host:   Example.COM  ", b"X-Weird:\tvalue\t", b"accept:*/*")
    assert forward(request(*lines)).fields.lines == list(lines)


# RFC 9110 §6.2: an intermediary sends its own HTTP-version in forwarded messages.


@pytest.mark.parametrize("version", [b"1.0", b"1.1", b"1.9"])
def test_request_line_is_always_http11(version: bytes) -> None:
    raw = request_head_bytes(request(b"Host: x", start=b"GET /p HTTP/" + version), CLIENT_IP, PLAIN)
    assert raw.startswith(b"GET /p HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "status_line",
    [
        pytest.param(b"HTTP/1.0 200 OK", id="10"),
        pytest.param(b"HTTP/1.1 200 OK", id="11"),
        pytest.param(b"HTTP/1.9 200 OK", id="19"),
        pytest.param(b"HTTP/1.1 200", id="11-no-reason"),
    ],
)
def test_status_line_is_always_http11(status_line: bytes) -> None:
    head = response(b"Content-Length: 0", start=status_line)
    raw = response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
    assert raw.startswith(b"HTTP/1.1 200 ")


def test_request_host_preserved() -> None:
    assert forward(request(b"Host: example.com:8080")).fields.get(b"host") == b"example.com:8080"


def test_request_host_survives_a_connection_token_naming_it() -> None:
    # A client must not be able to delete Host (or any field that routes or frames the
    # request) by naming it in Connection: the upstream would get an HTTP/1.1 request
    # without Host (RFC 9112 §3.2).
    head = request(b"Host: example.com", b"Connection: host")
    raw = request_head_bytes(head, CLIENT_IP, RULES)
    assert b"\r\nHost: example.com\r\n" in raw


def test_request_content_length_survives_a_connection_token_naming_it() -> None:
    # Request smuggling: the body is forwarded as received, framed only by the Content-Length
    # line we keep. If `Connection: content-length` removes that line, the upstream reads the
    # body as the next request.
    head = request(
        b"Host: x", b"Content-Length: 5", b"Connection: content-length", start=b"POST / HTTP/1.1"
    )
    out = forward(head, RULES)
    assert out.body is BodyKind.LENGTH
    assert out.length == 5


def test_http10_request_without_host_gets_default_host() -> None:
    head = request(start=b"GET / HTTP/1.0")
    out = forward(head, ForwardingRules(forwarded="none", default_host=b"backend.local"))
    assert out.fields.lines == [b"Host: backend.local"]


def test_http10_request_with_host_keeps_it() -> None:
    out = forward(request(b"Host: a", start=b"GET / HTTP/1.0"))
    assert out.fields.lines == [b"Host: a"]


# Requests: forwarding fields


@pytest.mark.parametrize(
    "client_lines",
    [
        pytest.param((b"Host: x",), id="plain"),
        pytest.param((b"Host: x", b"Connection: keep-alive"), id="with-connection"),
        pytest.param((b"Host: x", b"Upgrade: h2c"), id="with-other-hop-by-hop"),
    ],
)
def test_x_forwarded_fields_added(client_lines: tuple[bytes, ...]) -> None:
    out = forward(request(*client_lines), RULES)
    assert out.fields.lines == [
        b"Host: x",
        b"X-Forwarded-For: 192.0.2.7",
        b"X-Forwarded-Proto: http",
    ]


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param((), id="without-connection"),
        pytest.param((b"Connection: keep-alive",), id="with-connection"),
    ],
)
def test_client_x_forwarded_proto_dropped_and_xff_appended(
    connection: tuple[bytes, ...],
) -> None:
    head = request(
        b"Host: x",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-For: 203.0.113.1",
        b"x-forwarded-proto: https",
        *connection,
    )
    out = forward(head, RULES)
    assert out.fields.get_all(b"x-forwarded-proto") == [b"http"]
    assert out.fields.get_all(b"x-forwarded-for") == [b"203.0.113.1", b"192.0.2.7"]


@pytest.mark.parametrize(
    ("client_ip", "line"),
    [
        pytest.param(b"192.0.2.7", b"Forwarded: for=192.0.2.7;proto=http", id="ipv4"),
        pytest.param(b"2001:db8::1", b'Forwarded: for="[2001:db8::1]";proto=http', id="ipv6"),
        pytest.param(b"::1", b'Forwarded: for="[::1]";proto=http', id="ipv6-loopback"),
    ],
)
def test_forwarded_mode(client_ip: bytes, line: bytes) -> None:
    head = request(b"Host: x", b"X-Forwarded-Proto: https")
    raw = request_head_bytes(head, client_ip, ForwardingRules(forwarded="forwarded"))
    assert parse_request(raw).fields.lines == [b"Host: x", line]


def test_none_mode_adds_no_forwarding_fields() -> None:
    assert forward(request(b"Host: x"), PLAIN).fields.lines == [b"Host: x"]


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        pytest.param(True, [b"Host: x", b"Via: 1.0 old", b"Via: 1.1 migproxy"], id="on"),
        pytest.param(False, [b"Host: x", b"Via: 1.0 old"], id="off"),
    ],
)
def test_request_via_is_optional(via: bool, expected: list[bytes]) -> None:
    head = request(b"Host: x", b"Via: 1.0 old")
    assert forward(head, ForwardingRules(forwarded="none", via=via)).fields.lines == expected


def test_upgrade_request_keeps_its_upgrade() -> None:
    head = request(b"Host: x", b"Connection: Upgrade", b"Upgrade: websocket")
    out = forward(head)
    assert out.fields.lines == [b"Host: x", b"Connection: upgrade", b"Upgrade: websocket"]
    assert out.upgrade == b"websocket"


# Requests: round trip


ROUND_TRIP = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="get"),
    pytest.param(
        b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n",
        id="post-with-hop-by-hop",
    ),
    pytest.param(
        b"PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n"
        b"Trailer: X-Sum\r\nX-Forwarded-Proto: https\r\n\r\n",
        id="chunked",
    ),
    pytest.param(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: abc==\r\n\r\n",
        id="upgrade",
    ),
    pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\n", id="opt"),
    pytest.param(b"GET http://x/p HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", id="10"),
]


@pytest.mark.parametrize("raw", ROUND_TRIP)
@pytest.mark.parametrize("mode", ["x-forwarded", "forwarded", "none"])
def test_request_round_trip(raw: bytes, mode: str) -> None:
    head = parse_request(raw)
    out = forward(head, ForwardingRules(forwarded=mode, via=True))
    drop = hop_by_hop_names(head.fields.tokens(b"connection")) | {b"x-forwarded-proto"}
    kept = head.fields.without(drop)
    assert (out.method, out.target, out.version) == (head.method, head.target, 11)
    assert out.fields.lines[: len(kept)] == kept
    added = set(out.fields.names[len(kept) :])
    assert added <= {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"forwarded",
        b"via",
        b"transfer-encoding",
        b"connection",
        b"upgrade",
    }
    assert (out.body, out.length, out.upgrade) == (head.body, head.length, head.upgrade)


# Responses


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"Connection: keep-alive", id="connection"),
        pytest.param(b"Keep-Alive: timeout=5, max=100", id="keep-alive"),
        pytest.param(b"TE: trailers", id="te"),
        pytest.param(b"Trailer: X-Sum", id="trailer"),
        pytest.param(b"Upgrade: h2c", id="upgrade"),
        pytest.param(b"Proxy-Connection: keep-alive", id="proxy-connection"),
        pytest.param(b"Transfer-Encoding: chunked", id="transfer-encoding"),
    ],
)
def test_response_hop_by_hop_field_is_removed(line: bytes) -> None:
    head = response(b"Content-Type: text/plain", line, b"X-Kept: 1")
    raw = response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Kept: 1\r\n\r\n"


def test_response_fields_named_by_connection_are_removed() -> None:
    head = response(b"Connection: X-Backend, close", b"X-Backend: b1", b"Content-Length: 0")
    assert answer(head).fields.lines == [b"Content-Length: 0"]


def test_response_content_length_survives_a_connection_token_naming_it() -> None:
    # The body is forwarded as received: without its Content-Length line the client cannot
    # tell where this response ends on a connection that stays open.
    head = response(b"Content-Length: 5", b"Connection: content-length")
    out = answer(head)
    assert out.body is BodyKind.LENGTH
    assert out.length == 5


@pytest.mark.parametrize(
    ("upstream", "client_version"),
    [
        pytest.param((), 11, id="plain-11"),
        pytest.param((b"Connection: close",), 11, id="upstream-close"),
        pytest.param((b"Connection: keep-alive",), 11, id="upstream-keep-alive"),
        pytest.param((), 10, id="plain-10"),
        pytest.param((b"Connection: keep-alive",), 10, id="upstream-keep-alive-10"),
    ],
)
def test_close_announced_exactly_once(upstream: tuple[bytes, ...], client_version: int) -> None:
    head = response(*upstream, b"Content-Length: 0")
    out = answer(head, close=True, client_version=client_version)
    assert out.fields.get_all(b"connection") == [b"close"]
    assert out.keep_alive is False


@pytest.mark.parametrize(
    ("client_version", "connection"),
    [
        pytest.param(11, [], id="http11-nothing"),
        pytest.param(10, [b"keep-alive"], id="http10-keep-alive"),
    ],
)
def test_open_connection_announcement(client_version: int, connection: list[bytes]) -> None:
    head = response(b"Connection: close", b"Content-Length: 0")
    out = answer(head, close=False, client_version=client_version)
    assert out.fields.get_all(b"connection") == connection


def test_interim_response_for_http10_gets_no_keep_alive() -> None:
    head = response(start=b"HTTP/1.1 100 Continue")
    raw = response_head_bytes(head, close=False, chunked=False, client_version=10, via=False)
    assert raw == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("close", [True, False])
def test_101_gets_connection_upgrade_and_the_upgrade_value(close: bool) -> None:
    head = response(
        b"Connection: Upgrade",
        b"Upgrade: websocket",
        b"Sec-WebSocket-Accept: xyz=",
        start=b"HTTP/1.1 101 Switching Protocols",
    )
    raw = response_head_bytes(head, close=close, chunked=False, client_version=11, via=False)
    assert raw == (
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: xyz=\r\n"
        b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    )


def test_101_without_upgrade_field() -> None:
    head = response(start=b"HTTP/1.1 101 Switching Protocols")
    raw = response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
    assert raw == b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n"


@pytest.mark.parametrize(
    "upstream",
    [
        pytest.param((b"Transfer-Encoding: chunked",), id="upstream-chunked"),
        pytest.param((b"X: y",), id="upstream-until-close"),
    ],
)
def test_chunked_adds_transfer_encoding_once(upstream: tuple[bytes, ...]) -> None:
    out = answer(response(*upstream), chunked=True)
    assert out.fields.get_all(b"transfer-encoding") == [b"chunked"]
    assert out.body is BodyKind.CHUNKED


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        pytest.param(True, [b"Content-Length: 0", b"Via: 1.1 migproxy"], id="on"),
        pytest.param(False, [b"Content-Length: 0"], id="off"),
    ],
)
def test_response_via_is_optional(via: bool, expected: list[bytes]) -> None:
    assert answer(response(b"Content-Length: 0"), via=via).fields.lines == expected


def test_response_without_fields() -> None:
    head = response(start=b"HTTP/1.1 204 No Content")
    raw = response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
    assert raw == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_response_status_line_is_http11_and_keeps_reason() -> None:
    head = response(b"Content-Length: 0", start=b"HTTP/1.0 418 I'm a teapot")
    raw = response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
    assert raw.startswith(b"HTTP/1.1 418 I'm a teapot\r\n")


def test_response_head_bytes_leaves_the_head_untouched() -> None:
    # Writing a head must not change it: the same head written twice gives the same bytes,
    # and its Fields keep one name per line.
    head = response(b"Content-Length: 0")
    first = response_head_bytes(head, close=True, chunked=True, client_version=10, via=True)
    assert head.fields.lines == [b"Content-Length: 0"]
    assert head.fields.names == [b"content-length"]
    second = response_head_bytes(head, close=True, chunked=True, client_version=10, via=True)
    assert second == first


def test_response_round_trip() -> None:
    head = response(
        b"Content-Type: text/html",
        b"Connection: keep-alive, X-Hop",
        b"X-Hop: 1",
        b"Keep-Alive: timeout=5",
        b"Set-Cookie: a=b",
        b"Content-Length: 12",
    )
    out = answer(head, close=True, via=True)
    assert (out.status, out.reason, out.version) == (200, b"OK", 11)
    assert out.fields.lines == [
        b"Content-Type: text/html",
        b"Set-Cookie: a=b",
        b"Content-Length: 12",
        b"Connection: close",
        b"Via: 1.1 migproxy",
    ]
    assert HOP_BY_HOP.isdisjoint(out.fields.names[:3])
    assert (out.body, out.length) == (BodyKind.LENGTH, 12)


# Proxy-generated error responses


def read_response(raw: bytes) -> tuple[ResponseHead, bytes]:
    reader = ResponseReader(MAX_HEAD, MAX_FIELDS)
    reader.expect(b"GET")
    reader.receive_data(raw)
    head = reader.next_event()
    assert isinstance(head, ResponseHead)
    body = b""
    while True:
        ev = reader.next_event()
        if isinstance(ev, Data):
            body += ev.data
            continue
        assert isinstance(ev, EndOfMessage)
        assert reader.buffered() == 0
        return head, body


@pytest.mark.parametrize(
    ("status", "reason_phrase"),
    [
        pytest.param(400, b"Bad Request", id="400"),
        pytest.param(408, b"Request Timeout", id="408"),
        pytest.param(431, b"Request Header Fields Too Large", id="431"),
        pytest.param(500, b"Internal Server Error", id="500"),
        pytest.param(501, b"Not Implemented", id="501"),
        pytest.param(502, b"Bad Gateway", id="502"),
        pytest.param(503, b"Service Unavailable", id="503"),
        pytest.param(504, b"Gateway Timeout", id="504"),
        pytest.param(505, b"HTTP Version Not Supported", id="505"),
        pytest.param(599, b"Error", id="unknown"),
    ],
)
@pytest.mark.parametrize("close", [True, False])
def test_error_response(status: int, reason_phrase: bytes, close: bool) -> None:
    head, body = read_response(error_response_bytes(status, "it broke", close=close))
    assert (head.status, head.reason) == (status, reason_phrase)
    assert head.fields.get(b"content-type") == b"text/plain; charset=utf-8"
    assert head.fields.get(b"connection") == (b"close" if close else b"keep-alive")
    assert head.keep_alive is not close
    assert body == b"it broke\n"
    assert head.length == len(body)


def test_error_response_non_ascii_reason() -> None:
    head, body = read_response(error_response_bytes(400, "caf\u00e9", close=True))
    assert body == "caf\u00e9\n".encode()
    assert head.length == len(body)
