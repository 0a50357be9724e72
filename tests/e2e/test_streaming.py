# Large bodies stream through the proxy with bounded memory: a 1 GiB download and upload
# (Content-Length) and a 256 MiB chunked download, counted on the client side without
# accumulating, while the proxy process's peak RSS (VmHWM) stays under a fixed bound.
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.servers import Proxy, run_proxy

GIB = 1 << 30
MIB = 1 << 20
RSS_LIMIT = 200 * MIB
PIECE = MIB
SOCKET_TIMEOUT = 30.0
# After the response head, the client reads nothing for a moment: a proxy that does not stop
# reading its upstream when the client is slow would buffer the body in memory meanwhile.
STALL = 1.0

pytestmark = pytest.mark.timeout(600)
LOOPS = pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])


def peak_rss(proxy: Proxy) -> int:
    """The proxy process's peak resident set size (VmHWM), in bytes."""
    assert proxy.proc.poll() is None, "the proxy exited"
    for line in Path(f"/proc/{proxy.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            kib = int(line.split()[1])
            return kib * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    return sock


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head and the body bytes that came with it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        assert len(buf) < 65536, "response head too long"
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed before a response head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class BodyCounter:
    """Counts body bytes read into one reused buffer, checking they are all b"x"."""

    def __init__(self) -> None:
        self.buf = bytearray(PIECE)
        self.view = memoryview(self.buf)
        self.total = 0
        self.foreign = 0  # bytes other than the demo backend's b"x"

    def count(self, start: int, end: int) -> None:
        self.total += end - start
        self.foreign += (end - start) - self.buf.count(b"x", start, end)


def count_length_body(sock: socket.socket, rest: bytes, length: int) -> BodyCounter:
    counter = BodyCounter()
    counter.buf[: len(rest)] = rest
    counter.count(0, len(rest))
    while counter.total < length:
        n = sock.recv_into(counter.view, min(PIECE, length - counter.total))
        if n == 0:
            break
        counter.count(0, n)
    return counter


class ChunkedCounter(BodyCounter):
    """A streaming decoder of a chunked body that counts its payload and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False
        self.after_end = 0  # bytes received after the last chunk
        self._state = "size"  # size | data | crlf | trailer
        self._remaining = 0
        self._line = bytearray()

    def feed(self, n: int) -> None:
        i = 0
        while i < n:
            if self.done:
                self.after_end += n - i
                return
            if self._state == "data":
                take = min(self._remaining, n - i)
                self.count(i, i + take)
                self._remaining -= take
                i += take
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            end = self.buf.find(b"\n", i, n)
            stop = n if end < 0 else end + 1
            self._line += self.buf[i:stop]
            i = stop
            assert len(self._line) < 1024, "chunk-size or trailer line too long"
            if end >= 0:
                self._line_done(bytes(self._line))
                self._line.clear()

    def _line_done(self, line: bytes) -> None:
        assert line.endswith(b"\r\n"), line
        line = line[:-2]
        if self._state == "size":
            size = int(line.split(b";")[0], 16)
            self._remaining = size
            self._state = "data" if size else "trailer"
        elif self._state == "crlf":
            assert line == b"", line
            self._state = "size"
        elif line == b"":  # the empty line that ends the trailer section
            self.done = True


def count_chunked_body(sock: socket.socket, rest: bytes, limit: int) -> ChunkedCounter:
    counter = ChunkedCounter()
    counter.buf[: len(rest)] = rest
    counter.feed(len(rest))
    received = len(rest)
    while not counter.done and received < limit:
        n = sock.recv_into(counter.view)
        if n == 0:
            break
        received += n
        counter.feed(n)
    return counter


@LOOPS
def test_download_1gib(backend_port: int, uvloop: bool) -> None:
    with run_proxy(backend_port, uvloop=uvloop, close={"ratio": 0.0}) as proxy:
        with connect(proxy.port) as sock:
            sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % GIB)
            head, rest = read_head(sock)
            time.sleep(STALL)
            counter = count_length_body(sock, rest, GIB)
        rss = peak_rss(proxy)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert header(head, b"content-length") == b"%d" % GIB
    assert counter.total == GIB
    assert counter.foreign == 0
    assert rss < RSS_LIMIT, f"proxy peak RSS {rss / MIB:.0f} MiB"


@LOOPS
def test_upload_1gib(backend_port: int, uvloop: bool) -> None:
    piece = b"u" * PIECE
    with run_proxy(backend_port, uvloop=uvloop, close={"ratio": 0.0}) as proxy:
        client = RawClient(proxy.port, timeout=SOCKET_TIMEOUT)
        try:
            client.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % GIB)
            for _ in range(GIB // PIECE):
                client.send(piece)
            resp = client.read_response()
            after = client.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        finally:
            client.close()
        rss = peak_rss(proxy)
    assert resp.status == 200
    assert resp.body == b"%d\n" % GIB
    assert after.status == 200  # the connection is still usable after the big body
    assert rss < RSS_LIMIT, f"proxy peak RSS {rss / MIB:.0f} MiB"


@LOOPS
def test_chunked_download_256mib(backend_port: int, uvloop: bool) -> None:
    size = 256 * MIB
    with run_proxy(backend_port, uvloop=uvloop, close={"ratio": 0.0}) as proxy:
        with connect(proxy.port) as sock:
            sock.sendall(b"GET /chunked/%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
            head, rest = read_head(sock)
            time.sleep(STALL)
            # The chunk framing adds a little: bound the read at twice the payload.
            counter = count_chunked_body(sock, rest, 2 * size)
        rss = peak_rss(proxy)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert header(head, b"transfer-encoding") == b"chunked"
    assert counter.done, "the last chunk never came"
    assert counter.total == size
    assert counter.foreign == 0
    assert counter.after_end == 0
    assert rss < RSS_LIMIT, f"proxy peak RSS {rss / MIB:.0f} MiB"
