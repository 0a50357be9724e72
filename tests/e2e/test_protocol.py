# HTTP/1.1 forwarding seen by real clients: curl, aiohttp, http.client and raw sockets talk to
# migproxy in front of the demo backend or a scripted upstream. What is checked: status, body
# and framing survive the proxy (HEAD, 1xx, 204, 304, chunked, HTTP/1.0, pipelining), keep-alive
# continues where it should, hop-by-hop fields stay on their hop, and announced closes are
# handled transparently by real client libraries.
from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import aiohttp
import pytest

from tests.conftest import require_tool
from tests.e2e.rawclient import RawClient
from tests.e2e.servers import Script, ScriptedUpstream, run_proxy

T = TypeVar("T")
LOOPS = pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
HELLO = b"hello from demo-backend\n"
CLIENT_TIMEOUT = 30.0


# Helpers


def request_path(head: bytes) -> bytes:
    return head.split(b" ", 2)[1]


def echo_path(sock: socket.socket, head: bytes) -> None:
    """Scripted upstream: answer every request with its own target as the body."""
    body = b"path=" + request_path(head)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))


def get(path: bytes, *fields: bytes, version: bytes = b"1.1") -> bytes:
    lines = [b"GET %b HTTP/%b" % (path, version), *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def run_async(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def parse_fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip().lower(), value.strip()))
    return out


def values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in fields if key == name]


@dataclass
class CurlResponse:
    status: int
    fields: list[tuple[str, str]]
    body: bytes
    interim: list[tuple[int, list[tuple[str, str]]]]
    stderr: str

    def values(self, name: str) -> list[str]:
        return values(self.fields, name)


def run_curl(*args: str, stdin: bytes = b"") -> CurlResponse:
    """One curl transfer with the response heads in its output (`-i`), parsed; `stdin` is
    what curl reads for `@-` arguments."""
    curl = require_tool("curl")
    proc = subprocess.run(
        [curl, "-sS", "-i", "--max-time", str(CLIENT_TIMEOUT), *args],
        input=stdin,
        capture_output=True,
        timeout=CLIENT_TIMEOUT + 10,
        check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr
    out = proc.stdout
    interim: list[tuple[int, list[tuple[str, str]]]] = []
    for _ in range(10):  # a few 1xx heads at most, then the final head
        head, sep, out = out.partition(b"\r\n\r\n")
        assert sep, f"no complete response head in curl output: {head!r}"
        status_line, _, block = head.partition(b"\r\n")
        status = int(status_line.split()[1])
        if status >= 200:
            return CurlResponse(status, parse_fields(block), out, interim, stderr)
        interim.append((status, parse_fields(block)))
    raise AssertionError("too many interim responses")


def backend_view(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The demo backend's /headers answer: its request line and the fields it received."""
    request_line, _, block = body.partition(b"\n")
    return request_line.decode("latin-1"), parse_fields(block)


# curl


@LOOPS
@pytest.mark.parametrize("ratio", [1.0, 0.0], ids=["close", "keepalive"])
def test_curl_get(backend_port: int, uvloop: bool, ratio: float) -> None:
    with run_proxy(backend_port, uvloop=uvloop, close={"ratio": ratio}) as proxy:
        resp = run_curl(proxy.url + "/")
    assert resp.status == 200
    assert resp.body == HELLO
    assert resp.values("content-length") == [str(len(HELLO))]
    assert resp.values("connection") == (["close"] if ratio == 1.0 else [])


@pytest.mark.parametrize(("ratio", "connects"), [(1.0, [1, 1, 1]), (0.0, [1, 0, 0])])
def test_curl_reuses_connection_unless_told_to_close(
    backend_port: int, ratio: float, connects: list[int]
) -> None:
    curl = require_tool("curl")
    with run_proxy(backend_port, close={"ratio": ratio}) as proxy:
        proc = subprocess.run(
            [curl, "-sS", "--max-time", str(CLIENT_TIMEOUT), "-w", "%{http_code} %{num_connects}\n"]
            + [arg for _ in range(3) for arg in ("-o", "/dev/null", proxy.url + "/")],
            capture_output=True,
            timeout=CLIENT_TIMEOUT + 10,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.decode().splitlines()]
    assert [status for status, _ in lines] == ["200"] * 3
    assert [int(n) for _, n in lines] == connects


def test_curl_post_data_binary(backend_port: int, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000 + b"\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    data = tmp_path / "payload.bin"
    data.write_bytes(payload)
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        resp = run_curl(
            "-H", "Content-Type: application/octet-stream",
            "--data-binary", f"@{data}", proxy.url + "/echo",
        )  # fmt: skip
    assert resp.status == 200
    assert resp.body == payload
    assert resp.values("content-length") == [str(len(payload))]


def test_curl_expect_100_continue(backend_port: int, tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    data = tmp_path / "big.bin"
    data.write_bytes(b"e" * size)
    with run_proxy(backend_port, close={"ratio": 1.0}) as proxy:
        resp = run_curl("-v", "--data-binary", f"@{data}", proxy.url + "/count")
    assert "> Expect: 100-continue" in resp.stderr  # curl asks on its own for big bodies
    assert "< HTTP/1.1 100 Continue" in resp.stderr
    assert [status for status, _ in resp.interim] == [100]
    # A 1xx never carries the close; the final response does.
    assert values(resp.interim[0][1], "connection") == []
    assert resp.status == 200
    assert resp.body == b"%d\n" % size
    assert resp.values("connection") == ["close"]


# Client libraries


@dataclass
class ClientStats:
    ok: int = 0
    closes: int = 0
    connections: int = 0
    last_closed: bool = False
    failures: list[str] = field(default_factory=list)


async def aiohttp_requests(base: str, total: int, with_posts: bool) -> ClientStats:
    """`total` sequential requests over a one-connection aiohttp pool."""
    stats = ClientStats()

    async def on_connection(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        stats.connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        trace_configs=[trace],
    ) as session:
        for i in range(total):
            if with_posts and i % 2:
                payload = b"post %d;" % i * (i + 1)
                async with session.post(base + "/echo", data=payload) as resp:
                    body = await resp.read()
                    good = resp.status == 200 and body == payload
            else:
                target = f"/headers?i={i}"
                async with session.get(base + target) as resp:
                    body = await resp.read()
                    good = resp.status == 200 and target.encode() in body
            if good:
                stats.ok += 1
            else:
                stats.failures.append(f"request {i}: {resp.status} {body[:80]!r}")
            stats.last_closed = resp.headers.get("Connection", "").lower() == "close"
            stats.closes += stats.last_closed
    return stats


def test_aiohttp_keepalive_uses_one_connection() -> None:
    with (
        ScriptedUpstream(echo_path) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.0}) as proxy,
    ):
        stats = run_async(aiohttp_requests(proxy.url, 200, with_posts=False))
    assert stats.failures == []
    assert stats.ok == 200
    assert stats.closes == 0
    assert stats.connections == 1
    assert upstream.connections == 1
    assert len(upstream.heads) == 200


def test_aiohttp_handles_announced_closes(backend_port: int) -> None:
    with run_proxy(backend_port, close={"ratio": 0.5, "seed": 11}) as proxy:
        stats = run_async(aiohttp_requests(proxy.url, 200, with_posts=True))
    assert stats.failures == []
    assert stats.ok == 200
    assert stats.closes >= 50  # the closes really happened
    # A new connection exactly after each announced close, and never otherwise: no
    # connection was closed without an announcement.
    assert stats.connections == stats.closes + 1 - stats.last_closed


class CountingHTTPConnection(http.client.HTTPConnection):
    """http.client reconnects on its own after a `Connection: close`; count the connects."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        self.connects = 0

    def connect(self) -> None:
        super().connect()
        self.connects += 1


# POSTs go to /count, which answers after the whole body: /echo answers early, and an early
# answer currently costs the connection (see test_early_response_keeps_connection_alive).
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_http_client_library(backend_port: int, ratio: float) -> None:
    closes = 0
    last_closed = False
    with run_proxy(backend_port, close={"ratio": ratio, "seed": 5}) as proxy:
        conn = CountingHTTPConnection(proxy.port)
        try:
            for i in range(100):
                if i % 2:
                    payload = b"body %d " % i * 50
                    conn.request("POST", "/count", body=payload)
                    resp = conn.getresponse()
                    assert (resp.status, resp.read()) == (200, b"%d\n" % len(payload))
                else:
                    conn.request("GET", f"/headers?i={i}")
                    resp = conn.getresponse()
                    assert resp.status == 200
                    assert resp.read().startswith(b"GET /headers?i=%d HTTP/1.1\n" % i)
                last_closed = (resp.getheader("Connection") or "").lower() == "close"
                closes += last_closed
        finally:
            conn.close()
    if ratio == 0.0:
        assert closes == 0
        assert conn.connects == 1
    else:
        assert closes >= 20
        assert conn.connects == closes + 1 - last_closed


# Pipelining


@LOOPS
def test_pipelined_requests_answered_in_order(uvloop: bool) -> None:
    with (
        ScriptedUpstream(echo_path) as upstream,
        run_proxy(upstream.port, uvloop=uvloop, close={"ratio": 0.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(b"".join(get(b"/p%d" % i, b"Host: t") for i in (1, 2, 3)))
            responses = [client.read_response() for _ in range(3)]
            after = client.request(get(b"/p4", b"Host: t"))
        finally:
            client.close()
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.body for r in responses] == [b"path=/p1", b"path=/p2", b"path=/p3"]
    assert not any(r.announces_close for r in responses)
    assert after.body == b"path=/p4"
    assert [request_path(h) for h in upstream.heads] == [b"/p1", b"/p2", b"/p3", b"/p4"]
    assert upstream.connections == 1


def test_pipelined_requests_with_bodies(backend_port: int) -> None:
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            client.send(
                get(b"/headers?n=1", b"Host: t")
                + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
                + b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"3\r\nabc\r\n0\r\n\r\n"
                + get(b"/bytes/10", b"Host: t")
            )
            responses = [client.read_response() for _ in range(4)]
        finally:
            client.close()
    assert [r.status for r in responses] == [200] * 4
    assert responses[0].body.startswith(b"GET /headers?n=1 HTTP/1.1\n")
    assert responses[1].body == b"hello world"
    assert responses[2].body == b"3\n"
    assert responses[3].body == b"x" * 10


# Full duplex: a response that starts before the request body has arrived


def answer_before_body(sock: socket.socket, head: bytes) -> None:
    """Send the response head at once, then read the Content-Length body and echo it."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
    body = b""
    deadline = time.monotonic() + 10
    while len(body) < length and time.monotonic() < deadline:
        try:
            data = sock.recv(length - len(body))
        except TimeoutError:
            continue
        if not data:
            return
        body += data
    sock.sendall(body)


def test_early_response_keeps_connection_alive() -> None:
    # Streaming servers (the demo backend's /echo among them) may send their response head
    # before they read the request body. The request body is still framed by its
    # Content-Length, so at ratio 0.0 nothing calls for closing the client's connection.
    with (
        ScriptedUpstream(answer_before_body) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
            for _ in range(100):  # wait for the response head before sending the body
                if b"\r\n\r\n" in client.buf:
                    break
                data = client.sock.recv(65536)
                assert data, "connection closed before the response head"
                client.buf += data
            client.send(b"hello")
            resp = client.read_response()
            after = None if resp.announces_close else client.request(get(b"/after", b"Host: t"))
        finally:
            client.close()
    assert (resp.status, resp.body) == (200, b"hello")
    assert not resp.announces_close, resp.head
    assert after is not None and after.status == 200
    assert upstream.connections == 1


def refuse_at_once(sock: socket.socket, head: bytes) -> None:
    """A ScriptedUpstream script: a whole 401 before any of the request body is read."""
    sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!")


@pytest.mark.parametrize(
    ("bad_request", "status"),
    [
        pytest.param(b"GET /b HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400, id="two-hosts"),
        pytest.param(
            b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n", 413, id="too-large"
        ),
    ],
)
def test_a_bad_request_after_an_early_response_is_answered(bad_request: bytes, status: int) -> None:
    # The upstream answers a POST whole before its body arrives; the proxy reads and drops
    # that body and keeps the connection. The next request is malformed: it must get its own
    # error response, not a silent close (the early response's state once leaked into it).
    with (
        ScriptedUpstream(refuse_at_once) as upstream,
        run_proxy(upstream.port, limits={"max_body_bytes": 1000}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
            first = client.read_response()
            client.send(b"0123456789")
            client.send(bad_request)
            second = client.read_response()
        finally:
            client.close()
    assert (first.status, first.body) == (401, b"nope!")
    assert second.status == status and second.announces_close, second.head


# Bodyless responses and interim responses


def answer_bodyless(sock: socket.socket, head: bytes) -> None:
    path = request_path(head)
    if path == b"/head":
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n")
    elif path == b"/head-chunked":
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    elif path == b"/204":
        sock.sendall(b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n")
    elif path == b"/304":
        sock.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n')
    else:
        echo_path(sock, head)


@pytest.mark.parametrize(
    ("request_line", "status", "content_length"),
    [
        (b"HEAD /head", 200, b"1234"),
        (b"HEAD /head-chunked", 200, None),
        (b"GET /204", 204, None),
        (b"GET /304", 304, b"1234"),
    ],
    ids=["head", "head-chunked", "204", "304"],
)
def test_bodyless_responses_keep_framing(
    request_line: bytes, status: int, content_length: bytes | None
) -> None:
    is_head = request_line.startswith(b"HEAD ")
    with (
        ScriptedUpstream(answer_bodyless) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            resp = client.request(request_line + b" HTTP/1.1\r\nHost: t\r\n\r\n", is_head)
            after = client.request(get(b"/after", b"Host: t"))
            leftover = client.buf
        finally:
            client.close()
    assert resp.status == status
    assert resp.header(b"content-length") == content_length
    if not is_head:  # a 204 or 304 never gets a framing of its own
        assert resp.header(b"transfer-encoding") is None
    assert not resp.announces_close
    # Nothing followed the bodyless head: the next response parses cleanly, on the same
    # client and upstream connections.
    assert (after.status, after.body) == (200, b"path=/after")
    assert leftover == b""
    assert upstream.connections == 1


def early_hints(sock: socket.socket, head: bytes) -> None:
    sock.sendall(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )


def test_interim_response_forwarded_without_close() -> None:
    with (
        ScriptedUpstream(early_hints) as upstream,
        run_proxy(upstream.port, close={"ratio": 1.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(get(b"/", b"Host: t"))
            hints = client.read_response()
            final = client.read_response()
            eof = client.at_eof()
        finally:
            client.close()
    assert hints.status == 103
    assert hints.header(b"link") == b"</style.css>; rel=preload"
    assert not hints.announces_close
    assert (final.status, final.body) == (200, b"ok")
    assert final.announces_close
    assert eof


# HTTP/1.0 clients


def test_http10_without_keepalive_gets_response_then_eof(backend_port: int) -> None:
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            resp = client.request(get(b"/", version=b"1.0"))
            eof = client.at_eof()
        finally:
            client.close()
    assert (resp.status, resp.body) == (200, HELLO)
    assert resp.header(b"connection") in (None, b"close")
    assert eof


def test_http10_keepalive_stays_open(backend_port: int) -> None:
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            first = client.request(get(b"/", b"Connection: keep-alive", version=b"1.0"))
            second = client.request(get(b"/headers", b"Connection: keep-alive", version=b"1.0"))
        finally:
            client.close()
    assert (first.status, first.body) == (200, HELLO)
    assert first.header(b"connection") == b"keep-alive"
    assert second.status == 200
    assert second.header(b"connection") == b"keep-alive"
    request_line, fields = backend_view(second.body)
    assert request_line == "GET /headers HTTP/1.1"  # forwarded upstream as HTTP/1.1
    # An HTTP/1.0 request without Host gets the upstream's address as its Host.
    assert values(fields, "host") == [f"127.0.0.1:{backend_port}"]
    assert values(fields, "connection") == []


@pytest.mark.parametrize("keep_alive", [False, True], ids=["plain", "keepalive"])
def test_http10_chunked_response_delimited_by_close(backend_port: int, keep_alive: bool) -> None:
    fields = [b"Host: t"] + ([b"Connection: keep-alive"] if keep_alive else [])
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            resp = client.request(get(b"/chunked/1000", *fields, version=b"1.0"))
        finally:
            client.close()
    assert resp.status == 200
    assert resp.header(b"transfer-encoding") is None
    assert resp.header(b"content-length") is None
    assert resp.announces_close  # only closing can end this body
    assert resp.body == b"x" * 1000  # RawClient read it up to EOF


# Hop-by-hop and forwarding fields

HOP_BY_HOP_SENT = [
    b"Keep-Alive: timeout=5",
    b"TE: trailers",
    b"Trailer: X-Checksum",
    b"Upgrade: websocket",
    b"Proxy-Connection: keep-alive",
    b"X-Custom: per-hop",
]


@pytest.mark.parametrize("nominated", [True, False], ids=["connection-x-custom", "no-connection"])
def test_request_hop_by_hop_fields_dropped(backend_port: int, nominated: bool) -> None:
    fields = [b"Host: example.test:8443", *HOP_BY_HOP_SENT]
    fields += [b"X-Forwarded-For: 203.0.113.9", b"X-Forwarded-Proto: https", b"X-End: kept"]
    if nominated:
        fields.append(b"Connection: x-custom")
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            resp = client.request(get(b"/headers", *fields))
        finally:
            client.close()
    assert resp.status == 200
    request_line, seen = backend_view(resp.body)
    assert request_line == "GET /headers HTTP/1.1"
    names = {name for name, _ in seen}
    dropped = {"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"}
    assert names & dropped == set()
    # X-Custom is hop-by-hop only when Connection nominates it.
    assert values(seen, "x-custom") == ([] if nominated else ["per-hop"])
    assert values(seen, "host") == ["example.test:8443"]
    assert values(seen, "x-end") == ["kept"]
    assert values(seen, "x-forwarded-for") == ["203.0.113.9", "127.0.0.1"]
    assert values(seen, "x-forwarded-proto") == ["http"]  # the client's claim is not kept


def answer_with_hop_fields(sock: socket.socket, head: bytes) -> None:
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nConnection: foo\r\n"
        b"Foo: bar\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-End: kept\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )


def test_response_hop_by_hop_fields_dropped() -> None:
    with (
        ScriptedUpstream(answer_with_hop_fields) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            first = client.request(get(b"/1", b"Host: t"))
            second = client.request(get(b"/2", b"Host: t"))
        finally:
            client.close()
    for resp in (first, second):
        assert (resp.status, resp.body) == (200, b"ok")
        for name in (b"keep-alive", b"connection", b"foo", b"proxy-connection", b"upgrade"):
            assert resp.header(name) is None, (name, resp.head)
        assert resp.header(b"x-end") == b"kept"
    assert upstream.connections == 1


def answer_then_close_later(version: bytes) -> Script:
    """An upstream that announces the end of its connection, then closes it a moment later."""
    close_field = b"Connection: close\r\n" if version == b"1.1" else b""

    def script(sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/%b 200 OK\r\n%bContent-Length: 2\r\n\r\nok" % (version, close_field))
        time.sleep(0.3)  # many servers close a little after the response, not with it
        sock.shutdown(socket.SHUT_RDWR)

    return script


@pytest.mark.parametrize("version", [b"1.1", b"1.0"], ids=["close-11", "http10"])
def test_upstream_connection_not_reused_after_its_close(version: bytes) -> None:
    # RFC 9112 §9.6: after a response with "close" (or an HTTP/1.0 response without
    # keep-alive) no further request may be sent on that upstream connection.
    with (
        ScriptedUpstream(answer_then_close_later(version)) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            responses = [client.request(get(b"/%d" % i, b"Host: t")) for i in range(4)]
        finally:
            client.close()
    assert [(r.status, r.body) for r in responses] == [(200, b"ok")] * 4
    assert not any(r.announces_close for r in responses)  # the client's hop stays open
    assert upstream.connections == 4
    assert len(upstream.heads) == 4


@pytest.mark.parametrize("mode", ["via", "forwarded"])
def test_via_and_forwarded(backend_port: int, mode: str) -> None:
    proxy_section: dict[str, object] = (
        {"via": True} if mode == "via" else {"forwarded": "forwarded"}
    )
    with run_proxy(backend_port, close={"ratio": 0.0}, proxy=proxy_section) as proxy:
        client = RawClient(proxy.port)
        try:
            resp = client.request(get(b"/headers", b"Host: t"))
        finally:
            client.close()
    assert resp.status == 200
    _, seen = backend_view(resp.body)
    if mode == "via":
        assert values(seen, "via") == ["1.1 migproxy"]
        assert resp.header(b"via") == b"1.1 migproxy"
        assert values(seen, "x-forwarded-for") == ["127.0.0.1"]
    else:
        assert values(seen, "forwarded") == ["for=127.0.0.1;proto=http"]
        assert values(seen, "x-forwarded-for") == []
        assert values(seen, "x-forwarded-proto") == []
        assert values(seen, "via") == []


# Chunked request bodies

CHUNK_PAYLOADS = [b"hello", b" world", bytes(range(256)) * 300, b"\r\n0\r\n\r\n", b"!"]


def chunked_request(path: bytes) -> list[bytes]:
    """A chunked request in pieces: head, each chunk (one with an extension), trailers."""
    pieces = [b"POST %b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % path]
    for i, data in enumerate(CHUNK_PAYLOADS):
        ext = b";piece=%d" % i if i == 1 else b""
        pieces.append(b"%x%b\r\n%b\r\n" % (len(data), ext, data))
    pieces.append(b"0\r\nX-Checksum: 42\r\nX-Other: y\r\n\r\n")
    return pieces


@pytest.mark.parametrize("path", [b"/echo", b"/count"])
def test_chunked_request_body_with_trailers(backend_port: int, path: bytes) -> None:
    payload = b"".join(CHUNK_PAYLOADS)
    with run_proxy(backend_port, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            for piece in chunked_request(path):
                client.send(piece)
            resp = client.read_response()
            after = None
            if not resp.announces_close:
                after = client.request(get(b"/", b"Host: t"))
        finally:
            client.close()
    assert resp.status == 200
    if path == b"/echo":
        assert resp.body == payload
    else:
        assert resp.body == b"%d\n" % len(payload)
        # /count answers after the whole body: the connection stays usable.
        assert after is not None and (after.status, after.body) == (200, HELLO)


# WebSocket


@dataclass
class WebSocketRun:
    handshake: list[tuple[int, str]] = field(default_factory=list)
    echoes: int = 0
    closed_cleanly: bool = False
    close_code: int | None = None


async def websocket_echoes(base: str, rounds: int) -> WebSocketRun:
    run = WebSocketRun()

    async def on_request_end(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        run.handshake.append(
            (params.response.status, params.response.headers.get("Connection", ""))
        )

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT), trace_configs=[trace]
    ) as session:
        async with session.ws_connect(base + "/ws") as ws:
            for i in range(rounds):
                text = f"message {i} " * (i + 1)
                await ws.send_str(text)
                msg = await ws.receive(timeout=CLIENT_TIMEOUT)
                assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, text)
                data = bytes([i % 256]) * (1 << (2 * i))  # 1 B ... 256 KiB
                await ws.send_bytes(data)
                msg = await ws.receive(timeout=CLIENT_TIMEOUT)
                assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, data)
                run.echoes += 2
            run.closed_cleanly = await ws.close()
            run.close_code = ws.close_code
    return run


@LOOPS
def test_websocket_through_proxy_at_ratio_one(backend_port: int, uvloop: bool) -> None:
    with run_proxy(backend_port, uvloop=uvloop, close={"ratio": 1.0}) as proxy:
        run = run_async(websocket_echoes(proxy.url, 10))
    assert len(run.handshake) == 1
    status, connection = run.handshake[0]
    assert status == 101
    assert connection.lower() == "upgrade"  # never "close" on a 101
    assert run.echoes == 20
    assert run.closed_cleanly
    assert run.close_code == 1000
