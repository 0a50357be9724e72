# UpstreamConnection: the asyncio.Protocol of one keep-alive connection to the upstream.
#
# It drives a sans-I/O ResponseReader and hands the events to its owner (the client connection
# whose exchange it carries), through the small ResponseSink interface below. Between
# exchanges it has no owner and sits in the pool; any byte or EOF that arrives then closes it.
# No parsing or framing logic lives here.
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from migproxy.errors import (
    RemoteProtocolError,
    UpstreamClosed,
    UpstreamError,
    UpstreamProtocolError,
)
from migproxy.http1.connection import ReaderState, ResponseReader
from migproxy.http1.events import ConnectionClosed, Data, EndOfMessage, ResponseHead
from migproxy.stats import Stats, UpstreamClose

if TYPE_CHECKING:
    from migproxy.upstream.balancer import Backend

# Enum members as module names: cheaper than a lookup on the Enum class (Python 3.11).
_DONE = ReaderState.DONE


class ResponseSink(Protocol):
    """The owner of an exchange: where an upstream connection delivers its response."""

    def response_head(self, head: ResponseHead) -> None: ...
    def response_data(self, data: bytes) -> None: ...
    def response_end(self, trailers: list[bytes]) -> None: ...
    def upstream_failed(self, err: UpstreamError) -> None: ...
    def upstream_writable(self, writable: bool) -> None: ...
    def flush_client(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to the upstream, reused across exchanges."""

    __slots__ = (
        "transport",
        "reader",
        "owner",
        "idle_since",
        "closed",
        "keep_alive",
        "requests",
        "close_reason",
        "stats",
        "reading_paused",
        "backend",
        "opened_at",
        "answered",
        "reused",
        "writing_paused",
    )

    def __init__(
        self,
        max_head_bytes: int,
        max_fields: int,
        stats: Stats,
        backend: Backend[UpstreamConnection],
        now: float,
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader(max_head_bytes, max_fields)
        self.owner: ResponseSink | None = None
        self.idle_since = 0.0
        self.closed = False
        self.keep_alive = True  # the last final response let the connection stay open
        self.requests = 0  # exchanges carried, this one included
        self.close_reason: UpstreamClose | None = None  # why we closed it, if we did
        self.reading_paused = False  # paused because the client could not take more
        self.stats = stats
        self.backend = backend  # the upstream address it is connected to
        self.opened_at = now
        self.answered = False  # a byte of the current exchange's response arrived
        self.reused = False  # the current exchange took it from the pool
        self.writing_paused = False  # its write buffer is over the high-water mark

    def is_usable(self) -> bool:
        return not self.closed and self.owner is None

    def is_reusable(self) -> bool:
        """It carried nothing yet, or its last response ended cleanly and left nothing unread."""
        return (
            self.keep_alive
            and not self.closed
            and (self.reader.state is _DONE or self.requests == 0)
            and self.reader.buffered() == 0
        )

    def attach(self, owner: ResponseSink, method: bytes, reused: bool) -> None:
        """Carry `owner`'s exchange; `reused`: it comes from the pool (it waited idle, even if
        it carried nothing before, like the /readyz probe's)."""
        self.owner = owner
        self.requests += 1
        self.answered = False
        self.reused = reused
        self.stats.upstream_requests[reused] += 1
        self.reader.expect(method)

    def detach(self) -> None:
        self.owner = None

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_many(self, chunks: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(chunks)

    def send_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self, reason: UpstreamClose = UpstreamClose.ERROR) -> None:
        """Close after what was written is sent; `reason` is counted when the socket goes."""
        self.owner = None
        self.closed = True
        self.close_reason = self.close_reason or reason
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: UpstreamClose = UpstreamClose.ERROR) -> None:
        """Close at once, discarding unsent data (the exchange it carried failed)."""
        self.owner = None
        self.closed = True
        self.close_reason = self.close_reason or reason
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
        self.reading_paused = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            # Bytes between exchanges are a protocol error (or a stale keep-alive close).
            self.close(UpstreamClose.UPSTREAM)
            return
        self.answered = True
        self.reader.receive_data(data)
        self._deliver(owner)

    def eof_received(self) -> bool:
        self.reader.receive_eof()
        owner = self.owner
        if owner is not None:
            self._deliver(owner)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.close_reason is None:
            # Not closed by us: the upstream closed it (EOF), or the kernel gave up on it
            # (reset, or the keep-alive probes or TCP_USER_TIMEOUT found a dead peer).
            self.close_reason = UpstreamClose.UPSTREAM if exc is None else UpstreamClose.ERROR
        self.stats.count_upstream_close(self.close_reason)
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.upstream_failed(UpstreamClosed("upstream closed the connection mid-exchange"))
        else:
            self.backend.pool.discard(self)  # closed while idle: no longer one to hand out

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.owner is not None:
            self.owner.upstream_writable(False)

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.owner is not None:
            self.owner.upstream_writable(True)

    def _deliver(self, owner: ResponseSink) -> None:
        reader = self.reader
        while owner is self.owner:
            try:
                ev = reader.next_event()
            except RemoteProtocolError as err:
                self.abort()
                if reader.has_eof():  # it closed before its message was complete
                    owner.upstream_failed(UpstreamClosed(err.reason))
                else:
                    owner.upstream_failed(UpstreamProtocolError(err.reason))
                return
            if type(ev) is Data:
                owner.response_data(ev.data)
            elif type(ev) is ResponseHead:
                if ev.status >= 200:
                    self.keep_alive = ev.keep_alive
                owner.response_head(ev)
            elif type(ev) is EndOfMessage:
                owner.response_end(ev.trailers)
            elif type(ev) is ConnectionClosed:
                self.close(UpstreamClose.UPSTREAM)
                owner.upstream_failed(UpstreamClosed("upstream closed before responding"))
                return
            else:
                owner.flush_client()
                return

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("busy" if self.owner else "idle")
        return f"<UpstreamConnection {state} reader={self.reader.state.value}>"
