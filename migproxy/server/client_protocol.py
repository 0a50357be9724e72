# ClientProtocol: one accepted client connection, and the exchange it carries.
#
# Data path: client bytes -> RequestReader events -> forwarded head/body to an upstream
# connection -> its ResponseHead -> decide_close() -> response head (+ Connection: close) and
# body to the client -> after the last byte, either the next pipelined request or a graceful
# close. Parsing and framing live in migproxy.http1, the decision in migproxy.policy; this
# module only moves bytes, keeps timers and applies decisions.
#
# Rules:
# - A close is announced in a response head before it happens (DESIGN.md §2). The only
#   unannounced closes are: an idle keep-alive connection timing out (no request in flight),
#   a protocol error we answer with 400/408/413/431, a request body that goes wrong after its
#   request was answered early (a graceful close), and an abort when the upstream fails after
#   the response head was sent (the client must not take a truncated body as complete).
# - Graceful close: stop reading requests, half-close our write side, then read and discard
#   until the client closes or the linger time passes. Closing with unread input would make
#   the kernel send a reset, which can destroy the response the client has not read yet.
# - Timeouts: one deadline per connection, checked by ProxyContext.sweep(); its meaning
#   follows the phase (see Phase). Deadlines are computed from ProxyContext.now, a clock the
#   sweep refreshes, so they are exact to one sweep interval and cost no clock read per event.
# - Output is corked: the pieces of a response produced from one read of the upstream (head,
#   body, last chunk) leave in one write, and likewise for requests, so a small exchange costs
#   one send() each way.
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from time import monotonic
from typing import cast

from migproxy.errors import (
    NoUpstream,
    RemoteProtocolError,
    ResponseTimeout,
    UpstreamClosed,
    UpstreamError,
    UpstreamProtocolError,
)
from migproxy.http1.connection import RequestReader
from migproxy.http1.events import (
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    RequestHead,
    ResponseHead,
)
from migproxy.http1.framing import encode_chunk, encode_last_chunk
from migproxy.http1.serialize import (
    error_response_bytes,
    forwarding_lines,
    request_head_bytes,
    response_head_bytes,
)
from migproxy.policy.close import (
    KEEP_OPEN,
    POLICY_REASONS,
    CloseDecision,
    CloseReason,
    age_limit,
    decide_close,
    required_close,
)
from migproxy.proxy import ProxyContext
from migproxy.sockopts import reset_on_close
from migproxy.upstream.connection import UpstreamConnection
from migproxy.upstream.group import UpstreamBackend

log = logging.getLogger("migproxy")
access_log = logging.getLogger("migproxy.access")

INFINITY = float("inf")
_POLICY_REASONS = frozenset(POLICY_REASONS)
# Read-blocking reasons (bits): reading resumes only when none is left.
_BLOCK_UPSTREAM_FULL = 1  # the upstream's write buffer is over its high-water mark
_BLOCK_BACKLOG = 2  # pipelined or pre-connect bytes are waiting
MAX_BACKLOG = 256 * 1024  # request bytes held while the upstream connects
# Methods a request of which may be sent twice (RFC 9110 §9.2.2): the only ones retried.
IDEMPOTENT_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class Phase(enum.Enum):
    """Where a client connection is, and what its deadline means when it passes."""

    IDLE = "idle"  # between requests: keep-alive timeout, closed quietly
    HEAD = "head"  # a request head is arriving: head timeout, 408
    BODY = "body"  # the request body is arriving: body timeout (silence), 408
    WAIT = "wait"  # waiting for the upstream: response timeout (silence), 504
    TUNNEL = "tunnel"  # after 101: no deadline
    LINGER = "linger"  # after an announced close: input discarded until a silence, then close
    CLOSED = "closed"


# Enum members bound to module names for the per-event paths: on Python 3.11 a member lookup
# on an Enum class goes through the metaclass's __getattr__ hook, three times the cost of a
# plain global.
_IDLE = Phase.IDLE
_HEAD = Phase.HEAD
_BODY = Phase.BODY
_WAIT = Phase.WAIT
_TUNNEL = Phase.TUNNEL
_LINGER = Phase.LINGER
_CLOSED = Phase.CLOSED
_NONE_BODY = BodyKind.NONE
_CHUNKED_BODY = BodyKind.CHUNKED
_LENGTH_BODY = BodyKind.LENGTH


class ClientProtocol(asyncio.Protocol):
    """One client connection: reads requests, forwards them, writes responses."""

    __slots__ = (
        "ctx",
        "reader",
        "transport",
        "client_ip",
        "phase",
        "deadline",
        "requests",
        "_forwarding",
        "_read_blocked",
        "_write_paused",
        "_upstream",
        "_backend",
        "_connecting",
        "_backlog",
        "_backlog_size",
        "_request",
        "_head_bytes",
        "_retried",
        "_request_done",
        "_response_done",
        "_continue_sent",
        "_response_started",
        "_out_chunked",
        "_close_after",
        "_client_out",
        "_upstream_out",
        "opened_at",
        "_jitter",
        "_close_reason",
        "_sent_at",
        "_linger_end",
    )

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        limits = ctx.config.limits
        self.reader = RequestReader(
            limits.max_header_bytes, limits.max_headers, limits.max_body_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.client_ip = b"-"
        self._forwarding = b""  # the lines the proxy adds to each forwarded request
        self.phase = _HEAD
        self.deadline = INFINITY
        self.requests = 0
        self._read_blocked = 0
        # Our write buffer is over its high-water mark: every upstream connection that carries
        # an exchange of ours reads only when it is below again (not just the one of the
        # moment: uvloop does not signal the same state twice).
        self._write_paused = False
        self._upstream: UpstreamConnection | None = None
        self._backend: UpstreamBackend | None = None  # the address the exchange went to
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[bytes] = []  # request bytes for an upstream still connecting
        self._backlog_size = 0
        # The exchange in flight (valid while _request is not None).
        self._request: RequestHead | None = None
        self._head_bytes = b""  # the request head as forwarded, kept for a retry
        self._retried = False
        self._request_done = False
        self._response_done = False  # the response ended before the request body did
        self._continue_sent = False
        self._response_started = False
        self._out_chunked = False
        self._close_after = False
        self.opened_at = 0.0  # on the loop's clock
        self._jitter = -1.0  # this connection's max_age_jitter draw, made when first needed
        self._sent_at = 0.0  # when the request in flight went upstream (monotonic)
        self._linger_end = INFINITY  # the latest the linger may end, once it began
        self._close_reason: CloseReason | None = None  # why this connection closes, once known
        self._client_out: list[bytes] = []  # corked response bytes, see flush_client()
        self._upstream_out: list[bytes] = []  # corked request bytes, see _flush_upstream()

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode("ascii")
        self._forwarding = forwarding_lines(self.client_ip, ctx.rules)
        self.deadline = ctx.now + ctx.head_timeout
        ctx.connections.add(self)
        stats = ctx.stats
        stats.connections_opened += 1
        stats.active += 1
        self.opened_at = ctx.loop.time()
        if ctx.returning.connected(self.client_ip, self.opened_at):
            stats.returning += 1  # its DNS cache still points here after a forced close
        if ctx.draining:  # taken from an accept queue by the drain: its request is due now
            self.shutdown(max(ctx.config.drain.idle_grace, ctx.sweep_every))

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase is _LINGER:
            # Discarded. A client still sending (an upload answered early, as by a 413) keeps
            # the linger going, to close.linger_max in all: closing under its upload would
            # reset the connection, and the reset can destroy the answer before it is read.
            # The clock is read, not the sweep's: a stale one would end the silence early.
            ctx = self.ctx
            self.deadline = min(ctx.loop.time() + ctx.linger, self._linger_end)
            return
        if phase is _CLOSED:
            return
        if phase is _IDLE:
            self.phase = _HEAD
            self.deadline = self.ctx.now + self.ctx.head_timeout
        elif phase is _BODY:
            self.deadline = self.ctx.now + self.ctx.body_timeout
        self.reader.receive_data(data)
        self._process_requests()

    def eof_received(self) -> bool:
        if self.phase is _LINGER:
            return False  # the client read our close; let the transport close
        self.reader.receive_eof()
        self._process_requests()
        if self._request is not None and self.phase is not _TUNNEL and self.phase is not _CLOSED:
            # The client half-closed after a complete request: its response announces the
            # close, and the connection closes after it (not at the keep-alive timeout).
            self._close_after = True
        return True  # keep our side open to finish a response in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = _CLOSED
        self.deadline = INFINITY
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.stats.active -= 1
        ctx.stats.count_close(
            self._close_reason or CloseReason.CLIENT,
            self.requests,
            ctx.loop.time() - self.opened_at,
        )
        if self._connecting is not None:
            self._connecting.cancel()
        if self._upstream is not None:
            # The client left mid-exchange: the upstream connection is in an unknown state.
            self._upstream.abort()
            self._upstream = None
        self._leave_backend()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._upstream is not None:
            self._upstream.resume_reading()

    # Requests (client -> upstream)

    def _process_requests(self) -> None:
        reader = self.reader
        while True:
            try:
                ev = reader.next_event()
            except RemoteProtocolError as err:
                self._upstream_out.clear()
                self._client_error(err.status_hint, err.reason)
                return
            if type(ev) is Data:
                self._forward_body(ev.data)
            elif type(ev) is RequestHead:
                self._start_exchange(ev)
            elif type(ev) is EndOfMessage:
                self._end_request(ev.trailers)
            elif type(ev) is ConnectionClosed:
                self._flush_upstream()
                self._client_closed()
                return
            else:
                self._flush_upstream()
                if reader.buffered() > MAX_BACKLOG:
                    self._block_reading(_BLOCK_BACKLOG)  # pipelined requests wait their turn
                return

    def _flush_upstream(self) -> None:
        out = self._upstream_out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if self._upstream is not None:
            self._upstream.send(data)
        elif self._connecting is not None:
            self._to_backlog(data)
        # else: the exchange already failed and was answered; the rest of the body is dropped

    def _start_exchange(self, head: RequestHead) -> None:
        ctx = self.ctx
        self.requests += 1
        self._request = head
        self._request_done = False
        self._response_done = False
        self._continue_sent = False
        self._response_started = False
        self._out_chunked = False
        self._close_after = False
        if head.body is _NONE_BODY:
            self.phase = _WAIT
            self.deadline = ctx.now + ctx.response_timeout
        else:
            self.phase = _BODY
            self.deadline = ctx.now + ctx.body_timeout
        head_bytes = self._head_bytes = request_head_bytes(
            head, self.client_ip, ctx.rules, self._forwarding
        )
        self._upstream_out.append(head_bytes)
        self._retried = False
        self._sent_at = monotonic()
        backend = ctx.balancer.only or ctx.balancer.pick()
        if backend is None:
            self._connecting = ctx.loop.create_task(self._connect(None))
            return
        backend.outstanding += 1
        self._backend = backend
        conn = backend.pool.acquire(ctx.now)
        if conn is not None:  # _attach(), inlined on the per-exchange path
            self._upstream = conn
            conn.attach(self, head.method, True)
            if self._write_paused or conn.writing_paused:
                self._apply_flow_control(conn)
        else:
            self._connecting = ctx.loop.create_task(self._connect(backend))

    def _attach(self, conn: UpstreamConnection, method: bytes, *, reused: bool) -> None:
        """Carry the exchange on `conn`, under the flow control both sides are in now."""
        self._upstream = conn
        conn.attach(self, method, reused)
        self._apply_flow_control(conn)

    def _apply_flow_control(self, conn: UpstreamConnection) -> None:
        """Pauses that hold now, passed to a newly attached upstream connection (uvloop does
        not signal a state twice, so an exchange must inherit what is still in force)."""
        if self._write_paused:
            conn.pause_reading()
        if conn.writing_paused:  # still over high water from its previous exchange
            self._block_reading(_BLOCK_UPSTREAM_FULL)

    def _leave_backend(self) -> None:
        backend = self._backend
        if backend is not None:
            backend.outstanding -= 1
            self._backend = None

    async def _connect(self, backend: UpstreamBackend | None) -> None:
        """Connect to `backend` for the exchange in flight (None: no address may be used)."""
        try:
            if backend is None:
                raise NoUpstream(self.ctx.upstreams.unavailable_reason())
            conn = await self.ctx.upstreams.connect(backend)
        except UpstreamError as err:
            self._connecting = None
            self.upstream_failed(err)
            return
        self._connecting = None
        if self._request is None or self.phase is _CLOSED:
            self.ctx.release_upstream(conn)
            return
        self._attach(conn, self._request.method, reused=False)
        conn.send_many(self._backlog)
        self._backlog = []
        self._backlog_size = 0
        self._unblock_reading(_BLOCK_BACKLOG)

    def _to_backlog(self, data: bytes) -> None:
        self._backlog.append(data)
        self._backlog_size += len(data)
        if self._backlog_size > MAX_BACKLOG:
            self._block_reading(_BLOCK_BACKLOG)

    def _forward_body(self, data: bytes) -> None:
        assert self._request is not None
        if self._request.body is _CHUNKED_BODY and self.phase is not _TUNNEL:
            data = encode_chunk(data)
        self._upstream_out.append(data)

    def _end_request(self, trailers: list[bytes]) -> None:
        request = self._request
        if request is None:
            return
        if request.body is _CHUNKED_BODY:
            self._upstream_out.append(encode_last_chunk(trailers))
        self._request_done = True
        if self._response_done:
            self._upstream_out.clear()
            self._next_cycle()
        elif self.phase is _BODY:
            self.phase = _WAIT
            self.deadline = self.ctx.now + self.ctx.response_timeout

    def _client_closed(self) -> None:
        # The client shut its sending side at a message boundary: finish what is in flight.
        self._close_reason = self._close_reason or CloseReason.CLIENT
        if self._request is None:
            self._hard_close()  # nothing left to read, so closing cannot cause a reset
        elif self.phase is _TUNNEL and self._upstream is not None:
            self._upstream.send_eof()
        else:
            self._close_after = True

    # Responses (upstream -> client), called by UpstreamConnection

    def response_head(self, head: ResponseHead) -> None:
        request = self._request
        assert request is not None and self.transport is not None
        ctx = self.ctx
        if self.phase is _WAIT:
            self.deadline = ctx.now + ctx.response_timeout
        if head.status < 200:
            self._interim_response(head, request)
            return
        chunked = head.body is _CHUNKED_BODY and request.version == 11
        required = None
        if head.body is not _LENGTH_BODY or not self._request_done:
            required = required_close(
                response_body=head.body,
                client_version=request.version,
                request_complete=self._request_done,
                awaiting_continue=request.expect_continue and not self._continue_sent,
            )
        keep_alive = request.keep_alive and not self._close_after
        if ctx.policy.active or ctx.draining or required is not None or not keep_alive:
            decision = self._decide(request, keep_alive, required)
        else:
            decision = KEEP_OPEN  # nothing can close this one: skip the decision
        self._close_after = decision.close
        self._out_chunked = chunked
        self._response_started = True
        ctx.stats.count_response(self.opened_at < ctx.epoch_at, self.requests > 1, head.status)
        if decision.reason is not None:
            self._close_reason = decision.reason
            if decision.injected:
                ctx.stats.count_injected(decision.reason)
        if ctx.access_log:
            self._log_access(request, head.status, decision.reason)
        self._client_out.append(
            response_head_bytes(
                head,
                close=decision.close,
                chunked=chunked,
                client_version=request.version,
                via=ctx.rules.via,
            )
        )

    def _decide(
        self, request: RequestHead, keep_alive: bool, required: CloseReason | None
    ) -> CloseDecision:
        """decide_close() for this response, then the close budget, back-off and dry run."""
        ctx = self.ctx
        policy = ctx.policy
        limit = INFINITY
        if policy.max_age:
            if self._jitter < 0:
                self._jitter = ctx.rng.random()
            limit = age_limit(policy, self.opened_at, self._jitter)
        scope = policy.scope
        decision = decide_close(
            client_keep_alive=keep_alive,
            required=required,
            draining=ctx.draining,
            policy=policy,
            now=ctx.now,
            opened_at=self.opened_at,
            age_limit=limit,
            requests=self.requests,
            in_scope=scope is None
            or scope.matches(request.fields.get(b"host"), request.target, self.client_ip),
            rng=ctx.rng.random,
        )
        if not decision.injected:
            return decision
        assert decision.reason is not None
        hold = ctx.gate.admit(self.client_ip, ctx.now)
        if hold is not None:
            ctx.stats.count_deferred(decision.reason, hold)  # a later response will try again
            return KEEP_OPEN
        if ctx.dry_run:
            ctx.stats.count_would_close(decision.reason)
            return KEEP_OPEN
        return decision

    def _log_access(self, request: RequestHead, status: int, close: CloseReason | None) -> None:
        access_log.info(
            '%s "%s %s HTTP/1.%d" %d close=%s',
            self.client_ip.decode(),
            request.method.decode("ascii"),
            request.target.decode("ascii"),
            request.version % 10,
            status,
            close.value if close is not None else "-",
        )

    def _interim_response(self, head: ResponseHead, request: RequestHead) -> None:
        assert self.transport is not None
        if head.status == 101:
            if request.upgrade is None:
                self.upstream_failed(UpstreamProtocolError("upstream switched protocols unasked"))
                return
            self._client_out.append(
                response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
            )
            self._response_started = True
            self.phase = _TUNNEL
            self.deadline = INFINITY
            self.reader.start_tunnel()
            self._request_done = True
            # What the client sent behind its request (the new protocol's first bytes, or its
            # EOF) waits in the reader: pass it on now, not when the client sends more.
            self._unblock_reading(_BLOCK_BACKLOG)
            self._process_requests()
            return
        if request.version == 11:  # HTTP/1.0 clients do not understand 1xx (RFC 9110 §15.2)
            self._continue_sent = self._continue_sent or head.status == 100
            self._client_out.append(
                response_head_bytes(head, close=False, chunked=False, client_version=11, via=False)
            )

    def response_data(self, data: bytes) -> None:
        if self.phase is _WAIT:
            self.deadline = self.ctx.now + self.ctx.response_timeout
        if self._out_chunked and self.phase is not _TUNNEL:
            data = encode_chunk(data)
        self._client_out.append(data)

    def flush_client(self) -> None:
        """Write the corked response bytes (called after each batch of upstream events)."""
        out = self._client_out
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def response_end(self, trailers: list[bytes]) -> None:
        if self._out_chunked:
            self._client_out.append(encode_last_chunk(trailers))
        self.flush_client()
        conn, self._upstream = self._upstream, None
        if conn is not None:
            self.ctx.stats.upstream_seconds.observe(monotonic() - self._sent_at)
            if self._request_done:
                ctx = self.ctx
                ctx.upstreams.release(conn, ctx.now, ctx.draining)
            else:
                # It may or may not still expect the rest of the body, and may not read it:
                # abort (a graceful close could wait for it for ever), and stop waiting for
                # its write buffer to drain.
                conn.abort()
                self._unblock_reading(_BLOCK_UPSTREAM_FULL)
        backend = self._backend
        if backend is not None:  # _leave_backend(), inlined on the per-exchange path
            backend.outstanding -= 1
            self._backend = None
        self._response_started = False
        if self._close_after:
            self._request = None
            self._close()
        elif self._request_done:
            self._next_cycle()
        else:
            # An early response: the request body is still framed, so read it to its end
            # (discarding it) and keep the connection (RFC 9110 §15, RFC 9112 §9.3).
            self._response_done = True
            self.phase = _BODY
            self.deadline = self.ctx.now + self.ctx.body_timeout

    def _next_cycle(self) -> None:
        """The exchange is over on a connection that stays open: on to the next request."""
        self._request = None
        self._response_done = False  # an error in the next head is answered, not cut short
        self.phase = _IDLE
        self.deadline = self.ctx.now + self.ctx.keepalive_timeout
        self.reader.start_next_cycle()
        if self._read_blocked:
            # Neither the pipelined backlog nor the finished exchange's upstream (whose write
            # buffer may still be draining) holds this client back any more.
            self._unblock_reading(_BLOCK_BACKLOG | _BLOCK_UPSTREAM_FULL)
        if self.reader.buffered():
            self.phase = _HEAD
            self.deadline = self.ctx.now + self.ctx.head_timeout
            self._process_requests()
        elif self.ctx.draining:  # went idle during a drain: close after the grace period
            self.shutdown(self.ctx.config.drain.idle_grace)

    def upstream_failed(self, err: UpstreamError) -> None:
        conn, self._upstream = self._upstream, None
        if conn is not None:
            conn.abort()
            self._unblock_reading(_BLOCK_UPSTREAM_FULL)  # that connection's, gone with it
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._leave_backend()
        if self.phase is _CLOSED or self._request is None:
            return
        if conn is not None and self._may_retry(conn, err):
            self._retry(conn)
            return
        if self.phase is _TUNNEL:
            self._close()  # the upstream ended the tunnel
            return
        log.warning("%s: upstream %s: %s", self.client_ip.decode(), err.kind, err)
        self.ctx.stats.count_upstream_error(err.kind)
        if self._response_started:
            self.flush_client()
            self._abort()  # the client must not take a truncated response as complete
        else:
            keep = (
                self._request_done
                and self._request.keep_alive
                and not self._close_after
                and not self.ctx.draining
            )
            self._answer_error(err.status, str(err), close=not keep)

    def _may_retry(self, conn: UpstreamConnection, err: UpstreamError) -> bool:
        """The stale keep-alive race: a reused connection the upstream had already closed.

        Retried once, on a new connection, only when nothing of the response arrived and the
        request can be sent again safely and whole: an idempotent method without a body
        (RFC 9110 §9.2.2, RFC 9112 §9.3.1). Bodies are streamed, not kept, so a request
        with one is never retried.
        """
        request = self._request
        return (
            type(err) is UpstreamClosed
            and conn.reused  # it waited in the pool: the upstream may have closed it meanwhile
            and not conn.answered
            and not self._retried
            and not self._response_started
            and request is not None
            and self._request_done
            and request.body is _NONE_BODY
            and request.method in IDEMPOTENT_METHODS
        )

    def _retry(self, failed: UpstreamConnection) -> None:
        ctx = self.ctx
        ctx.stats.upstream_retries += 1
        self._retried = True
        log.info(
            "%s: upstream %s closed a reused connection before answering; retrying on a new one",
            self.client_ip.decode(),
            failed.backend.label,
        )
        self._backlog = [self._head_bytes]
        self._backlog_size = len(self._head_bytes)
        backend = ctx.balancer.pick()
        if backend is not None:
            backend.outstanding += 1
            self._backend = backend
        self._connecting = ctx.loop.create_task(self._connect(backend))

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self._unblock_reading(_BLOCK_UPSTREAM_FULL)
        else:
            self._block_reading(_BLOCK_UPSTREAM_FULL)

    # Errors, timeouts and closing

    def _client_error(self, status: int, reason: str) -> None:
        log.info("%s: %d %s", self.client_ip.decode(), status, reason)
        conn, self._upstream = self._upstream, None
        if conn is not None:
            conn.abort()
        self._leave_backend()
        if self._response_done:
            # The request was answered already and its body went wrong: close (unannounced,
            # the answer is out) but gracefully, or the reset could destroy the answer.
            self._request = None
            self._close_reason = self._close_reason or CloseReason.ERROR
            self._close()
        elif self._response_started:
            self.flush_client()
            self._abort()
        else:
            self._answer_error(status, reason, close=True)

    def _answer_error(self, status: int, reason: str, *, close: bool) -> None:
        self._client_out.append(error_response_bytes(status, reason, close=close))
        self._response_started = True
        ctx = self.ctx
        ctx.stats.count_response(self.opened_at < ctx.epoch_at, self.requests > 1, status)
        if close:
            self._close_reason = self._close_reason or CloseReason.ERROR
        self._out_chunked = False
        self._close_after = close
        self.response_end([])

    def deadline_passed(self, now: float) -> None:
        """The phase's deadline has passed (called by ProxyContext.sweep)."""
        phase = self.phase
        # Flow control can stall a side on the other's behalf: the silence is blamed on the
        # side that stopped reading, not on the one held back.
        if phase is _WAIT:
            if self._write_paused:  # the upstream was paused for us: the client stopped reading
                log.info("%s: client stopped reading its response", self.client_ip.decode())
                self._abort()
            else:
                self.upstream_failed(ResponseTimeout("upstream response timed out"))
        elif phase is _HEAD and self.reader.buffered():
            self._client_error(408, "request head not received in time")
        elif phase is _BODY:
            if self._read_blocked & _BLOCK_UPSTREAM_FULL:
                self.upstream_failed(ResponseTimeout("upstream stopped reading the request body"))
            else:
                self._client_error(408, "request body stalled")
        else:
            if phase is not _LINGER:
                self._close_reason = (
                    CloseReason.DRAIN if self.ctx.draining else CloseReason.IDLE_TIMEOUT
                )
            self.reader.discard_buffer()
            self._hard_close()

    def shutdown(self, idle_grace: float) -> None:
        """Drain: close if idle for `idle_grace` from now; the next response announces close;
        a linger lasts `linger` from now at most.

        An idle connection is not closed at once: a request may be on its way, and closing
        under it would fail it. After `idle_grace` of silence the race is unlikely.
        """
        if self.phase is _LINGER:
            self._linger_end = min(self._linger_end, self.ctx.now + self.ctx.linger)
            self.deadline = min(self.deadline, self._linger_end)
        elif self.phase is _IDLE or (self.phase is _HEAD and not self.reader.buffered()):
            if idle_grace <= 0:
                self._close_reason = CloseReason.DRAIN
                self._hard_close()
            else:
                # Idle, a new connection included: a head that begins within the grace gets
                # the whole head timeout (data_received starts it), not what is left of it.
                self.phase = _IDLE
                self.deadline = min(self.deadline, self.ctx.now + idle_grace)

    def _close(self) -> None:
        """Graceful close after an announced close (see the module's rules)."""
        transport = self.transport
        assert transport is not None
        if self._close_reason in _POLICY_REASONS:
            self.ctx.returning.closed(self.client_ip, self.ctx.now)
        self.phase = _LINGER
        ctx = self.ctx
        now = ctx.loop.time()  # not the sweep's clock, which would cut the linger short
        self.deadline = now + ctx.linger
        # A drain does not wait on uploads it refused: linger in all, as it was before input
        # could extend it.
        self._linger_end = now + (ctx.linger if ctx.draining else ctx.linger_max)
        self.reader.discard_buffer()
        self._read_blocked = 0
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def _hard_close(self) -> None:
        self.phase = _CLOSED
        self.deadline = INFINITY
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        """Drop the connection with a reset: the client must not take what it got as whole."""
        self._close_reason = self._close_reason or CloseReason.ERROR
        self.phase = _CLOSED
        self.deadline = INFINITY
        transport = self.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    reset_on_close(sock)
            transport.abort()

    def _block_reading(self, reason: int) -> None:
        if not self._read_blocked and self.transport is not None:
            self.transport.pause_reading()
        self._read_blocked |= reason

    def _unblock_reading(self, reason: int) -> None:
        if self._read_blocked & reason:
            self._read_blocked &= ~reason
            if not self._read_blocked and self.transport is not None:
                self.transport.resume_reading()

    def __repr__(self) -> str:
        return f"<ClientProtocol {self.client_ip.decode()} {self.phase.value} n={self.requests}>"
