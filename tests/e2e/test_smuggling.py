# Malformed and ambiguous requests, end to end: each one is answered with a clear error
# (400/431/501/505, a text reason, Connection: close) followed by the server's FIN, nothing of
# it reaches the upstream, and the proxy goes on serving. A proxy that guesses at framing is
# how request smuggling happens, so "never forward what cannot be framed exactly" is checked
# on the upstream's side: the ScriptedUpstream records every head it receives.
from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.servers import (
    Proxy,
    ScriptedUpstream,
    read_until_closed,
    run_proxy,
    wait_until,
)

MAX_HEADER_BYTES = 4096  # limits.max_header_bytes of the proxy under test
MAX_HEADERS = 20  # limits.max_headers of the proxy under test
CLIENT_TIMEOUT = 5.0
OK_BODY = b"ok\n"
# close.linger: short, so that stopping a proxy does not wait long on lingering connections.
CLOSE: dict[str, object] = {"linger": 0.5}

# A request hidden in a body: it reaches the upstream as a request of its own only if the
# proxy trusts the wrong framing of the request that carries it.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
CHUNKED_END_THEN_SMUGGLED = b"0\r\n\r\n" + SMUGGLED


def post(fields: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    """A POST with the given raw field lines (each ending in CRLF) and body bytes."""
    return b"POST / HTTP/" + version + b"\r\nHost: t\r\n" + fields + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"
# Cases in both tables below.
CL_THEN_TE_SMUGGLE = post(
    b"Content-Length: %d\r\n" % len(CHUNKED_END_THEN_SMUGGLED) + CHUNKED, CHUNKED_END_THEN_SMUGGLED
)
OVERSIZE_HEAD = (
    b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n"
)

# (request bytes, expected status), one fresh connection each.
MALFORMED = [
    # Content-Length and Transfer-Encoding together, in both orders (CL.TE and TE.CL).
    pytest.param(CL_THEN_TE_SMUGGLE, 400, id="cl-then-te-smuggle"),
    pytest.param(
        post(
            CHUNKED + b"Content-Length: 4\r\n", b"%x\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
        ),
        400,
        id="te-then-cl-smuggle",
    ),
    pytest.param(
        post(
            b"Content-Length: 4\r\nTransfer-Encoding: identity\r\n chunked\r\n",
            CHUNKED_END_THEN_SMUGGLED,
        ),
        400,
        id="te-obs-fold-with-cl",
    ),
    pytest.param(
        post(b"Transfer-Encoding: xchunked\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        400,
        id="te-xchunked-with-cl",
    ),
    # Content-Length values that are ambiguous or not a number.
    pytest.param(
        post(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        400,
        id="cl-duplicate-different",
    ),
    pytest.param(
        post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400, id="cl-duplicate-same"
    ),
    pytest.param(post(b"Content-Length: 5, 5\r\n", b"hello"), 400, id="cl-comma-list"),
    pytest.param(post(b"Content-Length: -1\r\n", b"hello"), 400, id="cl-negative"),
    pytest.param(post(b"Content-Length: 0x5\r\n", b"hello"), 400, id="cl-hex"),
    pytest.param(post(b"Content-Length: +5\r\n", b"hello"), 400, id="cl-plus-sign"),
    pytest.param(post(b"Content-Length: 5 0\r\n", b"hello"), 400, id="cl-inner-space"),
    pytest.param(
        post(b"Content-Length: 1234567890123456789\r\n", b"hello"), 400, id="cl-too-many-digits"
    ),
    pytest.param(post(b"Content-Length : 5\r\n", b"hello"), 400, id="cl-space-before-colon"),
    # Transfer-Encoding variants that a lenient parser would read as chunked (or not).
    pytest.param(
        post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
        400,
        id="te-chunked-identity",
    ),
    pytest.param(
        post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"),
        501,
        id="te-identity-chunked",
    ),
    pytest.param(
        post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        501,
        id="te-twice",
    ),
    pytest.param(
        post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400, id="te-value-on-folded-line"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: t\r\n\r\n0\r\n\r\n",
        400,
        id="te-leading-space-first-line",
    ),
    pytest.param(
        post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400, id="te-space-before-colon"
    ),
    pytest.param(post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 400, id="te-xchunked"),
    pytest.param(
        post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n"), 400, id="te-vertical-tab"
    ),
    pytest.param(post(CHUNKED, b"0\r\n\r\n", version=b"1.0"), 400, id="te-in-http10"),
    # Line endings and bytes that must never appear in a head.
    pytest.param(b"GET / HTTP/1.1\nHost: t\n\n", 400, id="bare-lf-everywhere"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400, id="bare-lf-in-field"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400, id="bare-lf-blank-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n", 400, id="bare-cr-in-field"),
    pytest.param(b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400, id="bare-cr-in-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", 400, id="ctl-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX(A): b\r\n\r\n", 400, id="paren-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n", 400, id="space-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n", 400, id="empty-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-\xe9: b\r\n\r\n", 400, id="non-ascii-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-No-Colon\r\n\r\n", 400, id="line-no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n", 400, id="obs-fold-tab"),
    # Host (RFC 9112 §3.2).
    pytest.param(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400, id="missing-host"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n", 400, id="two-hosts-mixed-case"),
    # Request lines.
    pytest.param(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, id="h2-preface"),
    pytest.param(b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n", 400, id="trailing-space-after-version"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="double-space"),
    pytest.param(b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="tab-separator"),
    pytest.param(b" GET / HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="leading-space"),
    pytest.param(b"GET / http/1.1\r\nHost: t\r\n\r\n", 400, id="lowercase-version"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http-0.9"),
    pytest.param(b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="bad-method-char"),
    pytest.param(b"GET http://a b/ HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="absolute-with-space"),
    pytest.param(b"GET ftp://t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="absolute-ftp-scheme"),
    pytest.param(b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="authority-form-get"),
    pytest.param(b"GET x HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="relative-target"),
    pytest.param(b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501, id="connect"),
    # Chunked bodies that cannot be decoded exactly.
    pytest.param(post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-size-invalid"),
    pytest.param(
        post(CHUNKED, b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-size-overflow"
    ),
    pytest.param(post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-size-negative"),
    pytest.param(post(CHUNKED, b"5\r\nhelloXX0\r\n\r\n"), 400, id="chunk-without-crlf"),
    pytest.param(post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"), 400, id="chunk-size-bare-lf"),
    pytest.param(post(CHUNKED, b"0\r\nX-T: a\r\n b\r\n\r\n"), 400, id="trailer-obs-fold"),
    # Limits.
    pytest.param(OVERSIZE_HEAD, 431, id="oversize-head"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES),
        431,
        id="oversize-head-unterminated",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 5))
        + b"\r\n",
        431,
        id="too-many-headers",
    ),
]

# Malformed requests sent right behind a valid one, in the same write.
FIRST = b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
BEHIND_VALID = [
    pytest.param(CL_THEN_TE_SMUGGLE, 400, id="cl-then-te-smuggle"),
    pytest.param(b"GET / HTTP/1.1\nHost: t\n\n", 400, id="bare-lf"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501, id="connect"),
    pytest.param(OVERSIZE_HEAD, 431, id="oversize-head"),
    pytest.param(post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), 400, id="chunk-size-invalid"),
]

_SEQ = itertools.count()


@dataclass
class Env:
    proxy: Proxy
    upstream: ScriptedUpstream
    # What the upstream read after the head of a "POST /split..." request, by request line.
    after_head: dict[bytes, bytes] = field(default_factory=dict)


# The C head parser runs on both loops; the pure-Python one (its specification, and what runs
# where no C compiler was at hand) must refuse the same requests.
@pytest.fixture(
    scope="module",
    params=[(True, {}), (False, {}), (True, {"MIGPROXY_PURE_PYTHON": "1"})],
    ids=["uvloop", "asyncio", "pure-python-parser"],
)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    use_uvloop, proxy_env = request.param
    after_head: dict[bytes, bytes] = {}

    def script(sock: socket.socket, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"POST /split"):
            after_head[line] = read_until_closed(sock)
            return
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(OK_BODY), OK_BODY))

    limits: dict[str, object] = {"max_header_bytes": MAX_HEADER_BYTES, "max_headers": MAX_HEADERS}
    with (
        ScriptedUpstream(script) as upstream,
        run_proxy(
            upstream.port, uvloop=use_uvloop, env=proxy_env, limits=limits, close=CLOSE
        ) as proxy,
    ):
        yield Env(proxy, upstream, after_head)


def request_lines(heads: list[bytes]) -> list[bytes]:
    return [head.split(b"\r\n", 1)[0] for head in heads]


def connect(port: int) -> contextlib.closing[RawClient]:
    """A new client connection to `port`, closed when the with block ends."""
    return contextlib.closing(RawClient(port, CLIENT_TIMEOUT))


def get_ok(port: int, path: bytes) -> None:
    """A valid request on a new connection is answered normally."""
    with connect(port) as client:
        resp = client.request(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\n" % path)
    assert resp.status == 200, resp
    assert resp.body == OK_BODY


def assert_rejected(client: RawClient, status: int) -> None:
    """The next response is a proxy error with a text reason, Connection: close, then FIN."""
    resp = client.read_response()
    assert resp.status == status, resp
    assert resp.announces_close, resp.head
    assert (resp.header(b"content-type") or b"").startswith(b"text/plain"), resp.head
    reason = resp.body.decode("utf-8")
    assert reason.strip() and reason.endswith("\n"), resp.body
    assert client.at_eof(), "the server did not close the connection after its error response"


@contextlib.contextmanager
def on_warm_pool(env: Env, *forwarded: bytes, why: str) -> Iterator[RawClient]:
    """A new client connection while an upstream connection waits idle in the pool, as it
    would in production, so that nothing but the proxy's checks stops forwarding. After the
    with block, a valid request on another connection: the upstream must have received the
    request lines `forwarded`, then that request's, and nothing else (else fail with `why`)."""
    n = next(_SEQ)
    get_ok(env.proxy.port, b"/warm-%d" % n)
    mark = len(env.upstream.heads)
    with connect(env.proxy.port) as client:
        yield client
    after = b"/after-%d" % n
    get_ok(env.proxy.port, after)
    assert request_lines(env.upstream.heads[mark:]) == [
        *forwarded,
        b"GET " + after + b" HTTP/1.1",
    ], why


@pytest.mark.parametrize(("data", "status"), MALFORMED)
def test_malformed_request_is_rejected_and_never_forwarded(
    env: Env, data: bytes, status: int
) -> None:
    why = "the upstream received (part of) a request that cannot be framed exactly"
    with on_warm_pool(env, why=why) as client:
        client.send(data)
        assert_rejected(client, status)
    assert env.proxy.proc.poll() is None


@pytest.mark.parametrize(("data", "status"), BEHIND_VALID)
def test_malformed_request_behind_valid_one_in_same_write(
    env: Env, data: bytes, status: int
) -> None:
    why = "the upstream must see exactly the valid request, nothing of the malformed one"
    with on_warm_pool(env, b"GET /first HTTP/1.1", why=why) as client:
        client.send(FIRST + data)
        first = client.read_response()
        assert first.status == 200 and first.body == OK_BODY, first
        assert_rejected(client, status)


def test_bad_chunk_arriving_later_aborts_upstream_without_a_body_end(env: Env) -> None:
    # Streaming: a valid chunked head is forwarded before its body arrives. When the body then
    # turns out to be malformed, the upstream must never get a body end (last chunk) that
    # would complete the request: its connection is dropped instead.
    n = next(_SEQ)
    get_ok(env.proxy.port, b"/warm-%d" % n)
    line = b"POST /split-%d HTTP/1.1" % n
    with connect(env.proxy.port) as client:
        client.send(line + b"\r\nHost: t\r\n" + CHUNKED + b"\r\n")
        wait_until(lambda: line in request_lines(env.upstream.heads), "the forwarded head")
        client.send(b"zz\r\nhello\r\n0\r\n\r\n")
        assert_rejected(client, 400)
    wait_until(lambda: line in env.after_head, "the upstream to see its connection end")
    assert env.after_head[line] == b"", "body bytes of a malformed chunked request were forwarded"
    get_ok(env.proxy.port, b"/after-%d" % n)


def test_exact_limits_are_accepted(env: Env) -> None:
    # The boundary itself is legal: MAX_HEADERS fields in a head is served.
    n = next(_SEQ)
    mark = len(env.upstream.heads)
    fields = b"Host: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    with connect(env.proxy.port) as client:
        resp = client.request(b"GET /limit-%d HTTP/1.1\r\n%b\r\n" % (n, fields))
    assert resp.status == 200 and resp.body == OK_BODY, resp
    assert request_lines(env.upstream.heads[mark:]) == [b"GET /limit-%d HTTP/1.1" % n]


def test_head_cut_by_client_eof_is_answered_400(env: Env) -> None:
    n = next(_SEQ)
    mark = len(env.upstream.heads)
    with connect(env.proxy.port) as client:
        client.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        assert_rejected(client, 400)
    get_ok(env.proxy.port, b"/after-%d" % n)
    assert request_lines(env.upstream.heads[mark:]) == [b"GET /after-%d HTTP/1.1" % n]


# Fields named in Connection are hop-by-hop and dropped (RFC 9110 §7.6.1), but a proxy that
# drops the framing or routing fields it forwards the body by desynchronises the next hop.
HOP_BY_HOP_ABUSE = [
    pytest.param(
        b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: content-length\r\n"
        b"\r\nhello",
        b"content-length: 5",
        id="connection-lists-content-length",
    ),
    pytest.param(
        b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: host\r\n\r\n",
        b"host: t",
        id="connection-lists-host",
    ),
    pytest.param(
        b"POST /c HTTP/1.1\r\nHost: t\r\n" + CHUNKED + b"Connection: transfer-encoding\r\n"
        b"\r\n5\r\nhello\r\n0\r\n\r\n",
        b"transfer-encoding: chunked",
        id="connection-lists-transfer-encoding",
    ),
]


def answer_ok_and_close(sock: socket.socket, head: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize(("data", "kept_line"), HOP_BY_HOP_ABUSE)
def test_connection_header_cannot_strip_framing_or_host(data: bytes, kept_line: bytes) -> None:
    # Either the request is refused, or it reaches the upstream with its framing and Host.
    with (
        ScriptedUpstream(answer_ok_and_close) as upstream,
        run_proxy(upstream.port, close=CLOSE) as proxy,
    ):
        with connect(proxy.port) as client:
            client.send(data)
            resp = client.read_response()
        if resp.status == 400:
            assert upstream.heads == []
            return
        assert resp.status == 200, resp
        assert len(upstream.heads) >= 1
        forwarded = upstream.heads[0].lower().split(b"\r\n")
        assert kept_line in forwarded, upstream.heads[0]


def test_connection_content_length_does_not_smuggle_to_backend(backend_port: int) -> None:
    # The demo backend (aiohttp) reads bodies by their framing: if Content-Length is dropped,
    # it sees an empty POST followed by the body parsed as a request of its own.
    body = b"GET /headers HTTP/1.1\r\nHost: smuggled\r\n\r\n"
    with run_proxy(backend_port, close=CLOSE) as proxy:
        with connect(proxy.port) as client:
            resp = client.request(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                b"Connection: content-length\r\n\r\n%b" % (len(body), body)
            )
    if resp.status != 400:
        assert resp.status == 200, resp
        assert resp.body == body, "the echoed body was lost: the backend saw another framing"
