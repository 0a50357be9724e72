# A raw-socket HTTP/1.1 keep-alive client for the tests: it sees exactly what the proxy sends,
# including whether a close was announced and whether the server's FIN followed it.
from __future__ import annotations

import socket
from dataclasses import dataclass

TIMEOUT = 10.0


@dataclass
class RawResponse:
    status: int
    head: bytes
    body: bytes

    @property
    def announces_close(self) -> bool:
        return b"\r\nconnection: close\r\n" in self.head.lower() + b"\r\n"

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class RawClient:
    """One TCP connection; send bytes, read whole responses (Content-Length or chunked)."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_response(self, head_request: bool = False) -> RawResponse:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response head: {self.buf!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[: end - 4], self.buf[end:]
        status = int(head.split(b" ", 2)[1])
        resp = RawResponse(status, head, b"")
        if head_request or status < 200 or status in (204, 304):
            return resp
        length = resp.header(b"content-length")
        if length is not None:
            resp.body = self._read_exact(int(length))
        elif (resp.header(b"transfer-encoding") or b"").lower() == b"chunked":
            resp.body = self._read_chunked()
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed inside a body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed inside a chunked body")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return body
            body += self._read_exact(size)
            if self._read_line() != b"":
                raise ConnectionError("chunk not followed by CRLF")

    def at_eof(self) -> bool:
        """True when the server has closed its side and nothing more is buffered."""
        if self.buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return False

    def request(self, data: bytes, head_request: bool = False) -> RawResponse:
        self.send(data)
        return self.read_response(head_request)
