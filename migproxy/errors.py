# Error types of migproxy, in one place.
#
# Protocol errors come in two flavours, named from our own point of view (as h11 does):
# RemoteProtocolError means the peer broke HTTP/1.1, LocalProtocolError means we were asked to
# do something HTTP/1.1 does not allow. Both carry the status a server should answer with.
# Upstream failures form a small tree so that one function (status_for) maps them to 502/503/504.
# This module imports nothing from the event loop, DNS or metrics code: the sans-I/O core uses it.
from __future__ import annotations


class ProtocolError(Exception):
    """An HTTP/1.1 framing or syntax error.

    Attributes:
        status_hint: the status code a server answers this error with (400, 431, 501, 505...).
        reason: a short human-readable reason, sent in the error response body.
    """

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid HTTP/1.1 (or exceeds our limits)."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something HTTP/1.1 forbids."""


class UpstreamError(Exception):
    """The upstream could not produce a response. `kind` is a bounded label for metrics."""

    kind = "error"
    status = 502


class ConnectError(UpstreamError):
    """The TCP connection to the upstream could not be opened (refused, unreachable)."""

    kind = "connect"
    status = 502


class ConnectTimeout(UpstreamError):
    """The TCP connection to the upstream did not open within the connect timeout."""

    kind = "connect_timeout"
    status = 503


class NoUpstream(UpstreamError):
    """No address of the upstream may be used: the DNS answer is empty or gone, or every
    address failed its health checks and upstream.health.all_down is "reject"."""

    kind = "unavailable"
    status = 503


class ResponseTimeout(UpstreamError):
    """The upstream did not answer (or went quiet mid-response) within the response timeout."""

    kind = "timeout"
    status = 504


class UpstreamClosed(UpstreamError):
    """The upstream closed or reset the connection before the response was complete."""

    kind = "reset"
    status = 502


class UpstreamProtocolError(UpstreamError):
    """The upstream's response could not be framed exactly (bad status line, CL+TE...)."""

    kind = "protocol"
    status = 502
