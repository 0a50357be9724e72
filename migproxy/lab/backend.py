# The lab's backends: one tiny HTTP/1.1 server per VIP, in the lab's own process, that answers
# every request with its VIP's name ("old" or "new"), so that a client can tell which backend
# served it.
#
# Why in-process, not `migproxy demo-backend` processes: the backend is not what the lab
# measures (the proxies are real processes), and with every policy run at once the lab needs
# eight of them; eight aiohttp processes cost several CPU-seconds to start and their own
# memory on a 2-CPU machine, where this one costs a listening socket each.
#
# Rules: keep-alive as the proxy's pool expects (RFC 9112 §9.3); a request body announced by
# Content-Length is read and discarded; a head that does not parse, or a chunked request
# body (the proxy only forwards the lab's GETs), closes the connection after a 400.
from __future__ import annotations

import asyncio
from typing import cast

MAX_HEAD = 65536


def response_bytes(name: str, close: bool = False) -> bytes:
    body = f"{name}\n".encode()
    connection = "close" if close else "keep-alive"
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    return head.encode() + body


BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def content_length(head: bytes) -> int | None:
    """The request's body length (0 without one), or None when it cannot be framed here."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.strip().isdigit():
                return None
            length = int(value.strip())
    return length


class _BackendProtocol(asyncio.Protocol):
    __slots__ = ("answer", "open", "transport", "buffer", "skip")

    def __init__(self, answer: bytes, open_transports: set[asyncio.Transport]) -> None:
        self.answer = answer
        self.open = open_transports  # the backend's connections, closed by its stop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.skip = 0  # body bytes of the current request still to discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's transports do not subclass asyncio's
        self.transport = cast(asyncio.Transport, transport)
        self.open.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.open.discard(self.transport)
            self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer, self.skip = self.buffer[taken:], self.skip - taken
                if self.skip:
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._refuse()
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            length = content_length(head)
            if length is None:
                self._refuse()
                return
            self.skip = length
            self.transport.write(self.answer)

    def _refuse(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()


class Backend:
    """A backend answering with `name` on 127.0.0.1 (a free port, chosen by `start`)."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()

    async def start(self) -> None:
        answer = response_bytes(self.name)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _BackendProtocol(answer, self._transports), self.host, 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in list(self._transports):  # kept-alive connections of the proxy
                transport.close()
            self._server = None
